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

    // Every injected outlier (metric ×20) is counted: fired or a repeat within the cooldown.
    let injected = injected_outliers(&lines);
    assert!(injected.len() > 100, "{} outliers injected", injected.len());
    for o in &injected {
        assert!(
            held.contains(o),
            "injected outlier {o:?} not selected by the rule"
        );
    }
    let counted: i64 = want.values().map(|(r, _)| r + 1).sum();
    assert!(counted as usize >= injected.len());

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
