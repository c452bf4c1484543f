//! Checkpoints: a pipeline's whole state and its source position, written together.
//!
//! One *pipeline* (a source reader, its processor, and the views it feeds) owns one
//! checkpoint directory. A checkpoint is taken between two micro-batches on the processor
//! thread — the only thread that changes the pipeline's state — so every view's state, the
//! watermark tracker, the counters and the source position describe the same point of the
//! input (the "barrier" is the batch boundary). An *epoch* is one such checkpoint.
//!
//! Layout of a pipeline directory:
//!
//! ```text
//! MANIFEST.json              the last complete epoch: position, watermarks, counters, and
//!                            for each view the files that hold its state
//! state-<view>-<epoch>.arrow open windows' accumulator states (Arrow IPC), rewritten each epoch
//! rows-<view>-<epoch>.arrow  rows the view emitted during that epoch (append-only segments)
//! log-<epoch>.jsonl          dead letters and late events of that epoch (append-only; the
//!                            oldest files go once the newer ones hold SYSTEM_LOG_CAPACITY
//!                            records, as many as `weir.dead_letters` keeps)
//! COMMITTED                  written after the first manifest: a directory with it and
//!                            without MANIFEST.json lost its manifest (an error naming the
//!                            way out), one without it only had its first checkpoint cut short
//! ```
//!
//! Data files are written and fsynced first; then `MANIFEST.json` is replaced atomically
//! (temp file, fsync, rename, fsync of the directory). A crash at any instant leaves either
//! the old or the new manifest, and every file it names complete. Files no manifest names
//! (an epoch cut short, an old state file, a dropped view's segments) are deleted after the
//! next manifest is written.

//!
//! This module is the protocol: what a manifest names and what a snapshot of a pipeline
//! holds. [`store`] writes and reads it; [`recovery`] decides, from what is on disk and what
//! the catalog defines, where each view and sink resumes.

pub mod recovery;
pub mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;

use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::history::{HistoryFile, HistoryRoot};
use crate::pipeline::watermark::WatermarkTracker;
pub use crate::serving::system::SourceCounters;
pub use store::CheckpointStore;
pub(crate) use store::{read_batches, replace_batches};

/// The state format this build writes and reads. Accumulator states are DataFusion's own,
/// so a checkpoint is only readable by the DataFusion version that wrote it.
pub const STATE_FORMAT: &str = concat!("weir-state/2 datafusion/", "55");

/// The format before state was stored per operator: still read (see [`LegacyState`]), never
/// written.
pub const LEGACY_STATE_FORMAT: &str = concat!("weir-state/1 datafusion/", "55");

const MANIFEST: &str = "MANIFEST.json";
const COMMITTED: &str = "COMMITTED";

/// Where checkpoints go and how often.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// Root directory (`<data dir>/checkpoints`).
    pub dir: PathBuf,
    /// Time between checkpoints of a pipeline that has processed new input.
    pub interval: std::time::Duration,
    /// Discard checkpoints this build cannot read and rebuild state from the sources.
    pub rebuild_incompatible: bool,
}

/// A file of emitted rows and how many it holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Segment {
    pub file: String,
    pub rows: u64,
    /// The highest watermark at which its rows were emitted.
    #[serde(default)]
    pub emitted_wm: i64,
}

/// One view's entry in a manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewManifest {
    pub name: String,
    /// Identifies the view's definition; state is only restored into the same definition.
    pub fingerprint: String,
    pub rows_in: u64,
    pub dropped_rows: u64,
    /// Per operator of the view's chain, in order, the files of its state (one batch
    /// each; see [`crate::operator::Operator::snapshot`]).
    #[serde(default)]
    pub operators: Vec<Vec<String>>,
    /// [`LEGACY_STATE_FORMAT`]: windows starting before this had been emitted.
    #[serde(default = "no_clock", skip_serializing)]
    pub closed_before: i64,
    /// [`LEGACY_STATE_FORMAT`]: the open windows' state file.
    #[serde(default, skip_serializing)]
    pub state: Option<String>,
    /// [`LEGACY_STATE_FORMAT`]: files of `OVER` and alert state, one batch each.
    #[serde(default, skip_serializing)]
    pub extra: Vec<String>,
    /// Emitted rows, oldest first.
    pub segments: Vec<Segment>,
    /// Rows at the start of `segments` that left memory for history (or expired).
    #[serde(default)]
    pub skip_rows: u64,
    /// Parquet files holding the rows that left memory, oldest first.
    #[serde(default)]
    pub history: Vec<HistoryFile>,
    /// The view's retention clock (its highest finite watermark).
    #[serde(default = "no_clock")]
    pub clock: i64,
}

fn no_clock() -> i64 {
    i64::MIN
}

/// A file of a sink's queued rows: rows `start..start + rows`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SinkSegment {
    pub file: String,
    pub start: u64,
    pub rows: u64,
}

/// One sink's entry in a manifest: its queue at the checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SinkManifest {
    pub name: String,
    /// Identifies the sink's definition; the queue is only restored into the same one.
    pub fingerprint: String,
    /// Rows pushed to the sink so far.
    pub pushed: u64,
    /// Rows the target had acknowledged.
    pub acked: u64,
    /// The writer's position at `acked` (connector-specific).
    pub position: serde_json::Value,
    /// Files holding the rows `acked..pushed`, oldest first.
    pub segments: Vec<SinkSegment>,
}

/// The last complete epoch of a pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// [`STATE_FORMAT`] of the build that wrote it.
    pub format: String,
    pub source: String,
    pub pipeline: u64,
    pub epoch: u64,
    /// Wall time of the checkpoint (ms since the epoch).
    pub written_at_ms: i64,
    /// The source's position after the last batch in this epoch (connector-specific).
    pub position: serde_json::Value,
    pub tracker: WatermarkTracker,
    pub counters: SourceCounters,
    pub views: Vec<ViewManifest>,
    /// Dead-letter and late-event segments, oldest first.
    pub logs: Vec<String>,
    /// Sinks fed by this pipeline.
    #[serde(default)]
    pub sinks: Vec<SinkManifest>,
}

/// A dead letter or late event, as persisted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LogRecord {
    DeadLetter {
        location: String,
        raw: String,
        error: String,
        received_at_ms: i64,
        /// The source, when not the pipeline's own (a pair's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
    Late {
        /// The source, when not the pipeline's own (a pair's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        location: String,
        event_time: i64,
        watermark: i64,
        raw: Option<String>,
        received_at_ms: i64,
    },
}

/// One view's state at a checkpoint, as captured by the processor.
#[derive(Debug, Clone)]
pub struct ViewSnapshot {
    pub name: String,
    pub fingerprint: String,
    pub rows_in: u64,
    pub dropped_rows: u64,
    /// Per operator of the view's chain, in order, its state.
    pub operators: Vec<Vec<RecordBatch>>,
    /// Rows emitted since the previous checkpoint.
    pub new_rows: Vec<RecordBatch>,
    /// The highest watermark at which one of `new_rows` was emitted.
    pub new_rows_wm: i64,
    /// The view's retention clock.
    pub clock: i64,
    /// For a view with retention: rows leaving memory and the history files to keep.
    pub history: Option<HistoryMove>,
}

/// Rows of a view that leave memory in this epoch.
#[derive(Debug, Clone)]
pub struct HistoryMove {
    /// The first batches in memory, emitted at watermarks `min_wm..=max_wm`.
    pub evicted: Vec<RecordBatch>,
    pub min_wm: i64,
    pub max_wm: i64,
    /// Write them to a Parquet file (false: `history = 0`, they are dropped).
    pub write: bool,
    /// The history files that stay (the others expired).
    pub kept: Vec<HistoryFile>,
}

/// Everything a pipeline writes in one epoch.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub position: serde_json::Value,
    pub tracker: WatermarkTracker,
    pub counters: SourceCounters,
    pub views: Vec<ViewSnapshot>,
    pub sinks: Vec<crate::checkpoint::SinkSnapshot>,
    /// Dead letters and late events since the previous checkpoint.
    pub new_log: Vec<LogRecord>,
}

/// What a checkpoint cost, and where sinks' queued rows now are.
#[derive(Debug, Clone)]
pub struct WriteReport {
    pub epoch: u64,
    /// Bytes written in this epoch.
    pub bytes: u64,
    /// Bytes of all files the manifest names.
    pub total_bytes: u64,
    /// Per sink, the files holding its unacknowledged rows.
    pub sink_files: Vec<(String, Vec<crate::checkpoint::DiskSegment>)>,
    /// Per view with retention: its name, the batches that left memory, its history
    /// files now.
    pub history: Vec<(String, usize, Vec<HistoryFile>)>,
    /// Where history files are.
    pub history_root: HistoryRoot,
}

/// A view's state read back from a checkpoint.
#[derive(Debug, Clone)]
pub struct RestoredView {
    pub meta: ViewManifest,
    /// Per operator of the view's chain, its state.
    pub operators: Vec<Vec<RecordBatch>>,
    /// The state as a checkpoint of [`LEGACY_STATE_FORMAT`] held it (then `operators` is
    /// empty): the view hands each operator its part.
    pub legacy: Option<LegacyState>,
    /// Emitted rows still in memory, and the watermark each batch was emitted at.
    pub rows: Vec<RecordBatch>,
    pub row_wms: Vec<i64>,
    /// Where `meta.history` files are.
    pub history_root: HistoryRoot,
}

/// A view's state in a [`LEGACY_STATE_FORMAT`] checkpoint: a window aggregate's open
/// windows and `closed_before`, then `OVER` frames (three batches) and an alert rule's
/// alerts (one batch), in that order.
#[derive(Debug, Clone)]
pub struct LegacyState {
    pub buckets: Vec<RecordBatch>,
    pub closed_before: i64,
    pub extra: Vec<RecordBatch>,
}

/// A pipeline's state read back from a checkpoint.
#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    pub views: BTreeMap<String, RestoredView>,
    pub sinks: BTreeMap<String, crate::checkpoint::RestoredSink>,
    pub log: Vec<LogRecord>,
}

/// A checkpoint file of queued rows: rows `start..start + rows`.
#[derive(Debug, Clone)]
pub struct DiskSegment {
    pub path: std::path::PathBuf,
    pub start: u64,
    pub rows: u64,
}

/// The rows of a sink a checkpoint holds.
#[derive(Debug, Clone)]
pub struct SinkSnapshot {
    pub name: String,
    pub fingerprint: String,
    pub pushed: u64,
    pub acked: u64,
    pub position: serde_json::Value,
    /// Rows not acknowledged and not in an earlier checkpoint, from row `new_start`.
    pub new_rows: Vec<RecordBatch>,
    pub new_start: u64,
}

/// A sink's queue read back from a checkpoint.
#[derive(Debug, Clone)]
pub struct RestoredSink {
    pub fingerprint: String,
    pub pushed: u64,
    pub acked: u64,
    pub position: serde_json::Value,
    /// The rows not acknowledged, from row `acked`.
    pub rows: Vec<RecordBatch>,
}
