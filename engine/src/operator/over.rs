//! Streaming `OVER` windows: per-key sliding aggregates over event time, computed
//! incrementally.
//!
//! `avg(x) OVER (PARTITION BY k ORDER BY t RANGE BETWEEN INTERVAL '5 minutes' PRECEDING AND
//! INTERVAL '1 millisecond' PRECEDING)` scores every event against the events of its key in
//! its frame.
//!
//! **Order.** By default ([`OverOrder::EventTime`]) rows wait in a pending buffer until the
//! watermark passes them and are then scored in event-time order (peers — rows of one key
//! with equal times — enter the frame together, as SQL's RANGE frames define; in ROWS
//! frames they keep their arrival order). No later row can sort before a released one (it
//! would be late), so the result equals the same query run as a batch, whatever the arrival
//! order within the watermark delay; the cost is latency of one watermark delay. With
//! [`OverOrder::Arrival`] (`WITH (emit = 'on_arrival')`) a row is scored as it arrives
//! against the rows of its key that arrived before it; an event older than its key's newest
//! is treated as if it happened at the newest time. That equals the batch query only when a
//! key's events arrive in event-time order.
//!
//! Frames are **exact**. Each key keeps the `(time, argument values)` of the events its
//! frames may still need, in scoring order, and each function a `[lo, hi)` range over them
//! with running count, sum and sum of squares (`min`/`max`: a monotonic queue). An event
//! enters and leaves each frame once, so the cost per event is constant on average; memory
//! is the events inside the widest bounded frame (16 bytes per event and argument, plus the
//! key) plus, in event-time order, the rows not yet passed by the watermark. `UNBOUNDED
//! PRECEDING` frames keep running totals only. `ewma`/`ewm_zscore` keep three numbers per
//! key and no events. Late events (below the watermark) never get here.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float64Array, Float64Builder, Int64Array,
    StringArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::compute::{
    cast, concat_batches, filter_record_batch, not, take_record_batch,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;
use serde::{Deserialize, Serialize};

use super::{Operator, Tick};
use crate::error::{EngineError, Result};
use crate::operator::aggregate::timestamps_ns;

/// The aggregate an `OVER` column computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverKind {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    VarSamp,
    VarPop,
    StddevSamp,
    StddevPop,
    /// Exponentially weighted moving average of the events before this one.
    Ewma,
    /// `(x - ewma) / ewm stddev`, both over the events before this one.
    EwmZscore,
}

impl OverKind {
    /// The kind for a DataFusion aggregate name, if Weir streams it.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "count" => OverKind::Count,
            "sum" => OverKind::Sum,
            "avg" | "mean" => OverKind::Avg,
            "min" => OverKind::Min,
            "max" => OverKind::Max,
            "var" | "var_samp" | "variance" => OverKind::VarSamp,
            "var_pop" => OverKind::VarPop,
            "stddev" | "stddev_samp" => OverKind::StddevSamp,
            "stddev_pop" => OverKind::StddevPop,
            "ewma" => OverKind::Ewma,
            "ewm_zscore" => OverKind::EwmZscore,
            _ => return None,
        })
    }

    fn is_ewm(self) -> bool {
        matches!(self, OverKind::Ewma | OverKind::EwmZscore)
    }
}

/// One end of a frame. Offsets are nanoseconds (RANGE) or rows (ROWS) before the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Unbounded,
    Preceding(i64),
}

/// `ROWS` or `RANGE` over the event-time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Units {
    Rows,
    Range,
}

/// A frame `BETWEEN start AND end` (`CURRENT ROW` is `Preceding(0)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub units: Units,
    pub start: Bound,
    pub end: Bound,
}

/// One `f(arg) OVER (…)` column.
#[derive(Debug, Clone)]
pub struct OverFunction {
    pub kind: OverKind,
    /// The argument; `None` counts rows.
    pub arg: Option<Arc<dyn PhysicalExpr>>,
    pub frame: Frame,
    /// `ewma`/`ewm_zscore`: the half-life in event time (ns).
    pub half_life_ns: i64,
}

/// When a row is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverOrder {
    /// Once the watermark passes it, in event-time order: equals the batch query.
    #[default]
    EventTime,
    /// As it arrives, against the rows of its key that arrived before it.
    Arrival,
}

impl OverOrder {
    /// The `emit` option's value for this order.
    pub fn as_option(self) -> &'static str {
        match self {
            OverOrder::EventTime => "on_watermark",
            OverOrder::Arrival => "on_arrival",
        }
    }

    /// The order an `emit` option's value names.
    pub fn from_option(value: &str) -> Option<Self> {
        match value.trim().to_lowercase().as_str() {
            "on_watermark" => Some(OverOrder::EventTime),
            "on_arrival" => Some(OverOrder::Arrival),
            _ => None,
        }
    }
}

/// The streaming window stage of a view: input rows in, the same rows plus one column per
/// function out (the schema DataFusion's window operator has).
#[derive(Debug, Clone)]
pub struct OverSpec {
    pub partition_by: Vec<Arc<dyn PhysicalExpr>>,
    /// The event-time expression of `ORDER BY`.
    pub order_by: Arc<dyn PhysicalExpr>,
    pub functions: Vec<OverFunction>,
    pub output_schema: SchemaRef,
    /// When rows are scored.
    pub order: OverOrder,
}

/// Running aggregates of one function over one key's frame `[lo, hi)` (sequence numbers).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct FnState {
    lo: u64,
    hi: u64,
    n: u64,
    sum: u64,
    sumsq: u64,
    /// ewm: mean, variance (f64 bits), time of the last event, events seen.
    ew_mean: u64,
    ew_var: u64,
    ew_t: i64,
    ew_n: u64,
    #[serde(skip)]
    mono: VecDeque<u64>,
}

fn f(bits: u64) -> f64 {
    f64::from_bits(bits)
}

#[derive(Debug, Clone)]
struct KeyState {
    /// Sequence number of `times[0]`.
    base: u64,
    times: VecDeque<i64>,
    /// Per argument slot, parallel to `times`.
    values: Vec<VecDeque<Option<f64>>>,
    last_t: i64,
    fns: Vec<FnState>,
}

impl KeyState {
    fn new(slots: usize, fns: usize) -> Self {
        Self {
            base: 0,
            times: VecDeque::new(),
            values: vec![VecDeque::new(); slots],
            last_t: i64::MIN,
            fns: vec![FnState::default(); fns],
        }
    }

    fn end(&self) -> u64 {
        self.base + self.times.len() as u64
    }

    fn time(&self, seq: u64) -> i64 {
        self.times[(seq - self.base) as usize]
    }

    fn value(&self, slot: usize, seq: u64) -> Option<f64> {
        self.values[slot][(seq - self.base) as usize]
    }
}

/// The incremental state of an [`OverSpec`].
pub struct OverState {
    spec: OverSpec,
    /// Argument slot of each function (functions with the same argument share one).
    slot_of: Vec<usize>,
    slot_exprs: Vec<Option<Arc<dyn PhysicalExpr>>>,
    converter: RowConverter,
    index: HashMap<Vec<u8>, usize>,
    keys: Vec<(Vec<u8>, KeyState)>,
    input_schema: SchemaRef,
    /// Event-time order: rows the watermark has not passed yet, in arrival order.
    pending: Vec<Pending>,
}

/// A batch of rows waiting for the watermark, with the bounds of their event times (a
/// null time counts as `i64::MIN`: scored at once, with null windows).
#[derive(Debug)]
struct Pending {
    rows: RecordBatch,
    min: i64,
    max: i64,
}

impl std::fmt::Debug for OverState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverState")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl OverState {
    /// Empty state for `spec` over input rows of `input_schema`.
    pub fn new(spec: OverSpec, input_schema: &Schema) -> Result<Self> {
        let fields = spec
            .partition_by
            .iter()
            .map(|e| Ok(SortField::new(e.data_type(input_schema)?)))
            .collect::<Result<Vec<_>>>()?;
        let converter = RowConverter::new(fields)?;
        let mut slot_exprs: Vec<Option<Arc<dyn PhysicalExpr>>> = Vec::new();
        let mut slot_of = Vec::new();
        for func in &spec.functions {
            let name = func.arg.as_ref().map(|a| a.to_string());
            let found = slot_exprs
                .iter()
                .position(|s| s.as_ref().map(|a| a.to_string()) == name);
            let slot = match found {
                Some(s) => s,
                None => {
                    slot_exprs.push(func.arg.clone());
                    slot_exprs.len() - 1
                }
            };
            slot_of.push(slot);
        }
        Ok(Self {
            spec,
            slot_of,
            slot_exprs,
            converter,
            index: HashMap::new(),
            keys: Vec::new(),
            input_schema: Arc::new(input_schema.clone()),
            pending: Vec::new(),
        })
    }

    /// Number of keys.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// Events retained for frames.
    pub fn retained(&self) -> usize {
        self.keys.iter().map(|(_, k)| k.times.len()).sum()
    }

    /// Rows waiting for the watermark (event-time order).
    pub fn pending(&self) -> usize {
        self.pending.iter().map(|p| p.rows.num_rows()).sum()
    }

    /// Approximate bytes.
    pub fn bytes(&self) -> usize {
        self.keys
            .iter()
            .map(|(key, k)| {
                key.len() + k.times.len() * (8 + 16 * k.values.len()) + k.fns.len() * 96
            })
            .sum::<usize>()
            + self
                .pending
                .iter()
                .map(|p| p.rows.get_array_memory_size())
                .sum::<usize>()
    }

    /// Takes the rows of `input` and returns the rows scored now, with the window columns
    /// added: every row of `input` as it arrived ([`OverOrder::Arrival`]), or every row the
    /// watermark `wm` has passed, in event-time order ([`OverOrder::EventTime`]).
    pub fn process(&mut self, input: &[RecordBatch], wm: i64) -> Result<Vec<RecordBatch>> {
        let input = input.iter().filter(|b| b.num_rows() > 0);
        if self.spec.order == OverOrder::Arrival {
            return input.map(|b| self.score(b, false)).collect();
        }
        for b in input {
            let times = self.times(b)?;
            let (min, max) = bounds(&times, 0..times.len());
            self.pending.push(Pending {
                rows: b.clone(),
                min,
                max,
            });
        }
        match self.release(wm)? {
            Some(ready) => Ok(vec![self.score(&ready, true)?]),
            None => Ok(Vec::new()),
        }
    }

    /// The PARTITION BY keys of `batch`'s rows in Arrow's row format; `None` without
    /// PARTITION BY (every row has the same, empty key).
    fn key_rows(&self, batch: &RecordBatch) -> Result<Option<Rows>> {
        let n = batch.num_rows();
        let partition: Vec<ArrayRef> = self
            .spec
            .partition_by
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<datafusion::error::Result<_>>()?;
        Ok((!partition.is_empty())
            .then(|| self.converter.convert_columns(&partition))
            .transpose()?)
    }

    /// The event times of `batch`'s rows (ns).
    fn times(&self, batch: &RecordBatch) -> Result<Int64Array> {
        let times = self
            .spec
            .order_by
            .evaluate(batch)?
            .into_array(batch.num_rows())?;
        timestamps_ns(&times)
    }

    /// Removes the pending rows below `wm` (all of them at `i64::MAX`, the end of a bounded
    /// input) and returns them sorted by (event time, key), stable: a key's peers are
    /// adjacent and keep their arrival order. Only batches that straddle the watermark
    /// are split, so the cost is the rows released, not the rows waiting.
    fn release(&mut self, wm: i64) -> Result<Option<RecordBatch>> {
        let passed = |t: i64| wm == i64::MAX || t < wm;
        if !self.pending.iter().any(|p| passed(p.min)) {
            return Ok(None);
        }
        let mut ready = Vec::new();
        let mut waiting = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            if passed(p.max) {
                ready.push(p.rows);
            } else if !passed(p.min) {
                waiting.push(p);
            } else {
                let times = self.times(&p.rows)?;
                let n = times.len();
                let now = BooleanArray::from(
                    (0..n)
                        .map(|i| passed(time_at(&times, i)))
                        .collect::<Vec<_>>(),
                );
                ready.push(filter_record_batch(&p.rows, &now)?);
                let (min, max) = bounds(&times, (0..n).filter(|&i| !now.value(i)));
                let rest = filter_record_batch(&p.rows, &not(&now)?)?;
                waiting.push(Pending {
                    rows: rest,
                    min,
                    max,
                });
            }
        }
        self.pending = waiting;
        let all = concat_batches(&self.input_schema, &ready)?;
        let n = all.num_rows();
        if n == 0 {
            return Ok(None);
        }
        let times = self.times(&all)?;
        let keys = self.key_rows(&all)?;
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (a as usize, b as usize);
            time_at(&times, a)
                .cmp(&time_at(&times, b))
                .then_with(|| match &keys {
                    Some(k) => k.row(a).cmp(&k.row(b)),
                    None => std::cmp::Ordering::Equal,
                })
        });
        Ok(Some(take_record_batch(&all, &UInt32Array::from(order))?))
    }
    /// Scores the rows of `batch`, in order, and returns it with the window columns added.
    /// With `peers`, adjacent rows of one key with equal times enter the frames together
    /// (the caller sorted them by time and key).
    fn score(&mut self, batch: &RecordBatch, peers: bool) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let rows = self.key_rows(batch)?;
        let times = self.times(batch)?;
        let args: Vec<Option<Float64Array>> = self
            .slot_exprs
            .iter()
            .map(|e| match e {
                None => Ok(None),
                Some(e) => {
                    let a = e.evaluate(batch)?.into_array(n)?;
                    let a = cast(&a, &DataType::Float64)?;
                    Ok(Some(
                        a.as_any()
                            .downcast_ref::<Float64Array>()
                            .cloned()
                            .ok_or_else(|| EngineError::Internal("cast to f64".into()))?,
                    ))
                }
            })
            .collect::<Result<_>>()?;
        let value = |slot: usize, i: usize| match &args[slot] {
            None => Some(1.0),
            Some(a) => a.is_valid(i).then(|| a.value(i)),
        };
        let key_of = |i: usize| -> &[u8] {
            match &rows {
                Some(rows) => rows.row(i).data(),
                None => &[],
            }
        };
        let funcs = self.spec.functions.len();
        let mut out: Vec<Float64Builder> = (0..funcs)
            .map(|_| Float64Builder::with_capacity(n))
            .collect();
        let slots = self.slot_exprs.len();
        let mut i = 0;
        while i < n {
            let key = key_of(i);
            let k = match self.index.get(key) {
                Some(&k) => k,
                None => {
                    self.keys.push((key.to_vec(), KeyState::new(slots, funcs)));
                    self.index.insert(key.to_vec(), self.keys.len() - 1);
                    self.keys.len() - 1
                }
            };
            let ks = &mut self.keys[k].1;
            if times.is_null(i) {
                for b in &mut out {
                    b.append_null();
                }
                i += 1;
                continue;
            }
            // The run of rows scored together: this row and, with `peers`, the following
            // rows of the same key and time.
            let mut end = i + 1;
            if peers {
                while end < n
                    && times.is_valid(end)
                    && times.value(end) == times.value(i)
                    && key_of(end) == key
                {
                    end += 1;
                }
            }
            let t = times.value(i).max(ks.last_t);
            ks.last_t = t;
            // The run joins the retained events first; frames ending at CURRENT ROW
            // include it (RANGE: all of it), frames ending before it do not reach it.
            let first = ks.end();
            for r in i..end {
                ks.times.push_back(t);
                for s in 0..slots {
                    ks.values[s].push_back(value(s, r));
                }
            }
            for r in i..end {
                let cur = first + (r - i) as u64;
                for (j, func) in self.spec.functions.iter().enumerate() {
                    let slot = self.slot_of[j];
                    let result = if func.kind.is_ewm() {
                        ewm_step(&mut ks.fns[j], func, t, value(slot, r))
                    } else {
                        advance(ks, j, slot, func, t, cur);
                        evaluate(ks, j, slot, func.kind)
                    };
                    out[j].append_option(result);
                }
            }
            evict(ks, &self.spec.functions);
            i = end;
        }
        let mut columns = batch.columns().to_vec();
        let schema = &self.spec.output_schema;
        for (j, mut b) in out.into_iter().enumerate() {
            let field = schema.field(batch.num_columns() + j);
            let array: ArrayRef = Arc::new(b.finish());
            columns.push(cast(&array, field.data_type())?);
        }
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }

    /// The state as three batches: keys (with each function's running aggregates), the
    /// retained events, key by key, and the rows waiting for the watermark.
    pub fn export(&self) -> Result<Vec<RecordBatch>> {
        let mut key_bytes = Vec::new();
        let mut last_t = Vec::new();
        let mut base = Vec::new();
        let mut len = Vec::new();
        let mut fns = Vec::new();
        let mut times = Vec::new();
        let slots = self.slot_exprs.len();
        let mut values: Vec<Vec<Option<f64>>> = vec![Vec::new(); slots];
        for (key, ks) in &self.keys {
            key_bytes.push(key.as_slice());
            last_t.push(ks.last_t);
            base.push(ks.base);
            len.push(ks.times.len() as u64);
            fns.push(
                serde_json::to_string(&ks.fns).map_err(|e| EngineError::Internal(e.to_string()))?,
            );
            times.extend(ks.times.iter().copied());
            for (s, v) in ks.values.iter().enumerate() {
                values[s].extend(v.iter().copied());
            }
        }
        let keys = RecordBatch::try_from_iter(vec![
            ("key", Arc::new(BinaryArray::from(key_bytes)) as ArrayRef),
            ("last_t", Arc::new(Int64Array::from(last_t)) as ArrayRef),
            ("base", Arc::new(UInt64Array::from(base)) as ArrayRef),
            ("len", Arc::new(UInt64Array::from(len)) as ArrayRef),
            ("fns", Arc::new(StringArray::from(fns)) as ArrayRef),
        ])?;
        let mut fields = vec![Field::new("t", DataType::Int64, false)];
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(times))];
        for (s, v) in values.into_iter().enumerate() {
            fields.push(Field::new(format!("v{s}"), DataType::Float64, true));
            columns.push(Arc::new(Float64Array::from(v)));
        }
        let events = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        let pending: Vec<RecordBatch> = self.pending.iter().map(|p| p.rows.clone()).collect();
        let pending = concat_batches(&self.input_schema, &pending)?;
        Ok(vec![keys, events, pending])
    }

    /// Replaces the state with an exported one.
    pub fn import(&mut self, batches: &[RecordBatch]) -> Result<()> {
        self.index.clear();
        self.keys.clear();
        self.pending.clear();
        let (Some(keys), Some(events), Some(pending)) =
            (batches.first(), batches.get(1), batches.get(2))
        else {
            return Err(EngineError::Checkpoint("OVER state is incomplete".into()));
        };
        if pending.num_rows() > 0 {
            // Checkpoint files store every field nullable: back under the input's schema.
            let pending =
                RecordBatch::try_new(self.input_schema.clone(), pending.columns().to_vec())
                    .map_err(|e| EngineError::Checkpoint(format!("OVER pending rows: {e}")))?;
            let restored = self.process(&[pending], i64::MIN)?;
            debug_assert!(restored.is_empty());
        }
        let col = |b: &RecordBatch, name: &str| -> Result<ArrayRef> {
            b.column_by_name(name)
                .cloned()
                .ok_or_else(|| EngineError::Checkpoint(format!("OVER state lacks {name}")))
        };
        let key_col = col(keys, "key")?;
        let key_col = key_col
            .as_any()
            .downcast_ref::<BinaryArray>()
            .ok_or_else(|| EngineError::Checkpoint("OVER keys".into()))?;
        let last_t = as_i64(&col(keys, "last_t")?)?;
        let base = cast(&col(keys, "base")?, &DataType::UInt64)?;
        let base = typed::<UInt64Array>(&base)?;
        let len = cast(&col(keys, "len")?, &DataType::UInt64)?;
        let len = typed::<UInt64Array>(&len)?;
        let fns = col(keys, "fns")?;
        let fns = fns
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| EngineError::Checkpoint("OVER functions".into()))?;
        let times = as_i64(&col(events, "t")?)?;
        let slots = self.slot_exprs.len();
        let values: Vec<Float64Array> = (0..slots)
            .map(|s| {
                let a = cast(&col(events, &format!("v{s}"))?, &DataType::Float64)?;
                typed::<Float64Array>(&a)
            })
            .collect::<Result<_>>()?;
        let mut offset = 0usize;
        for r in 0..keys.num_rows() {
            let mut ks = KeyState::new(slots, self.spec.functions.len());
            ks.base = base.value(r);
            ks.last_t = last_t.value(r);
            ks.fns = serde_json::from_str(fns.value(r))
                .map_err(|e| EngineError::Checkpoint(format!("OVER functions: {e}")))?;
            let n = len.value(r) as usize;
            for i in offset..offset + n {
                ks.times.push_back(times.value(i));
                for (s, v) in values.iter().enumerate() {
                    ks.values[s].push_back(v.is_valid(i).then(|| v.value(i)));
                }
            }
            offset += n;
            // Monotonic queues are rebuilt from the retained events of each frame.
            for (j, func) in self.spec.functions.iter().enumerate() {
                if matches!(func.kind, OverKind::Min | OverKind::Max) {
                    let slot = self.slot_of[j];
                    let from = ks.fns[j].lo.max(ks.base);
                    for seq in from..ks.fns[j].hi {
                        push_mono(&mut ks, j, slot, func.kind, seq);
                    }
                }
            }
            let key = key_col.value(r).to_vec();
            self.index.insert(key.clone(), self.keys.len());
            self.keys.push((key, ks));
        }
        Ok(())
    }
}

/// Row `i`'s event time, `i64::MIN` when null.
fn time_at(times: &Int64Array, i: usize) -> i64 {
    if times.is_null(i) {
        i64::MIN
    } else {
        times.value(i)
    }
}

/// The smallest and largest event time of `rows` (`(i64::MAX, i64::MIN)` for none).
fn bounds(times: &Int64Array, rows: impl Iterator<Item = usize>) -> (i64, i64) {
    rows.map(|i| time_at(times, i))
        .fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)))
}

fn as_i64(a: &ArrayRef) -> Result<Int64Array> {
    typed(&cast(a, &DataType::Int64)?)
}

/// `a` as its concrete array type (a checkpoint file of the wrong shape is an error).
pub(crate) fn typed<T: Array + Clone + 'static>(a: &ArrayRef) -> Result<T> {
    a.as_any()
        .downcast_ref::<T>()
        .cloned()
        .ok_or_else(|| EngineError::Checkpoint(format!("unexpected column type {}", a.data_type())))
}

/// Moves function `j`'s frame to the one of the event `cur` at time `t`.
fn advance(ks: &mut KeyState, j: usize, slot: usize, func: &OverFunction, t: i64, cur: u64) {
    let frame = func.frame;
    let end = ks.end();
    let hi_target = match (frame.units, frame.end) {
        (_, Bound::Unbounded) => end,
        (Units::Rows, Bound::Preceding(k)) => (cur + 1).saturating_sub(k as u64),
        (Units::Range, Bound::Preceding(d)) => {
            let limit = t.saturating_sub(d);
            let mut hi = ks.fns[j].hi.max(ks.base);
            while hi < end && ks.time(hi) <= limit {
                hi += 1;
            }
            hi
        }
    };
    let hi_target = hi_target.max(ks.fns[j].hi);
    let mut seq = ks.fns[j].hi;
    while seq < hi_target {
        add(ks, j, slot, func.kind, seq);
        seq += 1;
    }
    ks.fns[j].hi = hi_target;
    let lo_target = match (frame.units, frame.start) {
        (_, Bound::Unbounded) => ks.fns[j].lo,
        (Units::Rows, Bound::Preceding(k)) => cur.saturating_sub(k as u64),
        (Units::Range, Bound::Preceding(d)) => {
            let limit = t.saturating_sub(d);
            let mut lo = ks.fns[j].lo.max(ks.base);
            while lo < hi_target && ks.time(lo) < limit {
                lo += 1;
            }
            lo
        }
    };
    let lo_target = lo_target.clamp(ks.fns[j].lo, hi_target);
    let mut seq = ks.fns[j].lo;
    while seq < lo_target {
        remove(ks, j, slot, func.kind, seq);
        seq += 1;
    }
    ks.fns[j].lo = lo_target;
    if matches!(func.kind, OverKind::Min | OverKind::Max) {
        let fs = &mut ks.fns[j];
        while fs.mono.front().is_some_and(|&s| s < fs.lo) {
            fs.mono.pop_front();
        }
    }
}

fn add(ks: &mut KeyState, j: usize, slot: usize, kind: OverKind, seq: u64) {
    let Some(v) = ks.value(slot, seq) else {
        return;
    };
    let fs = &mut ks.fns[j];
    fs.n += 1;
    fs.sum = (f(fs.sum) + v).to_bits();
    fs.sumsq = (f(fs.sumsq) + v * v).to_bits();
    if matches!(kind, OverKind::Min | OverKind::Max) {
        push_mono(ks, j, slot, kind, seq);
    }
}

fn push_mono(ks: &mut KeyState, j: usize, slot: usize, kind: OverKind, seq: u64) {
    let Some(v) = ks.value(slot, seq) else {
        return;
    };
    while let Some(&back) = ks.fns[j].mono.back() {
        let b = ks.value(slot, back).unwrap_or(f64::NAN);
        let dominated = match kind {
            OverKind::Min => b >= v,
            _ => b <= v,
        };
        if !dominated {
            break;
        }
        ks.fns[j].mono.pop_back();
    }
    ks.fns[j].mono.push_back(seq);
}

fn remove(ks: &mut KeyState, j: usize, slot: usize, _kind: OverKind, seq: u64) {
    if seq < ks.base {
        return;
    }
    let Some(v) = ks.value(slot, seq) else {
        return;
    };
    let fs = &mut ks.fns[j];
    fs.n -= 1;
    if fs.n == 0 {
        // An empty frame starts from exact zeros again: no drift carries over.
        fs.sum = 0f64.to_bits();
        fs.sumsq = 0f64.to_bits();
    } else {
        fs.sum = (f(fs.sum) - v).to_bits();
        fs.sumsq = (f(fs.sumsq) - v * v).to_bits();
    }
}

fn evaluate(ks: &KeyState, j: usize, slot: usize, kind: OverKind) -> Option<f64> {
    let fs = &ks.fns[j];
    let n = fs.n as f64;
    let (sum, sumsq) = (f(fs.sum), f(fs.sumsq));
    let var = |ddof: f64| -> Option<f64> {
        (n > ddof).then(|| ((sumsq - sum * sum / n) / (n - ddof)).max(0.0))
    };
    match kind {
        OverKind::Count => Some(n),
        OverKind::Sum => (fs.n > 0).then_some(sum),
        OverKind::Avg => (fs.n > 0).then(|| sum / n),
        OverKind::VarSamp => var(1.0),
        OverKind::VarPop => var(0.0),
        OverKind::StddevSamp => var(1.0).map(f64::sqrt),
        OverKind::StddevPop => var(0.0).map(f64::sqrt),
        OverKind::Min | OverKind::Max => fs.mono.front().and_then(|&s| ks.value(slot, s)),
        OverKind::Ewma | OverKind::EwmZscore => None,
    }
}

/// Scores `x` against the exponentially weighted baseline of the events before it, then
/// folds it in (weights halve every `half_life_ns` of event time).
fn ewm_step(fs: &mut FnState, func: &OverFunction, t: i64, x: Option<f64>) -> Option<f64> {
    let x = x?;
    let (mean, var) = (f(fs.ew_mean), f(fs.ew_var));
    let score = match (fs.ew_n, func.kind) {
        (0, _) => None,
        (_, OverKind::Ewma) => Some(mean),
        (n, _) => (n >= 2 && var > 0.0).then(|| (x - mean) / var.sqrt()),
    };
    if fs.ew_n == 0 {
        fs.ew_mean = x.to_bits();
        fs.ew_var = 0f64.to_bits();
    } else {
        let dt = (t - fs.ew_t).max(0) as f64;
        let keep = 0.5f64.powf(dt / func.half_life_ns.max(1) as f64);
        // With dt = 0 the new event still counts: at least a small weight.
        let alpha = (1.0 - keep).max(1e-3);
        let diff = x - mean;
        let incr = alpha * diff;
        fs.ew_mean = (mean + incr).to_bits();
        fs.ew_var = ((1.0 - alpha) * (var + diff * incr)).to_bits();
    }
    fs.ew_t = t;
    fs.ew_n += 1;
    score
}

/// Drops events no frame can reach any more.
fn evict(ks: &mut KeyState, functions: &[OverFunction]) {
    let mut keep_from = ks.end();
    for (j, func) in functions.iter().enumerate() {
        if func.kind.is_ewm() {
            continue;
        }
        let fs = &ks.fns[j];
        let need = match (func.frame.start, func.kind) {
            (Bound::Unbounded, OverKind::Min | OverKind::Max) => {
                fs.mono.front().copied().unwrap_or(fs.hi)
            }
            (Bound::Unbounded, _) => fs.hi,
            _ => fs.lo,
        };
        keep_from = keep_from.min(need);
    }
    while ks.base < keep_from {
        ks.times.pop_front();
        for v in &mut ks.values {
            v.pop_front();
        }
        ks.base += 1;
    }
}

impl Operator for OverState {
    fn kind(&self) -> &'static str {
        "over"
    }

    fn describe(&self) -> String {
        let partition: Vec<String> = self
            .spec
            .partition_by
            .iter()
            .map(|e| e.to_string())
            .collect();
        let functions: Vec<&str> = self
            .spec
            .output_schema
            .fields()
            .iter()
            .rev()
            .take(self.spec.functions.len())
            .rev()
            .map(|f| f.name().as_str())
            .collect();
        let order = match self.spec.order {
            OverOrder::EventTime => "in event-time order once the watermark passes each row",
            OverOrder::Arrival => "in arrival order",
        };
        format!(
            "OVER (PARTITION BY {} ORDER BY {}) computing {}, {order}; keys {}",
            partition.join(", "),
            self.spec.order_by,
            functions.join(", "),
            self.keys()
        )
    }

    fn process(&mut self, rows: Vec<RecordBatch>, tick: &Tick<'_>) -> Result<Vec<RecordBatch>> {
        OverState::process(self, &rows, tick.watermark)
    }

    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        self.export()
    }

    fn restore(&mut self, state: &[RecordBatch]) -> Result<()> {
        self.import(state)
    }

    fn groups(&self) -> usize {
        self.keys()
    }

    fn state_bytes(&self) -> usize {
        self.bytes()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::TimeUnit;
    use datafusion::physical_expr::expressions::Column;

    fn spec(functions: Vec<(OverKind, Frame)>) -> (OverSpec, Schema) {
        spec_in(functions, OverOrder::Arrival)
    }

    fn spec_in(functions: Vec<(OverKind, Frame)>, order: OverOrder) -> (OverSpec, Schema) {
        let input = Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("t", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
            Field::new("x", DataType::Float64, true),
        ]);
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (i, _) in functions.iter().enumerate() {
            fields.push(Field::new(format!("w{i}"), DataType::Float64, true));
        }
        let x: Arc<dyn PhysicalExpr> = Arc::new(Column::new("x", 2));
        let spec = OverSpec {
            partition_by: vec![Arc::new(Column::new("k", 0))],
            order_by: Arc::new(Column::new("t", 1)),
            functions: functions
                .into_iter()
                .map(|(kind, frame)| OverFunction {
                    kind,
                    arg: Some(x.clone()),
                    frame,
                    half_life_ns: 10,
                })
                .collect(),
            output_schema: Arc::new(Schema::new(fields)),
            order,
        };
        (spec, input)
    }

    fn batch(schema: &Schema, rows: &[(&str, i64, Option<f64>)]) -> RecordBatch {
        use datafusion::arrow::array::TimestampNanosecondArray;
        RecordBatch::try_new(
            Arc::new(schema.clone()),
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(TimestampNanosecondArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    /// Scores `b` in arrival order.
    fn arrive(state: &mut OverState, b: RecordBatch) -> RecordBatch {
        let mut out = state.process(&[b], i64::MIN).unwrap();
        assert_eq!(out.len(), 1);
        out.remove(0)
    }

    fn column(b: &RecordBatch, i: usize) -> Vec<Option<f64>> {
        let a = b.column(i).as_any().downcast_ref::<Float64Array>().unwrap();
        (0..a.len())
            .map(|r| a.is_valid(r).then(|| a.value(r)))
            .collect()
    }

    const RANGE_BEFORE: Frame = Frame {
        units: Units::Range,
        start: Bound::Preceding(10),
        end: Bound::Preceding(1),
    };

    /// (key, time, value).
    type Row<'a> = (&'a str, i64, Option<f64>);

    /// The frame computed by brute force over every earlier row of the key (as it arrived).
    fn brute(rows: &[Row<'_>], i: usize, frame: Frame) -> Vec<f64> {
        brute_frame(rows, i, frame, false)
    }

    /// (key, time, value).
    type KeyedRow<K> = (K, i64, Option<f64>);

    /// The frame of row `i` of `rows` (a key's rows in scoring order) by brute force.
    /// With `peers` (SQL's definition) a RANGE frame ending at the row includes every peer
    /// of it, also those after it; without, only the rows up to it.
    fn brute_frame<K: PartialEq>(
        rows: &[KeyedRow<K>],
        i: usize,
        frame: Frame,
        peers: bool,
    ) -> Vec<f64> {
        let (k, t) = (&rows[i].0, rows[i].1);
        let same: Vec<(usize, &KeyedRow<K>)> =
            rows.iter().enumerate().filter(|(_, r)| &r.0 == k).collect();
        let pos = same.iter().position(|(j, _)| *j == i).unwrap() as i64;
        same.iter()
            .enumerate()
            .filter(|(p, (_, r))| {
                let p = *p as i64;
                let within_start = match (frame.units, frame.start) {
                    (_, Bound::Unbounded) => true,
                    (Units::Rows, Bound::Preceding(n)) => p >= pos - n,
                    (Units::Range, Bound::Preceding(d)) => r.1 >= t - d,
                };
                let within_end = match (frame.units, frame.end) {
                    (_, Bound::Unbounded) => true,
                    (Units::Rows, Bound::Preceding(n)) => p <= pos - n,
                    (Units::Range, Bound::Preceding(d)) => r.1 <= t - d && (peers || p <= pos),
                };
                within_start && within_end
            })
            .filter_map(|(_, (_, r))| r.2)
            .collect()
    }

    #[test]
    fn sliding_frames_match_brute_force_across_batches() {
        let frames = [
            RANGE_BEFORE,
            Frame {
                units: Units::Rows,
                start: Bound::Preceding(3),
                end: Bound::Preceding(0),
            },
            Frame {
                units: Units::Range,
                start: Bound::Unbounded,
                end: Bound::Preceding(0),
            },
        ];
        let kinds = [
            OverKind::Count,
            OverKind::Sum,
            OverKind::Avg,
            OverKind::Min,
            OverKind::Max,
            OverKind::StddevSamp,
        ];
        let mut rows = Vec::new();
        for i in 0..200i64 {
            let key = if i % 3 == 0 { "a" } else { "b" };
            let x = if i % 7 == 0 {
                None
            } else {
                Some(((i * 37) % 23) as f64)
            };
            rows.push((key, i * 2 + (i % 2), x));
        }
        for frame in frames {
            let functions: Vec<(OverKind, Frame)> = kinds.iter().map(|k| (*k, frame)).collect();
            let (spec, input) = spec(functions);
            let mut state = OverState::new(spec.clone(), &input).unwrap();
            let mut got: Vec<Vec<Option<f64>>> = vec![Vec::new(); kinds.len()];
            for (c, chunk) in rows.chunks(17).enumerate() {
                // A checkpoint round trip halfway must not change anything.
                if c == 5 {
                    let exported = state.export().unwrap();
                    state = OverState::new(spec.clone(), &input).unwrap();
                    state.import(&exported).unwrap();
                }
                let out = arrive(&mut state, batch(&input, chunk));
                for (j, g) in got.iter_mut().enumerate() {
                    g.extend(column(&out, 3 + j));
                }
            }
            #[allow(clippy::needless_range_loop)] // i indexes rows and every column of got
            for i in 0..rows.len() {
                let vals = brute(&rows, i, frame);
                let n = vals.len() as f64;
                let sum: f64 = vals.iter().sum();
                let expect = [
                    Some(n),
                    (n > 0.0).then_some(sum),
                    (n > 0.0).then(|| sum / n),
                    vals.iter().copied().reduce(f64::min),
                    vals.iter().copied().reduce(f64::max),
                    (n > 1.0).then(|| {
                        let m = sum / n;
                        (vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1.0)).sqrt()
                    }),
                ];
                for (j, e) in expect.iter().enumerate() {
                    let g = got[j][i];
                    match (e, g) {
                        (Some(e), Some(g)) => {
                            assert!(
                                (e - g).abs() < 1e-6,
                                "{frame:?} {:?} row {i}: {e} vs {g}",
                                kinds[j]
                            )
                        }
                        (None, None) => {}
                        _ => panic!("{frame:?} {:?} row {i}: {e:?} vs {g:?}", kinds[j]),
                    }
                }
            }
            assert!(state.retained() < 200 || frame.start == Bound::Unbounded);
        }
    }

    /// Out-of-order input within the watermark delay, scored once the watermark passes:
    /// every function and frame kind equals the frame computed by brute force over each
    /// key's rows in event-time order (peers in arrival order), across a checkpoint round
    /// trip with rows still pending; ewm equals the in-order run.
    #[test]
    fn event_time_order_equals_the_batch_frames_for_any_arrival_order() {
        const DELAY: i64 = 40;
        // Pairs of rows share key and time (peers); times grow by 5 per pair.
        let mut rows: Vec<(String, i64, Option<f64>)> = (0..300i64)
            .map(|i| {
                let key = format!("k{}", (i / 2) % 3);
                let x = (i % 7 != 0).then(|| ((i * 37) % 101) as f64 + i as f64 / 1000.0);
                (key, (i / 2) * 5, x)
            })
            .collect();
        // Arrival order: event time plus a jitter below the watermark delay.
        let mut seed = 42u64;
        let mut jitter = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) % DELAY as u64) as i64
        };
        let mut arrival: Vec<(i64, usize)> =
            (0..rows.len()).map(|i| (rows[i].1 + jitter(), i)).collect();
        arrival.sort();
        let arrived: Vec<(String, i64, Option<f64>)> =
            arrival.iter().map(|&(_, i)| rows[i].clone()).collect();
        assert!(
            arrived.windows(2).any(|w| w[0].1 > w[1].1),
            "the input is out of order"
        );
        // The reference order: per key by time, peers in arrival order.
        let mut ordered = arrived.clone();
        ordered.sort_by_key(|r| r.1);
        rows.clone_from(&ordered);

        let frames = [
            RANGE_BEFORE,
            Frame {
                units: Units::Range,
                start: Bound::Preceding(30),
                end: Bound::Preceding(0),
            },
            Frame {
                units: Units::Rows,
                start: Bound::Preceding(3),
                end: Bound::Preceding(0),
            },
            Frame {
                units: Units::Rows,
                start: Bound::Preceding(4),
                end: Bound::Preceding(1),
            },
            Frame {
                units: Units::Range,
                start: Bound::Unbounded,
                end: Bound::Preceding(0),
            },
        ];
        let kinds = [
            OverKind::Count,
            OverKind::Sum,
            OverKind::Avg,
            OverKind::Min,
            OverKind::Max,
            OverKind::VarSamp,
            OverKind::VarPop,
            OverKind::StddevSamp,
            OverKind::StddevPop,
            OverKind::Ewma,
            OverKind::EwmZscore,
        ];
        for frame in frames {
            let functions: Vec<(OverKind, Frame)> = kinds.iter().map(|k| (*k, frame)).collect();
            let (spec, input) = spec_in(functions.clone(), OverOrder::EventTime);
            let mut state = OverState::new(spec.clone(), &input).unwrap();
            let mut out = Vec::new();
            let mut max_t = i64::MIN;
            for (c, chunk) in arrived.chunks(13).enumerate() {
                if c == 7 {
                    assert!(state.pending() > 0, "rows wait for the watermark");
                    let exported = state.export().unwrap();
                    state = OverState::new(spec.clone(), &input).unwrap();
                    state.import(&exported).unwrap();
                }
                let chunk: Vec<(&str, i64, Option<f64>)> =
                    chunk.iter().map(|r| (r.0.as_str(), r.1, r.2)).collect();
                max_t = max_t.max(chunk.iter().map(|r| r.1).max().unwrap());
                out.extend(
                    state
                        .process(&[batch(&input, &chunk)], max_t - DELAY)
                        .unwrap(),
                );
            }
            out.extend(state.process(&[], i64::MAX).unwrap());
            assert_eq!(state.pending(), 0);
            // Every row once, in event-time order.
            let got: Vec<RecordBatch> = out;
            let total: usize = got.iter().map(|b| b.num_rows()).sum();
            assert_eq!(total, rows.len());
            // (key, time, value, the functions' results)
            type Scored = (String, i64, Option<f64>, Vec<Option<f64>>);
            let mut scored: Vec<Scored> = Vec::new();
            for b in &got {
                let k = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                let t = timestamps_ns(b.column(1)).unwrap();
                let x = column(b, 2);
                let cols: Vec<Vec<Option<f64>>> =
                    (0..kinds.len()).map(|j| column(b, 3 + j)).collect();
                for r in 0..b.num_rows() {
                    scored.push((
                        k.value(r).to_string(),
                        t.value(r),
                        x[r],
                        cols.iter().map(|c| c[r]).collect(),
                    ));
                }
            }
            assert!(
                scored.windows(2).all(|w| w[0].1 <= w[1].1),
                "{frame:?}: released in event-time order"
            );
            // The in-order reference for ewm: arrival order over the sorted rows.
            let (ewm_spec, _) = spec_in(functions.clone(), OverOrder::Arrival);
            let mut in_order = OverState::new(ewm_spec, &input).unwrap();
            let sorted: Vec<(&str, i64, Option<f64>)> =
                rows.iter().map(|r| (r.0.as_str(), r.1, r.2)).collect();
            let reference = arrive(&mut in_order, batch(&input, &sorted));
            let ewm: Vec<Vec<Option<f64>>> = (9..11).map(|j| column(&reference, 3 + j)).collect();
            for (k, t, x, values) in &scored {
                let i = rows
                    .iter()
                    .position(|r| {
                        &r.0 == k && r.1 == *t && r.2.map(f64::to_bits) == x.map(f64::to_bits)
                    })
                    .unwrap();
                let vals = brute_frame(&rows, i, frame, true);
                let n = vals.len() as f64;
                let sum: f64 = vals.iter().sum();
                let var = |ddof: f64| {
                    (n > ddof).then(|| {
                        let m = sum / n;
                        vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - ddof)
                    })
                };
                let expect = [
                    Some(n),
                    (n > 0.0).then_some(sum),
                    (n > 0.0).then(|| sum / n),
                    vals.iter().copied().reduce(f64::min),
                    vals.iter().copied().reduce(f64::max),
                    var(1.0),
                    var(0.0),
                    var(1.0).map(f64::sqrt),
                    var(0.0).map(f64::sqrt),
                    ewm[0][i],
                    ewm[1][i],
                ];
                for (j, e) in expect.iter().enumerate() {
                    match (e, values[j]) {
                        (Some(e), Some(g)) => assert!(
                            (e - g).abs() < 1e-6 * e.abs().max(1.0),
                            "{frame:?} {:?} {k}@{t}: {e} vs {g}",
                            kinds[j]
                        ),
                        (None, None) => {}
                        (e, g) => panic!("{frame:?} {:?} {k}@{t}: {e:?} vs {g:?}", kinds[j]),
                    }
                }
            }
        }
    }

    #[test]
    fn bounded_frames_forget_old_events() {
        let (spec, input) = spec(vec![(OverKind::Avg, RANGE_BEFORE)]);
        let mut state = OverState::new(spec, &input).unwrap();
        let rows: Vec<(&str, i64, Option<f64>)> =
            (0..1000).map(|i| ("a", i as i64, Some(1.0))).collect();
        arrive(&mut state, batch(&input, &rows));
        assert!(state.retained() <= 12, "{}", state.retained());
    }

    #[test]
    fn ewm_zscore_flags_a_jump_against_the_earlier_baseline() {
        let frame = RANGE_BEFORE;
        let (spec, input) = spec(vec![(OverKind::Ewma, frame), (OverKind::EwmZscore, frame)]);
        let mut state = OverState::new(spec, &input).unwrap();
        let mut rows: Vec<(&str, i64, Option<f64>)> = (0..100)
            .map(|i| ("a", i as i64, Some(10.0 + (i % 5) as f64 * 0.1)))
            .collect();
        rows.push(("a", 100, Some(50.0)));
        let out = arrive(&mut state, batch(&input, &rows));
        let mean = column(&out, 3);
        let z = column(&out, 4);
        assert_eq!(mean[0], None);
        assert!((mean[100].unwrap() - 10.2).abs() < 0.2, "{:?}", mean[100]);
        assert!(z[100].unwrap() > 10.0, "{:?}", z[100]);
        assert!(z[50].unwrap().abs() < 3.0, "{:?}", z[50]);
    }
}
