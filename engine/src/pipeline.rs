//! The engine: sources, their pipelines, and the views they feed.
//!
//! Each source with at least one view runs two threads: a reader (I/O and decoding, in the
//! connector) and a processor (watermark, lateness, every view over the source), joined by a
//! bounded channel so a slow view applies backpressure to the reader. Views over views run
//! in the same processor, fed with the rows their upstream view emitted.
//!
//! Until checkpoints exist, adding a view replays its source from the start, so every view
//! sees the whole stream; dropping a view removes it without a replay.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::Utc;
use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::{Mutex, RwLock};

use crate::aggregate::timestamps_ns;
use crate::error::{EngineError, Result};
use crate::source::{Poll, SourceBatch, SourceFactory, SourceRegistry, SourceSpec, SourceStatus};
use crate::system::{DeadLetterRow, LateEventRow, SourceStats, SystemLog};
use crate::view::ViewRuntime;
use crate::watermark::WatermarkTracker;

/// `WATERMARK FOR column AS column - delay`.
#[derive(Debug, Clone, Copy)]
pub struct WatermarkDecl {
    /// Index of the event-time column in the source schema.
    pub column: usize,
    /// Declared delay in nanoseconds.
    pub delay_ns: i64,
}

/// A view attached to a source pipeline.
#[derive(Debug, Clone)]
struct ViewNode {
    view: Arc<ViewRuntime>,
    /// Upstream view, or `None` when the view reads the source itself.
    parent: Option<String>,
}

struct Running {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

struct SourceEntry {
    spec: SourceSpec,
    factory: Arc<dyn SourceFactory>,
    watermark: Option<WatermarkDecl>,
    stats: Arc<SourceStats>,
    views: Arc<RwLock<Vec<ViewNode>>>,
    running: Option<Running>,
}

/// Facts about one source, for `weir.sources`.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub name: String,
    pub connector: String,
    pub spec: SourceSpec,
    pub stats: Arc<SourceStats>,
    pub views: Vec<String>,
}

/// The streaming engine.
pub struct Engine {
    registry: SourceRegistry,
    system: Arc<SystemLog>,
    sources: Mutex<BTreeMap<String, SourceEntry>>,
    runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("sources", &self.sources.lock().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Engine {
    /// An engine with the given connectors.
    pub fn new(registry: SourceRegistry) -> Self {
        Self {
            registry,
            system: Arc::new(SystemLog::default()),
            sources: Mutex::new(BTreeMap::new()),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// The connectors.
    pub fn registry(&self) -> &SourceRegistry {
        &self.registry
    }

    /// Dead letters and late events.
    pub fn system(&self) -> &Arc<SystemLog> {
        &self.system
    }

    /// Registers a source. It starts reading when its first view is added.
    pub fn add_source(&self, spec: SourceSpec, watermark: Option<WatermarkDecl>) -> Result<()> {
        let connector = spec.options.get("connector").cloned().unwrap_or_default();
        let factory = self.registry.get(&connector)?;
        let entry = SourceEntry {
            spec: spec.clone(),
            factory,
            watermark,
            stats: Arc::new(SourceStats::default()),
            views: Arc::new(RwLock::new(Vec::new())),
            running: None,
        };
        self.sources.lock().insert(spec.name.clone(), entry);
        Ok(())
    }

    /// Stops and forgets a source (its views must have been dropped).
    pub fn drop_source(&self, name: &str) {
        let entry = self.sources.lock().remove(name);
        if let Some(mut entry) = entry {
            stop(entry.running.take());
        }
        self.system.forget_source(name);
    }

    /// Attaches a view to `source` (reading `parent`'s output when given) and replays the
    /// source so the view sees the whole stream.
    pub fn add_view(
        &self,
        source: &str,
        parent: Option<&str>,
        view: Arc<ViewRuntime>,
    ) -> Result<()> {
        let mut sources = self.sources.lock();
        let entry = sources
            .get_mut(source)
            .ok_or_else(|| EngineError::Internal(format!("source {source} is not registered")))?;
        entry.views.write().push(ViewNode {
            view,
            parent: parent.map(str::to_string),
        });
        self.restart(entry)
    }

    /// Detaches a view; the pipeline keeps running for the others.
    pub fn drop_view(&self, name: &str) {
        let mut sources = self.sources.lock();
        for entry in sources.values_mut() {
            let mut views = entry.views.write();
            views.retain(|n| n.view.name() != name);
            let empty = views.is_empty();
            drop(views);
            if empty {
                stop(entry.running.take());
                entry.stats.set_status("idle (no views)");
            }
        }
    }

    /// Facts about all sources.
    pub fn sources(&self) -> Vec<SourceInfo> {
        self.sources
            .lock()
            .values()
            .map(|e| SourceInfo {
                name: e.spec.name.clone(),
                connector: e.factory.name().to_string(),
                spec: e.spec.clone(),
                stats: e.stats.clone(),
                views: e
                    .views
                    .read()
                    .iter()
                    .map(|n| n.view.name().to_string())
                    .collect(),
            })
            .collect()
    }

    /// Stats of one source.
    pub fn source_stats(&self, name: &str) -> Option<Arc<SourceStats>> {
        self.sources.lock().get(name).map(|e| e.stats.clone())
    }

    /// Blocks until `source` has processed all input available now (a bounded source: all
    /// of it), failed, or `timeout` passed. Returns whether it caught up.
    pub fn wait_caught_up(&self, source: &str, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.source_stats(source) {
                Some(s) if s.caught_up.load(Ordering::Acquire) => return true,
                Some(s) if s.is_failing() => return false,
                None => return false,
                _ => {}
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops every pipeline.
    pub fn shutdown(&self) {
        let mut sources = self.sources.lock();
        for entry in sources.values_mut() {
            stop(entry.running.take());
            entry.stats.set_status("stopped");
        }
    }

    fn restart(&self, entry: &mut SourceEntry) -> Result<()> {
        stop(entry.running.take());
        entry.stats.reset();
        self.system.forget_source(&entry.spec.name);
        for node in entry.views.read().iter() {
            node.view.reset()?;
        }
        let stop_flag = Arc::new(AtomicBool::new(false));
        let (tx, rx) = sync_channel::<Message>(8);

        let reader = {
            let stop_flag = stop_flag.clone();
            let factory = entry.factory.clone();
            let spec = entry.spec.clone();
            let stats = entry.stats.clone();
            std::thread::Builder::new()
                .name(format!("weir-read-{}", entry.spec.name))
                .spawn(move || read_loop(factory, spec, stats, stop_flag, tx))
                .map_err(|e| EngineError::Internal(format!("spawning reader: {e}")))?
        };
        let processor = {
            let mut pipeline = Processor {
                source: entry.spec.name.clone(),
                watermark_decl: entry.watermark,
                tracker: WatermarkTracker::new(entry.watermark.map(|w| w.delay_ns).unwrap_or(0)),
                stats: entry.stats.clone(),
                system: self.system.clone(),
                views: entry.views.clone(),
            };
            let stop_flag = stop_flag.clone();
            let runtime = self.runtime.clone();
            std::thread::Builder::new()
                .name(format!("weir-proc-{}", entry.spec.name))
                .spawn(move || {
                    let _guard = runtime.as_ref().map(|h| h.enter());
                    pipeline.run(rx, stop_flag)
                })
                .map_err(|e| EngineError::Internal(format!("spawning processor: {e}")))?
        };
        entry.running = Some(Running {
            stop: stop_flag,
            threads: vec![reader, processor],
        });
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn stop(running: Option<Running>) {
    if let Some(running) = running {
        running.stop.store(true, Ordering::Release);
        for t in running.threads {
            let _ = t.join();
        }
    }
}

// One message per micro-batch: the size of the empty variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Message {
    Batch(SourceBatch),
    Idle,
    Waiting,
    End,
}

fn read_loop(
    factory: Arc<dyn SourceFactory>,
    spec: SourceSpec,
    stats: Arc<SourceStats>,
    stop: Arc<AtomicBool>,
    tx: std::sync::mpsc::SyncSender<Message>,
) {
    let mut source = match factory.open(&spec) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(source = %spec.name, error = %e, "cannot open source");
            stats.set_status(format!("error: {e}"));
            return;
        }
    };
    stats.set_status("running");
    let mut status = SourceStatus::Running;
    while !stop.load(Ordering::Acquire) {
        let polled = source.next_batch();
        let now = source.status();
        if now != status {
            match &now {
                SourceStatus::Running => tracing::info!(source = %spec.name, "source running"),
                other => {
                    tracing::warn!(source = %spec.name, status = %other.text(), "source unhealthy")
                }
            }
            stats.set_status(now.text());
            status = now;
        }
        let splits = source.splits();
        if !splits.is_empty() {
            *stats.splits.lock() = splits;
        }
        let msg = match polled {
            Ok(Poll::Batch(b)) => Message::Batch(b),
            Ok(Poll::Idle) => Message::Idle,
            Ok(Poll::Waiting) => Message::Waiting,
            Ok(Poll::End) => Message::End,
            Err(e) => {
                tracing::error!(source = %spec.name, error = %e, "source failed");
                stats.set_status(format!("error: {e}"));
                return;
            }
        };
        let end = matches!(msg, Message::End);
        let idle = matches!(msg, Message::Idle | Message::Waiting);
        // Send, but keep watching the stop flag while the processor applies backpressure.
        let mut msg = Some(msg);
        while let Some(m) = msg.take() {
            match tx.try_send(m) {
                Ok(()) => {}
                Err(std::sync::mpsc::TrySendError::Full(m)) => {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    msg = Some(m);
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return,
            }
        }
        if end {
            return;
        }
        if idle {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

struct Processor {
    source: String,
    watermark_decl: Option<WatermarkDecl>,
    tracker: WatermarkTracker,
    stats: Arc<SourceStats>,
    system: Arc<SystemLog>,
    views: Arc<RwLock<Vec<ViewNode>>>,
}

impl Processor {
    fn run(&mut self, rx: Receiver<Message>, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Acquire) {
            let msg = match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let result = match msg {
                Message::Batch(b) => self.on_batch(b),
                Message::Idle => {
                    self.mark_caught_up();
                    Ok(())
                }
                Message::Waiting => Ok(()),
                Message::End => {
                    self.tracker.finish();
                    let wm = self.tracker.watermark();
                    self.stats.watermark.store(wm, Ordering::Relaxed);
                    let r = self.dispatch(None, Vec::new(), wm);
                    self.stats.set_status("finished");
                    self.mark_caught_up();
                    r
                }
            };
            if let Err(e) = result {
                tracing::error!(source = %self.source, error = %e, "pipeline failed");
                self.stats.set_status(format!("error: {e}"));
                return;
            }
        }
    }

    fn mark_caught_up(&self) {
        for node in self.views.read().iter() {
            node.view.stats.caught_up.store(true, Ordering::Release);
        }
        self.stats.caught_up.store(true, Ordering::Release);
    }

    fn on_batch(&mut self, b: SourceBatch) -> Result<()> {
        let now = Utc::now();
        let n = b.batch.num_rows();
        self.stats.events_in.fetch_add(n as u64, Ordering::Relaxed);
        *self.stats.position.lock() = b.position.clone();
        if !b.dead_letters.is_empty() {
            self.stats
                .dead_letters
                .fetch_add(b.dead_letters.len() as u64, Ordering::Relaxed);
            let source = self.source.clone();
            self.system
                .add_dead_letters(b.dead_letters.into_iter().map(|d| DeadLetterRow {
                    source: source.clone(),
                    location: d.location,
                    raw: d.raw,
                    error: d.error,
                    received_at: now,
                }));
        }
        let Some(decl) = self.watermark_decl else {
            let wm = self.tracker.watermark();
            return self.dispatch(None, vec![b.batch], wm);
        };
        let times = timestamps_ns(b.batch.column(decl.column))?;
        if b.holding_splits.is_some() {
            self.tracker.set_holding(b.holding_splits.clone());
        }
        let late = self.tracker.observe(times.iter(), b.origins.splits());
        let mut keep = Vec::with_capacity(n);
        let mut dead = Vec::new();
        let mut late_rows = Vec::new();
        for (i, missed) in late.iter().enumerate() {
            if times.is_null(i) {
                dead.push(i);
            } else if let Some(wm) = missed {
                late_rows.push((i, *wm));
            }
            keep.push(times.is_valid(i) && missed.is_none());
        }
        if !dead.is_empty() {
            self.stats
                .dead_letters
                .fetch_add(dead.len() as u64, Ordering::Relaxed);
            let column = b.batch.schema().field(decl.column).name().clone();
            self.system
                .add_dead_letters(dead.iter().map(|&i| DeadLetterRow {
                    source: self.source.clone(),
                    location: b.origins.location(&self.source, i),
                    raw: b.origins.raw(i).unwrap_or_default(),
                    error: format!("event time column \"{column}\" is null or missing"),
                    received_at: now,
                }));
        }
        if !late_rows.is_empty() {
            self.stats
                .late_events
                .fetch_add(late_rows.len() as u64, Ordering::Relaxed);
            self.system
                .add_late_events(late_rows.iter().map(|&(i, wm)| LateEventRow {
                    source: self.source.clone(),
                    location: b.origins.location(&self.source, i),
                    event_time: times.value(i),
                    watermark: wm,
                    raw: b.origins.raw(i),
                    received_at: now,
                }));
        }
        let on_time = if keep.iter().all(|k| *k) {
            b.batch
        } else {
            filter_record_batch(&b.batch, &BooleanArray::from(keep))?
        };
        let wm = self.tracker.watermark();
        self.stats.watermark.store(wm, Ordering::Relaxed);
        if b.origins.splits().is_some() {
            *self.stats.split_watermarks.lock() = self.tracker.split_watermarks();
        }
        self.dispatch(None, vec![on_time], wm)
    }

    /// Feeds `batches` to every view whose input is `parent` (the source when `None`), then
    /// their emitted rows to their own dependants.
    fn dispatch(&self, parent: Option<&str>, batches: Vec<RecordBatch>, wm: i64) -> Result<()> {
        let nodes: Vec<ViewNode> = self
            .views
            .read()
            .iter()
            .filter(|n| n.parent.as_deref() == parent)
            .cloned()
            .collect();
        for node in nodes {
            let emitted = node.view.process(batches.clone(), wm)?;
            let child_wm = node.view.output_watermark(wm);
            self.dispatch(Some(node.view.name()), emitted, child_wm)?;
        }
        Ok(())
    }
}
