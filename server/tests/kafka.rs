//! The Kafka source against librdkafka's in-process mock cluster: decoding and dead letters
//! with their offsets, per-partition watermarks, metadata columns and options, and faults
//! (broker down mid-stream, an unreachable broker next to a healthy one, a missing topic),
//! and crashes: in-process, and `kill -9` of the real `weir` process.
//! `kafka_broker.rs` runs the end-to-end path against a real Kafka-compatible broker.

mod common;

use std::time::Duration;

use common::kafka::*;
use common::*;
use rdkafka::mocking::MockCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_over_four_partitions_equals_batch_query_and_bad_messages_are_dead_letters() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("events-a", 4, 1).unwrap();
    // Up to 1.5 s out of order across partitions, against a 2 s watermark delay.
    let g = generator(11, 1_500);
    let count = 20_000;
    let report = produce_events(&brokers, "events-a", &g, 0, count, 0.01, None);
    assert!(report.malformed.len() > 100);

    let db = memory_db().await;
    exec(
        &db,
        &kafka_source(
            "events",
            &brokers,
            "events-a",
            ", idle_timeout = '1 second'",
        ),
    )
    .await;
    exec(&db, &kpi_1m_on_update()).await;
    wait_caught_up(&db, "events").await;

    let bad = assert_kpi_1m_matches(&db, &lines(&g, count, 0.01)).await;
    assert_eq!(bad, report.malformed.len());
    let mut dead = texts(
        &db,
        "SELECT location FROM weir.dead_letters WHERE source = 'events' ORDER BY location",
    )
    .await;
    dead.sort();
    assert_eq!(dead, malformed_locations("events-a", &report));
    assert_eq!(
        int(
            &db,
            "SELECT late_events FROM weir.sources WHERE name = 'events'"
        )
        .await,
        0
    );
    // Every partition was read to its end; positions add up to the messages produced.
    assert_eq!(
        int(
            &db,
            "SELECT count(*) FROM weir.source_partitions WHERE source = 'events'"
        )
        .await,
        4
    );
    assert_eq!(
        int(
            &db,
            "SELECT sum(position) FROM weir.source_partitions WHERE source = 'events'"
        )
        .await,
        count as i64
    );
    // With nothing new for idle_timeout every partition goes idle; with all of them idle
    // the watermark stays where it is (a quiet topic is not a reason to make the next events
    // of slower partitions late).
    wait_for_int(
        &db,
        "SELECT count(*) FROM weir.source_partitions WHERE source = 'events' AND idle",
        4,
        Duration::from_secs(20),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let newest = texts(
        &db,
        "SELECT CAST(max(watermark) AS TEXT) FROM weir.source_partitions WHERE source = 'events'",
    )
    .await;
    let slowest = texts(
        &db,
        "SELECT CAST(min(watermark) AS TEXT) FROM weir.source_partitions WHERE source = 'events'",
    )
    .await;
    let source = texts(
        &db,
        "SELECT CAST(watermark AS TEXT) FROM weir.sources WHERE name = 'events'",
    )
    .await;
    assert!(
        slowest[0] <= source[0] && source[0] <= newest[0],
        "source watermark {source:?} outside its partitions' [{slowest:?}, {newest:?}]"
    );
    // With every partition idle the watermark no longer moves.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let later = texts(
        &db,
        "SELECT CAST(watermark AS TEXT) FROM weir.sources WHERE name = 'events'",
    )
    .await;
    assert_eq!(source, later);
    assert!(source[0].contains("10:00:17"), "{source:?}");
    let raw = texts(
        &db,
        "SELECT raw FROM weir.dead_letters WHERE error LIKE '%null or missing%' LIMIT 1",
    )
    .await;
    assert!(raw[0].contains("untimed-"), "{raw:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_mid_stream_loses_and_duplicates_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("events-b", 4, 1).unwrap();
    let g = generator(12, 500);
    produce_events(&brokers, "events-b", &g, 0, 6_000, 0.0, None);

    let db = memory_db().await;
    exec(&db, &kafka_source("events", &brokers, "events-b", "")).await;
    exec(&db, &kpi_1m_on_update()).await;
    wait_caught_up(&db, "events").await;

    cluster.broker_down(1).unwrap();
    wait_for_text(
        &db,
        "SELECT status FROM weir.sources WHERE name = 'events'",
        |s| s.starts_with("disconnected"),
        Duration::from_secs(30),
    )
    .await;
    // Queries keep working while the broker is away.
    assert!(int(&db, "SELECT count(*) FROM kpi_1m").await > 0);
    // Messages sent during the outage wait in the producer until the broker is back.
    let producer = {
        let brokers = brokers.clone();
        let g = g.clone();
        std::thread::spawn(move || {
            produce_events(&brokers, "events-b", &g, 6_000, 6_000, 0.0, None)
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.broker_up(1).unwrap();
    producer.join().unwrap();
    wait_for_int(
        &db,
        "SELECT events_in FROM weir.sources WHERE name = 'events'",
        12_000,
        Duration::from_secs(60),
    )
    .await;
    wait_for_text(
        &db,
        "SELECT status FROM weir.sources WHERE name = 'events'",
        |s| s == "running",
        Duration::from_secs(30),
    )
    .await;
    assert_kpi_1m_matches(&db, &lines(&g, 12_000, 0.0)).await;
    assert_eq!(
        int(
            &db,
            "SELECT events_in FROM weir.sources WHERE name = 'events'"
        )
        .await,
        12_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_does_not_stop_another_source() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("events-c", 2, 1).unwrap();
    let g = generator(13, 0);
    produce_events(&brokers, "events-c", &g, 0, 3_000, 0.0, None);

    let db = memory_db().await;
    // Port 9 (discard) is closed here: connections are refused.
    exec(&db, &kafka_source("dead", "127.0.0.1:9", "events-c", "")).await;
    exec(
        &db,
        "CREATE MATERIALIZED VIEW dead_count AS SELECT count(*) AS n FROM dead",
    )
    .await;
    exec(&db, &kafka_source("events", &brokers, "events-c", "")).await;
    exec(&db, &kpi_1m_on_update()).await;
    wait_caught_up(&db, "events").await;
    assert_eq!(
        int(&db, "SELECT sum(count) FROM kpi_1m").await,
        3_000,
        "the healthy source is fully read"
    );
    wait_for_text(
        &db,
        "SELECT status FROM weir.sources WHERE name = 'dead'",
        |s| s.starts_with("disconnected"),
        Duration::from_secs(30),
    )
    .await;
    // More data keeps flowing into the healthy source.
    produce_events(&brokers, "events-c", &g, 3_000, 1_000, 0.0, None);
    wait_for_int(
        &db,
        "SELECT sum(count) FROM kpi_1m",
        4_000,
        Duration::from_secs(30),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topic_is_an_error_on_the_source_only() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let db = memory_db().await;
    exec(
        &db,
        &kafka_source(
            "nowhere",
            &brokers,
            "no-such-topic",
            ", kafka.allow.auto.create.topics = 'false'",
        ),
    )
    .await;
    exec(
        &db,
        "CREATE MATERIALIZED VIEW nowhere_count AS SELECT count(*) AS n FROM nowhere",
    )
    .await;
    wait_for_text(
        &db,
        "SELECT status FROM weir.sources WHERE name = 'nowhere'",
        |s| s.contains("does not exist"),
        Duration::from_secs(30),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_columns_not_null_size_limit_and_masked_secrets() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("meta", 1, 1).unwrap();
    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let big = format!(
        "{{\"id\":\"big\",\"t\":\"2026-11-27T10:00:00Z\",\"pad\":\"{}\"}}",
        "x".repeat(300)
    );
    let messages = [
        r#"{"id":"a","t":"2026-11-27T10:00:00Z","n":1}"#,
        r#"{"t":"2026-11-27T10:00:01Z","n":2}"#,
        "  {\n  \"id\": \"pretty\",\n  \"t\": \"2026-11-27T10:00:02Z\"\n}  ",
        r#"{"id":"b","t":"2026-11-27T10:00:03Z"}{"id":"c","t":"2026-11-27T10:00:03Z"}"#,
        big.as_str(),
        r#"{"id":"d","t":"2026-11-27T10:00:04Z","n":4}"#,
    ];
    for (i, m) in messages.iter().enumerate() {
        let key = format!("k{i}");
        producer
            .send(BaseRecord::to("meta").key(&key).payload(*m))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let db = memory_db().await;
    std::env::set_var("WEIR_TEST_SASL_SECRET", "do-not-show");
    exec(
        &db,
        &format!(
            "CREATE SOURCE meta (id TEXT NOT NULL, t TIMESTAMPTZ, n BIGINT, \
             _partition INT, _offset BIGINT, _timestamp TIMESTAMPTZ, _key TEXT) \
             WITH (connector = 'kafka', brokers = '{brokers}', topic = 'meta', \
             max_message_bytes = '200', kafka.sasl.password = '${{env:WEIR_TEST_SASL_SECRET}}', \
             kafka.client.id = 'weir-test')"
        ),
    )
    .await;
    exec(
        &db,
        "CREATE MATERIALIZED VIEW meta_rows AS SELECT id, _partition, _offset, _key, _timestamp IS NOT NULL AS stamped FROM meta",
    )
    .await;
    wait_caught_up(&db, "meta").await;
    assert_eq!(
        texts(&db, "SELECT id || ' ' || _partition || ' ' || _offset || ' ' || _key || ' ' || stamped FROM meta_rows ORDER BY _offset").await,
        vec!["a 0 0 k0 true", "pretty 0 2 k2 true", "d 0 5 k5 true"]
    );
    let dead = texts(
        &db,
        "SELECT location || ' ' || error FROM weir.dead_letters WHERE source = 'meta' ORDER BY location",
    )
    .await;
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert!(dead[0].starts_with("meta/0@1 "), "NOT NULL: {dead:?}");
    assert!(
        dead[1].starts_with("meta/0@3 ") && dead[1].contains("found 2"),
        "two objects: {dead:?}"
    );
    assert!(
        dead[2].starts_with("meta/0@4 ") && dead[2].contains("max_message_bytes"),
        "size: {dead:?}"
    );

    let ddl = db.query("SHOW CREATE SOURCE meta").await.unwrap();
    let text = format!("{ddl:?}");
    assert!(text.contains("kafka.sasl.password = '***'"), "{text}");
    assert!(
        !text.contains("do-not-show") && !text.contains("WEIR_TEST_SASL_SECRET"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_are_rejected_at_create_source() {
    let db = memory_db().await;
    let mut session = weir_sql::Session::default();
    let cases = [
        ("kafka.no.such.property = 'x'", "kafka"),
        ("start = 'yesterday'", "start"),
        ("on_error = 'ignore'", "on_error"),
        ("idle_timeout = 'soon'", "idle_timeout"),
    ];
    for (option, named) in cases {
        let sql = kafka_source("bad", "127.0.0.1:9092", "t", &format!(", {option}"));
        let err = db.run(&mut session, &sql).await.unwrap_err();
        assert_eq!(err.sqlstate(), "22023", "{option}: {err}");
        assert!(err.to_string().contains(named), "{option}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_fail_stops_the_source_naming_the_message() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("strict", 1, 1).unwrap();
    let g = generator(14, 0);
    produce_events(&brokers, "strict", &g, 0, 2_000, 0.01, None);
    let db = memory_db().await;
    exec(
        &db,
        &kafka_source("events", &brokers, "strict", ", on_error = 'fail'"),
    )
    .await;
    exec(&db, &kpi_1m_on_update()).await;
    wait_for_text(
        &db,
        "SELECT status FROM weir.sources WHERE name = 'events'",
        |s| s.starts_with("error") && s.contains("strict/0@"),
        Duration::from_secs(30),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_latest_reads_only_new_messages() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("late-start", 2, 1).unwrap();
    let g = generator(15, 0);
    produce_events(&brokers, "late-start", &g, 0, 1_000, 0.0, None);
    let db = memory_db().await;
    exec(
        &db,
        &kafka_source("events", &brokers, "late-start", ", start = 'latest'"),
    )
    .await;
    exec(&db, &kpi_1m_on_update()).await;
    wait_caught_up(&db, "events").await;
    produce_events(&brokers, "late-start", &g, 1_000, 500, 0.0, None);
    wait_for_int(
        &db,
        "SELECT events_in FROM weir.sources WHERE name = 'events'",
        500,
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(int(&db, "SELECT sum(count) FROM kpi_1m").await, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_changes_and_fetch_errors_lose_and_duplicate_nothing() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    let cluster = MockCluster::new(2).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("events-d", 4, 2).unwrap();
    for p in 0..4 {
        cluster.partition_leader("events-d", p, Some(1)).unwrap();
    }
    let g = generator(16, 1_000);
    produce_events(&brokers, "events-d", &g, 0, 5_000, 0.0, None);

    let db = memory_db().await;
    exec(&db, &kafka_source("events", &brokers, "events-d", "")).await;
    exec(&db, &kpi_1m_on_update()).await;
    wait_caught_up(&db, "events").await;

    // Every partition moves to the other broker, and fetches fail for a while.
    cluster.request_errors(
        RDKafkaApiKey::Fetch,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        ],
    );
    for p in 0..4 {
        cluster.partition_leader("events-d", p, Some(2)).unwrap();
    }
    produce_events(&brokers, "events-d", &g, 5_000, 5_000, 0.0, None);
    wait_for_int(
        &db,
        "SELECT events_in FROM weir.sources WHERE name = 'events'",
        10_000,
        Duration::from_secs(60),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_kpi_1m_matches(&db, &lines(&g, 10_000, 0.0)).await;
    assert_eq!(
        int(
            &db,
            "SELECT events_in FROM weir.sources WHERE name = 'events'"
        )
        .await,
        10_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_stream_resumes_at_the_checkpointed_offsets() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("events-ck", 4, 1).unwrap();
    let g = generator(13, 1_500);
    let (half, count) = (10_000, 20_000);
    let first = produce_events(&brokers, "events-ck", &g, 0, half, 0.01, None);
    let dir = tempfile::tempdir().unwrap();
    let db = persistent_db(dir.path(), Duration::from_millis(40)).await;
    exec(&db, &kafka_source("events", &brokers, "events-ck", "")).await;
    exec(&db, &kpi_1m_on_update()).await;
    wait_caught_up(&db, "events").await;
    // Crash while the second half is being read, between two checkpoints.
    let second = produce_events(&brokers, "events-ck", &g, half, count - half, 0.01, None);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let before = int(&db, "SELECT events_in + dead_letters FROM weir.sources").await;
    db.engine().crash();
    drop(db);
    println!("crashed after {before} of {count} messages");

    let db = persistent_db(dir.path(), Duration::from_millis(40)).await;
    wait_for_int(
        &db,
        "SELECT sum(position) FROM weir.source_partitions WHERE source = 'events'",
        count as i64,
        Duration::from_secs(60),
    )
    .await;
    wait_for_int(
        &db,
        "SELECT events_in + dead_letters FROM weir.sources",
        count as i64,
        Duration::from_secs(60),
    )
    .await;
    let bad = assert_kpi_1m_matches(&db, &lines(&g, count, 0.01)).await;
    assert_eq!(bad, first.malformed.len() + second.malformed.len());
    let mut dead = texts(
        &db,
        "SELECT location FROM weir.dead_letters ORDER BY location",
    )
    .await;
    dead.sort();
    let mut report = first;
    report.malformed.extend(second.malformed);
    assert_eq!(dead, malformed_locations("events-ck", &report));
}

/// `kill -9` of the real `weir` process, repeatedly, while seed events stream from Kafka
/// into `kpi_1m` and `kpi_1m_hop`: the views end equal to the batch computation (counts
/// exactly), and each restart's time to serving is printed. The broker is librdkafka's mock
/// cluster, served by this test process on a real port: tansu 0.6 cannot resume inside a
/// record batch (docs/benchmarks.md). The mock keeps about 100k messages per partition, so
/// a long run produces at a steady rate (`WEIR_KILL_RATE` events/s) that Weir keeps up with,
/// as a consumer within its topic's retention must. The test command runs it small (60k
/// events as fast as possible, 2 kills); `loadtests/kafka_kills.sh` runs 2M events at
/// 20k/s with 20 kills spread over the stream (`WEIR_KILL_EVENTS`, `WEIR_KILLS`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_killed_while_reading_kafka_loses_and_doubles_nothing() {
    use common::process::{assert_kpi_views_match, int, wait_for, Weir};
    let count = env_u64("WEIR_KILL_EVENTS", 60_000);
    let kills = env_u64("WEIR_KILLS", 2);
    let rate = env_u64("WEIR_KILL_RATE", 0);
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let topic = "weir-kill".to_string();
    cluster.create_topic(&topic, 4, 1).unwrap();
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
                let options = weir_connectors::kafka::produce::ProduceOptions {
                    brokers: brokers.clone(),
                    topic: topic.clone(),
                    count: n,
                    first,
                    rate: (rate > 0).then_some(rate),
                    partitions: None,
                    malformed_rate: 0.0,
                    properties: Default::default(),
                };
                let r = weir_connectors::kafka::produce::produce(&g, &options).unwrap();
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
        // Spread over the stream when it is paced; otherwise within its first seconds.
        let spacing_ms = match rate {
            0 => 1_000,
            r => count * 1_000 / r / (kills + 1),
        };
        let pause = spacing_ms / 2 + random_ms(spacing_ms);
        tokio::time::sleep(Duration::from_millis(pause)).await;
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
