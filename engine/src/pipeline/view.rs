//! A materialized view at run time: its pre-planned pipeline and its state.
//!
//! `weir-sql` plans a view's query once into a [`ViewPlan`]: the physical plan below the
//! aggregation (filters, projections, window assignment) reading a feed, the
//! [`AggregateSpec`] taken from DataFusion's `AggregateExec` (or the `OVER` frames), the plan
//! above it (HAVING, final projection) and an alert rule's settings. The runtime turns them
//! into a chain of operators ([`crate::operator::chain`]); [`ViewRuntime::process`] pushes one
//! micro-batch through the chain and keeps the rows it emits.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::TaskContext;
use parking_lot::{Mutex, RwLock};

use crate::checkpoint::{HistoryMove, RestoredView, ViewSnapshot};
use crate::error::{EngineError, Result};
use crate::history::{HistoryFile, HistoryFiles, HistoryRoot, Retention};
use crate::operator::aggregate::AggregateSpec;
use crate::operator::alert::{AlertRecord, AlertSpec, AlertStage};
use crate::operator::over::OverSpec;
use crate::operator::plan::FedPlan;
use crate::operator::{Operator, Tick};
use crate::serving::rows::RowStore;

/// When a view's rows become visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EmitMode {
    /// A window appears once the watermark passes its end, and never changes after.
    OnWindowClose,
    /// Open windows are visible and current as of the last batch.
    OnUpdate,
}

impl EmitMode {
    /// SQL spelling.
    pub fn as_sql(&self) -> &'static str {
        match self {
            EmitMode::OnWindowClose => "ON WINDOW CLOSE",
            EmitMode::OnUpdate => "ON UPDATE",
        }
    }
}

/// Everything the engine needs to maintain one view.
#[derive(Debug, Clone)]
pub struct ViewPlan {
    /// View name.
    pub name: String,
    /// Rows before aggregation (the whole query for a view without GROUP BY).
    pub input: FedPlan,
    /// An interval join of the stream with itself, which then replaces `input` as the
    /// first step (such a view has no aggregation).
    pub join: Option<crate::operator::join::JoinSpec>,
    /// The aggregation, if any.
    pub aggregate: Option<AggregateSpec>,
    /// Streaming `OVER` windows between the input plan and `post` (never with `aggregate`).
    pub over: Option<OverSpec>,
    /// The plan above the aggregation (or the `OVER` windows), reading their output.
    pub post: Option<FedPlan>,
    /// An alert rule: the query's rows become alert messages (the view's rows).
    pub alert: Option<AlertSpec>,
    /// The view's output schema.
    pub output_schema: SchemaRef,
    /// Emit mode (unwindowed aggregates are always `OnUpdate`).
    pub emit: EmitMode,
    /// Output columns to index for point lookups (the non-window group keys).
    pub key_columns: Vec<usize>,
    /// Task context plans execute in.
    pub task: Arc<TaskContext>,
    /// Identifies the definition (query, emit mode, output schema): checkpointed state is
    /// restored only into a view with the same fingerprint.
    pub fingerprint: String,
    /// How long emitted rows stay in memory and in Parquet history (None: in memory for
    /// ever).
    pub retention: Option<Retention>,
}

/// A view's Parquet history: rows, bytes, files.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryStats {
    pub rows: u64,
    pub bytes: u64,
    pub files: usize,
}

/// Counters of one view, read by `weir.views`.
#[derive(Debug, Default)]
pub struct ViewStats {
    /// Input rows processed.
    pub rows_in: AtomicU64,
    /// The watermark the view last saw (ns).
    pub watermark: AtomicI64,
    /// Whether the view has processed all input available so far.
    pub caught_up: AtomicBool,
    /// Rows dropped because their window had already been emitted.
    pub dropped_rows: AtomicU64,
}

struct Inner {
    /// The view's operators, in the order a batch goes through them.
    chain: Vec<Box<dyn Operator>>,
    /// When open rows of an updating input were last fed to this alert rule.
    last_update: Option<std::time::Instant>,
    /// The watermark of the last batch processed.
    last_wm: i64,
    /// Bumped on every change of open state, to cache snapshots.
    version: u64,
    snapshot: Option<(u64, Vec<RecordBatch>)>,
}

/// Batches of rows a view emitted together, as subscribers receive them.
pub type Emitted = Arc<Vec<RecordBatch>>;

/// How many emitted batches a subscriber may fall behind before it misses rows.
pub const SUBSCRIBER_BACKLOG: usize = 4096;

/// A live view: shared by the pipeline thread that maintains it and the queries that read it.
pub struct ViewRuntime {
    plan: ViewPlan,
    /// Every emitted batch, for subscribers (`GET /subscribe`); taken when the view is
    /// dropped, which ends their streams.
    changes: Mutex<Option<tokio::sync::broadcast::Sender<Emitted>>>,
    inner: Mutex<Inner>,
    store: RwLock<RowStore>,
    /// The highest finite watermark seen: the clock rows age by.
    clock: AtomicI64,
    /// How long rows stay in memory and history (starts as the plan's; ALTER changes it).
    retention: RwLock<Option<Retention>>,
    /// Set for a view over a source split into partition lanes (cluster mode): its state
    /// lives in the lanes, and reads answer from the lanes this replica runs.
    sharded: AtomicBool,
    /// Those lanes, by partition.
    lanes: RwLock<Vec<(i32, Arc<ViewRuntime>)>>,
    /// Counters.
    pub stats: ViewStats,
}

/// A view's counters summed over its lanes (or its own, unsharded).
#[derive(Debug, Clone, Copy)]
pub struct ViewTotals {
    pub rows_in: u64,
    /// The lowest lane's watermark.
    pub watermark: i64,
    pub caught_up: bool,
    pub dropped_rows: u64,
}

impl std::fmt::Debug for ViewRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewRuntime")
            .field("name", &self.plan.name)
            .finish()
    }
}

impl ViewRuntime {
    /// A view with empty state.
    pub fn new(plan: ViewPlan) -> Result<Arc<Self>> {
        let store = RowStore::new(plan.output_schema.clone(), plan.key_columns.clone());
        let stats = ViewStats::default();
        stats.watermark.store(i64::MIN, Ordering::Relaxed);
        Ok(Arc::new(Self {
            inner: Mutex::new(Inner {
                chain: crate::operator::chain(&plan)?,
                last_update: None,
                last_wm: i64::MIN,
                version: 0,
                snapshot: None,
            }),
            store: RwLock::new(store),
            clock: AtomicI64::new(i64::MIN),
            retention: RwLock::new(plan.retention),
            changes: Mutex::new(Some(tokio::sync::broadcast::channel(SUBSCRIBER_BACKLOG).0)),
            sharded: AtomicBool::new(false),
            lanes: RwLock::new(Vec::new()),
            stats,
            plan,
        }))
    }

    /// Marks the view as one whose state lives in partition lanes (see
    /// [`crate::cluster`]): from now on reads answer from the lanes this replica runs.
    pub fn shard(&self) {
        self.sharded.store(true, Ordering::Release);
    }

    /// Whether the view's state lives in partition lanes.
    pub fn is_sharded(&self) -> bool {
        self.sharded.load(Ordering::Acquire)
    }

    /// A runtime of this view for partition `partition`'s lane: the same plan (reading
    /// feeds of its own) under the name `<view>@p<partition>`, which its checkpoints and
    /// history files carry; its emitted rows reach this view's subscribers.
    pub fn add_lane(&self, partition: i32) -> Result<Arc<ViewRuntime>> {
        if self.plan.join.is_some() {
            return Err(EngineError::Unsupported(format!(
                "view {} joins its source with itself, which partition lanes cannot run",
                self.plan.name
            )));
        }
        let mut plan = self.plan.clone();
        plan.name = crate::cluster::lane_name(&self.plan.name, partition);
        plan.input = plan.input.fresh()?;
        plan.post = plan.post.as_ref().map(|p| p.fresh()).transpose()?;
        plan.retention = *self.retention.read();
        let lane = ViewRuntime::new(plan)?;
        *lane.changes.lock() = self.changes.lock().clone();
        let mut lanes = self.lanes.write();
        lanes.retain(|(p, _)| *p != partition);
        lanes.push((partition, lane.clone()));
        lanes.sort_by_key(|(p, _)| *p);
        Ok(lane)
    }

    /// Forgets partition `partition`'s lane (it moved to another replica or stopped).
    pub fn remove_lane(&self, partition: i32) {
        self.lanes.write().retain(|(p, _)| *p != partition);
    }

    /// The partitions whose lanes this replica runs (empty for a view that is not
    /// sharded).
    pub fn partitions(&self) -> Vec<i32> {
        self.lanes.read().iter().map(|(p, _)| *p).collect()
    }

    /// The lanes, for a sharded view.
    fn lane_runtimes(&self) -> Option<Vec<Arc<ViewRuntime>>> {
        self.is_sharded()
            .then(|| self.lanes.read().iter().map(|(_, l)| l.clone()).collect())
    }

    /// The view's counters: its own, or summed over its lanes.
    pub fn totals(&self) -> ViewTotals {
        let own = |v: &ViewRuntime| ViewTotals {
            rows_in: v.stats.rows_in.load(Ordering::Relaxed),
            watermark: v.stats.watermark.load(Ordering::Relaxed),
            caught_up: v.stats.caught_up.load(Ordering::Acquire),
            dropped_rows: v.stats.dropped_rows.load(Ordering::Relaxed),
        };
        match self.lane_runtimes() {
            None => own(self),
            // No partition here (yet): nothing to catch up with. A replica waiting for
            // another's lease stays ready, or a rolling update waiting on it would wait
            // for ever for the pod that holds the lease.
            Some(lanes) if lanes.is_empty() => ViewTotals {
                caught_up: true,
                ..own(self)
            },
            Some(lanes) => lanes.iter().map(|l| own(l)).fold(
                ViewTotals {
                    rows_in: 0,
                    watermark: i64::MAX,
                    caught_up: true,
                    dropped_rows: 0,
                },
                |a, b| ViewTotals {
                    rows_in: a.rows_in + b.rows_in,
                    watermark: a.watermark.min(b.watermark),
                    caught_up: a.caught_up && b.caught_up,
                    dropped_rows: a.dropped_rows + b.dropped_rows,
                },
            ),
        }
    }

    /// The view's name.
    pub fn name(&self) -> &str {
        &self.plan.name
    }

    /// The plan.
    pub fn plan(&self) -> &ViewPlan {
        &self.plan
    }

    /// Output schema.
    pub fn schema(&self) -> SchemaRef {
        self.plan.output_schema.clone()
    }

    /// Drops all state (the pipeline is about to replay the source from its start).
    pub fn reset(&self) -> Result<()> {
        let mut inner = self.inner.lock();
        inner.chain = crate::operator::chain(&self.plan)?;
        inner.last_wm = i64::MIN;
        inner.version += 1;
        inner.snapshot = None;
        *self.store.write() = RowStore::new(
            self.plan.output_schema.clone(),
            self.plan.key_columns.clone(),
        );
        self.stats.rows_in.store(0, Ordering::Relaxed);
        self.stats.dropped_rows.store(0, Ordering::Relaxed);
        self.stats.caught_up.store(false, Ordering::Relaxed);
        self.stats.watermark.store(i64::MIN, Ordering::Relaxed);
        self.clock.store(i64::MIN, Ordering::Relaxed);
        Ok(())
    }

    /// The definition's fingerprint.
    pub fn fingerprint(&self) -> &str {
        &self.plan.fingerprint
    }

    /// Captures the view's state for a checkpoint: open windows, counters, and the rows
    /// emitted after the first `persisted_batches` batches. Returns the snapshot and the
    /// number of emitted batches it covers.
    pub fn checkpoint(&self, persisted_batches: usize) -> Result<(ViewSnapshot, usize)> {
        let mut inner = self.inner.lock();
        let operators = inner
            .chain
            .iter_mut()
            .map(|op| op.snapshot())
            .collect::<Result<Vec<_>>>()?;
        let store = self.store.read();
        let retention = *self.retention.read();
        let moves = retention.map(|r| {
            let clock = self.clock.load(Ordering::Relaxed);
            let (evicted, min_wm, max_wm) = store.head(store.emitted_by(r.memory_cutoff(clock)));
            let kept = store
                .history()
                .map(|(_, files)| files.as_slice())
                .unwrap_or_default()
                .iter()
                .filter(|f| f.max_emitted_wm > r.history_cutoff(clock))
                .cloned()
                .collect();
            HistoryMove {
                evicted,
                min_wm,
                max_wm,
                write: r.history_ns > 0,
                kept,
            }
        });
        let snapshot = ViewSnapshot {
            history: moves,
            new_rows_wm: store.max_wm_from(persisted_batches),
            clock: self.clock.load(Ordering::Relaxed),
            operators,
            name: self.plan.name.clone(),
            fingerprint: self.plan.fingerprint.clone(),
            rows_in: self.stats.rows_in.load(Ordering::Relaxed),
            dropped_rows: self.stats.dropped_rows.load(Ordering::Relaxed),
            new_rows: store.batches_from(persisted_batches),
        };
        Ok((snapshot, store.batch_count()))
    }

    /// Replaces the state with a checkpointed one. Returns the number of emitted batches
    /// restored.
    pub fn restore(&self, restored: &RestoredView) -> Result<usize> {
        self.reset()?;
        let mut inner = self.inner.lock();
        let converted;
        let operators = match &restored.legacy {
            None => &restored.operators,
            Some(legacy) => {
                converted = legacy_operators(&inner.chain, legacy, restored.meta.dropped_rows)?;
                &converted
            }
        };
        if operators.len() != inner.chain.len() {
            return Err(EngineError::Checkpoint(format!(
                "the checkpoint holds {} operators' state, view {} has {}",
                operators.len(),
                self.plan.name,
                inner.chain.len()
            )));
        }
        for (op, state) in inner.chain.iter_mut().zip(operators) {
            op.restore(state).map_err(|e| {
                EngineError::Checkpoint(format!("restoring {} state: {e}", op.kind()))
            })?;
        }
        inner.version += 1;
        drop(inner);
        let mut store = self.store.write();
        for (b, wm) in restored.rows.iter().zip(&restored.row_wms) {
            store.append(&[with_schema(&self.plan.output_schema, b)], *wm)?;
        }
        store.evict(
            0,
            restored.history_root.clone(),
            restored.meta.history.clone(),
        );
        self.clock.store(restored.meta.clock, Ordering::Relaxed);
        self.stats
            .rows_in
            .store(restored.meta.rows_in, Ordering::Relaxed);
        self.stats
            .dropped_rows
            .store(restored.meta.dropped_rows, Ordering::Relaxed);
        Ok(store.batch_count())
    }

    /// Every row this view has emitted, those in Parquet history first (read from their
    /// files), then those in memory: what a view or sink created over it starts from.
    pub fn emitted_all(&self) -> Result<Vec<RecordBatch>> {
        if let Some(lanes) = self.lane_runtimes() {
            let mut out = Vec::new();
            for lane in lanes {
                out.extend(lane.emitted_all()?);
            }
            return Ok(out);
        }
        let (memory, history) = {
            let store = self.store.read();
            (store.batches(), store.history().cloned())
        };
        let mut out = Vec::new();
        if let Some((root, files)) = history {
            for f in &files {
                for b in crate::history::read_file(&root, &f.path)? {
                    out.push(with_schema(&self.plan.output_schema, &b));
                }
            }
        }
        out.extend(memory);
        Ok(out)
    }

    /// Processes one micro-batch at watermark `wm` and returns the rows it emitted (closed
    /// windows, or the rows of a view without aggregation) for downstream views.
    pub fn process(&self, input: Vec<RecordBatch>, wm: i64) -> Result<Vec<RecordBatch>> {
        if wm != i64::MAX {
            self.clock.fetch_max(wm, Ordering::Relaxed);
        }
        let rows: usize = input.iter().map(|b| b.num_rows()).sum();
        self.stats.rows_in.fetch_add(rows as u64, Ordering::Relaxed);
        self.stats.watermark.store(wm, Ordering::Relaxed);
        let tick = Tick {
            watermark: wm,
            input: &input,
        };
        let retention = *self.retention.read();
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let mut emitted = input.clone();
        for op in inner.chain.iter_mut() {
            emitted = op.process(emitted, &tick)?;
        }
        if let Some(retention) = retention {
            let cutoff = retention.memory_cutoff(self.clock.load(Ordering::Relaxed));
            for op in inner.chain.iter_mut() {
                op.prune(cutoff);
            }
        }
        let dropped: u64 = inner.chain.iter().map(|op| op.dropped_rows()).sum();
        self.stats.dropped_rows.store(dropped, Ordering::Relaxed);
        if rows > 0 || wm != inner.last_wm {
            inner.version += 1;
            inner.last_wm = wm;
        }
        drop(guard);
        let emitted: Vec<RecordBatch> = emitted.into_iter().filter(|b| b.num_rows() > 0).collect();
        if !emitted.is_empty() {
            self.store.write().append(&emitted, wm)?;
            if let Some(changes) = self.changes.lock().as_ref() {
                if changes.receiver_count() > 0 {
                    // A receiver that went away in between is no error.
                    let _ = changes.send(Arc::new(emitted.clone()));
                }
            }
        }
        Ok(emitted)
    }

    /// Every batch of rows the view emits from now on (closed windows, new rows, alert
    /// messages; not the changing rows of open windows). A receiver more than
    /// [`SUBSCRIBER_BACKLOG`] batches behind misses rows and is told so (`Lagged`).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Emitted> {
        match self.changes.lock().as_ref() {
            Some(changes) => changes.subscribe(),
            // Dropped: a receiver whose stream has ended.
            None => tokio::sync::broadcast::channel(1).1,
        }
    }

    /// Ends every subscription (the view is being dropped).
    pub fn close_subscriptions(&self) {
        self.changes.lock().take();
        for (_, lane) in self.lanes.read().iter() {
            lane.close_subscriptions();
        }
    }

    /// For an alert rule over an updating view: whether its open rows are due again (at
    /// most every `interval`); marks them fed.
    pub fn updates_due(&self, interval: std::time::Duration) -> bool {
        let mut inner = self.inner.lock();
        let due = inner.last_update.is_none_or(|t| t.elapsed() >= interval);
        if due {
            inner.last_update = Some(std::time::Instant::now());
        }
        due
    }

    /// An alert rule's settings and every alert it raised, oldest first.
    pub fn alerts(&self) -> Option<(AlertSpec, Vec<AlertRecord>, usize)> {
        if let Some(lanes) = self.lane_runtimes() {
            // A rule with no lane here yet is still a rule, with no alerts.
            let (mut records, mut firing) = (Vec::new(), 0);
            for (_, r, f) in lanes.iter().filter_map(|l| l.alerts()) {
                records.extend(r);
                firing += f;
            }
            records.sort_by_key(|a| a.detected_at);
            return self.plan.alert.clone().map(|spec| (spec, records, firing));
        }
        let inner = self.inner.lock();
        inner
            .chain
            .iter()
            .find_map(|op| op.as_any().downcast_ref::<AlertStage>())
            .map(|a| (a.spec().clone(), a.alerts().to_vec(), a.firing()))
    }

    /// Whether this view is an alert rule.
    pub fn is_alert(&self) -> bool {
        self.plan.alert.is_some()
    }

    /// Whether this view's rows change in place (an `EMIT ON UPDATE` or unwindowed
    /// aggregate).
    pub fn updating(&self) -> bool {
        self.plan.aggregate.is_some()
            && (self.plan.emit == EmitMode::OnUpdate || self.is_unwindowed_aggregate())
    }

    /// The watermark of this view's output stream, for views defined over it: future output
    /// rows have window starts above it.
    pub fn output_watermark(&self, wm: i64) -> i64 {
        let inner = self.inner.lock();
        inner
            .chain
            .iter()
            .fold(wm, |wm, op| op.output_watermark(wm))
    }

    /// Rows visible in memory, optionally only those whose indexed column `key_col` equals
    /// `key` (closed windows by index; open windows by scan, the caller re-filters), with
    /// open windows unless `include_open` is false; and the history files (with their root)
    /// holding the rows no longer in memory, taken under the same lock: each row is in
    /// exactly one of the two.
    pub fn read(
        &self,
        lookup: Option<(usize, &datafusion::common::ScalarValue)>,
        include_open: bool,
    ) -> Result<(Vec<RecordBatch>, Option<HistoryFiles>)> {
        if let Some(lanes) = self.lane_runtimes() {
            let mut out = Vec::new();
            let mut history: Option<HistoryFiles> = None;
            for lane in lanes {
                let (rows, files) = lane.read(lookup, include_open)?;
                out.extend(rows);
                if let Some((root, files)) = files {
                    history
                        .get_or_insert_with(|| (root, Vec::new()))
                        .1
                        .extend(files);
                }
            }
            return Ok((out, history));
        }
        let (mut out, history) = {
            let store = self.store.read();
            let rows = match lookup {
                Some((col, key)) => store.lookup(col, key)?,
                None => store.batches(),
            };
            (rows, store.history().cloned())
        };
        if include_open {
            out.extend(self.open_rows_snapshot()?);
        }
        Ok((out, history))
    }

    /// The watermark to show: the last one its input set, also once a bounded input has
    /// ended (the engine's own watermark is then the maximum).
    pub fn shown_watermark(&self) -> i64 {
        if let Some(lanes) = self.lane_runtimes() {
            return lanes
                .iter()
                .map(|l| l.shown_watermark())
                .min()
                .unwrap_or(i64::MIN);
        }
        match self.stats.watermark.load(Ordering::Relaxed) {
            i64::MAX => self.clock.load(Ordering::Relaxed),
            wm => wm,
        }
    }

    /// How long rows stay in memory and in history.
    pub fn retention(&self) -> Option<Retention> {
        *self.retention.read()
    }

    /// Changes how long rows stay in memory and in history, from the next checkpoint on;
    /// rows already moved stay where they are.
    pub fn set_retention(&self, retention: Option<Retention>) {
        *self.retention.write() = retention;
        for (_, lane) in self.lanes.read().iter() {
            lane.set_retention(retention);
        }
    }

    /// After a checkpoint that moved rows to history: the first `evicted` batches leave
    /// memory and `files` under `root` become the view's history, at once for readers.
    pub fn commit_history(&self, evicted: usize, root: HistoryRoot, files: Vec<HistoryFile>) {
        self.store.write().evict(evicted, root, files);
    }

    /// Rows visible from memory, and rows, bytes and files in Parquet history, read at one
    /// instant (a move to history never shows as rows in both or neither).
    pub fn rows_and_history(&self) -> Result<(usize, HistoryStats)> {
        if let Some(lanes) = self.lane_runtimes() {
            let mut total = (0, HistoryStats::default());
            for lane in lanes {
                let (rows, h) = lane.rows_and_history()?;
                total.0 += rows;
                total.1.rows += h.rows;
                total.1.bytes += h.bytes;
                total.1.files += h.files;
            }
            return Ok(total);
        }
        let open: usize = self
            .open_rows_snapshot()?
            .iter()
            .map(|b| b.num_rows())
            .sum();
        let store = self.store.read();
        let files = store
            .history()
            .map(|(_, f)| f.as_slice())
            .unwrap_or_default();
        let history = HistoryStats {
            rows: files.iter().map(|f| f.rows).sum(),
            bytes: files.iter().map(|f| f.bytes).sum(),
            files: files.len(),
        };
        Ok((store.rows() + open, history))
    }

    /// The window kind, for a windowed aggregate.
    pub fn window(&self) -> Option<crate::operator::window::WindowKind> {
        self.plan
            .aggregate
            .as_ref()
            .and_then(|a| a.window.as_ref())
            .map(|w| w.kind)
    }

    fn is_unwindowed_aggregate(&self) -> bool {
        matches!(&self.plan.aggregate, Some(a) if a.window.is_none())
    }

    /// The current rows of open windows (of every group, for an aggregate without windows)
    /// when the view shows them (`EMIT ON UPDATE`, unwindowed aggregates); empty otherwise.
    pub fn open_rows_snapshot(&self) -> Result<Vec<RecordBatch>> {
        if let Some(lanes) = self.lane_runtimes() {
            let mut out = Vec::new();
            for lane in lanes {
                out.extend(lane.open_rows_snapshot()?);
            }
            return Ok(out);
        }
        if self.plan.emit == EmitMode::OnUpdate || self.is_unwindowed_aggregate() {
            self.open_rows()
        } else {
            Ok(Vec::new())
        }
    }

    fn open_rows(&self) -> Result<Vec<RecordBatch>> {
        let mut inner = self.inner.lock();
        let version = inner.version;
        if let Some((v, rows)) = &inner.snapshot {
            if *v == version {
                return Ok(rows.clone());
            }
        }
        let mut rows = Vec::new();
        for op in inner.chain.iter_mut() {
            rows = op.open_rows(rows)?;
        }
        let rows: Vec<RecordBatch> = rows.into_iter().filter(|b| b.num_rows() > 0).collect();
        inner.snapshot = Some((version, rows.clone()));
        Ok(rows)
    }

    /// Output columns indexed for lookups.
    pub fn key_columns(&self) -> &[usize] {
        &self.plan.key_columns
    }

    /// Number of rows currently visible.
    pub fn row_count(&self) -> Result<usize> {
        self.rows_and_history().map(|(rows, _)| rows)
    }

    /// The view's operators in order: kind and description (`weir.view_operators`).
    pub fn operators(&self) -> Vec<(&'static str, String)> {
        let inner = self.inner.lock();
        inner
            .chain
            .iter()
            .map(|op| (op.kind(), op.describe()))
            .collect()
    }

    /// Live groups in open windows (keys of `OVER` windows).
    pub fn groups(&self) -> usize {
        if let Some(lanes) = self.lane_runtimes() {
            return lanes.iter().map(|l| l.groups()).sum();
        }
        self.inner.lock().chain.iter().map(|op| op.groups()).sum()
    }

    /// Approximate bytes of state (open accumulators plus emitted rows in memory).
    pub fn state_bytes(&self) -> usize {
        if let Some(lanes) = self.lane_runtimes() {
            return lanes.iter().map(|l| l.state_bytes()).sum();
        }
        self.open_state_bytes() + self.store.read().bytes()
    }

    /// Approximate bytes of open windows' state: accumulators and `OVER` frames.
    pub fn open_state_bytes(&self) -> usize {
        if let Some(lanes) = self.lane_runtimes() {
            return lanes.iter().map(|l| l.open_state_bytes()).sum();
        }
        self.inner
            .lock()
            .chain
            .iter()
            .map(|op| op.state_bytes())
            .sum()
    }
}

/// The per-operator state of a checkpoint written before state was stored per operator
/// ([`crate::checkpoint::LEGACY_STATE_FORMAT`]): the aggregate's open windows with its
/// counters, then `OVER` frames' three batches and an alert rule's one, in chain order.
fn legacy_operators(
    chain: &[Box<dyn Operator>],
    legacy: &crate::checkpoint::LegacyState,
    dropped_rows: u64,
) -> Result<Vec<Vec<RecordBatch>>> {
    let mut extra = legacy.extra.iter().cloned();
    chain
        .iter()
        .map(|op| match op.kind() {
            "aggregate" => {
                let meta =
                    crate::operator::aggregate::counters_batch(legacy.closed_before, dropped_rows)?;
                let mut state = vec![meta];
                state.extend(legacy.buckets.iter().cloned());
                Ok(state)
            }
            "over" => Ok(extra.by_ref().take(3).collect()),
            "alert" => Ok(extra.by_ref().take(1).collect()),
            _ => Ok(Vec::new()),
        })
        .collect()
}

/// `batch` under the view's schema when it fits (checkpoint files store every field
/// nullable), unchanged otherwise.
fn with_schema(schema: &SchemaRef, batch: &RecordBatch) -> RecordBatch {
    RecordBatch::try_new(schema.clone(), batch.columns().to_vec()).unwrap_or_else(|_| batch.clone())
}
