//! `weir bench-kafka`: Kafka → `kpi_1m` throughput next to a plain rdkafka consumer that
//! discards messages on the same topic, and end-to-end latency at a steady rate.
//!
//! Throughput: N seed events are produced to a fresh topic first; then a consume-only
//! reader and Weir each read the whole topic, timed from their start to the last message
//! read (Weir: processed into `kpi_1m`).
//!
//! Latency: events are produced at a steady rate with event time = produce time, into a
//! view of 100 ms tumbling windows and a 0 s watermark delay. A window ending at `e` can be
//! emitted as soon as an event with time ≥ `e` has been read from every partition; its
//! latency is the wall time it was emitted minus `e` — produce → broker → consume → decode
//! → aggregate → emit.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use weir_connectors::datagen::{DatagenConfig, EventGenerator};
use weir_connectors::kafka::produce::{create_topic, produce, ProduceOptions};
use weir_sql::{Database, DatabaseOptions, Session};

use weir_server::error::{Result, ServerError};

fn fail(what: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Config(format!("{what}: {e}"))
}

fn generator(
    start: Option<String>,
    rate: u64,
    sources: u32,
    disorder_ms: u64,
) -> Result<EventGenerator> {
    let mut options: BTreeMap<String, String> = [
        ("seed", "42".to_string()),
        ("rate", rate.to_string()),
        ("sources", sources.to_string()),
        ("error_rate", "0.02".to_string()),
        ("disorder_ms", disorder_ms.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(s) = start {
        options.insert("start".into(), s);
    }
    Ok(EventGenerator::new(
        DatagenConfig::from_options(&options).map_err(|e| fail("generator", e))?,
    ))
}

fn topic_name(what: &str) -> String {
    format!(
        "weir-bench-{what}-{}",
        chrono::Utc::now().format("%Y%m%d%H%M%S%3f")
    )
}

/// Throughput results.
#[derive(Debug)]
pub struct ThroughputReport {
    pub events: u64,
    pub produce_per_second: f64,
    pub consume_only_per_second: f64,
    pub weir_per_second: f64,
}

/// Produces `events` seed events to a new topic of `partitions` partitions, then times a
/// discarding consumer and Weir's `kpi_1m` over it.
pub async fn throughput(brokers: &str, events: u64, partitions: i32) -> Result<ThroughputReport> {
    let topic = topic_name("tput");
    let g = generator(Some("2026-11-27T10:00:00Z".into()), 10_000, 1000, 1000)?;
    let options = ProduceOptions {
        brokers: brokers.to_string(),
        topic: topic.clone(),
        count: events,
        first: 0,
        rate: None,
        partitions: Some(partitions),
        malformed_rate: 0.0,
        properties: BTreeMap::new(),
    };
    let produced = tokio::task::spawn_blocking(move || produce(&g, &options))
        .await
        .map_err(|e| fail("producer", e))?
        .map_err(|e| fail("producing", e))?;
    let produce_per_second = produced.delivered as f64 / produced.elapsed.as_secs_f64();

    let consume_only = {
        let (brokers, topic) = (brokers.to_string(), topic.clone());
        tokio::task::spawn_blocking(move || consume_only(&brokers, &topic, partitions, events))
            .await
            .map_err(|e| fail("consumer", e))??
    };

    let db = Database::open(DatabaseOptions::in_memory(weir_connectors::register_all())).await?;
    let mut session = Session::default();
    let started = Instant::now();
    let sql = format!(
        "{};\nCREATE MATERIALIZED VIEW kpi_1m AS {};",
        weir_server::demo::seed_source(
            "events",
            &format!(
                "connector = 'kafka', brokers = '{brokers}', topic = '{topic}', format = 'json'"
            )
        ),
        weir_server::demo::kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '1 minute')")
    );
    db.run(&mut session, &sql).await?;
    let stats = db
        .engine()
        .source_stats("events")
        .ok_or_else(|| fail("bench", "source missing"))?;
    while stats.events_in.load(Ordering::Relaxed) < events {
        if started.elapsed() > Duration::from_secs(3600) {
            return Err(fail("bench", "Weir did not read the topic within an hour"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let weir = started.elapsed();
    db.shutdown();
    Ok(ThroughputReport {
        events,
        produce_per_second,
        consume_only_per_second: events as f64 / consume_only.as_secs_f64(),
        weir_per_second: events as f64 / weir.as_secs_f64(),
    })
}

/// A plain rdkafka consumer that reads `count` messages of every partition and discards
/// them; returns the time from its creation to the last message.
fn consume_only(brokers: &str, topic: &str, partitions: i32, count: u64) -> Result<Duration> {
    let started = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "weir-bench-consume-only")
        .set("enable.auto.commit", "false")
        // The same fetch settings as Weir's source, so the two read alike.
        .set("fetch.wait.max.ms", "50")
        .create()
        .map_err(|e| fail("consume-only consumer", e))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| fail("assign", e))?;
    }
    consumer.assign(&tpl).map_err(|e| fail("assign", e))?;
    let mut seen = 0u64;
    let mut bytes = 0usize;
    while seen < count {
        if started.elapsed() > Duration::from_secs(3600) {
            return Err(fail("consume-only", "did not finish within an hour"));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                use rdkafka::Message;
                bytes += m.payload().map(|p| p.len()).unwrap_or(0);
                seen += 1;
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => tracing::debug!(error = %e, "consume-only"),
        }
    }
    std::hint::black_box(bytes);
    Ok(started.elapsed())
}

/// Latency results (milliseconds).
#[derive(Debug)]
pub struct LatencyReport {
    pub rate: u64,
    pub windows: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The p99 and max without the first second's windows (the consumer starting up).
    pub steady_p99_ms: f64,
    pub steady_max_ms: f64,
    pub events_in: u64,
}

/// Produces at `rate` events/s for `seconds` and measures when each 100 ms window is emitted.
pub async fn latency(
    brokers: &str,
    rate: u64,
    seconds: u64,
    partitions: i32,
    fetch_wait_ms: Option<u64>,
    consumer_properties: &[String],
) -> Result<LatencyReport> {
    let topic = topic_name("latency");
    create_topic(brokers, &topic, partitions, &BTreeMap::new()).map_err(|e| fail("topic", e))?;
    let db = Database::open(DatabaseOptions::in_memory(weir_connectors::register_all())).await?;
    let mut session = Session::default();
    let sql = format!(
        r#"CREATE SOURCE events (event_id TEXT, source TEXT, "timestamp" TIMESTAMPTZ,
            attributes STRUCT<user_id TEXT, metric DOUBLE PRECISION, status TEXT>,
            WATERMARK FOR "timestamp" AS "timestamp" - INTERVAL '0 seconds')
          WITH (connector = 'kafka', brokers = '{brokers}', topic = '{topic}', start = 'earliest'{fetch_wait});
          CREATE MATERIALIZED VIEW kpi_100ms AS {};"#,
        weir_server::demo::kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '100 milliseconds')"),
        fetch_wait = fetch_wait_ms
            .map(|ms| format!(", kafka.fetch.wait.max.ms = '{ms}'"))
            .into_iter()
            .chain(consumer_properties.iter().filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some(format!(", kafka.{k} = '{v}'"))
            }))
            .collect::<String>(),
    );
    db.run(&mut session, &sql).await?;
    let view = db
        .view("kpi_100ms")
        .ok_or_else(|| fail("bench", "view missing"))?;

    let now_ms = chrono::Utc::now().timestamp_millis() + 200;
    let start = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now_ms)
        .ok_or_else(|| fail("bench", "clock"))?;
    let g = generator(
        Some(start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        rate,
        100,
        0,
    )?;
    let count = rate * seconds;
    let options = ProduceOptions {
        brokers: brokers.to_string(),
        topic,
        count,
        first: 0,
        rate: Some(rate),
        partitions: None,
        malformed_rate: 0.0,
        properties: [("linger.ms".to_string(), "1".to_string())].into(),
    };
    // Event i is due at start + i/rate, the instant the producer sends it.
    let wait =
        Duration::from_millis((now_ms - chrono::Utc::now().timestamp_millis()).max(0) as u64);
    tokio::time::sleep(wait).await;
    let producer = tokio::task::spawn_blocking(move || produce(&g, &options));

    let window_ns = 100_000_000i64;
    let first_end = now_ms * 1_000_000 + window_ns - (now_ms * 1_000_000).rem_euclid(window_ns);
    let last_end = now_ms * 1_000_000 + (seconds as i64) * 1_000_000_000 - window_ns;
    let mut next_end = first_end + window_ns; // skip the first, partial window
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(seconds + 60);
    while next_end <= last_end && Instant::now() < deadline {
        let wm = view.stats.watermark.load(Ordering::Acquire);
        let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        while next_end <= wm && next_end <= last_end {
            samples.push((now_ns - next_end) as f64 / 1e6);
            next_end += window_ns;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    producer
        .await
        .map_err(|e| fail("producer", e))?
        .map_err(|e| fail("producing", e))?;
    let events_in = db
        .engine()
        .source_stats("events")
        .map(|s| s.events_in.load(Ordering::Relaxed))
        .unwrap_or(0);
    db.shutdown();
    if samples.is_empty() {
        return Err(fail("bench", "no window was emitted"));
    }
    // Windows come in order, 10 per second: the first 10 are the first second's.
    let mut steady: Vec<f64> = samples.iter().skip(10).copied().collect();
    let sorted = |v: &mut Vec<f64>| v.sort_by(|a, b| a.total_cmp(b));
    sorted(&mut samples);
    sorted(&mut steady);
    let pct = |v: &[f64], q: f64| {
        v.get(((v.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok(LatencyReport {
        rate,
        windows: samples.len(),
        p50_ms: pct(&samples, 0.5),
        p99_ms: pct(&samples, 0.99),
        max_ms: *samples.last().unwrap_or(&0.0),
        steady_p99_ms: pct(&steady, 0.99),
        steady_max_ms: steady.last().copied().unwrap_or(0.0),
        events_in,
    })
}
