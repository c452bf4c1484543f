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
    let count = env_u64("WEIR_KAFKA_FAULT_EVENTS", 40_000);
    let pause = Duration::from_secs(env_u64("WEIR_KAFKA_FAULT_PAUSE_SECS", 3));
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
