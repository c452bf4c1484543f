//! `weir bench-alerts`: detection-to-alert latency. Events go into a Kafka topic paced to
//! wall time (event time = when each is due to be produced); Weir reads them, scores each
//! against its source's trailing five minutes (the seed's `metric_outlier` rule, no cooldown
//! so every outlier is an alert) and publishes alerts to another topic through a `FROM
//! weir.alerts` sink. Each alert's latency is its Kafka timestamp (set when the sink
//! produced it) minus the event time of the event that fired it.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use weir_connectors::datagen::{DatagenConfig, EventGenerator};
use weir_connectors::kafka::produce::{produce, ProduceOptions};
use weir_sql::{Database, DatabaseOptions, Session};

use weir_server::error::{Result, ServerError};

/// What a run measured.
#[derive(Debug)]
pub struct AlertBench {
    pub events: u64,
    /// Events/s the producer achieved.
    pub produced_rate: f64,
    /// Latencies of the alerts from their events' event time, sorted (ms).
    pub latencies_ms: Vec<i64>,
    /// Latencies from their events' Kafka produce timestamps, sorted (ms), for the events
    /// the input topic still held at the end (a mock broker keeps 5 MB per partition).
    pub from_produce_ms: Vec<i64>,
    /// The pipeline's batch processing times: cumulative counts per bucket bound (µs) and
    /// the sum (µs).
    pub batches: (Vec<(u64, u64)>, u64),
}

impl AlertBench {
    /// Batches processed, their mean time (ms), and the smallest bucket bound (ms) that 99%
    /// of them stayed within.
    pub fn batch_summary(&self) -> (u64, f64, f64) {
        let (buckets, sum_us) = &self.batches;
        let total = buckets.last().map(|b| b.1).unwrap_or(0);
        let p99 = buckets
            .iter()
            .find(|(_, n)| *n as f64 >= 0.99 * total as f64)
            .map(|(bound, _)| *bound as f64 / 1000.0)
            .unwrap_or(0.0);
        (total, *sum_us as f64 / 1000.0 / total.max(1) as f64, p99)
    }

    /// The `q` quantile of sorted latencies (ms).
    pub fn quantile(sorted: &[i64], q: f64) -> i64 {
        let n = sorted.len();
        if n == 0 {
            return 0;
        }
        sorted[((n - 1) as f64 * q).round() as usize]
    }
}

fn config_error(e: impl std::fmt::Display) -> ServerError {
    ServerError::Config(e.to_string())
}

/// What to run.
#[derive(Debug, Clone)]
pub struct AlertBenchOptions {
    /// Kafka bootstrap servers; `mock` is librdkafka's mock cluster in this process.
    pub brokers: String,
    /// Events per second, paced to wall time.
    pub rate: u64,
    pub seconds: u64,
    pub outlier_rate: f64,
    /// The source's `kafka.fetch.wait.max.ms` (how long the broker may hold a fetch).
    pub fetch_wait_ms: u64,
    /// The rule's `emit` option: `on_watermark` (exact, one watermark delay later) or
    /// `on_arrival`.
    pub emit: String,
}

/// Runs `options.seconds` of `options.rate` events/s through a rule in `dir`.
pub async fn run(dir: &std::path::Path, options: &AlertBenchOptions) -> Result<AlertBench> {
    let mock = match options.brokers.as_str() {
        "mock" => Some(rdkafka::mocking::MockCluster::new(1).map_err(config_error)?),
        _ => None,
    };
    let brokers = match &mock {
        Some(cluster) => cluster.bootstrap_servers(),
        None => options.brokers.clone(),
    };
    let brokers = brokers.as_str();
    let (rate, seconds, outlier_rate) = (options.rate, options.seconds, options.outlier_rate);
    let stamp = chrono::Utc::now().timestamp_millis();
    let input = format!("bench-alerts-in-{stamp}");
    let output = format!("bench-alerts-out-{stamp}");
    let data = dir.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let db = Database::open(DatabaseOptions::persistent(
        &data,
        weir_connectors::register_all_in(&data),
    ))
    .await?;
    match &mock {
        Some(cluster) => cluster.create_topic(&input, 4, 1).map_err(config_error)?,
        None => {
            weir_connectors::kafka::produce::create_topic(brokers, &input, 4, &Default::default())
                .map_err(config_error)?
        }
    }
    db.run(
        &mut Session::default(),
        &format!(
            "SET background_ddl = on;\n{};\n{};\n\
             CREATE SINK alerts_out FROM weir.alerts WITH (connector = 'kafka', brokers = '{brokers}', topic = '{output}');",
            weir_server::demo::seed_source(
                "events",
                &format!(
                    "connector = 'kafka', brokers = '{brokers}', topic = '{input}', format = 'json', \
                     kafka.fetch.wait.max.ms = '{}'",
                    options.fetch_wait_ms
                )
            ),
            weir_server::demo::outlier_alert_emitting(
                "metric_outlier",
                "events",
                "0 seconds",
                &options.emit
            ),
        ),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Event i is due at start + i / rate: its event time is when it is produced.
    let count = rate * seconds;
    let start = chrono::Utc::now() + chrono::Duration::milliseconds(200);
    let generator_options = [
        ("rate", rate.to_string()),
        ("sources", "20".to_string()),
        ("outlier_rate", outlier_rate.to_string()),
        ("start", start.to_rfc3339()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let generator =
        EventGenerator::new(DatagenConfig::from_options(&generator_options).map_err(config_error)?);
    let wait = (start - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    let produce_options = ProduceOptions {
        brokers: brokers.to_string(),
        topic: input.clone(),
        count,
        first: 0,
        rate: Some(rate),
        partitions: None,
        malformed_rate: 0.0,
        properties: Default::default(),
    };
    let report = tokio::task::spawn_blocking(move || produce(&generator, &produce_options))
        .await
        .map_err(config_error)?
        .map_err(config_error)?;
    let produced_rate = report.delivered as f64 / report.elapsed.as_secs_f64();

    // Until the sink has delivered everything.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = db
            .engine()
            .wait_caught_up("events", Duration::from_millis(100))
            && db.engine().sinks().iter().all(|(_, s)| s.backlog() == 0);
        if done {
            break;
        }
        if Instant::now() > deadline {
            return Err(config_error(
                "the alert sink did not drain within 5 minutes",
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let batches = db
        .engine()
        .source_stats("events")
        .map(|s| s.batch_latency.cumulative())
        .unwrap_or_default();
    db.shutdown();
    let (mut latencies_ms, mut from_produce_ms) = read_latencies(brokers, &input, &output)?;
    latencies_ms.sort_unstable();
    from_produce_ms.sort_unstable();
    drop(mock);
    Ok(AlertBench {
        events: report.delivered,
        produced_rate,
        latencies_ms,
        from_produce_ms,
        batches,
    })
}

/// Calls `f(kafka timestamp ms, payload)` for every message of `topic` (until quiet).
fn read_topic(brokers: &str, topic: &str, mut f: impl FnMut(i64, &[u8])) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(config_error)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(config_error)?;
    let mut list = TopicPartitionList::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        list.add_partition_offset(topic, p.id(), Offset::Beginning)
            .map_err(config_error)?;
    }
    consumer.assign(&list).map_err(config_error)?;
    let mut quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(3) {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.map_err(config_error)?;
        quiet = Instant::now();
        if let Some(ts) = m.timestamp().to_millis() {
            f(ts, m.payload().unwrap_or_default());
        }
    }
    Ok(())
}

fn time_ms(v: &serde_json::Value) -> Option<i64> {
    v.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis())
}

/// Per alert: its Kafka timestamp minus the event time of the event that fired it, and
/// minus that event's own Kafka timestamp where the input topic still holds it (ms).
fn read_latencies(brokers: &str, input: &str, output: &str) -> Result<(Vec<i64>, Vec<i64>)> {
    let mut alerts = Vec::new();
    read_topic(brokers, output, |ts, payload| {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) {
            if let (Some(key), Some(event)) = (v["key"].as_str(), time_ms(&v["event_time"])) {
                alerts.push((key.to_string(), event, ts));
            }
        }
    })?;
    let wanted: std::collections::HashSet<(String, i64)> =
        alerts.iter().map(|(k, e, _)| (k.clone(), *e)).collect();
    let mut produced = std::collections::HashMap::new();
    read_topic(brokers, input, |ts, payload| {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) {
            if let (Some(source), Some(event)) = (v["source"].as_str(), time_ms(&v["timestamp"])) {
                let k = (source.to_string(), event);
                if wanted.contains(&k) {
                    produced.insert(k, ts);
                }
            }
        }
    })?;
    let from_event = alerts.iter().map(|(_, e, ts)| ts - e).collect();
    let from_produce = alerts
        .iter()
        .filter_map(|(k, e, ts)| produced.get(&(k.clone(), *e)).map(|p| ts - p))
        .collect();
    Ok((from_event, from_produce))
}
