//! Alerts into a real Alertmanager (Debian's `prometheus-alertmanager`): a
//! `connector = 'alertmanager'` sink `FROM weir.alerts` retries while Alertmanager is down,
//! then delivers firing and resolved alerts with their labels and annotations, and a
//! `kill -9` of Weir (which posts the messages since the last checkpoint again) sends no
//! second notification. Alertmanager notifies a webhook receiver in this test.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::{free_port, Weir};
use serde_json::Value;

/// Notifications Alertmanager POSTed to this test (its webhook payloads).
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Value>>>);

impl Receiver {
    /// Serves on a free port; returns the URL Alertmanager posts to.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let store = self.0.clone();
        let app = axum::Router::new().route(
            "/notify",
            axum::routing::post(move |body: String| {
                let store = store.clone();
                async move {
                    store
                        .lock()
                        .unwrap()
                        .push(serde_json::from_str(&body).unwrap());
                    "ok"
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/notify")
    }

    /// (group key label, status, alerts' labels) of every notification so far.
    fn notifications(&self) -> Vec<(String, String, Vec<Value>)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["groupLabels"]["key"].as_str().unwrap_or("").to_string(),
                    n["status"].as_str().unwrap().to_string(),
                    n["alerts"].as_array().unwrap().clone(),
                )
            })
            .collect()
    }

    async fn wait_for(&self, key: &str, status: &str, weir: &Weir) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((_, _, alerts)) = self
                .notifications()
                .into_iter()
                .find(|(k, s, _)| k == key && s == status)
            {
                return alerts;
            }
            assert!(
                Instant::now() < deadline,
                "no {status} notification for {key}: {:?}\n{}",
                self.notifications(),
                weir.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Debian's Alertmanager, notifying `receiver` at once (1 s group wait and interval, no
/// repeat within the test), stopped on drop.
struct Alertmanager(std::process::Child);

impl Alertmanager {
    fn start(dir: &std::path::Path, port: u16, receiver: &str) -> Self {
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: test\n  group_by: ['alertname', 'key']\n  group_wait: 1s\n  \
                 group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    \
                 webhook_configs:\n      - url: '{receiver}'\n        send_resolved: true\n"
            ),
        )
        .unwrap();
        let child = std::process::Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("alertmanager.log")).unwrap())
            .spawn()
            .expect(
                "prometheus-alertmanager is missing: run the tests with scripts/test.sh \
                 (it installs Debian's prometheus-alertmanager)",
            );
        Self(child)
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One event line of the seed's schema at `at` (ns).
fn event(id: &str, source: &str, at: i64, metric: f64) -> String {
    format!(
        r#"{{"event_id":"{id}","source":"{source}","timestamp":"{}","attributes":{{"user_id":"u","metric":{metric},"status":"ok"}}}}"#,
        chrono::DateTime::from_timestamp_nanos(at).to_rfc3339()
    )
}

fn append(path: &std::path::Path, lines: &[String]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all((lines.join("\n") + "\n").as_bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_alertmanager_once_across_an_outage_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let receiver = Receiver::default();
    let receiver_url = receiver.start().await;
    let am_port = free_port();

    // No checkpoint after the start: the restart posts every message again.
    let mut weir = Weir::start_with(dir.path(), &[("WEIR_CHECKPOINT_INTERVAL", "1h")]);
    let client = weir.connect().await;
    let t0 = chrono::Utc::now().timestamp_nanos_opt().unwrap() - 60_000_000_000;
    std::fs::write(&events, "").unwrap();
    client
        .batch_execute(&format!(
            "{};\n\
             CREATE ALERT hot WITH (severity = 'critical', key = 'source', cooldown = '0 seconds') AS \
               SELECT source, \"timestamp\", attributes.metric AS metric FROM events \
               WHERE attributes.metric > 90;",
            weir_server::demo::seed_source(
                "events",
                &format!(
                    "connector = 'file', path = '{}', format = 'json', follow = 'true'",
                    events.display()
                )
            ),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", weir.log_text()));
    let create_sink = format!(
        "CREATE SINK am FROM weir.alerts WITH (connector = 'alertmanager', \
         url = 'http://127.0.0.1:{am_port}', labels = 'team=ops')"
    );

    // CREATE SINK checks the target: with Alertmanager not running it is refused.
    let refused = client
        .batch_execute(&create_sink)
        .await
        .expect_err("a sink to an Alertmanager that is not running");
    let refused = refused.as_db_error().expect("an SQL error");
    assert_eq!(refused.code().code(), "08001", "{refused:?}");
    assert!(refused.message().contains("cannot connect"), "{refused:?}");

    // With Alertmanager up the sink is created; then Alertmanager goes away before the
    // first alert.
    let first = Alertmanager::start(dir.path(), am_port, &receiver_url);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", am_port)).is_err() {
        assert!(Instant::now() < deadline, "Alertmanager did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .batch_execute(&create_sink)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", weir.log_text()));
    drop(first);
    append(
        &events,
        &[
            event("e1", "web", t0, 95.0),
            event("e2", "db", t0, 99.0),
            event("e3", "tick", t0 + 5_000_000_000, 1.0),
        ],
    );

    // Alertmanager is down: the sink retries and says why.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = client
            .query_one(
                "SELECT status, errors::BIGINT FROM weir.sinks WHERE name = 'am@hot'",
                &[],
            )
            .await
            .unwrap();
        let (status, errors): (String, i64) = (row.get(0), row.get(1));
        // The error count and the status are two updates: wait for both.
        if errors > 0 && status.starts_with("retrying") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{status} ({errors} errors)\n{}",
            weir.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Alertmanager comes up: both alerts arrive, firing, with their labels and annotations.
    let _am = Alertmanager::start(dir.path(), am_port, &receiver_url);
    let web = receiver.wait_for("web", "firing", &weir).await;
    assert_eq!(web.len(), 1, "{web:?}");
    assert_eq!(web[0]["labels"]["alertname"], "hot");
    assert_eq!(web[0]["labels"]["severity"], "critical");
    assert_eq!(web[0]["labels"]["team"], "ops");
    assert_eq!(web[0]["annotations"]["summary"], "hot for web (critical)");
    let payload: Value =
        serde_json::from_str(web[0]["annotations"]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["metric"], 95.0);
    let starts = chrono::DateTime::parse_from_rfc3339(web[0]["startsAt"].as_str().unwrap())
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap();
    assert_eq!(
        starts / 1_000_000,
        t0 / 1_000_000,
        "startsAt is the event time"
    );
    receiver.wait_for("db", "firing", &weir).await;

    // web's metric drops: the alert resolves, with its end time.
    append(&events, &[event("e4", "web", t0 + 10_000_000_000, 10.0)]);
    let resolved = receiver.wait_for("web", "resolved", &weir).await;
    let ends = chrono::DateTime::parse_from_rfc3339(resolved[0]["endsAt"].as_str().unwrap())
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap();
    assert_eq!(ends / 1_000_000, (t0 + 10_000_000_000) / 1_000_000);

    // kill -9: the restart replays the events and posts the same messages again.
    let before = receiver.notifications().len();
    weir.kill_and_restart();
    let client = weir.connect().await;
    common::process::wait_for(
        &weir,
        &client,
        "SELECT events_in::BIGINT FROM weir.sources WHERE name = 'events'",
        4,
        Duration::from_secs(60),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let reposted = loop {
        let row = client
            .query_one(
                "SELECT status, backlog::BIGINT, rows_written::BIGINT FROM weir.sinks WHERE name = 'am@hot'",
                &[],
            )
            .await
            .unwrap();
        let (status, backlog, written): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if status == "running" && backlog == 0 && written > 0 {
            break written;
        }
        assert!(
            Instant::now() < deadline,
            "{status} {backlog}\n{}",
            weir.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("{reposted} alert messages posted again after kill -9");
    // Several of Alertmanager's group intervals.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = receiver.notifications();
    assert_eq!(
        after.len(),
        before,
        "a notification after the restart: {:?}",
        &after[before..]
    );
    assert_eq!(before, 3, "web firing, db firing, web resolved: {after:?}");
}
