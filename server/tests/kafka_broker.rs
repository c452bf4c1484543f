//! The Kafka source end to end against a real Kafka-compatible broker (tansu, started by
//! `scripts/test.sh`): seed events across four partitions, out of order across partitions,
//! with malformed messages, while the broker is paused mid-stream. The test command runs it
//! small (40k events, a 3 s pause); `loadtests/kafka_faults.sh` runs the same test with
//! 1M events and a 20 s pause (`WEIR_KAFKA_FAULT_EVENTS`, `WEIR_KAFKA_FAULT_PAUSE_SECS`).

mod common;

use std::time::Duration;

use common::kafka::*;
use common::*;
use weir_connectors::kafka::produce::create_topic;

/// Pauses the broker process (SIGSTOP) for `pause`, then resumes it (SIGCONT).
fn pause_broker(pause: Duration) {
    let pid = std::env::var("WEIR_TEST_KAFKA_PID").expect(
        "WEIR_TEST_KAFKA_PID is not set: run the tests with scripts/test.sh, which starts the \
         broker and can pause it",
    );
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {sig} {pid} failed");
    };
    signal("-STOP");
    std::thread::sleep(pause);
    signal("-CONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_events_through_a_paused_broker_equal_the_batch_query() {
    let brokers = broker();
    let topic = unique_topic("weir-e2e");
    create_topic(&brokers, &topic, 4, &Default::default()).unwrap();
    let g = generator(21, 1_500);
    let env = |k: &str, default: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let count = env("WEIR_KAFKA_FAULT_EVENTS", 40_000);
    let pause = Duration::from_secs(env("WEIR_KAFKA_FAULT_PAUSE_SECS", 3));
    let rate = 0.001;

    let db = memory_db().await;
    exec(
        &db,
        &kafka_source(
            "events",
            &brokers,
            &topic,
            ", group_id = 'weir-test', start = 'earliest', idle_timeout = '2 seconds'",
        ),
    )
    .await;
    exec(&db, &kpi_1m_on_update()).await;

    let producer = {
        let (brokers, topic, g) = (brokers.clone(), topic.clone(), g.clone());
        std::thread::spawn(move || produce_events(&brokers, &topic, &g, 0, count, rate, None))
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::spawn_blocking(move || pause_broker(pause))
        .await
        .unwrap();
    let report = producer.join().unwrap();

    let lines = lines(&g, count, rate);
    let (events, _, _) = reference_events(&lines, 2_000_000_000);
    wait_for_int(
        &db,
        "SELECT sum(count) FROM kpi_1m",
        events.len() as i64,
        Duration::from_secs(60 + count / 5_000),
    )
    .await;
    let bad = assert_kpi_1m_matches(&db, &lines).await;
    assert!(bad > 0 && bad == report.malformed.len());
    let mut dead = texts(
        &db,
        "SELECT location FROM weir.dead_letters WHERE source = 'events'",
    )
    .await;
    dead.sort();
    assert_eq!(dead, malformed_locations(&topic, &report));
    assert_eq!(
        int(&db, "SELECT count(DISTINCT partition) FROM weir.source_partitions WHERE source = 'events' AND position > 0").await,
        4
    );
}

/// `kill -9` of the real `weir` process, repeatedly, while seed events stream from Kafka
/// into `kpi_1m` and `kpi_1m_hop`: the views end equal to the batch computation (counts
/// exactly), and each restart's time to serving is printed. The test command runs it small
/// (60k events, 2 kills); `loadtests/kafka_kills.sh` runs 2M events and 20 kills
/// (`WEIR_KILL_EVENTS`, `WEIR_KILLS`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_killed_while_reading_kafka_loses_and_doubles_nothing() {
    use common::process::{assert_kpi_views_match, int, wait_for, Weir};
    let env = |k: &str, default: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let count = env("WEIR_KILL_EVENTS", 60_000);
    let kills = env("WEIR_KILLS", 2);
    let brokers = broker();
    let topic = unique_topic("weir-kill");
    create_topic(&brokers, &topic, 4, &Default::default()).unwrap();
    // Ten minutes of event time, whatever the count.
    let g = generator_at_rate(31, 1_500, (count / 600).max(1));

    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start(dir.path());
    let client = weir.connect().await;
    client
        .batch_execute(&format!(
            "{};\nCREATE MATERIALIZED VIEW kpi_1m AS {} EMIT ON UPDATE;\n\
             CREATE MATERIALIZED VIEW kpi_1m_hop AS {} EMIT ON UPDATE;",
            kafka_source("events", &brokers, &topic, ", group_id = 'weir-kill'"),
            kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '1 minute')"),
            kpi_query("HOP(events, \"timestamp\", INTERVAL '10 seconds', INTERVAL '1 minute')"),
        ))
        .await
        .unwrap();
    drop(client);

    // The events stream in while weir is killed at random moments.
    let producer = {
        let (brokers, topic, g) = (brokers.clone(), topic.clone(), g.clone());
        std::thread::spawn(move || {
            let chunk = (count / 20).max(1);
            let mut first = 0;
            while first < count {
                let n = chunk.min(count - first);
                let r = produce_events(&brokers, &topic, &g, first, n, 0.0, None);
                assert_eq!(r.delivered, n, "the broker took every message");
                first += n;
            }
        })
    };
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut random_ms = |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let mut restarts = Vec::new();
    for k in 0..kills {
        tokio::time::sleep(Duration::from_millis(300 + random_ms(1_500))).await;
        let started = std::time::Instant::now();
        weir.kill_and_restart();
        let client = weir.connect().await;
        let rows = int(&client, "SELECT count(*) FROM kpi_1m").await;
        restarts.push(started.elapsed());
        println!(
            "kill {}: serving again after {:?} ({rows} kpi_1m rows)",
            k + 1,
            started.elapsed()
        );
    }
    producer.join().unwrap();
    let client = weir.connect().await;
    for view in ["kpi_1m", "kpi_1m_hop"] {
        wait_for(
            &weir,
            &client,
            &format!(
                "SELECT CAST(sum(count) AS BIGINT) FROM (SELECT count FROM {view} \
                 WHERE window_start = date_bin(INTERVAL '1 minute', window_start))"
            ),
            count as i64,
            Duration::from_secs(600),
        )
        .await;
    }
    restarts.sort();
    if let (Some(lo), Some(hi)) = (restarts.first(), restarts.last()) {
        println!(
            "{} kills: restart to serving min {lo:?}, median {:?}, max {hi:?}",
            restarts.len(),
            restarts[restarts.len() / 2]
        );
    }
    let (events, late, _) = reference_events(&lines(&g, count, 0.0), 2_000_000_000);
    assert_eq!(late, 0);
    assert_kpi_views_match(&client, dir.path(), &events).await;
}
