//! Alert rules against an independent batch computation: the seed's two rules over generated
//! events with injected outliers and error bursts fire exactly the alerts that DataFusion's
//! batch query over the same events selects, after the same event-time cooldown, computed
//! here from scratch. Also: every injected outlier is counted in an alert, state survives a
//! restart from a checkpoint, and the DDL around alerts.

mod common;

use std::time::Duration;

use common::*;
use datafusion::arrow::array::Int64Array;

use common::alerts::*;

fn create_statements(path: &std::path::Path) -> String {
    format!(
        "{};\nCREATE MATERIALIZED VIEW kpi_1m AS {} EMIT ON WINDOW CLOSE;\n{};\n{};",
        weir_server::demo::seed_source(
            "events",
            &format!(
                "connector = 'file', path = '{}', format = 'json', follow = 'true'",
                path.display()
            )
        ),
        kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '1 minute')"),
        weir_server::demo::outlier_alert("metric_outlier", "events", "1 minute"),
        weir_server::demo::error_rate_alert("high_error_rate", "kpi_1m", "3 minutes"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_equal_the_batch_rules_after_the_same_cooldown_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let g = generator(200);
    let total = 200 * 600;
    let lines = event_lines(&g, total, 0);
    // The first half now, the rest after a restart from a checkpoint.
    let half = lines.len() / 2;
    std::fs::write(&path, lines[..half].join("\n") + "\n").unwrap();

    let data = dir.path().join("data");
    let db = persistent_db(&data, Duration::from_millis(100)).await;
    exec(&db, &create_statements(&path)).await;
    wait_caught_up(&db, "events").await;
    let before = weir_alerts(&db, "metric_outlier").await;
    assert!(!before.is_empty(), "outliers in the first half fire");
    tokio::time::sleep(Duration::from_millis(300)).await;
    db.shutdown();
    drop(db);

    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all((lines[half..].join("\n") + "\n").as_bytes())
            .unwrap();
    }
    let db = persistent_db(&data, Duration::from_millis(100)).await;
    wait_caught_up(&db, "events").await;
    // The alerts of the first half survived as they were.
    let after = weir_alerts(&db, "metric_outlier").await;
    for (k, _) in before.iter() {
        assert!(after.contains_key(k), "alert {k:?} lost in the restart");
    }

    // Outliers: per-event rule, exact frame, scored against the events before each one.
    let (held, want) = expected_outliers(dir.path(), &lines).await;
    let got = weir_alerts(&db, "metric_outlier").await;
    assert_eq!(
        got.len(),
        want.len(),
        "outlier alerts: weir {} vs batch {}",
        got.len(),
        want.len()
    );
    assert_eq!(got, want);

    // Every injected outlier (metric ×20) with 100 events of history before it is counted:
    // fired or a repeat within the cooldown.
    let injected = scored_outliers(&lines);
    assert!(injected.len() > 100, "{} outliers injected", injected.len());
    for o in &injected {
        assert!(
            held.contains(o),
            "injected outlier {o:?} not selected by the rule"
        );
    }
    // The followed source scores events below its watermark, 2 s behind the newest.
    let watermark = newest(&lines) - 2_000_000_000;
    let scored = injected.iter().filter(|(_, t)| *t < watermark).count();
    let counted: i64 = want.values().map(|(r, _)| r + 1).sum();
    assert!(
        counted as usize >= scored,
        "{counted} firings for {scored} outliers"
    );

    // Error bursts: threshold rule over closed 1-minute windows (the followed file's last
    // window is open); alerts resolve when a later window of the source is back under 5%.
    let windows = batch_rows(dir.path(), &lines, ERROR_RATE_WINDOWS_SQL).await;
    let want = expected_error_alerts(&windows, open_from(&lines));
    assert!(want.len() >= 2, "bursts raise alerts: {windows:?}");
    let got = weir_alerts(&db, "high_error_rate").await;
    assert_eq!(got, want);
    assert!(got.values().any(|(_, resolved)| resolved.is_some()));

    // Each alert is one firing message (and at most one resolved message) in the rule's
    // rows, which sinks receive.
    let messages = db
        .query("SELECT alert_id, status, count(*) AS n FROM high_error_rate GROUP BY 1, 2 HAVING count(*) > 1")
        .await
        .unwrap();
    assert_eq!(messages.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    db.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_ddl_and_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let lines = event_lines(&generator(100), 100 * 90, 0);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let db = memory_db().await;
    exec(&db, &create_source(&path)).await;
    let err = |sql: &'static str| {
        let db = db.clone();
        async move {
            let mut session = weir_sql::Session::default();
            match db.run(&mut session, sql).await {
                Ok(_) => panic!("{sql} succeeded"),
                Err(e) => (e.sqlstate().to_string(), e.to_string()),
            }
        }
    };
    let (state, msg) =
        err("CREATE ALERT a WITH (key = 'nope') AS SELECT source, \"timestamp\" FROM events").await;
    assert_eq!(state, "42703", "{msg}");
    let (state, msg) =
        err("CREATE ALERT a WITH (colour = 'red') AS SELECT source, \"timestamp\" FROM events")
            .await;
    assert_eq!(state, "22023", "{msg}");
    let (state, msg) = err("CREATE ALERT a AS SELECT source FROM events").await;
    assert_eq!(state, "22023", "{msg}");
    assert!(msg.contains("event time"), "{msg}");
    let (state, msg) = err("CREATE ALERT a AS SELECT source, \"timestamp\", avg(attributes.metric) OVER (PARTITION BY source ORDER BY \"timestamp\" ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) AS m FROM events").await;
    assert_eq!(state, "0A000", "{msg}");
    assert!(msg.contains("FOLLOWING"), "{msg}");
    let (state, msg) = err("CREATE ALERT a AS SELECT source, \"timestamp\", avg(attributes.metric) OVER (PARTITION BY source) AS m FROM events").await;
    assert_eq!(state, "0A000", "{msg}");
    let (state, msg) = err("CREATE ALERT a AS SELECT source, \"timestamp\", row_number() OVER (PARTITION BY source ORDER BY \"timestamp\") AS m FROM events").await;
    assert_eq!(state, "0A000", "{msg}");
    let (state, _) = err("DROP ALERT nope").await;
    assert_eq!(state, "42P01");

    // ewma/ewm_zscore need no retained events; a plain threshold over a source resolves.
    exec(
        &db,
        "CREATE ALERT jump WITH (key = 'source', cooldown = '0 seconds') AS \
         SELECT * FROM (SELECT source, \"timestamp\", ewm_zscore(attributes.metric, INTERVAL '30 seconds') \
         OVER (PARTITION BY source ORDER BY \"timestamp\") AS z FROM events) WHERE z > 6;\n\
         CREATE MATERIALIZED VIEW baseline AS SELECT source, \"timestamp\", \
         ewma(attributes.metric, INTERVAL '30 seconds') OVER (PARTITION BY source ORDER BY \"timestamp\") AS m, \
         count(*) OVER (PARTITION BY source ORDER BY \"timestamp\" ROWS BETWEEN 10 PRECEDING AND 1 PRECEDING) AS n \
         FROM events",
    )
    .await;
    wait_caught_up(&db, "events").await;
    let rows = db
        .query("SELECT count(*) FROM baseline WHERE m IS NULL")
        .await
        .unwrap();
    let nulls = rows[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(nulls, 4, "the first event of each source has no baseline");
    let rows = db.query("SELECT max(n) FROM baseline").await.unwrap();
    let max = rows[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(max, 10);
    let rows = db
        .query("SELECT count(*) FROM weir.alerts WHERE name = 'jump'")
        .await
        .unwrap();
    let jumps = rows[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert!(jumps > 5, "{jumps} ewm outliers");

    // SHOW ALERTS, SHOW CREATE ALERT, REST /alerts, DROP ALERT.
    for (sql, want) in [
        ("SHOW ALERTS", "jump"),
        (
            "SHOW CREATE ALERT jump",
            "CREATE ALERT jump WITH (cooldown = '0 seconds'",
        ),
    ] {
        let mut session = weir_sql::Session::default();
        let Some(weir_sql::Outcome::Rows(df)) = db.run(&mut session, sql).await.unwrap().pop()
        else {
            panic!("{sql} returned no rows");
        };
        let text =
            datafusion::arrow::util::pretty::pretty_format_batches(&df.collect().await.unwrap())
                .unwrap()
                .to_string();
        assert!(text.contains(want), "{sql}:\n{text}");
    }
    let app = weir_server::rest::router(db.clone());
    let (status, body) = get(app.clone(), "/alerts?name=jump&since=2026-11-27T09:59:00Z").await;
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list.as_array().unwrap().len() as i64, jumps);
    assert_eq!(list[0]["name"], "jump");
    assert!(list[0]["payload"]["z"].as_f64().unwrap() > 6.0);
    let (status, _) = get(app.clone(), "/alerts?name=nope").await;
    assert_eq!(status, 404);
    let (status, _) = get(app.clone(), "/alerts?since=yesterday").await;
    assert_eq!(status, 400);
    let (status, body) = get(app.clone(), "/alerts?severity=critical").await;
    assert_eq!((status, body.as_str()), (200, "[]"));
    exec(&db, "DROP ALERT jump").await;
    let (status, _) = get(app, "/alerts?name=jump").await;
    assert_eq!(status, 404);
    db.shutdown();
}

async fn get(app: axum::Router, uri: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {uri} HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).await.unwrap();
    server.abort();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// The demo's rules on the demo's own generator (20 minutes of its events): every alert
/// traces to an injected outlier or error burst, and every injected outlier and burst is
/// alerted (or counted as a repeat within the cooldown). Prints precision and recall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demos_alerts_fire_for_injected_outliers_and_bursts_and_nothing_else() {
    use std::collections::BTreeMap;
    use weir_connectors::datagen::{DatagenConfig, EventGenerator};

    let rate = 1000;
    let count = rate * 60 * 20;
    let start = "2026-11-27T10:00:00Z";
    let mut settings = weir_server::demo::generator_settings(rate);
    settings.extend([
        ("count", count.to_string()),
        ("start", start.to_string()),
        ("realtime", "false".to_string()),
    ]);
    let options: Vec<String> = settings
        .iter()
        .map(|(k, v)| format!("{k} = '{v}'"))
        .collect();
    let db = memory_db().await;
    exec(
        &db,
        &format!(
            "{};\n{}",
            weir_server::demo::seed_source(
                "events",
                &format!("connector = 'datagen', {}", options.join(", "))
            ),
            weir_server::demo::alert_rules("events")
        ),
    )
    .await;
    wait_caught_up(&db, "events").await;

    // The truth, from the generator: outliers (metric ×20, so ≥ 500) and burst windows.
    let config: BTreeMap<String, String> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let g = EventGenerator::new(DatagenConfig::from_options(&config).unwrap());
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let (mut outliers, mut unscored) = (Vec::new(), 0);
    let mut bursts = std::collections::BTreeSet::new();
    let mut line = Vec::new();
    for i in 0..count {
        line.clear();
        g.write_event(i, &mut line);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let source = v["source"].as_str().unwrap().to_string();
        let t = time_ns(&v["timestamp"]);
        let history = seen.entry(source.clone()).or_default();
        if v["attributes"]["metric"].as_f64().unwrap() >= 500.0 {
            if *history < weir_server::demo::OUTLIER_MIN_HISTORY {
                unscored += 1;
            } else {
                outliers.push((source.clone(), t));
            }
        }
        *history += 1;
        let burst_source = source < format!("src-{:04}", g.config().burst_sources);
        if burst_source && g.in_burst(i) {
            bursts.insert((source, t.div_euclid(MINUTE) * MINUTE));
        }
    }

    // Outliers: an alert's own event and its repeats are exactly the injected outliers of
    // its key within the cooldown, and every injected outlier is in one alert.
    let alerts = weir_alerts(&db, "metric_outlier").await;
    let mut covered = 0;
    let mut false_alerts = Vec::new();
    for ((key, t), (repeats, _)) in &alerts {
        let within = outliers
            .iter()
            .filter(|(k, o)| k == key && *o >= *t && *o < t + OUTLIER_COOLDOWN)
            .count() as i64;
        if !outliers.contains(&(key.clone(), *t)) || within != repeats + 1 {
            false_alerts.push((key.clone(), *t, *repeats, within));
        }
        covered += within;
    }
    let outlier_precision = 1.0 - false_alerts.len() as f64 / alerts.len() as f64;
    let outlier_recall = covered as f64 / outliers.len() as f64;

    // Error bursts: one alert per burst window, none elsewhere.
    let burst_alerts = weir_alerts(&db, "error_burst").await;
    let fired: std::collections::BTreeSet<(String, i64)> = burst_alerts.keys().cloned().collect();
    let burst_precision = fired.intersection(&bursts).count() as f64 / fired.len().max(1) as f64;
    let burst_recall = fired.intersection(&bursts).count() as f64 / bursts.len() as f64;
    eprintln!(
        "demo rules over {count} demo events: metric_outlier {} alerts for {} injected outliers \
         ({unscored} more in a source's first {} events, not scored): precision {outlier_precision:.3}, \
         recall {outlier_recall:.3}; error_burst {} alerts for {} burst windows: precision \
         {burst_precision:.3}, recall {burst_recall:.3}",
        alerts.len(),
        outliers.len(),
        weir_server::demo::OUTLIER_MIN_HISTORY,
        fired.len(),
        bursts.len()
    );
    assert!(outliers.len() > 1000, "{} outliers", outliers.len());
    assert_eq!(
        false_alerts,
        vec![],
        "alerts that are not injected outliers"
    );
    assert_eq!(
        covered as usize,
        outliers.len(),
        "injected outliers not alerted"
    );
    assert_eq!(
        bursts.len(),
        4,
        "two burst sources × two bursts: {bursts:?}"
    );
    assert_eq!(fired, bursts);
    db.shutdown();
}
