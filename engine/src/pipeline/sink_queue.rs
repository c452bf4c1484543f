//! A sink's durable queue between the pipeline that produces its rows and a writer thread
//! that delivers them. The processor appends rows ([`SinkRuntime::push`]); the writer takes
//! them from the front, writes them with the connector's [`SinkWriter`] and acknowledges them.
//! The queue is part of the pipeline's checkpoint: a checkpoint records how many rows were
//! acknowledged and writes the rows that were not (append-only segments, like a view's
//! emitted rows). After a crash, the rows not acknowledged at the last checkpoint are written
//! again and the replay of the source re-emits the rest, so every row reaches the writer at
//! least once; connectors make that effectively once by writing idempotently (upserts keyed
//! by the row's key) or by skipping what they find already delivered.
//!
//! A writer's error is either transient (the service is down: retried with backoff while the
//! queue fills, then the pipeline waits) or permanent (wrong table, bad credentials: the sink
//! stops with the error and the pipeline goes on without it).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::{Condvar, Mutex};

use crate::checkpoint::{DiskSegment, RestoredSink, SinkSnapshot};
use crate::connector::sink::{OnFull, SinkError, SinkSettings, SinkSpec, SinkWriter};
use crate::error::{EngineError, Result};

/// Counters and status of one sink, for `weir.sinks`.
#[derive(Debug)]
pub struct SinkStats {
    /// `starting`, `running`, `retrying: …`, `error: …` or `stopped`.
    pub status: Mutex<String>,
    /// Rows acknowledged by the target.
    pub rows_written: AtomicU64,
    /// Failed writes (each retry counts).
    pub errors: AtomicU64,
    /// The last error, if any.
    pub last_error: Mutex<Option<String>>,
    /// Time of the last acknowledged write (ms since the epoch).
    pub last_write_ms: AtomicU64,
}

impl Default for SinkStats {
    fn default() -> Self {
        Self {
            status: Mutex::new("starting".into()),
            rows_written: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
            last_write_ms: AtomicU64::new(0),
        }
    }
}

impl SinkStats {
    /// Current status.
    pub fn status(&self) -> String {
        self.status.lock().clone()
    }

    pub(crate) fn set_status(&self, s: impl Into<String>) {
        *self.status.lock() = s.into();
    }
}

/// The sink's queue. Rows are numbered from the sink's creation: `acked` rows have been
/// written, rows `acked..pushed` wait.
struct Queue {
    /// Batches in memory, each with the number of its first row.
    batches: VecDeque<(u64, RecordBatch)>,
    pushed: u64,
    acked: u64,
    /// The writer's position after the write that acknowledged row `acked`.
    position: serde_json::Value,
    in_memory_rows: usize,
    /// Checkpoint files holding queued rows (`OnFull::Spill`), as of the last checkpoint.
    on_disk: Vec<DiskSegment>,
}

/// A running sink.
pub struct SinkRuntime {
    spec: SinkSpec,
    fingerprint: String,
    settings: SinkSettings,
    queue: Mutex<Queue>,
    /// Signalled when rows are pushed or acknowledged.
    changed: Condvar,
    /// Set on a permanent error: rows are no longer accepted.
    failed: AtomicBool,
    /// Whether the sink's pipeline checkpoints (a spilling sink can then let rows go).
    checkpointed: AtomicBool,
    stop: Arc<AtomicBool>,
    /// The position the sink restarted from, for the writer's first `open`.
    resume: Mutex<serde_json::Value>,
    /// The connector's writer until [`start`](Self::start) hands it to its thread.
    pending_writer: Mutex<Option<Box<dyn SinkWriter>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    last_update_push: Mutex<Option<Instant>>,
    /// A partition lane's lease: rows are written only while it holds.
    fence: Mutex<Option<crate::cluster::Fence>>,
    /// Counters.
    pub stats: SinkStats,
}

impl std::fmt::Debug for SinkRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkRuntime")
            .field("name", &self.spec.name)
            .finish()
    }
}

impl SinkRuntime {
    /// A sink with an empty queue; `writer` starts writing at [`start`](Self::start).
    pub fn new(
        spec: SinkSpec,
        fingerprint: String,
        settings: SinkSettings,
        writer: Box<dyn SinkWriter>,
    ) -> Arc<Self> {
        Arc::new(Self {
            spec,
            fingerprint,
            settings,
            queue: Mutex::new(Queue {
                batches: VecDeque::new(),
                pushed: 0,
                acked: 0,
                position: serde_json::Value::Null,
                in_memory_rows: 0,
                on_disk: Vec::new(),
            }),
            changed: Condvar::new(),
            failed: AtomicBool::new(false),
            checkpointed: AtomicBool::new(false),
            stop: Arc::new(AtomicBool::new(false)),
            resume: Mutex::new(serde_json::Value::Null),
            pending_writer: Mutex::new(Some(writer)),
            writer: Mutex::new(None),
            last_update_push: Mutex::new(None),
            fence: Mutex::new(None),
            stats: SinkStats::default(),
        })
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// What it writes and where.
    pub fn spec(&self) -> &SinkSpec {
        &self.spec
    }

    /// Identifies the definition; a checkpointed queue is only restored into the same one.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Rows waiting to be written (none once the sink stopped on an error).
    pub fn backlog(&self) -> u64 {
        if self.is_failed() {
            return 0;
        }
        let q = self.queue.lock();
        q.pushed - q.acked
    }

    /// Whether the sink stopped on a permanent error.
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Whether the target is reachable and the sink keeps up (for `/ready`).
    pub fn is_healthy(&self) -> bool {
        let s = self.stats.status.lock();
        !(s.starts_with("error") || s.starts_with("retrying"))
    }

    /// Writes only while `fence` holds (the sink of a partition's lane): a replica that
    /// lost the partition publishes nothing more for it.
    pub fn set_fence(&self, fence: crate::cluster::Fence) {
        *self.fence.lock() = Some(fence);
    }

    /// Starts the writer thread (once; later calls do nothing).
    pub fn start(self: &Arc<Self>) -> Result<()> {
        let Some(writer) = self.pending_writer.lock().take() else {
            return Ok(());
        };
        let me = self.clone();
        let handle = std::thread::Builder::new()
            .name(format!("weir-sink-{}", self.spec.name))
            .spawn(move || me.write_loop(writer))
            .map_err(|e| EngineError::Internal(format!("spawning sink writer: {e}")))?;
        *self.writer.lock() = Some(handle);
        Ok(())
    }

    /// Stops the writer (after the write in progress). Rows still queued stay in the last
    /// checkpoint.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.changed.notify_all();
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
        if !self.is_failed() {
            self.stats.set_status("stopped");
        }
    }

    /// Appends rows. With a full queue this waits for the writer, unless `stop` is set (a
    /// pipeline stopping must hand over the batch it processed).
    pub fn push(&self, batches: &[RecordBatch], stop: &AtomicBool) {
        if self.is_failed() {
            return;
        }
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows == 0 {
            return;
        }
        let mut q = self.queue.lock();
        // A spilling sink never waits: each checkpoint takes the rows out of memory.
        let spills =
            self.settings.on_full == OnFull::Spill && self.checkpointed.load(Ordering::Acquire);
        while !spills
            && q.in_memory_rows >= self.settings.buffer_rows
            && !stop.load(Ordering::Acquire)
            && !self.stop.load(Ordering::Acquire)
            && !self.is_failed()
        {
            self.changed.wait_for(&mut q, Duration::from_millis(50));
        }
        // Queued in slices of at most `batch_rows` (zero-copy), the unit of writes and of
        // what a spilling sink lets go of.
        let step = self.settings.batch_rows.max(1);
        for b in batches.iter().filter(|b| b.num_rows() > 0) {
            let mut offset = 0;
            while offset < b.num_rows() {
                let n = step.min(b.num_rows() - offset);
                let start = q.pushed;
                q.pushed += n as u64;
                q.in_memory_rows += n;
                q.batches.push_back((start, b.slice(offset, n)));
                offset += n;
            }
        }
        drop(q);
        self.changed.notify_all();
    }

    /// Whether an updating view's open rows are due to be sent again (and notes that they
    /// are being sent).
    pub fn update_due(&self) -> bool {
        let mut last = self.last_update_push.lock();
        match *last {
            Some(t) if t.elapsed() < self.settings.update_interval => false,
            _ => {
                *last = Some(Instant::now());
                true
            }
        }
    }

    /// Notes that the sink's pipeline writes checkpoints, which hold its queue.
    pub fn set_checkpointed(&self) {
        self.checkpointed.store(true, Ordering::Release);
    }

    /// Rows held in memory.
    pub fn buffered(&self) -> u64 {
        self.queue.lock().in_memory_rows as u64
    }

    /// Notes which checkpoint files hold queued rows (after a checkpoint is written). A
    /// spilling sink over its bound lets go of the rows that are in them; the writer reads
    /// them back from the files.
    pub fn spilled(&self, segments: Vec<DiskSegment>) {
        if self.settings.on_full != OnFull::Spill {
            return;
        }
        let mut q = self.queue.lock();
        let on_disk_end = segments.iter().map(|s| s.start + s.rows).max().unwrap_or(0);
        q.on_disk = segments;
        if q.in_memory_rows <= self.settings.buffer_rows {
            return;
        }
        // Keep the next write's rows and everything not on disk.
        let keep_until = q.acked + self.settings.batch_rows as u64;
        let mut freed = 0;
        q.batches.retain(|(start, b)| {
            let end = start + b.num_rows() as u64;
            let evict = *start >= keep_until && end <= on_disk_end;
            if evict {
                freed += b.num_rows();
            }
            !evict
        });
        q.in_memory_rows -= freed;
    }

    /// Captures the queue for a checkpoint: rows from `persisted` (the first row not yet in
    /// a checkpoint file) on that are not acknowledged. Returns the snapshot and the new
    /// `persisted`.
    pub fn checkpoint(&self, persisted: u64) -> (SinkSnapshot, u64) {
        let q = self.queue.lock();
        let from = persisted.max(q.acked);
        let mut new_rows = Vec::new();
        for (start, b) in q.batches.iter() {
            let end = start + b.num_rows() as u64;
            if end <= from {
                continue;
            }
            let skip = from.saturating_sub(*start) as usize;
            new_rows.push(b.slice(skip, b.num_rows() - skip));
        }
        let snapshot = SinkSnapshot {
            name: self.spec.name.clone(),
            fingerprint: self.fingerprint.clone(),
            pushed: q.pushed,
            acked: q.acked,
            position: q.position.clone(),
            new_rows,
            new_start: from,
        };
        (snapshot, q.pushed)
    }

    /// Restores the queue from a checkpoint; the writer's first `open` gets the position.
    pub fn restore(&self, restored: &RestoredSink) {
        let mut q = self.queue.lock();
        q.batches.clear();
        q.pushed = restored.acked;
        q.acked = restored.acked;
        q.in_memory_rows = 0;
        for b in &restored.rows {
            let start = q.pushed;
            q.pushed += b.num_rows() as u64;
            q.in_memory_rows += b.num_rows();
            q.batches.push_back((start, b.clone()));
        }
        q.position = restored.position.clone();
        *self.resume.lock() = restored.position.clone();
    }

    fn write_loop(self: Arc<Self>, mut writer: Box<dyn SinkWriter>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                self.fail(format!("cannot start the sink's runtime: {e}"));
                return;
            }
        };
        let mut open = false;
        let mut backoff = Duration::from_millis(100);
        let mut files = SegmentCache::default();
        while !self.stop.load(Ordering::Acquire) {
            if !open {
                let resume = self.resume.lock().clone();
                match runtime.block_on(writer.open(&resume)) {
                    Ok(()) => {
                        open = true;
                        backoff = Duration::from_millis(100);
                        // The writer's position now matches the rows acknowledged so far.
                        let position = writer.position();
                        if !position.is_null() {
                            self.queue.lock().position = position;
                        }
                        self.stats.set_status("running");
                    }
                    Err(e) => {
                        if !self.on_error(e, &mut backoff) {
                            return;
                        }
                        continue;
                    }
                }
            }
            let Some(chunk) = self.next_chunk(&mut files) else {
                continue;
            };
            let rows: u64 = chunk.iter().map(|b| b.num_rows() as u64).sum();
            let fence = self.fence.lock().clone().filter(|f| !f.is_current());
            if let Some(fence) = fence {
                if !fence.lost() {
                    // Not renewed lately: the rows (still queued until acknowledged) wait
                    // for the next renewal.
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                tracing::warn!(sink = %self.spec.name, "{}", fence.reason());
                self.stats.set_status(fence.reason());
                // Rows are no longer taken: a processor waiting for room lets go.
                self.failed.store(true, Ordering::Release);
                self.changed.notify_all();
                return;
            }
            match runtime.block_on(writer.write(&chunk)) {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    self.acknowledge(rows, writer.position());
                    if !self.stats.status.lock().starts_with("running") {
                        tracing::info!(sink = %self.spec.name, "sink writing again");
                        self.stats.set_status("running");
                    }
                }
                Err(e) => {
                    open = false;
                    if !self.on_error(e, &mut backoff) {
                        return;
                    }
                }
            }
        }
    }

    /// Records an error; returns whether to go on (after the backoff).
    fn on_error(&self, e: SinkError, backoff: &mut Duration) -> bool {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        *self.stats.last_error.lock() = Some(e.to_string());
        match e {
            SinkError::Permanent(m) => {
                self.fail(m);
                false
            }
            SinkError::Transient(m) => {
                tracing::warn!(sink = %self.spec.name, error = %m, retry_in_ms = backoff.as_millis() as u64, "sink write failed; retrying");
                self.stats.set_status(format!("retrying: {m}"));
                let until = Instant::now() + *backoff;
                while Instant::now() < until && !self.stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                *backoff = (*backoff * 2).min(Duration::from_secs(5));
                true
            }
        }
    }

    fn fail(&self, message: String) {
        tracing::error!(sink = %self.spec.name, error = %message, "sink stopped");
        self.stats.set_status(format!("error: {message}"));
        *self.stats.last_error.lock() = Some(message);
        self.failed.store(true, Ordering::Release);
        let mut q = self.queue.lock();
        q.batches.clear();
        q.in_memory_rows = 0;
        drop(q);
        self.changed.notify_all();
    }

    /// The rows after the last acknowledged one (up to `batch_rows`), from memory or, for
    /// rows a spilling sink let go of, from the checkpoint files; waits a little for some.
    fn next_chunk(&self, files: &mut SegmentCache) -> Option<Vec<RecordBatch>> {
        let mut q = self.queue.lock();
        if q.batches.is_empty() && q.acked == q.pushed {
            self.changed.wait_for(&mut q, Duration::from_millis(50));
        }
        let acked = q.acked;
        let in_memory = q.batches.front().is_some_and(|(start, _)| *start <= acked);
        if !in_memory && acked < q.pushed {
            // Spilled: read from the file that holds row `acked`, up to the first row still
            // in memory.
            let segment = q
                .on_disk
                .iter()
                .find(|s| s.start <= acked && acked < s.start + s.rows)
                .cloned()?;
            let limit = q
                .batches
                .front()
                .map(|(start, _)| *start)
                .unwrap_or(u64::MAX)
                .min(segment.start + segment.rows)
                .min(acked + self.settings.batch_rows as u64);
            drop(q);
            return files.rows(&segment, acked, limit);
        }
        let mut out = Vec::new();
        let mut rows = 0;
        let mut next = acked;
        for (start, b) in q.batches.iter() {
            // Contiguous rows only: the next gap was spilled.
            if *start != next || (rows > 0 && rows + b.num_rows() > self.settings.batch_rows) {
                break;
            }
            rows += b.num_rows();
            next += b.num_rows() as u64;
            out.push(b.clone());
        }
        (!out.is_empty()).then_some(out)
    }

    fn acknowledge(&self, rows: u64, position: serde_json::Value) {
        let mut q = self.queue.lock();
        let acked = q.acked + rows;
        while let Some((start, b)) = q.batches.front() {
            if start + b.num_rows() as u64 > acked {
                break;
            }
            let n = b.num_rows();
            q.batches.pop_front();
            q.in_memory_rows -= n;
        }
        q.acked = acked;
        q.position = position;
        drop(q);
        self.stats.rows_written.fetch_add(rows, Ordering::Relaxed);
        self.stats.last_write_ms.store(
            chrono::Utc::now().timestamp_millis().max(0) as u64,
            Ordering::Relaxed,
        );
        self.changed.notify_all();
    }
}

/// The last checkpoint file the writer read spilled rows from.
#[derive(Default)]
struct SegmentCache {
    path: Option<std::path::PathBuf>,
    /// Its batches, each with the number of its first row.
    batches: Vec<(u64, RecordBatch)>,
}

impl SegmentCache {
    /// Rows `from..until` of `segment`.
    fn rows(&mut self, segment: &DiskSegment, from: u64, until: u64) -> Option<Vec<RecordBatch>> {
        if self.path.as_ref() != Some(&segment.path) {
            let batches = match crate::checkpoint::read_batches(&segment.path) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(file = %segment.path.display(), error = %e, "cannot read spilled sink rows yet");
                    return None;
                }
            };
            let mut start = segment.start;
            self.batches = batches
                .into_iter()
                .map(|b| {
                    let s = start;
                    start += b.num_rows() as u64;
                    (s, b)
                })
                .collect();
            self.path = Some(segment.path.clone());
        }
        let mut out = Vec::new();
        for (start, b) in &self.batches {
            let end = start + b.num_rows() as u64;
            if end <= from || *start >= until {
                continue;
            }
            let lo = from.saturating_sub(*start) as usize;
            let hi = (until.min(end) - start) as usize;
            out.push(b.slice(lo, hi - lo));
        }
        (!out.is_empty()).then_some(out)
    }
}

impl Drop for SinkRuntime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
