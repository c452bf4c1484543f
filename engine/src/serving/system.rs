//! Facts the engine reports about itself: per-source counters, dead letters and late events.
//! `weir-sql` serves them as the `weir.*` system relations.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::Mutex;

use crate::connector::source::SplitProgress;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Counters of a source that survive restarts.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceCounters {
    pub events_in: u64,
    pub late_events: u64,
    pub dead_letters: u64,
}

/// Most rows kept per system log; older rows are dropped (and counted) beyond this.
pub const SYSTEM_LOG_CAPACITY: usize = 100_000;

/// Most bytes of a message's raw text kept in `weir.dead_letters` and `weir.late_events`
/// (and their checkpoints): with [`SYSTEM_LOG_CAPACITY`] rows, at most about 100 MB.
pub const MAX_RAW_BYTES: usize = 1024;

/// `raw` cut to [`MAX_RAW_BYTES`] (at a character boundary), with its full length and an
/// FNV-1a 64 hash of it appended, so a 50 MB garbage line costs 1 KiB and can still be
/// told apart and found in the source.
pub fn bounded_raw(raw: String) -> String {
    if raw.len() <= MAX_RAW_BYTES {
        return raw;
    }
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in raw.as_bytes() {
        hash ^= *b as u64;
        hash = hash.wrapping_mul(0x100000001b3);
    }
    let mut cut = MAX_RAW_BYTES;
    while !raw.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}… [truncated: {} bytes in all, fnv1a64 {hash:016x}]",
        &raw[..cut],
        raw.len()
    )
}

/// Upper bounds (µs) of [`LatencyHistogram`]'s buckets.
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
];

/// A histogram of durations with fixed buckets ([`LATENCY_BUCKETS_US`] and +Inf), updated
/// without locks.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    /// Counts one duration.
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let i = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket bound (µs; the last is +Inf as `u64::MAX`), and the sum
    /// of all durations in µs.
    pub fn cumulative(&self) -> (Vec<(u64, u64)>, u64) {
        let mut total = 0;
        let mut out = Vec::with_capacity(self.buckets.len());
        for (i, b) in self.buckets.iter().enumerate() {
            total += b.load(Ordering::Relaxed);
            out.push((
                LATENCY_BUCKETS_US.get(i).copied().unwrap_or(u64::MAX),
                total,
            ));
        }
        (out, self.sum_us.load(Ordering::Relaxed))
    }
}

/// Counters and status of one source.
#[derive(Debug)]
pub struct SourceStats {
    /// `running`, `idle`, `finished`, `stopped`, `disconnected: …` or `error: …`.
    pub status: Mutex<String>,
    /// Events decoded (on time, late and with null time).
    pub events_in: AtomicU64,
    /// Late events.
    pub late_events: AtomicU64,
    /// Messages that failed to decode.
    pub dead_letters: AtomicU64,
    /// Current watermark (ns), `i64::MIN` before the first event; `i64::MAX` once a
    /// bounded input has ended.
    pub watermark: AtomicI64,
    /// The watermark its events set before the input ended (what `weir.sources` shows
    /// for a finished source).
    pub last_watermark: AtomicI64,
    /// Whether all available input has been processed.
    pub caught_up: AtomicBool,
    /// Position after the last batch (connector-specific JSON).
    pub position: Mutex<serde_json::Value>,
    /// Position of the last checkpoint written (or resumed from); `None` before the first:
    /// what a restart would read from.
    pub committed: Mutex<Option<serde_json::Value>>,
    /// Per-split progress reported by the reader (empty for sources of one split).
    pub splits: Mutex<Vec<SplitProgress>>,
    /// Per-split watermarks (ns) as the processor last saw them.
    pub split_watermarks: Mutex<Vec<(i32, i64)>>,
    /// Epoch of the last checkpoint written (or resumed from); 0 before the first.
    pub checkpoint_epoch: AtomicU64,
    /// Bytes the last checkpoint wrote.
    pub checkpoint_bytes: AtomicU64,
    /// Bytes of all files the last checkpoint names.
    pub checkpoint_total_bytes: AtomicU64,
    /// How long the last checkpoint took (µs), capture and write.
    pub checkpoint_micros: AtomicU64,
    /// Wall time of the last checkpoint (ms since the epoch), 0 before the first.
    pub checkpoint_at_ms: AtomicI64,
    /// Checkpoints that failed to write.
    pub checkpoint_failures: AtomicU64,
    /// The error of the last checkpoint, while checkpoints fail (cleared by a success).
    pub checkpoint_error: Mutex<Option<String>>,
    /// How long the processing stopped to capture the last checkpoint's state (µs); the
    /// write happens meanwhile on the checkpoint thread.
    pub checkpoint_capture_micros: AtomicU64,
    /// Time to process one batch (lateness, every view, sinks' queues).
    pub batch_latency: LatencyHistogram,
}

impl Default for SourceStats {
    fn default() -> Self {
        Self {
            status: Mutex::new("created".into()),
            events_in: AtomicU64::new(0),
            late_events: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            last_watermark: AtomicI64::new(i64::MIN),
            caught_up: AtomicBool::new(false),
            position: Mutex::new(serde_json::Value::Null),
            committed: Mutex::new(None),
            splits: Mutex::new(Vec::new()),
            split_watermarks: Mutex::new(Vec::new()),
            checkpoint_epoch: AtomicU64::new(0),
            checkpoint_bytes: AtomicU64::new(0),
            checkpoint_total_bytes: AtomicU64::new(0),
            checkpoint_micros: AtomicU64::new(0),
            checkpoint_at_ms: AtomicI64::new(0),
            checkpoint_failures: AtomicU64::new(0),
            checkpoint_error: Mutex::new(None),
            checkpoint_capture_micros: AtomicU64::new(0),
            batch_latency: LatencyHistogram::default(),
        }
    }
}

impl SourceStats {
    /// The counters a checkpoint keeps.
    pub fn counters(&self) -> SourceCounters {
        SourceCounters {
            events_in: self.events_in.load(Ordering::Relaxed),
            late_events: self.late_events.load(Ordering::Relaxed),
            dead_letters: self.dead_letters.load(Ordering::Relaxed),
        }
    }

    /// Restores checkpointed counters.
    pub fn set_counters(&self, c: SourceCounters) {
        self.events_in.store(c.events_in, Ordering::Relaxed);
        self.late_events.store(c.late_events, Ordering::Relaxed);
        self.dead_letters.store(c.dead_letters, Ordering::Relaxed);
    }

    /// Records a checkpoint written (or resumed from, with zero sizes).
    pub fn record_checkpoint(&self, epoch: u64, bytes: u64, total_bytes: u64, took: Duration) {
        self.checkpoint_epoch.store(epoch, Ordering::Relaxed);
        self.checkpoint_bytes.store(bytes, Ordering::Relaxed);
        if total_bytes > 0 {
            self.checkpoint_total_bytes
                .store(total_bytes, Ordering::Relaxed);
        }
        self.checkpoint_micros
            .store(took.as_micros() as u64, Ordering::Relaxed);
        self.checkpoint_at_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
        *self.checkpoint_error.lock() = None;
    }

    /// Whether the source cannot make progress now (failed, or its service unreachable).
    pub fn is_failing(&self) -> bool {
        let status = self.status.lock();
        status.starts_with("error") || status.starts_with("disconnected")
    }

    /// Messages behind the end of the input, summed over splits (0 when unknown).
    pub fn lag(&self) -> i64 {
        self.splits.lock().iter().filter_map(|s| s.lag()).sum()
    }

    /// Sets the status text.
    pub fn set_status(&self, status: impl Into<String>) {
        *self.status.lock() = status.into();
    }
}

/// The checkpoints of every pipeline of a source, as one row of `weir.sources` (and
/// `/metrics`) reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointSummary {
    /// The newest epoch any pipeline has written (0 before the first).
    pub epoch: u64,
    /// Wall time (ms) of the oldest of the pipelines' latest checkpoints: how much work
    /// a crash now could have to redo. 0 before every pipeline has one.
    pub oldest_at_ms: i64,
    /// Bytes of all files the pipelines' checkpoints name.
    pub total_bytes: u64,
    /// The slowest pipeline's last checkpoint (µs).
    pub slowest_micros: u64,
}

impl CheckpointSummary {
    /// Summarizes the pipelines' stats.
    pub fn of(pipelines: &[std::sync::Arc<SourceStats>]) -> Self {
        if pipelines.is_empty() {
            return Self::default();
        }
        let load = |f: &AtomicU64| f.load(Ordering::Relaxed);
        Self {
            epoch: pipelines
                .iter()
                .map(|p| load(&p.checkpoint_epoch))
                .max()
                .unwrap_or(0),
            oldest_at_ms: pipelines
                .iter()
                .map(|p| p.checkpoint_at_ms.load(Ordering::Relaxed))
                .min()
                .unwrap_or(0),
            total_bytes: pipelines
                .iter()
                .map(|p| load(&p.checkpoint_total_bytes))
                .sum(),
            slowest_micros: pipelines
                .iter()
                .map(|p| load(&p.checkpoint_micros))
                .max()
                .unwrap_or(0),
        }
    }
}

/// One row of `weir.dead_letters`.
#[derive(Debug, Clone)]
pub struct DeadLetterRow {
    pub source: String,
    pub location: String,
    pub raw: String,
    pub error: String,
    pub received_at: DateTime<Utc>,
}

/// One row of `weir.late_events`.
#[derive(Debug, Clone)]
pub struct LateEventRow {
    pub source: String,
    pub location: String,
    /// Event time (ns).
    pub event_time: i64,
    /// Watermark when the event arrived (ns).
    pub watermark: i64,
    pub raw: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// One of the system logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    DeadLetters,
    LateEvents,
}

/// Dead letters and late events of all sources.
#[derive(Debug, Default)]
pub struct SystemLog {
    dead_letters: Mutex<Vec<DeadLetterRow>>,
    late_events: Mutex<Vec<LateEventRow>>,
    /// Per source, its latest decoded events (`SELECT … FROM source`).
    recent: Mutex<HashMap<String, Recent>>,
}

/// How many of a source's latest events `SELECT … FROM source` shows.
pub const RECENT_EVENTS: usize = 1_000;

/// A source's latest [`RECENT_EVENTS`] events, as the batches they came in (the oldest
/// batch may start earlier).
#[derive(Debug, Default)]
struct Recent {
    batches: VecDeque<RecordBatch>,
    rows: usize,
}

impl SystemLog {
    /// Keeps `batch`'s events as `source`'s latest (forgetting those more than
    /// [`RECENT_EVENTS`] back).
    pub fn add_recent(&self, source: &str, batch: &RecordBatch) {
        let n = batch.num_rows();
        if n == 0 {
            return;
        }
        let tail = batch.slice(n.saturating_sub(RECENT_EVENTS), n.min(RECENT_EVENTS));
        let mut recent = self.recent.lock();
        let r = recent.entry(source.to_string()).or_default();
        r.rows += tail.num_rows();
        r.batches.push_back(tail);
        while r
            .batches
            .front()
            .is_some_and(|b| r.rows - b.num_rows() >= RECENT_EVENTS)
        {
            let old = r.batches.pop_front().expect("front");
            r.rows -= old.num_rows();
        }
    }

    /// `source`'s latest events, oldest first, at most [`RECENT_EVENTS`].
    pub fn recent(&self, source: &str) -> Vec<RecordBatch> {
        let recent = self.recent.lock();
        let Some(r) = recent.get(source) else {
            return Vec::new();
        };
        let mut skip = r.rows.saturating_sub(RECENT_EVENTS);
        r.batches
            .iter()
            .map(|b| {
                let from = skip.min(b.num_rows());
                skip -= from;
                b.slice(from, b.num_rows() - from)
            })
            .filter(|b| b.num_rows() > 0)
            .collect()
    }

    /// Records dead letters.
    pub fn add_dead_letters(&self, rows: impl IntoIterator<Item = DeadLetterRow>) {
        let mut log = self.dead_letters.lock();
        log.extend(rows);
        trim(&mut log);
    }

    /// Records late events.
    pub fn add_late_events(&self, rows: impl IntoIterator<Item = LateEventRow>) {
        let mut log = self.late_events.lock();
        log.extend(rows);
        trim(&mut log);
    }

    /// Forgets the rows of one log received before `ns` (they were archived).
    pub fn forget_received_before(&self, kind: LogKind, ns: i64) {
        let before = |t: &DateTime<Utc>| t.timestamp_nanos_opt().unwrap_or(i64::MAX) < ns;
        match kind {
            LogKind::DeadLetters => self.dead_letters.lock().retain(|r| !before(&r.received_at)),
            LogKind::LateEvents => self.late_events.lock().retain(|r| !before(&r.received_at)),
        }
    }

    /// Forgets a source's rows (before a replay, or when it is dropped).
    pub fn forget_source(&self, source: &str) {
        self.recent.lock().remove(source);
        self.dead_letters.lock().retain(|r| r.source != source);
        self.late_events.lock().retain(|r| r.source != source);
    }

    /// All dead letters.
    pub fn dead_letters(&self) -> Vec<DeadLetterRow> {
        self.dead_letters.lock().clone()
    }

    /// All late events.
    pub fn late_events(&self) -> Vec<LateEventRow> {
        self.late_events.lock().clone()
    }
}

fn trim<T>(log: &mut Vec<T>) {
    if log.len() > SYSTEM_LOG_CAPACITY {
        let excess = log.len() - SYSTEM_LOG_CAPACITY;
        log.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sources_checkpoints_summarize_every_pipeline() {
        let a = std::sync::Arc::new(SourceStats::default());
        let b = std::sync::Arc::new(SourceStats::default());
        a.checkpoint_epoch.store(7, Ordering::Relaxed);
        a.checkpoint_at_ms.store(2_000, Ordering::Relaxed);
        a.checkpoint_total_bytes.store(100, Ordering::Relaxed);
        a.checkpoint_micros.store(5, Ordering::Relaxed);
        b.checkpoint_epoch.store(3, Ordering::Relaxed);
        b.checkpoint_at_ms.store(1_000, Ordering::Relaxed);
        b.checkpoint_total_bytes.store(50, Ordering::Relaxed);
        b.checkpoint_micros.store(9, Ordering::Relaxed);
        let s = CheckpointSummary::of(&[a, b]);
        assert_eq!(
            s,
            CheckpointSummary {
                epoch: 7,
                oldest_at_ms: 1_000,
                total_bytes: 150,
                slowest_micros: 9
            }
        );
        assert_eq!(CheckpointSummary::of(&[]), CheckpointSummary::default());
    }

    #[test]
    fn raw_text_is_bounded_with_length_and_hash() {
        assert_eq!(bounded_raw("short".into()), "short");
        let long = "é".repeat(3_000_000);
        let a = bounded_raw(long.clone());
        assert!(a.len() < MAX_RAW_BYTES + 100, "{}", a.len());
        assert!(a.contains("6000000 bytes in all"), "{a}");
        let mut other = long;
        other.push('x');
        let b = bounded_raw(other);
        let hash = |s: &str| s.rsplit("fnv1a64 ").next().unwrap().to_string();
        assert_ne!(hash(&a), hash(&b), "{a} / {b}");
    }
}
