//! The source seam: one trait every connector implements, and the registry that maps a
//! `connector = '…'` name to a factory.
//!
//! A [`Source`] runs on a thread of its own and hands out decoded Arrow batches. It owns its
//! position (file byte offset, generator sequence, …) so that later a checkpoint can store it
//! and a restart can seek to it.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{EngineError, Result};

/// Where each row of a batch came from: enough to name it (`file:line`) and show its raw text
/// when it is late.
#[derive(Debug, Clone)]
pub enum RowOrigins {
    /// Rows decoded from text lines.
    Lines {
        /// File (or stream) name shown in locations.
        file: Arc<str>,
        /// 1-based line number of each row.
        line_numbers: Vec<u64>,
        /// The chunk the rows were decoded from.
        raw: Arc<Vec<u8>>,
        /// Byte span of each row's line inside `raw`.
        spans: Vec<(usize, usize)>,
    },
    /// Rows decoded from messages of a partitioned log (Kafka).
    Messages {
        /// Topic shown in locations.
        topic: Arc<str>,
        /// Partition of each row.
        partitions: Vec<i32>,
        /// Offset of each row.
        offsets: Vec<i64>,
        /// The payloads the rows were decoded from, back to back.
        raw: Arc<Vec<u8>>,
        /// Byte span of each row's payload inside `raw`.
        spans: Vec<(usize, usize)>,
    },
    /// Rows produced by a generator: row `i` has sequence number `first + i`.
    Sequence { first: u64 },
    /// Rows of one source of a pair (two sources read as one for a join: see
    /// [`super::pair`]).
    Paired {
        /// The source they came from.
        source: Arc<str>,
        /// That source's event-time column.
        time_column: Arc<str>,
        /// The pair's split of each row.
        splits: Vec<i32>,
        /// Their origins in that source.
        inner: Box<RowOrigins>,
    },
}

impl RowOrigins {
    /// A human-readable location of row `i`.
    pub fn location(&self, source: &str, i: usize) -> String {
        match self {
            RowOrigins::Lines {
                file, line_numbers, ..
            } => format!("{}:{}", file, line_numbers.get(i).copied().unwrap_or(0)),
            RowOrigins::Messages {
                topic,
                partitions,
                offsets,
                ..
            } => format!(
                "{topic}/{}@{}",
                partitions.get(i).copied().unwrap_or(-1),
                offsets.get(i).copied().unwrap_or(-1)
            ),
            RowOrigins::Sequence { first } => format!("{source}#{}", first + i as u64),
            RowOrigins::Paired { source, inner, .. } => inner.location(source, i),
        }
    }

    /// The source the rows came from, when it is not the pipeline's own (a pair's).
    pub fn source(&self) -> Option<&str> {
        match self {
            RowOrigins::Paired { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The event-time column of the source the rows came from, for a pair's rows.
    pub fn time_column(&self) -> Option<&str> {
        match self {
            RowOrigins::Paired { time_column, .. } => Some(time_column),
            _ => None,
        }
    }

    /// The split (partition) of each row, for sources made of several splits.
    pub fn splits(&self) -> Option<&[i32]> {
        match self {
            RowOrigins::Messages { partitions, .. } => Some(partitions),
            RowOrigins::Paired { splits, .. } => Some(splits),
            _ => None,
        }
    }

    /// The raw text of row `i`, when the source kept it.
    pub fn raw(&self, i: usize) -> Option<String> {
        match self {
            RowOrigins::Lines { raw, spans, .. } | RowOrigins::Messages { raw, spans, .. } => spans
                .get(i)
                .map(|(s, e)| String::from_utf8_lossy(&raw[*s..*e]).into_owned()),
            RowOrigins::Sequence { .. } => None,
            RowOrigins::Paired { inner, .. } => inner.raw(i),
        }
    }

    /// Keeps only the rows whose index is in `keep` (ascending).
    pub fn select(&self, keep: &[usize]) -> RowOrigins {
        match self {
            RowOrigins::Lines {
                file,
                line_numbers,
                raw,
                spans,
            } => RowOrigins::Lines {
                file: file.clone(),
                line_numbers: keep.iter().map(|&i| line_numbers[i]).collect(),
                raw: raw.clone(),
                spans: keep.iter().map(|&i| spans[i]).collect(),
            },
            RowOrigins::Messages {
                topic,
                partitions,
                offsets,
                raw,
                spans,
            } => RowOrigins::Messages {
                topic: topic.clone(),
                partitions: keep.iter().map(|&i| partitions[i]).collect(),
                offsets: keep.iter().map(|&i| offsets[i]).collect(),
                raw: raw.clone(),
                spans: keep.iter().map(|&i| spans[i]).collect(),
            },
            RowOrigins::Sequence { first } => match keep.first() {
                // Sequence origins stay exact only for contiguous selections; generators
                // produce no late or bad rows, so this is the only case that occurs.
                Some(&i) => RowOrigins::Sequence {
                    first: first + i as u64,
                },
                None => RowOrigins::Sequence { first: *first },
            },
            RowOrigins::Paired {
                source,
                time_column,
                splits,
                inner,
            } => RowOrigins::Paired {
                source: source.clone(),
                time_column: time_column.clone(),
                splits: keep.iter().map(|&i| splits[i]).collect(),
                inner: Box::new(inner.select(keep)),
            },
        }
    }
}

/// A message that could not be decoded. It is data, not a crash: it is counted and kept in
/// `weir.dead_letters`.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// `file:line`, or `topic/partition@offset`.
    pub location: String,
    /// The raw bytes, lossily as text.
    pub raw: String,
    /// What was wrong with it.
    pub error: String,
}

/// One micro-batch handed out by a source.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    /// Decoded rows, in the source's declared schema.
    pub batch: RecordBatch,
    /// Origin of each row of `batch`.
    pub origins: RowOrigins,
    /// Messages of this chunk that failed to decode.
    pub dead_letters: Vec<DeadLetter>,
    /// The source's position after this batch (JSON, connector-specific).
    pub position: serde_json::Value,
    /// For a source of several splits (Kafka partitions): the splits that hold the watermark
    /// back as of this batch — assigned and not idle. `None`: one split, or no change.
    pub holding_splits: Option<Vec<i32>>,
}

impl SourceBatch {
    /// A batch of decoded rows at `position`, with no split information.
    pub fn new(
        batch: RecordBatch,
        origins: RowOrigins,
        dead_letters: Vec<DeadLetter>,
        position: serde_json::Value,
    ) -> Self {
        Self {
            batch,
            origins,
            dead_letters,
            position,
            holding_splits: None,
        }
    }
}

/// What [`Source::next_batch`] returns.
#[derive(Debug)]
// One value per micro-batch: the size of the empty variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Poll {
    /// Rows (and perhaps dead letters) to process.
    Batch(SourceBatch),
    /// Nothing yet, and everything available has been delivered (the source is caught up);
    /// a live source will have more later. The pipeline polls again after `Idle`.
    Idle,
    /// Nothing right now, but the source is not caught up (it is connecting, or waiting for
    /// a broker): the pipeline polls again without marking its views caught up.
    Waiting,
    /// A bounded source reached its end: the watermark advances past all its data.
    End,
}

/// Health of a source, shown in `weir.sources.status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceStatus {
    /// Reading normally.
    Running,
    /// Cannot reach its service right now; retrying. Nothing is lost meanwhile.
    Disconnected(String),
    /// A condition that needs a person (topic deleted, access denied); still retrying.
    Error(String),
}

impl SourceStatus {
    /// The text shown in `weir.sources.status`.
    pub fn text(&self) -> String {
        match self {
            SourceStatus::Running => "running".into(),
            SourceStatus::Disconnected(why) => format!("disconnected: {why}"),
            SourceStatus::Error(why) => format!("error: {why}"),
        }
    }
}

/// Progress of one split (Kafka partition) of a source, for `weir.source_partitions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitProgress {
    /// Split (partition) number.
    pub split: i32,
    /// Next position to read (offset of the next message).
    pub position: i64,
    /// Position one past the last message the service has (Kafka's high watermark), when
    /// known.
    pub high_watermark: Option<i64>,
    /// Whether the split is idle (not holding the watermark back).
    pub idle: bool,
}

impl SplitProgress {
    /// Messages behind the end of the split, when known.
    pub fn lag(&self) -> Option<i64> {
        self.high_watermark.map(|h| (h - self.position).max(0))
    }
}

/// A connector's reader. Runs on a dedicated thread, so blocking I/O is fine.
///
/// Contract: batches come in source order; `next_batch` after `End` keeps returning `End`.
/// A transient failure (a broker down) is not an error: the source reports
/// [`SourceStatus::Disconnected`], returns `Waiting`, and resumes where it stopped.
pub trait Source: Send {
    /// The next micro-batch, `Idle` when a live source has nothing right now, `Waiting` when
    /// it cannot tell yet, `End` at the end of bounded input.
    fn next_batch(&mut self) -> Result<Poll>;

    /// Current health (sources without a remote service are always running).
    fn status(&self) -> SourceStatus {
        SourceStatus::Running
    }

    /// Per-split progress (empty for sources of one split).
    fn splits(&self) -> Vec<SplitProgress> {
        Vec::new()
    }
}

/// The declared shape of a source, from `CREATE SOURCE`.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// Source name.
    pub name: String,
    /// Declared columns.
    pub schema: SchemaRef,
    /// `WITH (...)` options, keys lower-cased, `connector` removed.
    pub options: BTreeMap<String, String>,
}

/// Builds a [`Source`] from a spec.
pub trait SourceFactory: Send + Sync {
    /// The `connector = '…'` name.
    fn name(&self) -> &'static str;
    /// Checks options at `CREATE SOURCE` time and fills in defaults that must stay fixed for
    /// the source's life (a generator's start time, …). Returns the options to persist.
    fn validate(&self, spec: &SourceSpec) -> Result<BTreeMap<String, String>>;
    /// Opens a reader at `position` — a value the source put in a [`SourceBatch`] earlier,
    /// from a checkpoint — or at the start of the source (its `start` option) when `None`.
    /// Reading from `position` must yield exactly the rows after that batch.
    fn open(
        &self,
        spec: &SourceSpec,
        position: Option<&serde_json::Value>,
    ) -> Result<Box<dyn Source>>;
    /// Whether the source ends by itself (file without `follow`).
    fn is_bounded(&self, spec: &SourceSpec) -> bool;
    /// Told, after a checkpoint, the committed positions of every pipeline reading the
    /// source (all of them checkpointed): nothing before the oldest will be read again, so
    /// a connector that keeps its own log (`http`) may free it. A new pipeline then starts
    /// at that point instead of the log's beginning. Others ignore it.
    fn release(&self, _spec: &SourceSpec, _committed: &[serde_json::Value]) {}
    /// Whether replicas can share the source by split (its `partitions` option narrows a
    /// reader to some): Kafka.
    fn can_split(&self) -> bool {
        false
    }
    /// The splits (Kafka partitions) the source has now, for a source that can be split.
    fn splits(&self, _spec: &SourceSpec) -> Result<Option<Vec<i32>>> {
        Ok(None)
    }
    /// Takes events pushed to the source (`POST /ingest/{source}`: JSON lines or a JSON
    /// array), durably, before returning how many it took. Only push connectors (`http`)
    /// accept them.
    fn ingest(&self, spec: &SourceSpec, _body: &[u8]) -> Result<u64> {
        Err(EngineError::Unsupported(format!(
            "source {} reads from its connector; only sources with connector = 'http' take pushed events",
            spec.name
        )))
    }
}

/// The list of connectors. `weir-connectors::register_all` fills it.
#[derive(Default, Clone)]
pub struct SourceRegistry {
    factories: BTreeMap<&'static str, Arc<dyn SourceFactory>>,
    sinks: BTreeMap<&'static str, Arc<dyn crate::connector::sink::SinkFactory>>,
    loaders: BTreeMap<&'static str, Arc<dyn crate::connector::table::TableLoader>>,
}

impl std::fmt::Debug for SourceRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

impl SourceRegistry {
    /// Adds a connector.
    pub fn register(&mut self, factory: Arc<dyn SourceFactory>) {
        self.factories.insert(factory.name(), factory);
    }

    /// Looks up a connector by name.
    pub fn get(&self, name: &str) -> Result<Arc<dyn SourceFactory>> {
        self.factories.get(name).cloned().ok_or_else(|| {
            let known: Vec<_> = self.factories.keys().copied().collect();
            EngineError::InvalidOption {
                option: "connector".into(),
                message: format!(
                    "unknown connector '{name}'; available: {}",
                    known.join(", ")
                ),
            }
        })
    }

    /// Names of all connectors.
    pub fn names(&self) -> Vec<&'static str> {
        self.factories.keys().copied().collect()
    }

    /// Adds a table loader.
    pub fn register_loader(&mut self, loader: Arc<dyn crate::connector::table::TableLoader>) {
        self.loaders.insert(loader.name(), loader);
    }

    /// Looks up a table loader by connector name.
    pub fn loader(&self, name: &str) -> Result<Arc<dyn crate::connector::table::TableLoader>> {
        self.loaders.get(name).cloned().ok_or_else(|| {
            let known: Vec<_> = self.loaders.keys().copied().collect();
            EngineError::InvalidOption {
                option: "connector".into(),
                message: format!(
                    "tables load from connector {}, not '{name}'",
                    known.join(" or ")
                ),
            }
        })
    }

    /// Adds a sink connector.
    pub fn register_sink(&mut self, factory: Arc<dyn crate::connector::sink::SinkFactory>) {
        self.sinks.insert(factory.name(), factory);
    }

    /// Names of all sink connectors.
    pub fn sink_names(&self) -> Vec<&'static str> {
        self.sinks.keys().copied().collect()
    }

    /// Looks up a sink connector by name.
    pub fn sink(&self, name: &str) -> Result<Arc<dyn crate::connector::sink::SinkFactory>> {
        self.sinks.get(name).cloned().ok_or_else(|| {
            let known: Vec<_> = self.sinks.keys().copied().collect();
            EngineError::InvalidOption {
                option: "connector".into(),
                message: format!(
                    "unknown sink connector '{name}'; available: {}",
                    known.join(", ")
                ),
            }
        })
    }
}
