//! Alerts through Kafka across `kill -9`: events with outliers and error bursts go through a
//! Kafka topic into the real `weir` process, which is killed mid-stream; afterwards the
//! alert topic (a `FROM weir.alerts` sink) and `weir.alerts` hold exactly the alerts an
//! independent batch computation of the same rules yields, each `alert_id` once per status.
//! The broker is librdkafka's mock cluster inside the test process.
//! `loadtests/alerts_faults.sh` runs it with 1M events and three kills.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::alerts::*;
use common::kafka::{kafka_source, produce_events, read_topic};
use common::process::{int, Weir};
use common::{event_lines, kpi_query};
use rdkafka::mocking::MockCluster;
use tokio_postgres::Client;

/// Events (200/s of event time), `kill -9`s.
fn scenario() -> (u64, u64) {
    (
        common::env_u64("WEIR_ALERT_EVENTS", 84_000),
        common::env_u64("WEIR_ALERT_KILLS", 1),
    )
}

async fn wait_events(weir: &Weir, client: &Client, want: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let n = int(
            client,
            "SELECT events_in FROM weir.sources WHERE name = 'events'",
        )
        .await;
        if n >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {want} events read; log:\n{}",
            weir.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_published_once_across_kill_9() {
    let (events, kills) = scenario();
    // librdkafka's mock cluster in this process: unlike tansu it resumes a fetch inside a
    // record batch, which a restart from a checkpointed offset needs.
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let (input, output) = ("alerts-in".to_string(), "alerts-out".to_string());
    cluster.create_topic(&input, 1, 1).unwrap();
    let g = generator(200);
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start(dir.path());
    let client = weir.connect().await;
    client
        .batch_execute(&format!(
            "SET background_ddl = on;\n{};\n\
             CREATE MATERIALIZED VIEW kpi_1m AS {} EMIT ON WINDOW CLOSE;\n{};\n{};\n\
             CREATE SINK alerts_out FROM weir.alerts WITH (connector = 'kafka', brokers = '{brokers}', topic = '{output}');",
            kafka_source("events", &brokers, &input, ""),
            kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '1 minute')"),
            weir_server::demo::outlier_alert("metric_outlier", "events", "1 minute"),
            weir_server::demo::error_rate_alert("high_error_rate", "kpi_1m", "3 minutes"),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", weir.log_text()));
    drop(client);

    // Produce in chunks of 10,000 (the mock broker keeps 5 MB per partition, so each chunk
    // is read before the next); kill -9 half-way through `kills` chunks spread over the run.
    const CHUNK: u64 = 10_000;
    let chunks = events.div_ceil(CHUNK);
    let kill_at: Vec<u64> = (1..=kills).map(|k| k * chunks / (kills + 1)).collect();
    let mut produced = 0;
    for c in 0..chunks {
        let count = CHUNK.min(events - produced);
        let client = weir.connect().await;
        if kill_at.contains(&c) {
            // Paced, so that weir is killed while it reads and alerts.
            let producer = {
                let (brokers, input, g) = (brokers.clone(), input.clone(), g.clone());
                std::thread::spawn(move || {
                    let options = weir_connectors::kafka::produce::ProduceOptions {
                        brokers,
                        topic: input,
                        count,
                        first: produced,
                        rate: Some(20_000),
                        partitions: None,
                        malformed_rate: 0.0,
                        properties: Default::default(),
                    };
                    weir_connectors::kafka::produce::produce(&g, &options).unwrap()
                })
            };
            wait_events(
                &weir,
                &client,
                (produced + count / 2) as i64,
                Duration::from_secs(120),
            )
            .await;
            println!(
                "kill -9 after {} of {} events",
                int(&client, "SELECT events_in FROM weir.sources").await,
                produced + count
            );
            weir.kill_and_restart();
            assert_eq!(producer.join().unwrap().delivered, count);
        } else {
            produce_events(&brokers, &input, &g, produced, count, 0.0, None);
        }
        produced += count;
        let client = weir.connect().await;
        wait_events(&weir, &client, produced as i64, Duration::from_secs(120)).await;
    }
    let client = weir.connect().await;
    wait_events(&weir, &client, events as i64, Duration::from_secs(300)).await;
    // Until the sinks have delivered everything.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let backlog = int(
            &client,
            "SELECT coalesce(sum(backlog), 0)::BIGINT FROM weir.sinks",
        )
        .await;
        let sinks = int(
            &client,
            "SELECT count(*) FROM weir.sinks WHERE status = 'running'",
        )
        .await;
        if backlog == 0 && sinks == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sinks did not drain: {}",
            weir.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The reference over the same events.
    let lines = event_lines(&g, events, 0);
    let (held, want_outliers) = expected_outliers(dir.path(), &lines).await;
    // Every injected outlier with 100 events of history is selected: fired, or a repeat.
    let injected = scored_outliers(&lines);
    assert!(
        injected.iter().all(|o| held.contains(o)),
        "an injected outlier was missed"
    );
    // Windows close on the watermark (2 s behind the newest event): the last one is open.
    let windows = batch_rows(dir.path(), &lines, ERROR_RATE_WINDOWS_SQL).await;
    let want_errors = expected_error_alerts(&windows, open_from(&lines));
    assert!(!want_errors.is_empty() && want_outliers.len() > 10);

    // weir.alerts.
    for (name, want) in [
        ("metric_outlier", &want_outliers),
        ("high_error_rate", &want_errors),
    ] {
        let rows = client
            .query(
                &format!(
                    "SELECT key, event_time::BIGINT, repeats, resolved_at::BIGINT \
                     FROM weir.alerts WHERE name = '{name}'"
                ),
                &[],
            )
            .await
            .unwrap();
        let got: Alerts = rows
            .iter()
            .map(|r| {
                let resolved: Option<i64> = r.get(3);
                (
                    // weir.alerts keeps microseconds, as PostgreSQL does.
                    (r.get::<_, String>(0), r.get::<_, i64>(1) * 1_000),
                    (r.get::<_, i64>(2), resolved.map(|us| us * 1_000)),
                )
            })
            .collect();
        assert_eq!(&got, want, "weir.alerts of {name}");
    }

    // The alert topic: each (alert_id, status) once; the firing ones are the expected alerts.
    let messages = read_topic(&brokers, &output);
    let mut seen = BTreeSet::new();
    let mut firing: BTreeMap<String, BTreeSet<(String, i64)>> = BTreeMap::new();
    let mut resolved: BTreeMap<String, BTreeSet<(String, i64)>> = BTreeMap::new();
    for (key, value) in &messages {
        let id = (
            value["alert_id"].as_str().unwrap().to_string(),
            value["status"].as_str().unwrap().to_string(),
        );
        assert!(
            seen.insert(id.clone()),
            "{id:?} published twice (key {key:?})"
        );
        let name = value["name"].as_str().unwrap().to_string();
        let at = (
            value["key"].as_str().unwrap().to_string(),
            time_ns(&value["event_time"]),
        );
        match id.1.as_str() {
            "firing" => firing.entry(name).or_default().insert(at),
            _ => resolved.entry(name).or_default().insert(at),
        };
    }
    for (name, want) in [
        ("metric_outlier", &want_outliers),
        ("high_error_rate", &want_errors),
    ] {
        let want_firing: BTreeSet<(String, i64)> = want.keys().cloned().collect();
        assert_eq!(
            firing.get(name).cloned().unwrap_or_default(),
            want_firing,
            "firing messages of {name}"
        );
        let want_resolved: BTreeSet<(String, i64)> = want
            .iter()
            .filter_map(|((k, _), (_, r))| r.map(|r| (k.clone(), r)))
            .collect();
        assert_eq!(
            resolved.get(name).cloned().unwrap_or_default(),
            want_resolved,
            "resolved messages of {name}"
        );
    }
    println!(
        "{} events, {kills} kills: {} outlier alerts, {} error-rate alerts, {} messages",
        events,
        want_outliers.len(),
        want_errors.len(),
        messages.len()
    );
}
