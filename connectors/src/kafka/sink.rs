//! `connector = 'kafka'` sinks: one JSON message per row, keyed by the row's key (a view's
//! group keys and `window_start`, a source's `event_id`), so a compacted topic keeps each
//! window's latest row.
//!
//! After a restart the sink reads what it wrote since the checkpoint it restarts from (the
//! whole topic when it has no checkpoint yet) and skips the rows the replay sends again,
//! so each row is in the topic once. `delivery = 'exactly_once'` also writes each batch in
//! one Kafka transaction (`transactional.id = weir-sink-<name>`; a restarted Weir fences and
//! aborts its predecessor's open transaction), so `read_committed` consumers never see part
//! of a batch. The default, `'at_least_once'`, needs no transactions (tansu has none): a
//! consumer may see a batch cut short by a crash before the replay completes it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use weir_engine::connector::sink::{SinkError, SinkFactory, SinkSpec, SinkWriter, QUEUE_OPTIONS};
use weir_engine::error::{EngineError, Result};

use crate::options::{resolve_secret, Options};
use crate::rows::row_object;

/// Factory of Kafka sinks.
#[derive(Debug)]
pub struct KafkaSinkConnector;

#[derive(Debug, Clone)]
struct SinkConfig {
    brokers: String,
    topic: String,
    exactly_once: bool,
    partitions: i32,
    properties: BTreeMap<String, String>,
}

impl SinkConfig {
    fn from_spec(spec: &SinkSpec) -> Result<Self> {
        let mut o = Options::new("kafka", &spec.options);
        for q in QUEUE_OPTIONS {
            o.optional(q);
        }
        let brokers = o.required("brokers")?;
        let topic = o.required("topic")?;
        match o.optional("format").as_deref() {
            None | Some("json") => {}
            Some(other) => {
                return Err(EngineError::InvalidOption {
                    option: "format".into(),
                    message: format!("Kafka sinks write 'json', not '{other}'"),
                })
            }
        }
        let exactly_once = match o.optional("delivery").as_deref() {
            Some("exactly_once") => true,
            None | Some("at_least_once") => false,
            Some(other) => {
                return Err(EngineError::InvalidOption {
                    option: "delivery".into(),
                    message: format!("expected 'exactly_once' or 'at_least_once', got '{other}'"),
                })
            }
        };
        let partitions = o
            .parse_in("partitions", "a number of partitions", 1, 100_000)?
            .unwrap_or(1);
        let properties = o.take_prefixed("kafka.");
        o.finish()?;
        Ok(Self {
            brokers,
            topic,
            exactly_once,
            partitions,
            properties,
        })
    }

    fn client(&self) -> Result<ClientConfig> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c.set("socket.timeout.ms", "10000");
        for (k, v) in &self.properties {
            c.set(k, resolve_secret(&format!("kafka.{k}"), v)?);
        }
        Ok(c)
    }
}

impl SinkFactory for KafkaSinkConnector {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn validate(&self, spec: &SinkSpec) -> Result<BTreeMap<String, String>> {
        SinkConfig::from_spec(spec)?;
        let mut options = spec.options.clone();
        options
            .entry("delivery".into())
            .or_insert_with(|| "at_least_once".into());
        options
            .entry("format".into())
            .or_insert_with(|| "json".into());
        Ok(options)
    }

    fn create(&self, spec: &SinkSpec) -> Result<Box<dyn SinkWriter>> {
        let config = SinkConfig::from_spec(spec)?;
        let key = spec
            .key
            .iter()
            .filter_map(|k| spec.schema.index_of(k).ok())
            .collect();
        Ok(Box::new(KafkaWriter {
            name: spec.name.clone(),
            transactions: config.exactly_once,
            config,
            key,
            once_per_key: spec.once_per_key,
            producer: None,
            position: BTreeMap::new(),
            delivered: None,
        }))
    }
}

/// Delivery reports of the messages of one write.
#[derive(Default)]
struct Deliveries {
    /// Next offset per partition.
    offsets: Mutex<BTreeMap<i32, i64>>,
    failed: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let mut offsets = self.offsets.lock();
                let next = offsets.entry(m.partition()).or_insert(0);
                *next = (*next).max(m.offset() + 1);
            }
            Err((e, _)) => {
                self.failed.lock().get_or_insert_with(|| e.to_string());
            }
        }
    }
}

type SinkProducer = BaseProducer<Deliveries>;

struct KafkaWriter {
    name: String,
    config: SinkConfig,
    /// Columns of the message key.
    key: Vec<usize>,
    /// Each key is sent once (alert messages): replayed rows are matched by key alone.
    once_per_key: bool,
    producer: Option<SinkProducer>,
    /// Next offset per partition after the last committed write.
    position: BTreeMap<i32, i64>,
    /// Messages committed after the restored checkpoint, not yet matched by a replayed row:
    /// `None` until read.
    delivered: Option<HashMap<(Option<String>, String), usize>>,
    /// Writes go in transactions.
    transactions: bool,
}

/// The error for `delivery = 'exactly_once'` on a broker without transactions.
fn no_transactions(e: &KafkaError) -> SinkError {
    SinkError::Permanent(format!(
        "kafka: the broker does not support transactions ({e}); use delivery = 'at_least_once'"
    ))
}

/// Whether a Kafka error says the broker lacks the transactions API.
fn unsupported(e: &KafkaError) -> bool {
    let text = e.to_string();
    text.contains("not supported") || text.contains("UnsupportedVersion")
}

fn transient(what: &str, e: impl std::fmt::Display) -> SinkError {
    SinkError::Transient(format!("kafka: {what}: {e}"))
}

impl KafkaWriter {
    /// What identifies a delivered message: key and value, or the key alone for
    /// `once_per_key` (a replayed alert carries another `detected_at`).
    fn dedup_key(&self, m: &(Option<String>, String)) -> (Option<String>, String) {
        if self.once_per_key {
            (m.0.clone(), String::new())
        } else {
            m.clone()
        }
    }

    fn message(&self, batch: &RecordBatch, row: usize) -> (Option<String>, String) {
        let key = (!self.key.is_empty())
            .then(|| Value::Object(row_object(batch, row, &self.key)).to_string());
        let all: Vec<usize> = (0..batch.num_columns()).collect();
        (key, Value::Object(row_object(batch, row, &all)).to_string())
    }

    /// Creates the topic when the broker does not know it (a broker that creates topics on
    /// first use, or refuses CreateTopics, is left to do so).
    fn ensure_topic(&self, producer: &SinkProducer) -> std::result::Result<(), SinkError> {
        let metadata = producer
            .client()
            .fetch_metadata(Some(&self.config.topic), Duration::from_secs(10))
            .map_err(|e| transient("metadata", e))?;
        let known = metadata
            .topics()
            .iter()
            .any(|t| t.error().is_none() && !t.partitions().is_empty());
        if !known {
            if let Err(e) = crate::kafka::produce::create_topic(
                &self.config.brokers,
                &self.config.topic,
                self.config.partitions,
                &self.config.properties,
            ) {
                tracing::warn!(sink = %self.name, topic = %self.config.topic, error = %e, "cannot create the topic; writing to it anyway");
            }
        }
        Ok(())
    }

    /// Reads the messages committed from `resume` (next offset per partition) to the end.
    fn read_delivered(
        &self,
        resume: &BTreeMap<i32, i64>,
    ) -> std::result::Result<HashMap<(Option<String>, String), usize>, SinkError> {
        let mut found = HashMap::new();
        if resume.is_empty() {
            return Ok(found);
        }
        let mut config = self
            .config
            .client()
            .map_err(|e| SinkError::Permanent(e.to_string()))?;
        config
            .set("group.id", format!("weir-sink-{}-recovery", self.name))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "false");
        let consumer: BaseConsumer = config.create().map_err(|e| transient("consumer", e))?;
        let mut ends = BTreeMap::new();
        let mut list = TopicPartitionList::new();
        for (&p, &from) in resume {
            let (_, high) = consumer
                .fetch_watermarks(&self.config.topic, p, Duration::from_secs(10))
                .map_err(|e| transient("watermarks", e))?;
            if high > from {
                ends.insert(p, high);
                list.add_partition_offset(&self.config.topic, p, Offset::Offset(from))
                    .map_err(|e| transient("assign", e))?;
            }
        }
        if ends.is_empty() {
            return Ok(found);
        }
        consumer.assign(&list).map_err(|e| transient("assign", e))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        // Past the high watermark, read on until the topic is quiet for half a second: some
        // brokers (tansu) report the first offset of the last batch as the end.
        let mut quiet_since = Instant::now();
        loop {
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.map_err(|e| transient("reading the topic", e))?;
                let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                *found.entry(self.dedup_key(&(key, value))).or_insert(0) += 1;
                quiet_since = Instant::now();
            }
            let done = quiet_since.elapsed() > Duration::from_millis(500)
                && consumer
                    .position()
                    .map(|pos| {
                        ends.iter().all(|(&p, &end)| {
                            matches!(
                                pos.find_partition(&self.config.topic, p).map(|e| e.offset()),
                                Some(Offset::Offset(o)) if o >= end
                            )
                        })
                    })
                    .unwrap_or(false);
            if done {
                return Ok(found);
            }
            if Instant::now() > deadline {
                return Err(SinkError::Transient(format!(
                    "kafka: reading back topic {} after a restart timed out",
                    self.config.topic
                )));
            }
        }
    }
}

type Offsets = BTreeMap<i32, i64>;

/// The first and the next offset of every partition of `topic`.
fn offsets(
    producer: &SinkProducer,
    topic: &str,
) -> std::result::Result<(Offsets, Offsets), SinkError> {
    let timeout = Duration::from_secs(10);
    let metadata = producer
        .client()
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| transient("metadata", e))?;
    let mut starts = BTreeMap::new();
    let mut ends = BTreeMap::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            let (low, high) = producer
                .client()
                .fetch_watermarks(topic, p.id(), timeout)
                .map_err(|e| transient("watermarks", e))?;
            starts.insert(p.id(), low);
            ends.insert(p.id(), high);
        }
    }
    Ok((starts, ends))
}

#[async_trait::async_trait(?Send)]
impl SinkWriter for KafkaWriter {
    async fn open(&mut self, resume: &Value) -> std::result::Result<(), SinkError> {
        self.producer = None;
        let mut config = self
            .config
            .client()
            .map_err(|e| SinkError::Permanent(e.to_string()))?;
        config
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5")
            .set("enable.idempotence", "true");
        if self.transactions {
            config.set("transactional.id", format!("weir-sink-{}", self.name));
        }
        let producer: SinkProducer = config
            .create_with_context(Deliveries::default())
            .map_err(|e| transient("producer", e))?;
        self.ensure_topic(&producer)?;
        if self.transactions {
            if let Err(e) = producer.init_transactions(Duration::from_secs(30)) {
                if unsupported(&e) {
                    return Err(no_transactions(&e));
                }
                return Err(transient("initializing transactions", e));
            }
        }
        if self.delivered.is_none() {
            let restored: BTreeMap<i32, i64> = resume
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter_map(|(p, v)| Some((p.parse().ok()?, v.as_i64()?)))
                        .collect()
                })
                .unwrap_or_default();
            // Without a checkpoint of this sink (new, or restarted before its first
            // checkpoint) everything in the topic counts as delivered.
            let (from, position) = if restored.is_empty() {
                let (low, high) = offsets(&producer, &self.config.topic)?;
                (low, high)
            } else {
                (restored.clone(), restored)
            };
            self.position = position;
            let delivered = self.read_delivered(&from)?;
            if !delivered.is_empty() {
                tracing::info!(sink = %self.name, messages = delivered.values().sum::<usize>(), "messages committed after the checkpoint will not be sent again");
            }
            self.delivered = Some(delivered);
        }
        self.producer = Some(producer);
        Ok(())
    }

    async fn write(&mut self, batches: &[RecordBatch]) -> std::result::Result<(), SinkError> {
        let mut messages = Vec::new();
        for b in batches {
            for row in 0..b.num_rows() {
                let m = self.message(b, row);
                let seen = self.dedup_key(&m);
                if let Some(d) = self.delivered.as_mut() {
                    if let Some(n) = d.get_mut(&seen) {
                        *n -= 1;
                        if *n == 0 {
                            d.remove(&seen);
                        }
                        continue;
                    }
                }
                messages.push(m);
            }
        }
        if messages.is_empty() {
            return Ok(());
        }
        let producer = self
            .producer
            .as_ref()
            .ok_or_else(|| SinkError::Transient("kafka: not connected".into()))?;
        producer.context().offsets.lock().clear();
        *producer.context().failed.lock() = None;
        if self.transactions {
            producer
                .begin_transaction()
                .map_err(|e| transient("beginning a transaction", e))?;
        }
        let sent = (|| {
            for (key, value) in &messages {
                let mut record = BaseRecord::to(&self.config.topic).payload(value.as_str());
                if let Some(k) = key {
                    record = record.key(k.as_str());
                }
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            record = back;
                            producer.poll(Duration::from_millis(10));
                        }
                        Err((e, _)) => return Err(transient("sending", e)),
                    }
                }
            }
            if self.transactions {
                // Commit flushes, and fails if any message was not delivered.
                producer
                    .commit_transaction(Duration::from_secs(30))
                    .map_err(|e| {
                        if unsupported(&e) {
                            no_transactions(&e)
                        } else {
                            transient("committing", e)
                        }
                    })?;
            } else {
                producer
                    .flush(Duration::from_secs(30))
                    .map_err(|e| transient("flushing", e))?;
            }
            match producer.context().failed.lock().take() {
                Some(e) => Err(transient("delivery", e)),
                None => Ok(()),
            }
        })();
        if let Err(e) = sent {
            if self.transactions {
                let _ = producer.abort_transaction(Duration::from_secs(10));
            }
            self.producer = None;
            return Err(e);
        }
        for (p, o) in producer.context().offsets.lock().iter() {
            let next = self.position.entry(*p).or_insert(0);
            *next = (*next).max(*o);
        }
        Ok(())
    }

    fn position(&self) -> Value {
        Value::Object(
            self.position
                .iter()
                .map(|(p, o)| (p.to_string(), Value::from(*o)))
                .collect(),
        )
    }
}
