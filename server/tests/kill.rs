//! `kill -9` of the real `weir` process mid-stream: after a restart the views equal an
//! independent batch computation over the same events — nothing lost, nothing counted twice
//! — and tables hold every change that completed, including those after the last checkpoint.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use weir_connectors::datagen::{DatagenConfig, EventGenerator};

use common::process::{assert_kpi_views_match, int, wait_for, Weir};
use common::{event_lines, kpi_query, reference_events};

const EVENTS: u64 = 300_000;

fn datagen_options() -> BTreeMap<String, String> {
    [
        ("realtime", "false".to_string()),
        ("count", EVENTS.to_string()),
        ("rate", "200".to_string()),
        ("seed", "11".to_string()),
        ("sources", "8".to_string()),
        ("error_rate", "0.05".to_string()),
        ("disorder_ms", "1500".to_string()),
        ("start", "2026-11-27T10:00:00Z".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start(dir.path());
    let client = weir.connect().await;
    // The reference events first: the table names every source they come from.
    let g = EventGenerator::new(DatagenConfig::from_options(&datagen_options()).unwrap());
    let (events, late, _) = reference_events(&event_lines(&g, EVENTS, 0), 2_000_000_000);
    let sources: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.source.as_str()).collect();
    let regions: BTreeMap<&str, &str> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, ["north", "south", "west"][i % 3]))
        .collect();
    let values: Vec<String> = regions
        .iter()
        .map(|(s, r)| format!("('{s}', '{r}')"))
        .collect();
    client
        .batch_execute(&format!(
            "CREATE TABLE regions (source TEXT PRIMARY KEY, region TEXT NOT NULL);\n\
             INSERT INTO regions VALUES {};\n\
             CREATE TABLE notes (id INT PRIMARY KEY, note TEXT);",
            values.join(", ")
        ))
        .await
        .unwrap();
    let options: String = datagen_options()
        .iter()
        .map(|(k, v)| format!("{k} = '{v}'"))
        .collect::<Vec<_>>()
        .join(", ");
    client
        .batch_execute(&format!(
            "SET background_ddl = on;\n{};\n\
             CREATE MATERIALIZED VIEW kpi_1m AS {};\n\
             CREATE MATERIALIZED VIEW kpi_1m_hop AS {};\n\
             CREATE MATERIALIZED VIEW by_region AS SELECT r.region, window_start, count(*) AS n \
               FROM TUMBLE(events, \"timestamp\", INTERVAL '1 minute') e \
               JOIN regions r ON e.source = r.source GROUP BY r.region, window_start;",
            weir_server::demo::seed_source("events", &format!("connector = 'datagen', {options}")),
            kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '1 minute')"),
            kpi_query("HOP(events, \"timestamp\", INTERVAL '10 seconds', INTERVAL '1 minute')"),
        ))
        .await
        .unwrap();
    // Kill once the stream is well under way and a checkpoint exists.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = int(&client, "SELECT events_in FROM weir.sources").await;
        let epoch = int(&client, "SELECT checkpoint_epoch FROM weir.sources").await;
        if n >= EVENTS as i64 / 5 && epoch > 0 {
            // Changes right before the kill, after the last checkpoint: they must survive.
            client
                .batch_execute(
                    "INSERT INTO notes VALUES (1, 'one'), (2, 'two'), (3, 'three');\n\
                     UPDATE notes SET note = 'TWO' WHERE id = 2;\n\
                     DELETE FROM notes WHERE id = 3;",
                )
                .await
                .unwrap();
            println!("killing weir after {n} of {EVENTS} events (checkpoint epoch {epoch})");
            assert!(n < EVENTS as i64, "the stream ended before the kill");
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {n} events");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(client);
    let restarted = Instant::now();
    weir.kill_and_restart();
    let client = weir.connect().await;
    let rows = int(&client, "SELECT count(*) FROM kpi_1m_hop").await;
    println!(
        "restart to serving: {:?} (kpi_1m_hop had {rows} rows)",
        restarted.elapsed()
    );
    wait_for(
        &weir,
        &client,
        "SELECT count(*) FROM weir.views WHERE caught_up",
        3,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        int(&client, "SELECT events_in FROM weir.sources").await,
        EVENTS as i64
    );

    // The independent reference: the same generator, DataFusion in batch.
    assert_eq!(late, 0, "disorder is within the watermark delay");
    assert_kpi_views_match(&client, dir.path(), &events).await;

    // The tables kept every statement; the joined view counted each event once. (The last
    // window may still be open: compare the closed ones.)
    let notes = client
        .simple_query(
            "SELECT string_agg(CAST(id AS TEXT) || '=' || note, ',' ORDER BY id) FROM notes",
        )
        .await
        .unwrap();
    let notes = match &notes[1] {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).unwrap().to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(notes, "1=one,2=TWO");
    let minute = 60_000_000_000i64;
    let mut expected: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for e in &events {
        let key = (
            regions[e.source.as_str()].to_string(),
            e.time_ns.div_euclid(minute) * minute,
        );
        *expected.entry(key).or_default() += 1;
    }
    let got = client
        .simple_query("SELECT region, CAST(window_start AS BIGINT), n FROM by_region")
        .await
        .unwrap();
    let mut streamed: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for m in &got {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            streamed.insert(
                (
                    r.get(0).unwrap().to_string(),
                    r.get(1).unwrap().parse().unwrap(),
                ),
                r.get(2).unwrap().parse().unwrap(),
            );
        }
    }
    assert!(streamed.len() > 10, "{streamed:?}");
    for (key, n) in &streamed {
        assert_eq!(Some(n), expected.get(key), "{key:?}");
    }
    let last = expected.keys().map(|k| k.1).max().unwrap();
    let closed = expected.iter().filter(|(k, _)| k.1 < last).count();
    assert!(
        streamed.len() >= closed,
        "{} of {closed} closed windows",
        streamed.len()
    );
}
