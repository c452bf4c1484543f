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

use crate::error::{Result, ServerError};

/// What a run measured.
#[derive(Debug)]
pub struct AlertBench {
    pub events: u64,
    /// Events/s the producer achieved.
    pub produced_rate: f64,
    /// Latencies of the alerts, sorted (ms).
    pub latencies_ms: Vec<i64>,
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

    /// The `q` quantile of the latencies (ms).
    pub fn quantile(&self, q: f64) -> i64 {
        let n = self.latencies_ms.len();
        if n == 0 {
            return 0;
        }
        self.latencies_ms[((n - 1) as f64 * q).round() as usize]
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
            crate::demo::seed_source(
                "events",
                &format!(
                    "connector = 'kafka', brokers = '{brokers}', topic = '{input}', format = 'json', \
                     kafka.fetch.wait.max.ms = '{}'",
                    options.fetch_wait_ms
                )
            ),
            crate::demo::outlier_alert("metric_outlier", "events", "0 seconds"),
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
    let mut latencies_ms = read_latencies(brokers, &output)?;
    latencies_ms.sort_unstable();
    drop(mock);
    Ok(AlertBench {
        events: report.delivered,
        produced_rate,
        latencies_ms,
        batches,
    })
}

/// Every alert message's Kafka timestamp minus its event time (ms).
fn read_latencies(brokers: &str, topic: &str) -> Result<Vec<i64>> {
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
    let mut out = Vec::new();
    let mut quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(3) {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.map_err(config_error)?;
        quiet = Instant::now();
        let Some(produced_ms) = m.timestamp().to_millis() else {
            continue;
        };
        let value: serde_json::Value =
            serde_json::from_slice(m.payload().unwrap_or_default()).map_err(config_error)?;
        let event_ms = value["event_time"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis());
        if let Some(event_ms) = event_ms {
            out.push(produced_ms - event_ms);
        }
    }
    Ok(out)
}
