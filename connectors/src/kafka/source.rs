//! Reading one Kafka topic: every partition, at Weir's own positions, decoded in batches.
//!
//! The consumer is assigned partitions explicitly (no group rebalancing): Weir's position
//! per partition is part of its own state, and the offsets it commits to `group_id` are
//! for monitoring tools only. Partitions are discovered from the topic's metadata and
//! re-checked every few seconds, so partitions added later are read from their beginning.
//!
//! Payloads of a micro-batch are copied back to back into one buffer and decoded by one
//! arrow-json pass ([`JsonDecoder`]); bad ones become dead letters named
//! `topic/partition@offset`. A broker that cannot be reached is a status
//! (`disconnected: …`), not an error: librdkafka reconnects and fetching resumes at the next
//! offset; a message at an offset already delivered is dropped, so nothing is counted twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    ArrayRef, Int32Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{Message, Offset, TopicPartitionList};
use weir_engine::connector::decode::JsonDecoder;
use weir_engine::connector::source::{
    DeadLetter, Poll, RowOrigins, Source, SourceBatch, SourceSpec, SourceStatus, SplitProgress,
};
use weir_engine::error::{EngineError, Result};

use super::config::{KafkaConfig, OnError, StartPosition};
use super::metadata::MetadataColumns;

/// How long a metadata request may block the reader.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the partition list is re-read while healthy.
const METADATA_INTERVAL: Duration = Duration::from_secs(5);
/// How long one `next_batch` waits for a first message.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// How often positions are committed to the consumer group.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// Raw bytes kept of a message too large to decode.
const OVERSIZED_RAW_KEPT: usize = 1024;

/// What librdkafka's callbacks tell the reader (they run inside `poll`, on its thread).
#[derive(Debug, Default)]
struct Shared {
    /// Why the brokers are unreachable, while they are.
    down: Mutex<Option<String>>,
    /// High watermark per partition, from statistics.
    high: Mutex<BTreeMap<i32, i64>>,
    /// librdkafka's application offset per partition, from statistics.
    app: Mutex<BTreeMap<i32, i64>>,
}

struct KafkaContext {
    source: String,
    topic: String,
    shared: Arc<Shared>,
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(source = %self.source, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(source = %self.source, facility = fac, "librdkafka: {message}")
            }
            _ => tracing::debug!(source = %self.source, facility = fac, "librdkafka: {message}"),
        }
    }

    fn stats(&self, stats: Statistics) {
        let up = stats
            .brokers
            .values()
            .any(|b| b.nodeid >= 0 && b.state == "UP");
        if up {
            *self.shared.down.lock() = None;
        } else if !stats.brokers.is_empty() {
            let mut down = self.shared.down.lock();
            if down.is_none() {
                *down = Some("no broker connection is up".into());
            }
        }
        if let Some(topic) = stats.topics.get(&self.topic) {
            let mut high = self.shared.high.lock();
            let mut app = self.shared.app.lock();
            for (p, s) in &topic.partitions {
                if *p < 0 {
                    continue;
                }
                if s.hi_offset >= 0 {
                    high.insert(*p, s.hi_offset);
                }
                if s.app_offset >= 0 {
                    app.insert(*p, s.app_offset);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::PartitionEOF) => {}
            Some(RDKafkaErrorCode::AllBrokersDown) | Some(RDKafkaErrorCode::Resolve) => {
                *self.shared.down.lock() = Some(reason.to_string());
            }
            _ => tracing::debug!(source = %self.source, error = %error, "kafka: {reason}"),
        }
    }
}

impl ConsumerContext for KafkaContext {}

#[derive(Debug, Clone)]
struct PartitionState {
    /// Offset of the next message to hand out; -1 until the first message.
    next: i64,
    /// The partition reported end-of-partition and nothing arrived since.
    at_eof: bool,
    /// When the last message arrived (or the partition was assigned).
    quiet_since: Instant,
    /// Resumed at `next` from a checkpoint: the first message should be at `next`.
    resumed: bool,
}

/// A micro-batch being collected.
#[derive(Default)]
struct Collected {
    buf: Vec<u8>,
    spans: Vec<(usize, usize)>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    timestamps: Vec<Option<i64>>,
    keys: Vec<Option<String>>,
    dead: Vec<DeadLetter>,
}

/// Reads every partition of one topic.
pub struct KafkaSource {
    name: String,
    config: KafkaConfig,
    schema: SchemaRef,
    consumer: BaseConsumer<KafkaContext>,
    shared: Arc<Shared>,
    decoder: JsonDecoder,
    metadata: MetadataColumns,
    topic: Arc<str>,
    partitions: BTreeMap<i32, PartitionState>,
    next_metadata: Instant,
    last_commit: Instant,
    committed: BTreeMap<i32, i64>,
    /// A condition found by the last metadata request (topic missing, access denied, …).
    problem: Option<SourceStatus>,
    holding_sent: Option<Vec<i32>>,
    /// Next offset per partition from a checkpoint; `None`: start at `config.start`.
    resume: Option<BTreeMap<i32, i64>>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("name", &self.name)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// Creates a consumer with Weir's context. `group` false leaves out `group.id`, so the
/// consumer never talks to a group coordinator (and closes at once).
fn consumer(
    source: &str,
    config: &KafkaConfig,
    shared: Arc<Shared>,
    group: bool,
) -> Result<BaseConsumer<KafkaContext>> {
    let mut client = ClientConfig::new();
    for (k, v) in config.client_properties()? {
        if group || k != "group.id" {
            client.set(k, v);
        }
    }
    client
        .create_with_context(KafkaContext {
            source: source.to_string(),
            topic: config.topic.clone(),
            shared,
        })
        .map_err(|e| EngineError::InvalidOption {
            option: "kafka.*".into(),
            message: format!("librdkafka rejected the configuration: {e}"),
        })
}

/// The partitions of `config`'s topic, from the brokers' metadata.
pub fn topic_partitions(source: &str, config: &KafkaConfig) -> Result<Vec<i32>> {
    let consumer = consumer(source, config, Arc::new(Shared::default()), false)?;
    let unreachable = |e: KafkaError| EngineError::Source {
        source_name: source.to_string(),
        message: format!("cannot read the partitions of '{}': {e}", config.topic),
    };
    let md = consumer
        .fetch_metadata(Some(&config.topic), METADATA_TIMEOUT)
        .map_err(unreachable)?;
    let problem = |message: String| EngineError::Source {
        source_name: source.to_string(),
        message,
    };
    let topic = md
        .topics()
        .iter()
        .find(|t| t.name() == config.topic)
        .ok_or_else(|| problem(format!("topic '{}' does not exist", config.topic)))?;
    if let Some(e) = topic.error() {
        return Err(problem(format!(
            "topic '{}': {}",
            config.topic,
            RDKafkaErrorCode::from(e)
        )));
    }
    let mut parts: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
    parts.sort_unstable();
    Ok(parts)
}

/// Checks that librdkafka accepts every property (names and values), without connecting.
pub fn check_client_config(source: &str, config: &KafkaConfig) -> Result<()> {
    consumer(source, config, Arc::new(Shared::default()), false).map(drop)
}

impl KafkaSource {
    /// A source reading `spec`'s topic from `config.start`.
    pub fn open(spec: &SourceSpec, config: KafkaConfig) -> Result<Self> {
        let metadata = MetadataColumns::of(&spec.schema)?;
        let shared = Arc::new(Shared::default());
        let consumer = consumer(&spec.name, &config, shared.clone(), true)?;
        Ok(Self {
            name: spec.name.clone(),
            topic: config.topic.as_str().into(),
            decoder: JsonDecoder::new(metadata.payload_schema(&spec.schema)),
            schema: spec.schema.clone(),
            metadata,
            consumer,
            shared,
            config,
            partitions: BTreeMap::new(),
            next_metadata: Instant::now(),
            last_commit: Instant::now(),
            committed: BTreeMap::new(),
            problem: None,
            holding_sent: None,
            resume: None,
        })
    }

    /// Continues at a checkpointed position (`{"topic": …, "partitions": {"0": next, …}}`).
    /// Partitions it does not name are read from their beginning: they had delivered nothing
    /// when the checkpoint was taken.
    pub fn resume_at(&mut self, position: &serde_json::Value) -> Result<()> {
        let topic = position.get("topic").and_then(|t| t.as_str());
        if topic.is_some_and(|t| t != self.config.topic) {
            return Err(EngineError::Source {
                source_name: self.name.clone(),
                message: format!(
                    "the checkpoint is for topic '{}', the source reads '{}'",
                    topic.unwrap_or_default(),
                    self.config.topic
                ),
            });
        }
        let mut next = BTreeMap::new();
        if let Some(parts) = position.get("partitions").and_then(|p| p.as_object()) {
            for (p, o) in parts {
                if let (Ok(p), Some(o)) = (p.parse::<i32>(), o.as_i64()) {
                    next.insert(p, o);
                }
            }
        }
        self.resume = Some(next);
        Ok(())
    }

    /// Reads the topic's partitions and assigns the new ones. Returns the condition that
    /// stops it, if any.
    fn refresh_partitions(&mut self) -> std::result::Result<(), SourceStatus> {
        let md = self
            .consumer
            .fetch_metadata(Some(&self.config.topic), METADATA_TIMEOUT)
            .map_err(|e| {
                SourceStatus::Disconnected(format!(
                    "cannot reach brokers {}: {e}",
                    self.config.brokers
                ))
            })?;
        let topic = md
            .topics()
            .iter()
            .find(|t| t.name() == self.config.topic)
            .ok_or_else(|| self.topic_missing())?;
        if let Some(err) = topic.error() {
            return Err(match RDKafkaErrorCode::from(err) {
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
                    self.topic_missing()
                }
                RDKafkaErrorCode::TopicAuthorizationFailed => SourceStatus::Error(format!(
                    "not authorized to read topic '{}' (check kafka.sasl.* / ACLs)",
                    self.config.topic
                )),
                other => SourceStatus::Error(format!("topic '{}': {other}", self.config.topic)),
            });
        }
        if topic.partitions().is_empty() {
            return Err(self.topic_missing());
        }
        let first = self.partitions.is_empty();
        let new: Vec<i32> = topic
            .partitions()
            .iter()
            .map(|p| p.id())
            .filter(|p| !self.partitions.contains_key(p))
            .filter(|p| {
                self.config
                    .partitions
                    .as_ref()
                    .is_none_or(|only| only.contains(p))
            })
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for &p in &new {
            // Partitions that appear after the source started hold only new data.
            let offset = match (&self.resume, first, self.config.start) {
                (Some(resume), _, _) => resume
                    .get(&p)
                    .map(|&o| Offset::Offset(o))
                    .unwrap_or(Offset::Beginning),
                (None, false, _) | (None, true, StartPosition::Earliest) => Offset::Beginning,
                (None, true, StartPosition::Latest) => Offset::End,
                (None, true, StartPosition::Timestamp(ms)) => Offset::Offset(ms),
            };
            tpl.add_partition_offset(&self.config.topic, p, offset)
                .map_err(|e| SourceStatus::Error(format!("partition {p}: {e}")))?;
        }
        if let (None, true, StartPosition::Timestamp(_)) = (&self.resume, first, self.config.start)
        {
            tpl = self
                .consumer
                .offsets_for_times(tpl, METADATA_TIMEOUT)
                .map_err(|e| {
                    SourceStatus::Disconnected(format!("looking up offsets by time: {e}"))
                })?;
        }
        self.consumer
            .incremental_assign(&tpl)
            .map_err(|e| SourceStatus::Error(format!("assigning partitions: {e}")))?;
        let now = Instant::now();
        for p in new {
            tracing::info!(source = %self.name, topic = %self.config.topic, partition = p, "reading partition");
            self.partitions.insert(
                p,
                PartitionState {
                    next: self
                        .resume
                        .as_ref()
                        .and_then(|r| r.get(&p).copied())
                        .unwrap_or(-1),
                    at_eof: false,
                    quiet_since: now,
                    resumed: self.resume.as_ref().is_some_and(|r| r.contains_key(&p)),
                },
            );
        }
        Ok(())
    }

    fn topic_missing(&self) -> SourceStatus {
        SourceStatus::Error(format!(
            "topic '{}' does not exist on {}",
            self.config.topic, self.config.brokers
        ))
    }

    /// Polls until a batch is full, its wait is over, or nothing came for [`POLL_WAIT`].
    fn collect(&mut self) -> Result<Collected> {
        let mut c = Collected::default();
        let start = Instant::now();
        let mut deadline = start + POLL_WAIT;
        let mut got_first = false;
        loop {
            let now = Instant::now();
            if now >= deadline || c.spans.len() + c.dead.len() >= self.config.max_batch_messages {
                break;
            }
            let Some(polled) = self.consumer.poll(deadline - now) else {
                continue;
            };
            match polled {
                Ok(m) => {
                    *self.shared.down.lock() = None;
                    let partition = m.partition();
                    let offset = m.offset();
                    let state =
                        self.partitions
                            .entry(partition)
                            .or_insert_with(|| PartitionState {
                                next: -1,
                                at_eof: false,
                                quiet_since: now,
                                resumed: false,
                            });
                    if offset < state.next {
                        // Delivered again after a reconnect: already handed out.
                        continue;
                    }
                    if std::mem::take(&mut state.resumed) && offset > state.next {
                        // Compaction or transaction markers can leave gaps, but the first
                        // message after a resume should sit at the resumed offset: say so.
                        tracing::warn!(source = %self.name, partition, resumed_at = state.next, first_offset = offset, "the broker's first message after resuming is past the checkpointed offset; offsets in between were not delivered (a compacted topic, transaction markers, or a broker that cannot fetch from inside a record batch)");
                    }
                    let was_idle = state.at_eof
                        && now.duration_since(state.quiet_since) >= self.config.idle_timeout;
                    state.next = offset + 1;
                    state.at_eof = false;
                    state.quiet_since = now;
                    if was_idle {
                        // Data after a quiet spell: every partition must show again that it
                        // has nothing, or a partition read first would push the watermark
                        // past the others' backlog and make their events late.
                        for s in self.partitions.values_mut() {
                            s.quiet_since = now;
                        }
                    }
                    if !got_first {
                        got_first = true;
                        deadline = deadline.min(now + self.config.max_batch_wait);
                    }
                    let location = || format!("{}/{partition}@{offset}", self.topic);
                    match m.payload() {
                        None => c.dead.push(DeadLetter {
                            location: location(),
                            raw: String::new(),
                            error: "message has no payload".into(),
                        }),
                        Some(p) if p.len() > self.config.max_message_bytes => {
                            c.dead.push(DeadLetter {
                                location: location(),
                                raw: String::from_utf8_lossy(&p[..OVERSIZED_RAW_KEPT.min(p.len())])
                                    .into_owned(),
                                error: format!(
                                    "message of {} bytes exceeds max_message_bytes = {} (first {} bytes kept)",
                                    p.len(),
                                    self.config.max_message_bytes,
                                    OVERSIZED_RAW_KEPT
                                ),
                            })
                        }
                        Some(p) => {
                            let from = c.buf.len();
                            c.buf.extend_from_slice(p);
                            c.spans.push((from, c.buf.len()));
                            c.buf.push(b'\n');
                            c.partitions.push(partition);
                            c.offsets.push(offset);
                            if self.metadata.any() {
                                c.timestamps.push(m.timestamp().to_millis());
                                c.keys.push(
                                    m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                                );
                            }
                        }
                    }
                }
                Err(KafkaError::PartitionEOF(p)) => {
                    *self.shared.down.lock() = None;
                    if let Some(state) = self.partitions.get_mut(&p) {
                        if !state.at_eof {
                            state.at_eof = true;
                        }
                    }
                }
                Err(e) => {
                    let code = e.rdkafka_error_code();
                    match code {
                        Some(RDKafkaErrorCode::UnknownTopicOrPartition)
                        | Some(RDKafkaErrorCode::UnknownTopic) => {
                            self.problem = Some(self.topic_missing());
                            self.next_metadata = Instant::now();
                        }
                        Some(RDKafkaErrorCode::TopicAuthorizationFailed) => {
                            self.problem = Some(SourceStatus::Error(format!(
                                "not authorized to read topic '{}'",
                                self.config.topic
                            )));
                        }
                        Some(RDKafkaErrorCode::AllBrokersDown)
                        | Some(RDKafkaErrorCode::BrokerTransportFailure) => {
                            *self.shared.down.lock() = Some(e.to_string());
                        }
                        _ => tracing::debug!(source = %self.name, error = %e, "kafka poll"),
                    }
                    if c.spans.is_empty() && c.dead.is_empty() {
                        break;
                    }
                }
            }
        }
        Ok(c)
    }

    /// Partitions that hold the watermark back: assigned and not idle. While the brokers
    /// are unreachable no partition counts as idle: silence then says nothing.
    fn holding(&self, now: Instant) -> Vec<i32> {
        let reachable = self.shared.down.lock().is_none()
            && !matches!(self.problem, Some(SourceStatus::Disconnected(_)));
        self.partitions
            .iter()
            .filter(|(_, s)| {
                !(reachable
                    && s.at_eof
                    && now.duration_since(s.quiet_since) >= self.config.idle_timeout)
            })
            .map(|(p, _)| *p)
            .collect()
    }

    fn position_json(&self) -> serde_json::Value {
        let partitions: serde_json::Map<String, serde_json::Value> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.next >= 0)
            .map(|(p, s)| (p.to_string(), s.next.into()))
            .collect();
        serde_json::json!({ "topic": self.config.topic, "partitions": partitions })
    }

    fn commit_positions(&mut self) {
        if self.last_commit.elapsed() < COMMIT_INTERVAL {
            return;
        }
        self.last_commit = Instant::now();
        let mut tpl = TopicPartitionList::new();
        for (p, s) in &self.partitions {
            if s.next >= 0 && self.committed.get(p) != Some(&s.next) {
                let _ = tpl.add_partition_offset(&self.config.topic, *p, Offset::Offset(s.next));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        match self.consumer.commit(&tpl, CommitMode::Async) {
            Ok(()) => {
                for (p, s) in &self.partitions {
                    if s.next >= 0 {
                        self.committed.insert(*p, s.next);
                    }
                }
            }
            Err(e) => tracing::debug!(source = %self.name, error = %e, "committing offsets"),
        }
    }

    /// Turns collected messages into a batch in the declared schema.
    fn build(&self, c: Collected, holding: Vec<i32>) -> Result<SourceBatch> {
        let decoded = self.decoder.decode_spans(&c.buf, &c.spans)?;
        let mut dead = c.dead;
        for (i, error) in decoded.failures {
            dead.push(DeadLetter {
                location: format!("{}/{}@{}", self.topic, c.partitions[i], c.offsets[i]),
                raw: String::from_utf8_lossy(&c.buf[c.spans[i].0..c.spans[i].1]).into_owned(),
                error,
            });
        }
        if self.config.on_error == OnError::Fail {
            if let Some(d) = dead.first() {
                return Err(EngineError::Source {
                    source_name: self.name.clone(),
                    message: format!(
                        "message {} cannot be decoded ({}); on_error = 'fail' stops the source",
                        d.location, d.error
                    ),
                });
            }
        }
        let good = &decoded.good;
        let partitions: Vec<i32> = good.iter().map(|&i| c.partitions[i]).collect();
        let offsets: Vec<i64> = good.iter().map(|&i| c.offsets[i]).collect();
        let batch = if self.metadata.any() {
            self.metadata.attach(
                &self.schema,
                &decoded.batch,
                &MetadataValues {
                    partitions: &partitions,
                    offsets: &offsets,
                    timestamps: good.iter().map(|&i| c.timestamps[i]).collect(),
                    keys: good.iter().map(|&i| c.keys[i].clone()).collect(),
                },
            )?
        } else {
            decoded.batch
        };
        let spans = good.iter().map(|&i| c.spans[i]).collect();
        let mut out = SourceBatch::new(
            batch,
            RowOrigins::Messages {
                topic: self.topic.clone(),
                partitions,
                offsets,
                raw: Arc::new(c.buf),
                spans,
            },
            dead,
            self.position_json(),
        );
        out.holding_splits = Some(holding);
        Ok(out)
    }
}

/// Per-row values of the metadata columns.
pub(super) struct MetadataValues<'a> {
    pub partitions: &'a [i32],
    pub offsets: &'a [i64],
    pub timestamps: Vec<Option<i64>>,
    pub keys: Vec<Option<String>>,
}

impl MetadataValues<'_> {
    /// The value of metadata column `name` as an array of `data_type`.
    pub fn column(&self, name: &str, data_type: &DataType) -> Result<ArrayRef> {
        let array: ArrayRef = match name {
            "_partition" => Arc::new(Int32Array::from(self.partitions.to_vec())),
            "_offset" => Arc::new(Int64Array::from(self.offsets.to_vec())),
            "_timestamp" => Arc::new(
                TimestampMillisecondArray::from(self.timestamps.clone()).with_timezone("+00:00"),
            ),
            "_key" => Arc::new(StringArray::from(self.keys.clone())),
            other => {
                return Err(EngineError::Internal(format!(
                    "{other} is not a metadata column"
                )))
            }
        };
        Ok(cast(&array, data_type)?)
    }
}

impl Source for KafkaSource {
    fn next_batch(&mut self) -> Result<Poll> {
        let now = Instant::now();
        if now >= self.next_metadata {
            match self.refresh_partitions() {
                Ok(()) => {
                    self.problem = None;
                    self.next_metadata = now + METADATA_INTERVAL;
                }
                Err(status) => {
                    if self.problem.as_ref() != Some(&status) {
                        tracing::warn!(source = %self.name, status = %status.text(), "kafka source");
                    }
                    self.problem = Some(status);
                    self.next_metadata = Instant::now() + Duration::from_secs(1);
                }
            }
        }
        if self.partitions.is_empty() {
            // Nothing assigned yet: wait briefly so the retry loop does not spin.
            std::thread::sleep(POLL_WAIT);
            return Ok(Poll::Waiting);
        }
        let collected = self.collect()?;
        self.commit_positions();
        let holding = self.holding(Instant::now());
        let changed = self.holding_sent.as_ref() != Some(&holding);
        if collected.spans.is_empty() && collected.dead.is_empty() {
            if changed {
                // No rows, but an idle partition may let the watermark advance.
                self.holding_sent = Some(holding.clone());
                let empty = RecordBatch::new_empty(self.schema.clone());
                return Ok(Poll::Batch(self.build_empty(empty, holding)));
            }
            let caught_up = self.problem.is_none()
                && self.shared.down.lock().is_none()
                && self.partitions.values().all(|s| s.at_eof);
            return Ok(if caught_up { Poll::Idle } else { Poll::Waiting });
        }
        self.holding_sent = Some(holding.clone());
        Ok(Poll::Batch(self.build(collected, holding)?))
    }

    fn status(&self) -> SourceStatus {
        if let Some(problem) = &self.problem {
            return problem.clone();
        }
        match self.shared.down.lock().as_ref() {
            Some(why) => SourceStatus::Disconnected(why.clone()),
            None => SourceStatus::Running,
        }
    }

    fn splits(&self) -> Vec<SplitProgress> {
        let high = self.shared.high.lock();
        let app = self.shared.app.lock();
        let now = Instant::now();
        let holding = self.holding(now);
        self.partitions
            .iter()
            .map(|(p, s)| {
                let position = if s.next >= 0 {
                    s.next
                } else {
                    app.get(p).copied().unwrap_or(0)
                };
                SplitProgress {
                    split: *p,
                    position,
                    high_watermark: high.get(p).copied().map(|h| h.max(position)),
                    idle: !holding.contains(p),
                }
            })
            .collect()
    }
}

impl KafkaSource {
    fn build_empty(&self, batch: RecordBatch, holding: Vec<i32>) -> SourceBatch {
        let mut out = SourceBatch::new(
            batch,
            RowOrigins::Messages {
                topic: self.topic.clone(),
                partitions: vec![],
                offsets: vec![],
                raw: Arc::new(Vec::new()),
                spans: vec![],
            },
            vec![],
            self.position_json(),
        );
        out.holding_splits = Some(holding);
        out
    }
}
