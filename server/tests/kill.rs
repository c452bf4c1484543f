//! `kill -9` of the real `weir` process mid-stream: after a restart the views equal an
//! independent batch computation over the same events — nothing lost, nothing counted twice.

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
    let options: String = datagen_options()
        .iter()
        .map(|(k, v)| format!("{k} = '{v}'"))
        .collect::<Vec<_>>()
        .join(", ");
    client
        .batch_execute(&format!(
            "SET background_ddl = on;\n{};\n\
             CREATE MATERIALIZED VIEW kpi_1m AS {};\n\
             CREATE MATERIALIZED VIEW kpi_1m_hop AS {};",
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
        2,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        int(&client, "SELECT events_in FROM weir.sources").await,
        EVENTS as i64
    );

    // The independent reference: the same generator, DataFusion in batch.
    let g = EventGenerator::new(DatagenConfig::from_options(&datagen_options()).unwrap());
    let (events, late, _) = reference_events(&event_lines(&g, EVENTS, 0), 2_000_000_000);
    assert_eq!(late, 0, "disorder is within the watermark delay");
    assert_kpi_views_match(&client, dir.path(), &events).await;
}
