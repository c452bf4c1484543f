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

mod checkpointer;
mod processor;
mod reader;
mod readers;
mod shards;
pub mod sink_queue;
pub use shards::PartitionOwner;
mod start;
pub mod view;
pub mod watermark;

use checkpointer::Checkpointer;
use processor::Processor;
use reader::{read_loop, Message};
use readers::Readers;
use start::{seed, seed_sink, Draft};

use crate::checkpoint::recovery;
use crate::checkpoint::{
    CheckpointConfig, CheckpointStore, LogRecord, Restored, Snapshot, WriteReport,
};
use crate::cluster::{ClusterConfig, Fence};
use crate::connector::pair::{pair_name, PairFactory, PairLayout, PairSide, PAIR_KEYS};
use crate::connector::source::{
    Poll, SourceBatch, SourceFactory, SourceRegistry, SourceSpec, SourceStatus,
};
use crate::error::{EngineError, Result};
use crate::operator::aggregate::timestamps_ns;
use crate::pipeline::sink_queue::SinkRuntime;
use crate::pipeline::view::ViewRuntime;
use crate::pipeline::watermark::WatermarkTracker;
use crate::serving::system::{
    bounded_raw, CheckpointSummary, DeadLetterRow, LateEventRow, SourceStats, SystemLog,
};

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

/// Makes the sink of one partition's lane (cluster mode): a runtime of its own named
/// `<sink>@p<partition>`, with a writer of its own.
pub type SinkLanes = Arc<dyn Fn(i32) -> Result<Arc<SinkRuntime>> + Send + Sync>;

/// A sink attached to a pipeline.
#[derive(Clone)]
pub struct SinkNode {
    pub sink: Arc<SinkRuntime>,
    /// The view it reads, or `None` for the source's events.
    pub view: Option<String>,
    /// For a sink over a source split into lanes: how to make each lane's sink.
    pub lanes: Option<SinkLanes>,
}

impl std::fmt::Debug for SinkNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkNode")
            .field("sink", &self.sink.name())
            .field("view", &self.view)
            .finish_non_exhaustive()
    }
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

    /// Stops the threads without a last checkpoint.
    fn abort(&mut self) {
        if let Some(r) = self.running.take() {
            r.abort.store(true, Ordering::Release);
            r.stop.store(true, Ordering::Release);
            let _ = r.reader.join();
            let _ = r.processor.join();
        }
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
    /// Set while it has pipelines: they record its dead letters and late events.
    reading: Arc<AtomicBool>,
    /// For a pair of sources read as one (see [`crate::connector::pair`]).
    pair: Option<PairEntry>,
    /// Where its pipelines' checkpoints go (`None`: no checkpoints).
    root: Option<std::path::PathBuf>,
    /// Cluster mode: the source is split into partition lanes, which run its views; the
    /// entry itself runs nothing.
    shard: Option<shards::Sharded>,
    /// A partition's lane: the fence of its lease, which checkpoints and sinks consult.
    fence: Option<Fence>,
    /// The name its checkpoints are stored under, when not the source's (a lane's: per
    /// lease epoch).
    store: Option<String>,
    /// A lane whose replicas share an S3 prefix: where each checkpoint is copied.
    mirror: Option<crate::history::HistoryRoot>,
}

/// What a pair's entry knows of its two sources.
struct PairEntry {
    /// The two sources, in the pair's order.
    sides: [String; 2],
    /// The second source's watermark delay.
    second_delay_ns: i64,
    /// Each source's readers (its pipelines' positions for the connector) and whether it
    /// has pipelines of its own, which then record its dead letters and late events.
    side_readers: [(Arc<Readers>, Arc<AtomicBool>); 2],
}

impl SourceEntry {
    /// What view or sink `name` is called in this entry: `<name>@p<N>` in partition N's
    /// lane, `name` elsewhere.
    fn local_name(&self, name: &str) -> String {
        match (crate::cluster::lane_of(&self.spec.name), &self.fence) {
            (Some((_, p)), Some(_)) => crate::cluster::lane_name(name, p),
            _ => name.to_string(),
        }
    }

    /// The name its pipelines' checkpoint directories are under.
    fn store_name(&self) -> &str {
        self.store.as_deref().unwrap_or(&self.spec.name)
    }

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
    /// Cluster mode: this replica's place among the replicas.
    cluster: Option<ClusterConfig>,
    /// Stops the thread that keeps the leases.
    cluster_stop: Arc<AtomicBool>,
    cluster_thread: Mutex<Option<JoinHandle<()>>>,
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
            cluster: None,
            cluster_stop: Arc::new(AtomicBool::new(false)),
            cluster_thread: Mutex::new(None),
        }
    }

    /// An engine that checkpoints every pipeline and resumes from checkpoints at start.
    pub fn with_checkpoints(registry: SourceRegistry, config: CheckpointConfig) -> Self {
        let mut engine = Self::new(registry);
        engine.checkpoints = Some(config);
        engine
    }

    /// Runs as one replica of several: sources that can be split (Kafka) are read in
    /// partition lanes, for the partitions this replica holds the leases of (see
    /// [`crate::cluster`]); [`run_cluster`](Self::run_cluster) starts taking them.
    pub fn with_cluster(mut self, cluster: ClusterConfig) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The cluster this engine is a replica of, if any.
    pub fn cluster(&self) -> Option<&ClusterConfig> {
        self.cluster.as_ref()
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
        let mut entry = self.new_entry(spec.clone(), factory, watermark, None);
        if let Some(cluster) = &self.cluster {
            if entry.factory.can_split() {
                entry.shard = Some(shards::Sharded::new(cluster.leases(&spec.name)));
                entry.idle_stats.set_status(format!(
                    "sharded: this replica (ordinal {} of {}) reads partitions p with p mod {} = {}",
                    cluster.ordinal, cluster.replicas, cluster.replicas, cluster.ordinal
                ));
            }
        }
        self.sources.lock().insert(spec.name.clone(), entry);
        Ok(())
    }

    /// The entry of a source (or pair) being registered, without pipelines.
    fn new_entry(
        &self,
        spec: SourceSpec,
        factory: Arc<dyn SourceFactory>,
        watermark: Option<WatermarkDecl>,
        pair: Option<PairEntry>,
    ) -> SourceEntry {
        let started = self.started.load(Ordering::Acquire);
        if let (true, Some(c), None) = (started, &self.checkpoints, &self.cluster) {
            // A new source: anything stored under its name is left over from an older one.
            // (In a cluster, a lane's checkpoints are the state it takes over.)
            CheckpointStore::remove_source(&c.dir, &spec.name);
        }
        let idle_stats = Arc::new(SourceStats::default());
        idle_stats.set_status("idle (no views)");
        SourceEntry {
            readers: Arc::new(Readers::new(factory.clone(), spec.clone(), started)),
            spec,
            factory,
            watermark,
            idle_stats,
            pipelines: Vec::new(),
            pending: Vec::new(),
            pending_sinks: Vec::new(),
            next_pipeline: 0,
            reading: Arc::new(AtomicBool::new(false)),
            pair,
            root: self.checkpoints.as_ref().map(|c| c.dir.clone()),
            shard: None,
            fence: None,
            store: None,
            mirror: None,
        }
    }

    /// Registers the pair of sources `a` and `b` read as one, for views that join them
    /// (see [`crate::connector::pair`]), unless it is registered; returns its name, which
    /// such views are added to. Both sources need a watermark.
    pub fn add_pair(&self, a: &str, b: &str) -> Result<String> {
        let name = pair_name(a, b);
        let mut sources = self.sources.lock();
        if sources.contains_key(&name) {
            return Ok(name);
        }
        let side = |n: &str| -> Result<(PairSide, WatermarkDecl, Arc<Readers>, Arc<AtomicBool>)> {
            let e = sources
                .get(n)
                .ok_or_else(|| EngineError::Internal(format!("source {n} is not registered")))?;
            let decl = e.watermark.ok_or_else(|| {
                EngineError::Unsupported(format!("source {n} has no WATERMARK to join on"))
            })?;
            let side = PairSide {
                factory: e.factory.clone(),
                spec: e.spec.clone(),
                time_column: decl.column,
            };
            Ok((side, decl, e.readers.clone(), e.reading.clone()))
        };
        let (side_a, side_b) = (side(a)?, side(b)?);
        let layout = PairLayout::new(
            (a, side_a.0.spec.schema.clone()),
            (b, side_b.0.spec.schema.clone()),
        );
        let (first, second) = (layout.first.0.clone(), layout.second.0.clone());
        let ((s1, d1, r1, f1), (s2, d2, r2, f2)) = if first == a {
            (side_a, side_b)
        } else {
            (side_b, side_a)
        };
        let max_future_ns = match (d1.max_future_ns, d2.max_future_ns) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        let watermark = WatermarkDecl {
            column: crate::connector::pair::TIME_INDEX,
            delay_ns: d1.delay_ns,
            max_future_ns,
        };
        let spec = SourceSpec {
            name: name.clone(),
            schema: layout.schema.clone(),
            options: Default::default(),
        };
        for (side, other) in [(&first, &second), (&second, &first)] {
            if let Some(e) = sources.get(side.as_str()) {
                e.idle_stats
                    .set_status(format!("idle (its views join {other}: see {name})"));
            }
        }
        let factory: Arc<dyn SourceFactory> = Arc::new(PairFactory {
            layout,
            sides: [s1, s2],
        });
        let pair = PairEntry {
            sides: [first, second],
            second_delay_ns: d2.delay_ns,
            side_readers: [(r1, f1), (r2, f2)],
        };
        let entry = self.new_entry(spec, factory, Some(watermark), Some(pair));
        sources.insert(name.clone(), entry);
        Ok(name)
    }

    /// Stops and forgets a source (its views must have been dropped), checkpoints included,
    /// and the pairs it is part of.
    pub fn drop_source(&self, name: &str) {
        let doomed: Vec<String> = {
            let sources = self.sources.lock();
            sources
                .iter()
                .filter(|(n, e)| {
                    e.pair
                        .as_ref()
                        .is_some_and(|p| p.sides.iter().any(|s| s == name))
                        || (e.fence.is_some()
                            && crate::cluster::lane_of(n).is_some_and(|(base, _)| base == name))
                })
                .map(|(n, _)| n.clone())
                .chain(std::iter::once(name.to_string()))
                .collect()
        };
        for name in &doomed {
            let entry = self.sources.lock().remove(name);
            if let Some(mut entry) = entry {
                for p in &mut entry.pipelines {
                    p.stop();
                    for s in p.sinks.read().iter() {
                        s.sink.stop();
                    }
                }
                if let Some(shard) = &entry.shard {
                    shard.release_all();
                }
                // A lane's checkpoints stay: other replicas' lanes of the source are as
                // they were, and a new source of this name starts without them anyway.
                if let (Some(root), None) = (&entry.root, &entry.fence) {
                    CheckpointStore::remove_source(root, name);
                }
            }
            self.system.forget_source(name);
        }
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
        let node = ViewNode {
            view,
            parent: parent.map(str::to_string),
        };
        if let Some(lanes) = shards::record_view(&mut sources, source, &node) {
            for p in lanes {
                let lane = shards::lane_view(&node, p)?;
                self.attach_view(&mut sources, &crate::cluster::lane_name(source, p), lane)?;
            }
            return Ok(());
        }
        self.attach_view(&mut sources, source, node)
    }

    /// Attaches a view to a source that is not split into lanes (or to one lane).
    fn attach_view(
        &self,
        sources: &mut BTreeMap<String, SourceEntry>,
        source: &str,
        node: ViewNode,
    ) -> Result<()> {
        let parent = node.parent.clone();
        let parent = parent.as_deref();
        let entry = sources
            .get_mut(source)
            .ok_or_else(|| EngineError::Internal(format!("source {source} is not registered")))?;
        if !self.started.load(Ordering::Acquire) {
            entry.pending.push(node);
            return Ok(());
        }
        match parent {
            None => {
                let id = entry.next_pipeline;
                entry.next_pipeline += 1;
                let mut draft = Draft::fresh(id, entry.root.as_deref(), entry.store_name());
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
        if let Some(lanes) = shards::record_sink(&mut sources, source, &node)? {
            for p in lanes {
                let lane = shards::lane_sink(&node, p)?;
                self.attach_sink(&mut sources, &crate::cluster::lane_name(source, p), lane)?;
            }
            return Ok(());
        }
        self.attach_sink(&mut sources, source, node)
    }

    /// Attaches a sink to a source that is not split into lanes (or to one lane).
    fn attach_sink(
        &self,
        sources: &mut BTreeMap<String, SourceEntry>,
        source: &str,
        node: SinkNode,
    ) -> Result<()> {
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
            let mut draft = Draft::fresh(id, entry.root.as_deref(), entry.store_name());
            if let Some(fence) = &entry.fence {
                node.sink.set_fence(fence.clone());
            }
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
        if let Some(fence) = &entry.fence {
            node.sink.set_fence(fence.clone());
        }
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
            if let Some(shard) = entry.shard.as_mut() {
                shard.sinks.retain(|n| n.sink.name() != name);
            }
            let here = entry.local_name(name);
            for p in &entry.pipelines {
                let found = p
                    .sinks
                    .read()
                    .iter()
                    .find(|n| n.sink.name() == here)
                    .cloned();
                if let Some(node) = found {
                    // Stopped first: a processor waiting for room in its queue lets go.
                    node.sink.stop();
                    p.sinks.write().retain(|n| n.sink.name() != here);
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
            // A source split into lanes: its sinks as defined (each lane's are listed with
            // the lane).
            let defined = e
                .shard
                .as_ref()
                .map(|s| s.sinks.as_slice())
                .unwrap_or_default();
            for n in e.pending_sinks.iter().chain(defined) {
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
            if let Some(pair) = &entry.pair {
                for (readers, _) in &pair.side_readers {
                    readers.leave(&p.stats);
                }
            }
            if let Some(root) = &entry.root {
                let _ = std::fs::remove_dir_all(CheckpointStore::pipeline_dir(
                    root,
                    entry.store_name(),
                    p.id,
                ));
            }
        }
        if let Some(first) = entry.pipelines.first() {
            first.primary.store(true, Ordering::Release);
        }
        entry
            .reading
            .store(!entry.pipelines.is_empty(), Ordering::Release);
    }

    /// Starts every source's pipelines, resuming from checkpoints. Views recorded before
    /// start whose state is in a checkpoint (same definition) resume from it; the others
    /// share a new pipeline that reads their source from its start.
    pub fn start(&self) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut sources = self.sources.lock();
        // Sources about to get pipelines of their own record their dead letters and late
        // events themselves, whichever starts first (a pair reading them starts too).
        for entry in sources.values() {
            let reads = !entry.pending.is_empty() || !entry.pending_sinks.is_empty();
            entry.reading.store(reads, Ordering::Release);
        }
        for entry in sources.values_mut() {
            if entry.shard.is_some() {
                // Its lanes start as the cluster thread takes their leases.
                continue;
            }
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
        for entry in sources.values() {
            let reads = !entry.pipelines.is_empty();
            entry.reading.store(reads, Ordering::Release);
        }
    }

    /// Builds a pipeline from a draft and starts it.
    fn launch(&self, entry: &mut SourceEntry, draft: Draft) -> Result<()> {
        let primary = entry.pipelines.is_empty();
        let stats = Arc::new(SourceStats::default());
        let mut processor = Processor {
            source: entry.spec.name.clone(),
            watermark_decl: entry.watermark,
            tracker: WatermarkTracker::new(entry.watermark.map(|w| w.delay_ns).unwrap_or(0))
                .paired(entry.pair.as_ref().map(|p| p.second_delay_ns)),
            stats: stats.clone(),
            system: self.system.clone(),
            views: Arc::new(RwLock::new(draft.nodes)),
            sinks: Arc::new(RwLock::new(draft.sinks)),
            stop: Arc::new(AtomicBool::new(false)),
            primary: Arc::new(AtomicBool::new(primary)),
            position: serde_json::Value::Null,
            checkpointer: None,
            readers: entry.readers.clone(),
            recorded_elsewhere: entry
                .pair
                .as_ref()
                .map(|p| {
                    p.sides
                        .iter()
                        .cloned()
                        .zip(p.side_readers.iter().map(|(_, f)| f.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            failed: false,
            fence: entry.fence.clone(),
        };
        if let (Some(config), Some(root)) = (&self.checkpoints, &entry.root) {
            let mut store = draft
                .store
                .unwrap_or_else(|| CheckpointStore::new(root, entry.store_name(), draft.id));
            if let Some(fence) = &entry.fence {
                store.set_fence(fence.clone());
            }
            if let Some(mirror) = &entry.mirror {
                store.set_mirror(mirror.clone());
            }
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
        entry.readers.join(&stats, None);
        if let Some(pair) = &entry.pair {
            for ((readers, _), key) in pair.side_readers.iter().zip(PAIR_KEYS) {
                readers.join(&stats, Some(key));
            }
        }
        entry.reading.store(true, Ordering::Release);
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
            if let Some(shard) = entry.shard.as_mut() {
                shard.views.retain(|n| n.view.name() != name);
            }
            let here = entry.local_name(name);
            for p in &entry.pipelines {
                p.views.write().retain(|n| {
                    let dropped = n.view.name() == here;
                    if dropped {
                        n.view.close_subscriptions();
                    }
                    !dropped
                });
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

    /// For a source split into partition lanes: `Some` with its `partition_key` option
    /// (the column its producers partition by); `None` for any other source.
    pub fn sharding(&self, source: &str) -> Option<Option<String>> {
        let sources = self.sources.lock();
        let entry = sources.get(source)?;
        entry.shard.as_ref()?;
        Some(entry.spec.options.get("partition_key").cloned())
    }

    /// Stats of one source (of its primary pipeline).
    pub fn source_stats(&self, name: &str) -> Option<Arc<SourceStats>> {
        self.sources.lock().get(name).map(|e| e.stats())
    }

    /// The latest events of `source` for a query (`SELECT … FROM source`): those its first
    /// pipeline kept; when no pipeline reads the source, its first events, read from its
    /// start by a reader of their own (for at most `timeout`; nothing is committed).
    pub fn peek(&self, source: &str, timeout: Duration) -> Result<Vec<RecordBatch>> {
        let (factory, spec, read) = {
            let sources = self.sources.lock();
            let Some(e) = sources.get(source) else {
                return Ok(Vec::new());
            };
            (e.factory.clone(), e.spec.clone(), !e.pipelines.is_empty())
        };
        if read {
            return Ok(self.system.recent(source));
        }
        let limit = crate::serving::system::RECENT_EVENTS;
        let mut reader = factory.open(&spec, None)?;
        let deadline = Instant::now() + timeout;
        let (mut out, mut rows) = (Vec::new(), 0);
        while rows < limit && Instant::now() < deadline {
            match reader.next_batch()? {
                Poll::Batch(b) => {
                    let n = b.batch.num_rows().min(limit - rows);
                    rows += n;
                    out.push(b.batch.slice(0, n));
                }
                Poll::Idle | Poll::End => break,
                Poll::Waiting => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        Ok(out)
    }

    /// Stats of every pipeline of `source`, oldest first.
    pub fn pipeline_stats(&self, source: &str) -> Vec<Arc<SourceStats>> {
        shards::pipelines_of(&self.sources.lock(), source).unwrap_or_default()
    }

    /// Blocks until every pipeline of `source` has processed all input available now (a
    /// bounded source: all of it), one failed, or `timeout` passed. Returns whether it
    /// caught up.
    pub fn wait_caught_up(&self, source: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = shards::pipelines_of(&self.sources.lock(), source);
            match stats {
                None => return false,
                // Split into lanes, none of them here: nothing to wait for on this replica.
                Some(s) if s.is_empty() && self.sharding(source).is_some() => return true,
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
        self.stop_cluster();
        let mut sources = self.sources.lock();
        for entry in sources.values_mut() {
            for p in &mut entry.pipelines {
                p.abort();
                for s in p.sinks.read().iter() {
                    s.sink.stop();
                }
            }
        }
    }

    /// Stops every pipeline; each writes a last checkpoint. A replica then lets go of
    /// its partitions' leases, so others may take them at once.
    pub fn shutdown(&self) {
        self.stop_cluster();
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
        for entry in sources.values() {
            if let Some(shard) = &entry.shard {
                shard.release_all();
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}
