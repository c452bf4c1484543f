//! Kafka test helpers: the broker address, unique topics, producing seed events, and the
//! lines a reference computation sees.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use weir_connectors::datagen::{DatagenConfig, EventGenerator};
use weir_connectors::kafka::produce::{produce, ProduceOptions, ProduceReport};
use weir_sql::Database;

/// The Kafka-compatible broker of the test environment. `scripts/test.sh` starts tansu and
/// sets `WEIR_TEST_KAFKA`; without it, 127.0.0.1:9092. A broker that does not answer fails
/// the test with instructions.
pub fn broker() -> String {
    let addr = std::env::var("WEIR_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let reachable = addr
        .parse::<std::net::SocketAddr>()
        .ok()
        .and_then(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(3)).ok())
        .is_some();
    assert!(
        reachable,
        "no Kafka-compatible broker at {addr}: run the tests with scripts/test.sh (it installs \
         and starts tansu), or start one and set WEIR_TEST_KAFKA=host:port"
    );
    addr
}

/// A topic name no other run uses.
pub fn unique_topic(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// The generator tests produce from: 8 sources, 1000 events/s of event time, up to
/// `disorder_ms` out of order.
pub fn generator(seed: u64, disorder_ms: u64) -> EventGenerator {
    generator_at_rate(seed, disorder_ms, 1000)
}

/// Like [`generator`], with `rate` events per second of event time.
pub fn generator_at_rate(seed: u64, disorder_ms: u64, rate: u64) -> EventGenerator {
    let options: BTreeMap<String, String> = [
        ("seed", seed.to_string()),
        ("rate", rate.to_string()),
        ("sources", "8".to_string()),
        ("error_rate", "0.05".to_string()),
        ("disorder_ms", disorder_ms.to_string()),
        ("start", "2026-11-27T10:00:00Z".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    EventGenerator::new(DatagenConfig::from_options(&options).unwrap())
}

/// Produces messages `first..first+count` of `g` (a fraction `malformed_rate` malformed).
pub fn produce_events(
    brokers: &str,
    topic: &str,
    g: &EventGenerator,
    first: u64,
    count: u64,
    malformed_rate: f64,
    partitions: Option<i32>,
) -> ProduceReport {
    let report = produce(
        g,
        &ProduceOptions {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            count,
            first,
            rate: None,
            partitions,
            malformed_rate,
            properties: BTreeMap::new(),
        },
    )
    .expect("producing to the test broker");
    assert_eq!(report.delivered, count, "every message is acknowledged");
    report
}

/// The messages `0..count` of `g` as the reference computation reads them.
pub fn lines(g: &EventGenerator, count: u64, malformed_rate: f64) -> Vec<String> {
    let mut buf = Vec::new();
    (0..count)
        .map(|i| {
            buf.clear();
            if g.is_malformed(i, malformed_rate) {
                g.write_malformed(i, &mut buf);
            } else {
                g.write_event(i, &mut buf);
            }
            String::from_utf8_lossy(buf.trim_ascii_end()).into_owned()
        })
        .collect()
}

/// `CREATE SOURCE name (<seed columns>) WITH (connector = 'kafka', …, extra)`.
pub fn kafka_source(name: &str, brokers: &str, topic: &str, extra: &str) -> String {
    weir_server::demo::seed_source(
        name,
        &format!(
            "connector = 'kafka', brokers = '{brokers}', topic = '{topic}', format = 'json'{extra}"
        ),
    )
}

/// The seed's `kpi_1m` over source `events`, `EMIT ON UPDATE` so that every window shows.
pub fn kpi_1m_on_update() -> String {
    format!(
        "CREATE MATERIALIZED VIEW kpi_1m AS {} EMIT ON UPDATE",
        super::kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '1 minute')")
    )
}

/// The text values of the first column of `sql`'s rows.
pub async fn texts(db: &Arc<Database>, sql: &str) -> Vec<String> {
    let batches = db.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    for b in batches {
        let c = cast(b.column(0), &DataType::Utf8).unwrap();
        let c = c.as_any().downcast_ref::<StringArray>().unwrap();
        out.extend((0..c.len()).map(|i| c.value(i).to_string()));
    }
    out
}

/// The integer in the first column of `sql`'s first row.
pub async fn int(db: &Arc<Database>, sql: &str) -> i64 {
    let batches = db.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let b = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .unwrap_or_else(|| panic!("{sql}: no rows"));
    let c = cast(b.column(0), &DataType::Int64).unwrap();
    c.as_any().downcast_ref::<Int64Array>().unwrap().value(0)
}

/// Waits until `sql` returns the text `want` in its first row, or fails after `timeout`.
pub async fn wait_for_text(
    db: &Arc<Database>,
    sql: &str,
    want: impl Fn(&str) -> bool,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    let mut last = Vec::new();
    while Instant::now() < deadline {
        last = texts(db, sql).await;
        if last.first().is_some_and(|t| want(t)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{sql}: still {last:?} after {timeout:?}");
}

/// Waits until `sql` returns at least `want` in its first row, or fails after `timeout`.
pub async fn wait_for_int(db: &Arc<Database>, sql: &str, want: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut last = -1;
    while Instant::now() < deadline {
        last = int(db, sql).await;
        if last >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sources = texts(
        db,
        "SELECT name || ' ' || status || ' in=' || CAST(events_in AS TEXT) || ' late=' || CAST(late_events AS TEXT) || ' dead=' || CAST(dead_letters AS TEXT) FROM weir.sources",
    )
    .await;
    let partitions = texts(
        db,
        "SELECT source || '/' || CAST(partition AS TEXT) || ' at ' || CAST(position AS TEXT) || ' of ' || COALESCE(CAST(high_watermark AS TEXT), '?') || ' idle=' || CAST(idle AS TEXT) FROM weir.source_partitions",
    )
    .await;
    panic!(
        "{sql}: {last} < {want} after {timeout:?}; sources {sources:?}; partitions {partitions:?}"
    );
}

/// The view `kpi_1m` (over 1-minute tumbling windows) equals DataFusion's batch query over
/// the valid events of `lines`; returns the number of malformed lines.
pub async fn assert_kpi_1m_matches(db: &Arc<Database>, lines: &[String]) -> usize {
    let (events, late, bad) = super::reference_events(lines, 2_000_000_000);
    assert_eq!(late, 0, "the test input is meant to have no late events");
    let dir = tempfile::tempdir().unwrap();
    let streaming = super::kpis(
        &db.query(
            "SELECT source, window_start, count, avg_metric, p95_metric, error_rate FROM kpi_1m",
        )
        .await
        .unwrap(),
    );
    let reference = super::batch(dir.path(), &events, super::KPI_1M_BATCH_SQL).await;
    let minute = 60_000_000_000i64;
    super::assert_equivalent(
        &streaming,
        &reference,
        &super::exact_p95(&events, |t| vec![t.div_euclid(minute) * minute]),
    );
    let total: i64 = streaming.values().map(|k| k.count).sum();
    assert_eq!(
        total as usize + bad,
        lines.len(),
        "every message is counted once"
    );
    bad
}

/// `topic/partition@offset` of each malformed message, sorted.
pub fn malformed_locations(topic: &str, report: &ProduceReport) -> Vec<String> {
    let mut placed = report.malformed.clone();
    placed.sort();
    let mut out: Vec<String> = placed
        .iter()
        .map(|p| format!("{topic}/{}@{}", p.partition, p.offset))
        .collect();
    out.sort();
    out
}

/// Every message of `topic` (committed ones), in partition order: (key, JSON value).
pub fn read_topic(brokers: &str, topic: &str) -> Vec<(Option<String>, serde_json::Value)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::ClientConfig;
    use rdkafka::Message;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique_topic("check"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .unwrap();
        if high > low {
            list.add_partition_offset(topic, p.id(), rdkafka::Offset::Offset(low))
                .unwrap();
            ends.insert(p.id(), high);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    consumer.assign(&list).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Past the high watermark, read on until nothing comes for a second: tansu reports the
    // first offset of the last batch as the end.
    let mut quiet_since = Instant::now();
    loop {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
            let value: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            out.push((key, value));
            quiet_since = Instant::now();
        }
        let position = consumer.position().unwrap();
        let done = quiet_since.elapsed() > Duration::from_secs(1)
            && ends.iter().all(|(&p, &high)| {
                matches!(
                    position.find_partition(topic, p).map(|e| e.offset()),
                    Some(rdkafka::Offset::Offset(o)) if o >= high
                )
            });
        if done {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "reading {topic}: {position:?} of {ends:?}"
        );
    }
}
