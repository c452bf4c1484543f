//! A pipeline's checkpoint bookkeeping: when to take one, and the thread that writes it.

use super::*;

/// Checkpoint bookkeeping of one pipeline. Files are written by a thread of its own, one
/// checkpoint at a time.
pub(super) struct Checkpointer {
    pub(super) interval: Duration,
    pub(super) last: Instant,
    /// Whether anything changed since the last captured checkpoint.
    pub(super) dirty: bool,
    /// Emitted batches of each view already written.
    pub(super) persisted: HashMap<String, usize>,
    /// Rows of each sink's queue already written.
    pub(super) sink_persisted: HashMap<String, u64>,
    /// Whether the last capture left rows of some sink unacknowledged (their
    /// acknowledgement is worth a checkpoint even without new input).
    pub(super) sinks_behind: bool,
    /// Dead letters and late events not yet written.
    pub(super) pending_log: Vec<LogRecord>,
    pub(super) in_flight: Option<InFlight>,
    /// Sinks' files of the last checkpoint written, not yet handed to the sinks.
    pub(super) sink_files: Option<Vec<(String, Vec<crate::checkpoint::DiskSegment>)>>,
    /// Views' rows moved to history by the last checkpoint written, not yet dropped from
    /// memory: the history root and, per view, batches moved and its files now.
    pub(super) history: Option<HistoryCommit>,
    pub(super) jobs: Option<std::sync::mpsc::SyncSender<Snapshot>>,
    pub(super) done: Receiver<Result<WriteReport>>,
    pub(super) writer: Option<JoinHandle<()>>,
}

/// Rows moved to history by a checkpoint: the root, and per view its name, the batches
/// that left memory and its history files now.
type HistoryCommit = (
    crate::history::HistoryRoot,
    Vec<(String, usize, Vec<crate::history::HistoryFile>)>,
);

/// A checkpoint handed to the writer.
pub(super) struct InFlight {
    /// The source position the checkpoint records.
    pub(super) position: serde_json::Value,
    pub(super) covered: HashMap<String, usize>,
    pub(super) sinks_covered: HashMap<String, u64>,
    pub(super) logged: usize,
    pub(super) began: Instant,
}

impl Checkpointer {
    pub(super) fn new(
        mut store: CheckpointStore,
        interval: Duration,
        persisted: HashMap<String, usize>,
        sink_persisted: HashMap<String, u64>,
    ) -> Result<Self> {
        let (jobs, inbox) = sync_channel::<Snapshot>(1);
        let (outbox, done) = sync_channel::<Result<WriteReport>>(1);
        let writer = std::thread::Builder::new()
            .name("weir-checkpoint".into())
            .spawn(move || {
                for snapshot in inbox {
                    if outbox.send(store.write(snapshot)).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| EngineError::Internal(format!("spawning checkpoint writer: {e}")))?;
        Ok(Self {
            interval,
            last: Instant::now(),
            dirty: true,
            persisted,
            sink_persisted,
            sinks_behind: false,
            pending_log: Vec::new(),
            in_flight: None,
            sink_files: None,
            history: None,
            jobs: Some(jobs),
            done,
            writer: Some(writer),
        })
    }

    /// How many more dead letters and late events may wait for the next checkpoint: while
    /// checkpoints fail they pile up, and no more are kept than `weir.dead_letters` holds
    /// (the relation keeps the newest in memory either way; the counters count them all).
    pub(super) fn log_room(&self) -> usize {
        crate::serving::system::SYSTEM_LOG_CAPACITY.saturating_sub(self.pending_log.len())
    }

    pub(super) fn send(
        &mut self,
        snapshot: Snapshot,
        covered: HashMap<String, usize>,
        sinks_covered: HashMap<String, u64>,
        began: Instant,
    ) {
        let logged = snapshot.new_log.len();
        let position = snapshot.position.clone();
        let sent = self.jobs.as_ref().is_some_and(|j| j.send(snapshot).is_ok());
        if sent {
            self.in_flight = Some(InFlight {
                position,
                covered,
                sinks_covered,
                logged,
                began,
            });
        } else {
            self.dirty = true;
        }
    }

    /// Takes the result of the checkpoint being written, if it is done (`wait`: once done).
    pub(super) fn collect(&mut self, stats: &SourceStats, source: &str, wait: bool) {
        let Some(in_flight) = self.in_flight.as_ref() else {
            return;
        };
        let result = if wait {
            self.done.recv().map_err(|_| ())
        } else {
            match self.done.try_recv() {
                Ok(r) => Ok(r),
                Err(std::sync::mpsc::TryRecvError::Empty) => return,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(()),
            }
        };
        let took = in_flight.began.elapsed();
        let in_flight = self.in_flight.take().expect("in flight");
        match result {
            Ok(Ok(report)) => {
                self.persisted = in_flight.covered;
                self.sink_persisted = in_flight.sinks_covered;
                self.pending_log.drain(..in_flight.logged);
                *stats.committed.lock() = Some(in_flight.position);
                stats.record_checkpoint(report.epoch, report.bytes, report.total_bytes, took);
                self.sink_files = Some(report.sink_files);
                if !report.history.is_empty() {
                    self.history = Some((report.history_root, report.history));
                }
                tracing::debug!(
                    source,
                    epoch = report.epoch,
                    bytes = report.bytes,
                    micros = took.as_micros() as u64,
                    "checkpoint written"
                );
            }
            Ok(Err(e)) => {
                tracing::error!(source, error = %e, "checkpoint failed; retrying at the next interval");
                stats.checkpoint_failures.fetch_add(1, Ordering::Relaxed);
                *stats.checkpoint_error.lock() = Some(e.to_string());
                self.dirty = true;
            }
            Err(()) => {
                tracing::error!(source, "checkpoint writer stopped");
                self.dirty = true;
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the queue ends the writer after the checkpoint it is writing.
        self.jobs = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}
