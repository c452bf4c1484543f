//! The engine: sources, their pipelines, and the views they feed.
//!
//! A *pipeline* is a reader thread (I/O and decoding, in the connector) and a processor
//! thread (watermark, lateness, every view of the pipeline), joined by a bounded channel so
//! a slow view applies backpressure to the reader. Views over views run in the processor of
//! the view they read, fed with the rows it emitted.
//!
//! A pipeline is also the unit of checkpoints (see [`crate::checkpoint`]): the processor
//! writes its views' state with the source position between two batches, and on start a
//! pipeline resumes from its last checkpoint. When the engine starts, all views of a source
//! without a checkpoint share one new pipeline. A view created later on a running source
//! gets a pipeline of its own that reads the source from its start (a backfill) and then
//! stays live, so the other pipelines and their checkpoints are never touched. A view over a
//! view joins its parent's pipeline, seeded with the rows the parent has emitted.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::{Mutex, RwLock};

mod readers;

use readers::Readers;

use crate::aggregate::timestamps_ns;
use crate::checkpoint::{
    CheckpointConfig, CheckpointStore, LogRecord, Restored, Snapshot, WriteReport,
};
use crate::error::{EngineError, Result};
use crate::sink::{RestoredSink, SinkRuntime};
use crate::source::{Poll, SourceBatch, SourceFactory, SourceRegistry, SourceSpec, SourceStatus};
use crate::system::{
    bounded_raw, CheckpointSummary, DeadLetterRow, LateEventRow, SourceStats, SystemLog,
};
use crate::view::ViewRuntime;
use crate::watermark::WatermarkTracker;

/// How often an alert rule over an `EMIT ON UPDATE` view sees the view's open windows.
const ALERT_UPDATE_INTERVAL: Duration = Duration::from_millis(500);

/// `WATERMARK FOR column AS column - delay`.
#[derive(Debug, Clone, Copy)]
pub struct WatermarkDecl {
    /// Index of the event-time column in the source schema.
    pub column: usize,
    /// Declared delay in nanoseconds.
    pub delay_ns: i64,
    /// Events dated more than this far (ns) past the wall clock are dead letters instead of
    /// moving the watermark (`max_future`; `None`: no guard).
    pub max_future_ns: Option<i64>,
}

/// A view attached to a pipeline.
#[derive(Debug, Clone)]
struct ViewNode {
    view: Arc<ViewRuntime>,
    /// Upstream view, or `None` when the view reads the source itself.
    parent: Option<String>,
}

/// A sink attached to a pipeline.
#[derive(Debug, Clone)]
pub struct SinkNode {
    pub sink: Arc<SinkRuntime>,
    /// The view it reads, or `None` for the source's events.
    pub view: Option<String>,
}

impl SinkNode {
    fn reads(&self, view: Option<&str>) -> bool {
        self.view.as_deref() == view
    }
}

struct Running {
    stop: Arc<AtomicBool>,
    /// Set with `stop` to leave without the last checkpoint.
    abort: Arc<AtomicBool>,
    reader: JoinHandle<()>,
    processor: JoinHandle<Processor>,
}

/// One reader + processor and the views it maintains.
struct Pipeline {
    id: u64,
    views: Arc<RwLock<Vec<ViewNode>>>,
    sinks: Arc<RwLock<Vec<SinkNode>>>,
    stats: Arc<SourceStats>,
    /// The source's oldest pipeline records dead letters and late events.
    primary: Arc<AtomicBool>,
    running: Option<Running>,
}

impl Pipeline {
    fn contains(&self, view: &str) -> bool {
        self.views.read().iter().any(|n| n.view.name() == view)
    }

    fn is_empty(&self) -> bool {
        self.views.read().is_empty() && self.sinks.read().is_empty()
    }

    /// Stops the threads (the processor writes a last checkpoint) and returns the processor
    /// with its state, unless it panicked.
    fn stop(&mut self) -> Option<Processor> {
        let running = self.running.take()?;
        running.stop.store(true, Ordering::Release);
        let _ = running.reader.join();
        running.processor.join().ok()
    }
}

struct SourceEntry {
    spec: SourceSpec,
    factory: Arc<dyn SourceFactory>,
    watermark: Option<WatermarkDecl>,
    /// Shown while the source has no pipeline.
    idle_stats: Arc<SourceStats>,
    /// Oldest first; the first is the primary.
    pipelines: Vec<Pipeline>,
    /// Views added before [`Engine::start`].
    pending: Vec<ViewNode>,
    /// Sinks added before [`Engine::start`].
    pending_sinks: Vec<SinkNode>,
    next_pipeline: u64,
    /// Its pipelines' committed positions, for the connector.
    readers: Arc<Readers>,
}

impl SourceEntry {
    fn stats(&self) -> Arc<SourceStats> {
        self.pipelines
            .first()
            .map(|p| p.stats.clone())
            .unwrap_or_else(|| self.idle_stats.clone())
    }
}

/// Facts about one source, for `weir.sources`.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub name: String,
    pub connector: String,
    pub spec: SourceSpec,
    pub stats: Arc<SourceStats>,
    pub views: Vec<String>,
    /// Number of pipelines reading the source.
    pub pipelines: usize,
    /// The checkpoints of all its pipelines.
    pub checkpoints: CheckpointSummary,
}

/// The streaming engine.
pub struct Engine {
    registry: SourceRegistry,
    system: Arc<SystemLog>,
    sources: Mutex<BTreeMap<String, SourceEntry>>,
    runtime: Option<tokio::runtime::Handle>,
    checkpoints: Option<CheckpointConfig>,
    started: AtomicBool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("sources", &self.sources.lock().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Engine {
    /// An engine with the given connectors and no checkpoints. Pipelines start at
    /// [`start`](Self::start).
    pub fn new(registry: SourceRegistry) -> Self {
        Self {
            registry,
            system: Arc::new(SystemLog::default()),
            sources: Mutex::new(BTreeMap::new()),
            runtime: tokio::runtime::Handle::try_current().ok(),
            checkpoints: None,
            started: AtomicBool::new(false),
        }
    }

    /// An engine that checkpoints every pipeline and resumes from checkpoints at start.
    pub fn with_checkpoints(registry: SourceRegistry, config: CheckpointConfig) -> Self {
        let mut engine = Self::new(registry);
        engine.checkpoints = Some(config);
        engine
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
        if let (true, Some(c)) = (self.started.load(Ordering::Acquire), &self.checkpoints) {
            // A new source: anything stored under its name is left over from an older one.
            CheckpointStore::remove_source(&c.dir, &spec.name);
        }
        let idle_stats = Arc::new(SourceStats::default());
        idle_stats.set_status("idle (no views)");
        let readers = Arc::new(Readers::new(
            factory.clone(),
            spec.clone(),
            self.started.load(Ordering::Acquire),
        ));
        let entry = SourceEntry {
            spec: spec.clone(),
            factory,
            readers,
            watermark,
            idle_stats,
            pipelines: Vec::new(),
            pending: Vec::new(),
            pending_sinks: Vec::new(),
            next_pipeline: 0,
        };
        self.sources.lock().insert(spec.name.clone(), entry);
        Ok(())
    }

    /// Stops and forgets a source (its views must have been dropped), checkpoints included.
    pub fn drop_source(&self, name: &str) {
        let entry = self.sources.lock().remove(name);
        if let Some(mut entry) = entry {
            for p in &mut entry.pipelines {
                p.stop();
                for s in p.sinks.read().iter() {
                    s.sink.stop();
                }
            }
        }
        if let Some(c) = &self.checkpoints {
            CheckpointStore::remove_source(&c.dir, name);
        }
        self.system.forget_source(name);
    }

    /// Attaches a view to `source` (reading `parent`'s output when given). Before
    /// [`start`](Self::start) this only records it. After, a view over the source gets a
    /// pipeline of its own that backfills from the start of the source; a view over a view
    /// joins its parent's pipeline, seeded with the parent's emitted rows.
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
        let node = ViewNode {
            view,
            parent: parent.map(str::to_string),
        };
        if !self.started.load(Ordering::Acquire) {
            entry.pending.push(node);
            return Ok(());
        }
        match parent {
            None => {
                let id = entry.next_pipeline;
                entry.next_pipeline += 1;
                let mut draft = Draft::fresh(id, self.checkpoints.as_ref(), &entry.spec.name);
                draft.nodes.push(node);
                self.launch(entry, draft)
            }
            Some(parent) => {
                let i = entry
                    .pipelines
                    .iter()
                    .position(|p| p.contains(parent))
                    .ok_or_else(|| {
                        EngineError::Internal(format!("view {parent} has no pipeline"))
                    })?;
                let pipeline = &mut entry.pipelines[i];
                let Some(processor) = pipeline.stop() else {
                    return Err(EngineError::Internal(format!(
                        "the pipeline of view {parent} crashed"
                    )));
                };
                let seeded = seed(&pipeline.views.read(), &node, processor.tracker.watermark());
                pipeline.views.write().push(node);
                let started = self.spawn(entry, i, processor);
                seeded.and(started)
            }
        }
    }

    /// Attaches a sink to `source`'s events or to one of its views (`node.view`). Before
    /// [`start`](Self::start) this only records it. After, a sink on a view joins the view's
    /// pipeline and first gets every row the view has (its emitted rows, and the open
    /// windows of an updating view); a sink on the source gets a pipeline of its own that
    /// reads the source from its start, like a new view.
    pub fn add_sink(&self, source: &str, node: SinkNode) -> Result<()> {
        let mut sources = self.sources.lock();
        let entry = sources
            .get_mut(source)
            .ok_or_else(|| EngineError::Internal(format!("source {source} is not registered")))?;
        if !self.started.load(Ordering::Acquire) {
            entry.pending_sinks.push(node);
            return Ok(());
        }
        let target = match &node.view {
            Some(view) => Some(
                entry
                    .pipelines
                    .iter()
                    .position(|p| p.contains(view))
                    .ok_or_else(|| EngineError::Internal(format!("view {view} has no pipeline")))?,
            ),
            None => None,
        };
        let Some(i) = target else {
            let id = entry.next_pipeline;
            entry.next_pipeline += 1;
            let mut draft = Draft::fresh(id, self.checkpoints.as_ref(), &entry.spec.name);
            node.sink.start()?;
            draft.sinks.push(node);
            return self.launch(entry, draft);
        };
        let pipeline = &mut entry.pipelines[i];
        let Some(processor) = pipeline.stop() else {
            return Err(EngineError::Internal(format!(
                "the pipeline of source {source} crashed"
            )));
        };
        node.sink.start()?;
        let seeded = seed_sink(&pipeline.views.read(), &node);
        pipeline.sinks.write().push(node);
        let started = self.spawn(entry, i, processor);
        seeded.and(started)
    }

    /// Detaches and stops a sink. Rows it had not written are dropped with it.
    pub fn drop_sink(&self, name: &str) {
        let mut sources = self.sources.lock();
        for entry in sources.values_mut() {
            entry.pending_sinks.retain(|n| n.sink.name() != name);
            for p in &entry.pipelines {
                let found = p
                    .sinks
                    .read()
                    .iter()
                    .find(|n| n.sink.name() == name)
                    .cloned();
                if let Some(node) = found {
                    // Stopped first: a processor waiting for room in its queue lets go.
                    node.sink.stop();
                    p.sinks.write().retain(|n| n.sink.name() != name);
                }
            }
            self.retire_empty(entry);
        }
    }

    /// Every sink, with the source it is fed from.
    pub fn sinks(&self) -> Vec<(String, Arc<SinkRuntime>)> {
        let sources = self.sources.lock();
        let mut out = Vec::new();
        for (name, e) in sources.iter() {
            for n in &e.pending_sinks {
                out.push((name.clone(), n.sink.clone()));
            }
            for p in &e.pipelines {
                for n in p.sinks.read().iter() {
                    out.push((name.clone(), n.sink.clone()));
                }
            }
        }
        out
    }

    /// Stops pipelines left with neither views nor sinks and deletes their checkpoints.
    fn retire_empty(&self, entry: &mut SourceEntry) {
        let mut i = 0;
        while i < entry.pipelines.len() {
            if !entry.pipelines[i].is_empty() {
                i += 1;
                continue;
            }
            let mut p = entry.pipelines.remove(i);
            p.stop();
            entry.readers.leave(&p.stats);
            if let Some(c) = &self.checkpoints {
                let _ = std::fs::remove_dir_all(CheckpointStore::pipeline_dir(
                    &c.dir,
                    &entry.spec.name,
                    p.id,
                ));
            }
        }
        if let Some(first) = entry.pipelines.first() {
            first.primary.store(true, Ordering::Release);
        }
    }

    /// Starts every source's pipelines, resuming from checkpoints. Views recorded before
    /// start whose state is in a checkpoint (same definition) resume from it; the others
    /// share a new pipeline that reads their source from its start.
    pub fn start(&self) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut sources = self.sources.lock();
        for entry in sources.values_mut() {
            let pending = std::mem::take(&mut entry.pending);
            let sinks = std::mem::take(&mut entry.pending_sinks);
            let started = self.start_source(entry, pending, sinks);
            entry.readers.set_ready();
            if let Err(e) = started {
                let hint = match (&e, &self.checkpoints) {
                    (EngineError::Checkpoint(_), Some(_)) => {
                        "; to discard it and rebuild the views from their sources, start weir with --rebuild-state"
                    }
                    _ => "",
                };
                tracing::error!(source = %entry.spec.name, error = %e, "cannot start source");
                entry.idle_stats.set_status(format!("error: {e}{hint}"));
            }
        }
    }

    fn start_source(
        &self,
        entry: &mut SourceEntry,
        views: Vec<ViewNode>,
        sinks: Vec<SinkNode>,
    ) -> Result<()> {
        let source = entry.spec.name.clone();
        let name = &source;
        let mut drafts: Vec<Draft> = Vec::new();
        if let Some(config) = &self.checkpoints {
            for id in CheckpointStore::pipelines(&config.dir, name) {
                entry.next_pipeline = entry.next_pipeline.max(id + 1);
                let mut store = CheckpointStore::new(&config.dir, name, id);
                match store.load() {
                    Ok(Some(restored)) => drafts.push(Draft {
                        id,
                        store: Some(store),
                        restored: Some(restored),
                        ..Draft::fresh(id, None, name)
                    }),
                    Ok(None) => store.remove(),
                    Err(e) if config.rebuild_incompatible => {
                        tracing::warn!(source = %name, error = %e, "discarding checkpoint; state is rebuilt from the source");
                        store.remove();
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        merge_drafts(&mut drafts);
        let mut fresh: Option<usize> = None;
        for node in views {
            let name = node.view.name().to_string();
            // Resume from a checkpoint of the same definition (a view over a view only
            // together with its parent).
            let home = drafts.iter().position(|d| {
                let Some(r) = d.restored.as_ref() else {
                    return false;
                };
                r.views
                    .get(&name)
                    .is_some_and(|v| v.meta.fingerprint == node.view.fingerprint())
                    && node.parent.as_ref().is_none_or(|p| d.has(p))
            });
            if let Some(i) = home {
                let d = &mut drafts[i];
                let restored = &d.restored.as_ref().expect("restored draft").views[&name];
                match node.view.restore(restored) {
                    Ok(batches) => {
                        tracing::info!(view = %name, epoch = d.restored.as_ref().map(|r| r.manifest.epoch), groups = node.view.groups(), "view state restored from checkpoint");
                        // Rows of a view merged in from another pipeline are rewritten here.
                        let batches = if d.merged.contains(&name) { 0 } else { batches };
                        d.persisted.insert(name, batches);
                        d.nodes.push(node);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(view = %name, error = %e, "cannot restore view state; rebuilding it from the source");
                        node.view.reset()?;
                    }
                }
            }
            if let Some(parent) = &node.parent {
                if let Some(d) = drafts.iter_mut().find(|d| d.has(parent)) {
                    let wm = d
                        .restored
                        .as_ref()
                        .map(|r| r.manifest.tracker.watermark())
                        .unwrap_or(i64::MIN);
                    let nodes = std::mem::take(&mut d.nodes);
                    let seeded = seed(&nodes, &node, wm);
                    d.nodes = nodes;
                    seeded?;
                    d.nodes.push(node);
                    continue;
                }
            }
            let i = *fresh.get_or_insert_with(|| {
                let id = entry.next_pipeline;
                entry.next_pipeline += 1;
                drafts.push(Draft::fresh(id, self.checkpoints.as_ref(), &source));
                drafts.len() - 1
            });
            drafts[i].nodes.push(node);
        }
        drafts.sort_by_key(|d| d.id);
        for node in sinks {
            let name = node.sink.name().to_string();
            // Resume the queue of the same definition, in the pipeline of its view.
            let home = drafts.iter().position(|d| {
                d.restored.as_ref().is_some_and(|r| {
                    r.sinks
                        .get(&name)
                        .is_some_and(|k| k.fingerprint == node.sink.fingerprint())
                }) && node.view.as_ref().is_none_or(|v| d.has(v))
            });
            if let Some(i) = home {
                let d = &mut drafts[i];
                let restored: &RestoredSink = &d.restored.as_ref().expect("restored").sinks[&name];
                node.sink.restore(restored);
                let persisted = if d.merged_sinks.contains(&name) {
                    0
                } else {
                    restored.pushed
                };
                d.sink_persisted.insert(name, persisted);
                node.sink.start()?;
                d.sinks.push(node);
                continue;
            }
            let i = match &node.view {
                Some(v) => drafts.iter().position(|d| d.has(v)).ok_or_else(|| {
                    EngineError::Internal(format!("view {v} of sink {name} has no pipeline"))
                })?,
                // A sink on the source without a checkpoint reads it from its start, with
                // the views that do.
                None => match drafts.iter().position(|d| d.restored.is_none()) {
                    Some(i) => i,
                    None => {
                        let id = entry.next_pipeline;
                        entry.next_pipeline += 1;
                        drafts.push(Draft::fresh(id, self.checkpoints.as_ref(), &source));
                        drafts.len() - 1
                    }
                },
            };
            node.sink.start()?;
            // A new sink on a restored view starts with the rows the view already has.
            seed_sink(&drafts[i].nodes, &node)?;
            drafts[i].sinks.push(node);
        }
        for draft in drafts {
            if draft.nodes.is_empty() && draft.sinks.is_empty() {
                // Every view it held was dropped or redefined.
                for store in draft.store.iter().chain(&draft.absorbed) {
                    store.remove();
                }
                continue;
            }
            self.launch(entry, draft)?;
        }
        Ok(())
    }

    /// Builds a pipeline from a draft and starts it.
    fn launch(&self, entry: &mut SourceEntry, draft: Draft) -> Result<()> {
        let primary = entry.pipelines.is_empty();
        let stats = Arc::new(SourceStats::default());
        let mut processor = Processor {
            source: entry.spec.name.clone(),
            watermark_decl: entry.watermark,
            tracker: WatermarkTracker::new(entry.watermark.map(|w| w.delay_ns).unwrap_or(0)),
            stats: stats.clone(),
            system: self.system.clone(),
            views: Arc::new(RwLock::new(draft.nodes)),
            sinks: Arc::new(RwLock::new(draft.sinks)),
            stop: Arc::new(AtomicBool::new(false)),
            primary: Arc::new(AtomicBool::new(primary)),
            position: serde_json::Value::Null,
            checkpointer: None,
            readers: entry.readers.clone(),
            failed: false,
        };
        if let Some(config) = &self.checkpoints {
            let store = draft
                .store
                .unwrap_or_else(|| CheckpointStore::new(&config.dir, &entry.spec.name, draft.id));
            processor.checkpointer = Some(Checkpointer::new(
                store,
                config.interval,
                draft.persisted,
                draft.sink_persisted,
            )?);
        }
        if let Some(restored) = draft.restored {
            processor.resume(restored);
        }
        if !draft.absorbed.is_empty() {
            // The merged views' state must be in this pipeline's checkpoint before the
            // pipelines they came from are deleted.
            processor.checkpoint(true);
            if processor.checkpointer.as_ref().is_some_and(|c| !c.dirty) {
                for store in &draft.absorbed {
                    store.remove();
                }
            }
        }
        entry.readers.join(&stats);
        entry.pipelines.push(Pipeline {
            id: draft.id,
            views: processor.views.clone(),
            sinks: processor.sinks.clone(),
            stats,
            primary: processor.primary.clone(),
            running: None,
        });
        self.spawn(entry, entry.pipelines.len() - 1, processor)
    }

    /// Starts the threads of pipeline `i` with `processor`, its reader at the processor's
    /// position.
    fn spawn(&self, entry: &mut SourceEntry, i: usize, mut processor: Processor) -> Result<()> {
        let pipeline = &mut entry.pipelines[i];
        let stop_flag = Arc::new(AtomicBool::new(false));
        let abort = Arc::new(AtomicBool::new(false));
        let (tx, rx) = sync_channel::<Message>(8);
        processor.stats.caught_up.store(false, Ordering::Release);
        processor.stop = stop_flag.clone();
        if processor.checkpointer.is_some() {
            for s in processor.sinks.read().iter() {
                s.sink.set_checkpointed();
            }
        }
        let reader = {
            let stop_flag = stop_flag.clone();
            let factory = entry.factory.clone();
            let spec = entry.spec.clone();
            let stats = pipeline.stats.clone();
            let position = processor.position.clone();
            std::thread::Builder::new()
                .name(format!("weir-read-{}", entry.spec.name))
                .spawn(move || read_loop(factory, spec, position, stats, stop_flag, tx))
                .map_err(|e| EngineError::Internal(format!("spawning reader: {e}")))?
        };
        let processor = {
            let stop_flag = stop_flag.clone();
            let abort = abort.clone();
            let runtime = self.runtime.clone();
            std::thread::Builder::new()
                .name(format!("weir-proc-{}", entry.spec.name))
                .spawn(move || {
                    let _guard = runtime.as_ref().map(|h| h.enter());
                    processor.run(rx, stop_flag);
                    if !abort.load(Ordering::Acquire) {
                        processor.checkpoint(true);
                    }
                    processor
                })
                .map_err(|e| EngineError::Internal(format!("spawning processor: {e}")))?
        };
        pipeline.running = Some(Running {
            stop: stop_flag,
            abort,
            reader,
            processor,
        });
        Ok(())
    }

    /// Detaches a view (its sinks must have been dropped). Its pipeline keeps running for
    /// its other views; a pipeline left without views or sinks stops and its checkpoints
    /// are deleted.
    pub fn drop_view(&self, name: &str) {
        let mut sources = self.sources.lock();
        for entry in sources.values_mut() {
            entry.pending.retain(|n| n.view.name() != name);
            for p in &entry.pipelines {
                p.views.write().retain(|n| n.view.name() != name);
            }
            self.retire_empty(entry);
        }
        if let Some(c) = &self.checkpoints {
            crate::history::remove_view(&c.dir, name);
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
                stats: e.stats(),
                views: e
                    .pipelines
                    .iter()
                    .flat_map(|p| {
                        p.views
                            .read()
                            .iter()
                            .map(|n| n.view.name().to_string())
                            .collect::<Vec<_>>()
                    })
                    .chain(e.pending.iter().map(|n| n.view.name().to_string()))
                    .collect(),
                pipelines: e.pipelines.len(),
                checkpoints: CheckpointSummary::of(
                    &e.pipelines
                        .iter()
                        .map(|p| p.stats.clone())
                        .collect::<Vec<_>>(),
                ),
            })
            .collect()
    }

    /// Stats of one source (of its primary pipeline).
    pub fn source_stats(&self, name: &str) -> Option<Arc<SourceStats>> {
        self.sources.lock().get(name).map(|e| e.stats())
    }

    /// Stats of every pipeline of `source`, oldest first.
    pub fn pipeline_stats(&self, source: &str) -> Vec<Arc<SourceStats>> {
        self.sources
            .lock()
            .get(source)
            .map(|e| e.pipelines.iter().map(|p| p.stats.clone()).collect())
            .unwrap_or_default()
    }

    /// Blocks until every pipeline of `source` has processed all input available now (a
    /// bounded source: all of it), one failed, or `timeout` passed. Returns whether it
    /// caught up.
    pub fn wait_caught_up(&self, source: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let stats: Option<Vec<Arc<SourceStats>>> = self
                .sources
                .lock()
                .get(source)
                .map(|e| e.pipelines.iter().map(|p| p.stats.clone()).collect());
            match stats {
                None => return false,
                Some(s) if s.iter().any(|s| s.is_failing()) => return false,
                Some(s)
                    if !s.is_empty() && s.iter().all(|s| s.caught_up.load(Ordering::Acquire)) =>
                {
                    return true
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops every pipeline at once, without a last checkpoint — what a crash leaves
    /// behind, for recovery tests. The engine is unusable afterwards.
    pub fn crash(&self) {
        let mut sources = self.sources.lock();
        for entry in sources.values_mut() {
            for p in &mut entry.pipelines {
                if let Some(r) = p.running.take() {
                    r.abort.store(true, Ordering::Release);
                    r.stop.store(true, Ordering::Release);
                    let _ = r.reader.join();
                    let _ = r.processor.join();
                }
                for s in p.sinks.read().iter() {
                    s.sink.stop();
                }
            }
        }
    }

    /// Stops every pipeline; each writes a last checkpoint.
    pub fn shutdown(&self) {
        let mut sources = self.sources.lock();
        for entry in sources.values_mut() {
            for p in &mut entry.pipelines {
                if p.stop().is_some() {
                    p.stats.set_status("stopped");
                }
                for s in p.sinks.read().iter() {
                    s.sink.stop();
                }
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A pipeline being assembled at start.
struct Draft {
    id: u64,
    store: Option<CheckpointStore>,
    restored: Option<Restored>,
    nodes: Vec<ViewNode>,
    /// Emitted batches of each view already in the checkpoint.
    persisted: HashMap<String, usize>,
    /// Views whose state came from another pipeline's checkpoint.
    merged: std::collections::HashSet<String>,
    /// Those pipelines' stores, deleted once this pipeline has checkpointed their views.
    absorbed: Vec<CheckpointStore>,
    sinks: Vec<SinkNode>,
    /// Rows of each sink already in the checkpoint's files.
    sink_persisted: HashMap<String, u64>,
    /// Sinks whose queue came from another pipeline's checkpoint.
    merged_sinks: std::collections::HashSet<String>,
}

impl Draft {
    fn fresh(id: u64, config: Option<&CheckpointConfig>, source: &str) -> Self {
        Self {
            id,
            store: config.map(|c| CheckpointStore::new(&c.dir, source, id)),
            restored: None,
            nodes: Vec::new(),
            persisted: HashMap::new(),
            merged: Default::default(),
            absorbed: Vec::new(),
            sinks: Vec::new(),
            sink_persisted: HashMap::new(),
            merged_sinks: Default::default(),
        }
    }

    fn has(&self, view: &str) -> bool {
        self.nodes.iter().any(|n| n.view.name() == view)
    }
}

/// Merges checkpoints taken at the same point of the input — same position, same
/// watermarks, as after a clean shutdown of a quiet or finished source — into the oldest of
/// them, so views that backfilled separately share one reader again.
fn merge_drafts(drafts: &mut Vec<Draft>) {
    let point = |d: &Draft| {
        d.restored.as_ref().map(|r| {
            let mut tracker = r.manifest.tracker.clone();
            tracker.set_holding(None);
            (
                r.manifest.position.clone(),
                serde_json::to_value(&tracker).unwrap_or_default(),
            )
        })
    };
    let mut i = 0;
    while i < drafts.len() {
        let here = point(&drafts[i]);
        let mut j = i + 1;
        while j < drafts.len() {
            if here.is_none() || point(&drafts[j]) != here {
                j += 1;
                continue;
            }
            let other = drafts.remove(j);
            let target = &mut drafts[i];
            let restored = target.restored.as_mut().expect("restored");
            let other_restored = other.restored.expect("restored");
            for (name, v) in other_restored.views {
                if let std::collections::btree_map::Entry::Vacant(e) = restored.views.entry(name) {
                    target.merged.insert(e.key().clone());
                    e.insert(v);
                }
            }
            for (name, k) in other_restored.sinks {
                if let std::collections::btree_map::Entry::Vacant(e) = restored.sinks.entry(name) {
                    target.merged_sinks.insert(e.key().clone());
                    e.insert(k);
                }
            }
            target.absorbed.extend(other.store);
        }
        i += 1;
    }
}

/// Feeds a new view over a view with everything its parent has emitted, at the watermark
/// the parent's output has at source watermark `wm`.
fn seed(nodes: &[ViewNode], node: &ViewNode, wm: i64) -> Result<()> {
    let Some(parent) = node
        .parent
        .as_ref()
        .and_then(|p| nodes.iter().find(|n| n.view.name() == p))
    else {
        return Ok(());
    };
    let rows = parent.view.emitted_all()?;
    let child_wm = parent.view.output_watermark(wm);
    node.view.process(rows, child_wm)?;
    Ok(())
}

/// Hands a new sink on a view every row the view has now.
fn seed_sink(nodes: &[ViewNode], node: &SinkNode) -> Result<()> {
    let Some(view) = node
        .view
        .as_ref()
        .and_then(|v| nodes.iter().find(|n| n.view.name() == v))
    else {
        return Ok(());
    };
    // Never waits for room: the engine is locked while a sink is added, and the target may
    // be down. The queue may exceed its bound by the view's rows once.
    let no_wait = AtomicBool::new(true);
    node.sink.push(&view.view.emitted_all()?, &no_wait);
    if node.sink.spec().updating {
        node.sink.push(&view.view.open_rows_snapshot()?, &no_wait);
    }
    Ok(())
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
    position: serde_json::Value,
    stats: Arc<SourceStats>,
    stop: Arc<AtomicBool>,
    tx: std::sync::mpsc::SyncSender<Message>,
) {
    let mut source = match factory.open(&spec, (!position.is_null()).then_some(&position)) {
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

/// Checkpoint bookkeeping of one pipeline. Files are written by a thread of its own, one
/// checkpoint at a time.
struct Checkpointer {
    interval: Duration,
    last: Instant,
    /// Whether anything changed since the last captured checkpoint.
    dirty: bool,
    /// Emitted batches of each view already written.
    persisted: HashMap<String, usize>,
    /// Rows of each sink's queue already written.
    sink_persisted: HashMap<String, u64>,
    /// Whether the last capture left rows of some sink unacknowledged (their
    /// acknowledgement is worth a checkpoint even without new input).
    sinks_behind: bool,
    /// Dead letters and late events not yet written.
    pending_log: Vec<LogRecord>,
    in_flight: Option<InFlight>,
    /// Sinks' files of the last checkpoint written, not yet handed to the sinks.
    sink_files: Option<Vec<(String, Vec<crate::sink::DiskSegment>)>>,
    /// Views' rows moved to history by the last checkpoint written, not yet dropped from
    /// memory: the history root and, per view, batches moved and its files now.
    history: Option<HistoryCommit>,
    jobs: Option<std::sync::mpsc::SyncSender<Snapshot>>,
    done: Receiver<Result<WriteReport>>,
    writer: Option<JoinHandle<()>>,
}

/// Rows moved to history by a checkpoint: the root, and per view its name, the batches
/// that left memory and its history files now.
type HistoryCommit = (
    crate::history::HistoryRoot,
    Vec<(String, usize, Vec<crate::history::HistoryFile>)>,
);

/// A checkpoint handed to the writer.
struct InFlight {
    /// The source position the checkpoint records.
    position: serde_json::Value,
    covered: HashMap<String, usize>,
    sinks_covered: HashMap<String, u64>,
    logged: usize,
    began: Instant,
}

impl Checkpointer {
    fn new(
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
    fn log_room(&self) -> usize {
        crate::system::SYSTEM_LOG_CAPACITY.saturating_sub(self.pending_log.len())
    }

    fn send(
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
    fn collect(&mut self, stats: &SourceStats, source: &str, wait: bool) {
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

struct Processor {
    source: String,
    watermark_decl: Option<WatermarkDecl>,
    tracker: WatermarkTracker,
    stats: Arc<SourceStats>,
    system: Arc<SystemLog>,
    views: Arc<RwLock<Vec<ViewNode>>>,
    sinks: Arc<RwLock<Vec<SinkNode>>>,
    /// The running pipeline's stop flag (a sink with a full queue stops waiting on it).
    stop: Arc<AtomicBool>,
    primary: Arc<AtomicBool>,
    /// The source position after the last processed batch.
    position: serde_json::Value,
    checkpointer: Option<Checkpointer>,
    /// The source's pipelines, told of each checkpoint.
    readers: Arc<Readers>,
    /// Set when a batch failed half-way: the state is no longer consistent, so nothing is
    /// processed or checkpointed any more.
    failed: bool,
}

impl Processor {
    fn run(&mut self, rx: Receiver<Message>, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Acquire) && !self.failed {
            let msg = match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    self.checkpoint(false);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let result = match msg {
                Message::Batch(b) => {
                    let began = Instant::now();
                    let r = self.on_batch(b).and_then(|_| self.push_updates(false));
                    self.stats.batch_latency.observe(began.elapsed());
                    r
                }
                Message::Idle => {
                    self.mark_caught_up();
                    self.push_updates(false)
                }
                Message::Waiting => Ok(()),
                Message::End => {
                    self.tracker.finish();
                    let wm = self.tracker.watermark();
                    self.stats.watermark.store(wm, Ordering::Relaxed);
                    let r = self
                        .dispatch(None, Vec::new(), wm)
                        .and_then(|_| self.push_updates(true));
                    self.stats.set_status("finished");
                    self.mark_caught_up();
                    self.dirty();
                    r
                }
            };
            if let Err(e) = result {
                tracing::error!(source = %self.source, error = %e, "pipeline failed");
                self.stats.set_status(format!("error: {e}"));
                self.failed = true;
                return;
            }
            self.checkpoint(false);
        }
    }

    /// Continues from a checkpoint (view states are restored by the caller).
    fn resume(&mut self, restored: Restored) {
        let m = restored.manifest;
        self.tracker = m.tracker;
        self.tracker.set_holding(None);
        self.position = m.position;
        self.stats.set_counters(m.counters);
        self.stats
            .watermark
            .store(self.tracker.watermark(), Ordering::Relaxed);
        *self.stats.position.lock() = self.position.clone();
        *self.stats.committed.lock() = Some(self.position.clone());
        self.stats.record_checkpoint(m.epoch, 0, 0, Duration::ZERO);
        if self.primary.load(Ordering::Acquire) {
            let (dead, late) = log_rows(&self.source, restored.log);
            self.system.add_dead_letters(dead);
            self.system.add_late_events(late);
        }
    }

    fn dirty(&mut self) {
        if let Some(c) = self.checkpointer.as_mut() {
            c.dirty = true;
        }
    }

    /// Takes a checkpoint if the state changed and the interval passed (or `force`). The
    /// state is captured here, between two batches; a thread of the checkpointer writes it
    /// while processing goes on. `force` waits until it is written.
    fn checkpoint(&mut self, force: bool) {
        let Some(ck) = self.checkpointer.as_mut() else {
            return;
        };
        ck.collect(&self.stats, &self.source, force);
        self.apply_checkpoint();
        let Some(ck) = self.checkpointer.as_mut() else {
            return;
        };
        if self.failed
            || ck.in_flight.is_some()
            || !(ck.dirty || ck.sinks_behind)
            || (!force && ck.last.elapsed() < ck.interval)
        {
            return;
        }
        let began = Instant::now();
        ck.last = began;
        let nodes = self.views.read().clone();
        let mut views = Vec::with_capacity(nodes.len());
        let mut covered = HashMap::new();
        for node in &nodes {
            let name = node.view.name();
            let persisted = ck.persisted.get(name).copied().unwrap_or(0);
            match node.view.checkpoint(persisted) {
                Ok((snapshot, batches)) => {
                    views.push(snapshot);
                    covered.insert(name.to_string(), batches);
                }
                Err(e) => {
                    tracing::error!(source = %self.source, view = %name, error = %e, "cannot capture view state; checkpoint skipped");
                    return;
                }
            }
        }
        let mut sinks = Vec::new();
        let mut sinks_covered = HashMap::new();
        for node in self.sinks.read().iter() {
            let name = node.sink.name();
            let persisted = ck.sink_persisted.get(name).copied().unwrap_or(0);
            let (snapshot, upto) = node.sink.checkpoint(persisted);
            sinks.push(snapshot);
            sinks_covered.insert(name.to_string(), upto);
        }
        ck.sinks_behind = sinks.iter().any(|k| k.acked < k.pushed);
        let snapshot = Snapshot {
            position: self.position.clone(),
            tracker: self.tracker.clone(),
            counters: self.stats.counters(),
            views,
            sinks,
            new_log: ck.pending_log.clone(),
        };
        ck.dirty = false;
        ck.send(snapshot, covered, sinks_covered, began);
        self.stats
            .checkpoint_capture_micros
            .store(began.elapsed().as_micros() as u64, Ordering::Relaxed);
        if force {
            ck.collect(&self.stats, &self.source, true);
            self.apply_checkpoint();
        }
    }

    /// After a checkpoint was written: sinks learn which files hold their queued rows, and
    /// views drop the rows that moved to history.
    fn apply_checkpoint(&mut self) {
        let Some(ck) = self.checkpointer.as_mut() else {
            return;
        };
        let files = ck.sink_files.take();
        let history = ck.history.take();
        if let Some((root, moved)) = history {
            for node in self.views.read().iter() {
                if let Some((_, evicted, files)) =
                    moved.iter().find(|(n, ..)| n == node.view.name())
                {
                    node.view
                        .commit_history(*evicted, root.clone(), files.clone());
                }
            }
        }
        let Some(files) = files else {
            return;
        };
        // A checkpoint was written: the connector may free what no pipeline reads again.
        self.readers.release();
        for node in self.sinks.read().iter() {
            if let Some((_, segments)) = files.iter().find(|(n, _)| n == node.sink.name()) {
                node.sink.spilled(segments.clone());
            }
        }
    }

    fn mark_caught_up(&self) {
        for node in self.views.read().iter() {
            node.view.stats.caught_up.store(true, Ordering::Release);
        }
        self.stats.caught_up.store(true, Ordering::Release);
    }

    fn record_dead_letters(&mut self, mut rows: Vec<DeadLetterRow>) {
        if !self.primary.load(Ordering::Acquire) {
            return;
        }
        for r in &mut rows {
            r.raw = bounded_raw(std::mem::take(&mut r.raw));
        }
        if let Some(ck) = self.checkpointer.as_mut() {
            let room = ck.log_room();
            ck.pending_log
                .extend(rows.iter().take(room).map(|r| LogRecord::DeadLetter {
                    location: r.location.clone(),
                    raw: r.raw.clone(),
                    error: r.error.clone(),
                    received_at_ms: r.received_at.timestamp_millis(),
                }));
        }
        self.system.add_dead_letters(rows);
    }

    fn record_late_events(&mut self, mut rows: Vec<LateEventRow>) {
        if !self.primary.load(Ordering::Acquire) {
            return;
        }
        for r in &mut rows {
            r.raw = r.raw.take().map(bounded_raw);
        }
        if let Some(ck) = self.checkpointer.as_mut() {
            let room = ck.log_room();
            ck.pending_log
                .extend(rows.iter().take(room).map(|r| LogRecord::Late {
                    location: r.location.clone(),
                    event_time: r.event_time,
                    watermark: r.watermark,
                    raw: r.raw.clone(),
                    received_at_ms: r.received_at.timestamp_millis(),
                }));
        }
        self.system.add_late_events(rows);
    }

    fn on_batch(&mut self, b: SourceBatch) -> Result<()> {
        let now = Utc::now();
        let n = b.batch.num_rows();
        self.stats.events_in.fetch_add(n as u64, Ordering::Relaxed);
        *self.stats.position.lock() = b.position.clone();
        self.position = b.position;
        self.dirty();
        if !b.dead_letters.is_empty() {
            self.stats
                .dead_letters
                .fetch_add(b.dead_letters.len() as u64, Ordering::Relaxed);
            let source = self.source.clone();
            self.record_dead_letters(
                b.dead_letters
                    .into_iter()
                    .map(|d| DeadLetterRow {
                        source: source.clone(),
                        location: d.location,
                        raw: d.raw,
                        error: d.error,
                        received_at: now,
                    })
                    .collect(),
            );
        }
        let Some(decl) = self.watermark_decl else {
            let wm = self.tracker.watermark();
            self.push_to_sinks(None, std::slice::from_ref(&b.batch));
            return self.dispatch(None, vec![b.batch], wm);
        };
        let times = timestamps_ns(b.batch.column(decl.column))?;
        if b.holding_splits.is_some() {
            self.tracker.set_holding(b.holding_splits.clone());
        }
        // One event dated far in the future would move the watermark past every valid
        // event that follows: such events are dead letters and never observed.
        let limit = decl
            .max_future_ns
            .map(|f| (now.timestamp_nanos_opt().unwrap_or(i64::MAX)).saturating_add(f));
        let future = |i: usize| limit.is_some_and(|l| times.is_valid(i) && times.value(i) > l);
        let observed = (0..n).map(|i| {
            (!future(i))
                .then(|| times.is_valid(i).then(|| times.value(i)))
                .flatten()
        });
        let late = self.tracker.observe(observed, b.origins.splits());
        let mut keep = Vec::with_capacity(n);
        let mut dead = Vec::new();
        let mut late_rows = Vec::new();
        for (i, missed) in late.iter().enumerate() {
            if times.is_null(i) || future(i) {
                dead.push(i);
            } else if let Some(wm) = missed {
                late_rows.push((i, *wm));
            }
            keep.push(times.is_valid(i) && missed.is_none() && !future(i));
        }
        if !dead.is_empty() {
            // Not events after all: each input line counts once, as an event or a dead letter.
            self.stats
                .events_in
                .fetch_sub(dead.len() as u64, Ordering::Relaxed);
            self.stats
                .dead_letters
                .fetch_add(dead.len() as u64, Ordering::Relaxed);
            let column = b.batch.schema().field(decl.column).name().clone();
            let rows: Vec<DeadLetterRow> = dead
                .iter()
                .map(|&i| DeadLetterRow {
                    source: self.source.clone(),
                    location: b.origins.location(&self.source, i),
                    raw: b.origins.raw(i).unwrap_or_default(),
                    error: if times.is_null(i) {
                        format!("event time column \"{column}\" is null or missing")
                    } else {
                        format!(
                            "event time {} of column \"{column}\" is more than max_future ({} s) ahead of the clock; it would make every later event late",
                            chrono::DateTime::from_timestamp_nanos(times.value(i)).to_rfc3339(),
                            decl.max_future_ns.unwrap_or(0) / 1_000_000_000
                        )
                    },
                    received_at: now,
                })
                .collect();
            self.record_dead_letters(rows);
        }
        // Source sinks get every event with an event time, late ones included (dead
        // letters are not events).
        if dead.is_empty() {
            self.push_to_sinks(None, std::slice::from_ref(&b.batch));
        } else if self.has_sinks(None) {
            let valid = BooleanArray::from(
                (0..n)
                    .map(|i| Some(times.is_valid(i) && !future(i)))
                    .collect::<Vec<_>>(),
            );
            self.push_to_sinks(None, &[filter_record_batch(&b.batch, &valid)?]);
        }
        if !late_rows.is_empty() {
            self.stats
                .late_events
                .fetch_add(late_rows.len() as u64, Ordering::Relaxed);
            let rows: Vec<LateEventRow> = late_rows
                .iter()
                .map(|&(i, wm)| LateEventRow {
                    source: self.source.clone(),
                    location: b.origins.location(&self.source, i),
                    event_time: times.value(i),
                    watermark: wm,
                    raw: b.origins.raw(i),
                    received_at: now,
                })
                .collect();
            self.record_late_events(rows);
        }
        let on_time = if keep.iter().all(|k| *k) {
            b.batch
        } else {
            filter_record_batch(&b.batch, &BooleanArray::from(keep))?
        };
        let wm = self.tracker.watermark();
        self.stats.watermark.store(wm, Ordering::Relaxed);
        if wm != i64::MAX {
            self.stats.last_watermark.store(wm, Ordering::Relaxed);
        }
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
            self.push_to_sinks(Some(node.view.name()), &emitted);
            let child_wm = node.view.output_watermark(wm);
            self.dispatch(Some(node.view.name()), emitted, child_wm)?;
        }
        Ok(())
    }
}

impl Processor {
    fn has_sinks(&self, view: Option<&str>) -> bool {
        self.sinks.read().iter().any(|s| s.reads(view))
    }

    /// Hands rows of `view` (the source's events for `None`) to the sinks reading it.
    fn push_to_sinks(&self, view: Option<&str>, batches: &[RecordBatch]) {
        if batches.is_empty() {
            return;
        }
        let sinks: Vec<Arc<SinkRuntime>> = self
            .sinks
            .read()
            .iter()
            .filter(|s| s.reads(view))
            .map(|s| s.sink.clone())
            .collect();
        for sink in sinks {
            sink.push(batches, &self.stop);
        }
    }

    /// Sends the open windows of updating views to their sinks when due (`force`: now).
    fn push_updates(&self, force: bool) -> Result<()> {
        let sinks: Vec<SinkNode> = self
            .sinks
            .read()
            .iter()
            .filter(|s| s.sink.spec().updating)
            .cloned()
            .collect();
        for s in sinks {
            let Some(view) = s.view.as_ref().and_then(|v| {
                self.views
                    .read()
                    .iter()
                    .find(|n| n.view.name() == v)
                    .map(|n| n.view.clone())
            }) else {
                continue;
            };
            if s.sink.update_due() || force {
                s.sink.push(&view.open_rows_snapshot()?, &self.stop);
            }
        }
        // Alert rules over updating views see the open windows too: they can fire
        // mid-window.
        let rules: Vec<(Arc<ViewRuntime>, Arc<ViewRuntime>)> = {
            let nodes = self.views.read();
            nodes
                .iter()
                .filter(|n| n.view.is_alert())
                .filter_map(|n| {
                    let parent = nodes
                        .iter()
                        .find(|p| Some(p.view.name()) == n.parent.as_deref())?;
                    Some((n.view.clone(), parent.view.clone()))
                })
                .collect()
        };
        for (rule, parent) in rules {
            if !parent.updating() || !(force || rule.updates_due(ALERT_UPDATE_INTERVAL)) {
                continue;
            }
            let open = parent.open_rows_snapshot()?;
            let wm = rule.stats.watermark.load(Ordering::Relaxed);
            let emitted = rule.process(open, wm)?;
            self.push_to_sinks(Some(rule.name()), &emitted);
        }
        Ok(())
    }
}

/// Persisted log records back as system-log rows of `source`.
fn log_rows(source: &str, records: Vec<LogRecord>) -> (Vec<DeadLetterRow>, Vec<LateEventRow>) {
    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let mut dead = Vec::new();
    let mut late = Vec::new();
    for r in records {
        match r {
            LogRecord::DeadLetter {
                location,
                raw,
                error,
                received_at_ms,
            } => dead.push(DeadLetterRow {
                source: source.to_string(),
                location,
                raw,
                error,
                received_at: at(received_at_ms),
            }),
            LogRecord::Late {
                location,
                event_time,
                watermark,
                raw,
                received_at_ms,
            } => late.push(LateEventRow {
                source: source.to_string(),
                location,
                event_time,
                watermark,
                raw,
                received_at: at(received_at_ms),
            }),
        }
    }
    (dead, late)
}
