//! Incremental aggregation over DataFusion's own accumulators.
//!
//! A view's `GROUP BY` is maintained as one [`Bucket`] per window (or a single bucket for an
//! unwindowed aggregate). A bucket interns group keys (Arrow row format) to dense indices and
//! owns one `GroupsAccumulator` per aggregate — the very accumulators DataFusion's
//! `AggregateExec` uses, so every built-in or user-defined aggregate works, and
//! `approx_percentile_cont` keeps its t-digest state across batches. Raw events are never
//! kept: each batch is folded in and dropped.
//!
//! A window is evaluated (and its bucket freed) once the watermark passes its end. An
//! `EMIT ON UPDATE` view evaluates open buckets without consuming them: it takes each
//! accumulator's state, merges it back, and evaluates a fresh accumulator merged from the same
//! state.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::cast::as_boolean_array;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};

use super::{Operator, Tick};
use crate::error::{EngineError, Result};
use crate::operator::window::WindowKind;

/// Which group column carries the window start, and the window's shape.
#[derive(Debug, Clone)]
pub struct WindowBinding {
    /// Index of the expression windows are keyed by (`window_start`; `window_end` for
    /// `CUMULATE`) among the group expressions.
    pub group_index: usize,
    /// Window kind (its size decides when a window closes).
    pub kind: WindowKind,
}

/// The physical pieces of one `GROUP BY`, taken from the `AggregateExec` DataFusion planned.
#[derive(Debug, Clone)]
pub struct AggregateSpec {
    /// Group expressions, evaluated over the pre-aggregation rows.
    pub group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// The aggregate functions.
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// Argument expressions of each aggregate (ordering expressions included).
    pub args: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    /// `FILTER (WHERE …)` of each aggregate.
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// Output: the group columns, then one column per aggregate.
    pub output_schema: SchemaRef,
    /// Set when the view groups by a window.
    pub window: Option<WindowBinding>,
}

impl AggregateSpec {
    /// Every aggregate's arguments and `FILTER` mask over `batch`.
    #[allow(clippy::type_complexity)]
    pub fn inputs(
        &self,
        batch: &RecordBatch,
    ) -> Result<(Vec<Vec<ArrayRef>>, Vec<Option<BooleanArray>>)> {
        let n = batch.num_rows();
        let args = self
            .args
            .iter()
            .map(|exprs| evaluate_all(exprs, batch))
            .collect::<Result<_>>()?;
        let filters = self
            .filters
            .iter()
            .map(|f| match f {
                None => Ok(None),
                Some(expr) => {
                    let arr = expr.evaluate(batch)?.into_array(n)?;
                    Ok(Some(as_boolean_array(&arr)?.clone()))
                }
            })
            .collect::<Result<_>>()?;
        Ok((args, filters))
    }
}

/// Group state of one window.
struct Bucket {
    /// Group number of each key's bytes in Arrow's row format, hashed with foldhash.
    index: HashMap<Box<[u8]>, u32, foldhash::fast::RandomState>,
    keys: Rows,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
}

/// The keyed state of one aggregating view.
pub struct IncrementalAggregate {
    spec: AggregateSpec,
    converter: RowConverter,
    /// Columns of the group key (the constant column of an ungrouped aggregate included).
    key_count: usize,
    buckets: BTreeMap<i64, Bucket>,
    /// Windows starting before this have been emitted; rows for them are dropped and counted.
    closed_before: i64,
    dropped_rows: u64,
}

impl std::fmt::Debug for IncrementalAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncrementalAggregate")
            .field("buckets", &self.buckets.len())
            .field("groups", &self.groups())
            .finish()
    }
}

const UNWINDOWED: i64 = 0;

impl IncrementalAggregate {
    /// Empty state for `spec`.
    pub fn new(spec: AggregateSpec) -> Result<Self> {
        let mut fields: Vec<SortField> = spec
            .output_schema
            .fields()
            .iter()
            .take(spec.group_exprs.len())
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        if fields.is_empty() {
            // `SELECT count(*) FROM s`: one group. Arrow's row format cannot count rows of
            // zero columns, so the group key is a constant column, dropped on output.
            fields.push(SortField::new(DataType::Boolean));
        }
        Ok(Self {
            key_count: fields.len(),
            converter: RowConverter::new(fields)?,
            spec,
            buckets: BTreeMap::new(),
            closed_before: i64::MIN,
            dropped_rows: 0,
        })
    }

    /// The spec this state was built from.
    pub fn spec(&self) -> &AggregateSpec {
        &self.spec
    }

    /// Number of live groups over all open windows.
    pub fn groups(&self) -> usize {
        self.buckets.values().map(|b| b.keys.num_rows()).sum()
    }

    /// Approximate bytes held by the state.
    pub fn state_bytes(&self) -> usize {
        self.buckets
            .values()
            .map(|b| {
                b.keys.size()
                    + b.index.len() * 48
                    + b.accumulators.iter().map(|a| a.size()).sum::<usize>()
            })
            .sum()
    }

    /// Rows dropped because their window had already been emitted.
    pub fn dropped_rows(&self) -> u64 {
        self.dropped_rows
    }

    /// Folds one batch of pre-aggregation rows into the state.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let keys = if self.spec.group_exprs.is_empty() {
            vec![Arc::new(BooleanArray::from(vec![true; n])) as ArrayRef]
        } else {
            evaluate_all(&self.spec.group_exprs, batch)?
        };
        let (args, filters) = self.spec.inputs(batch)?;
        let rows = self.converter.convert_columns(&keys)?;

        let window_starts = match &self.spec.window {
            Some(w) => Some(timestamps_ns(&keys[w.group_index])?),
            None => None,
        };
        // Rows per window, in first-seen order.
        let mut per_bucket: Vec<(i64, Vec<u32>)> = Vec::new();
        match &window_starts {
            None => per_bucket.push((UNWINDOWED, (0..n as u32).collect())),
            Some(starts) => {
                for i in 0..n {
                    if starts.is_null(i) || starts.value(i) < self.closed_before {
                        self.dropped_rows += 1;
                        continue;
                    }
                    let s = starts.value(i);
                    match per_bucket.iter_mut().rev().find(|(b, _)| *b == s) {
                        Some((_, idx)) => idx.push(i as u32),
                        None => per_bucket.push((s, vec![i as u32])),
                    }
                }
            }
        }

        for (bucket_id, idx) in per_bucket {
            let whole = idx.len() == n;
            let bucket = match self.buckets.entry(bucket_id) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(new_bucket(&self.spec, &self.converter)?)
                }
            };
            let group_indices: Vec<usize> = idx
                .iter()
                .map(|&i| bucket.intern(rows.row(i as usize)))
                .collect();
            let total = bucket.keys.num_rows();
            let take_idx = (!whole).then(|| UInt32Array::from(idx));
            for (a, acc) in bucket.accumulators.iter_mut().enumerate() {
                let values: Vec<ArrayRef> = match &take_idx {
                    None => args[a].clone(),
                    Some(t) => args[a]
                        .iter()
                        .map(|v| take(v.as_ref(), t, None))
                        .collect::<std::result::Result<_, _>>()?,
                };
                let filter = match (&filters[a], &take_idx) {
                    (None, _) => None,
                    (Some(f), None) => Some(f.clone()),
                    (Some(f), Some(t)) => Some(as_boolean_array(&take(f, t, None)?)?.clone()),
                };
                acc.update_batch(&values, &group_indices, filter.as_ref(), total)?;
            }
        }
        Ok(())
    }

    /// Removes every window that is complete at watermark `wm` and returns its rows, oldest
    /// window first. Unwindowed state never closes.
    pub fn close(&mut self, wm: i64) -> Result<Vec<RecordBatch>> {
        let Some(window) = self.spec.window.clone() else {
            return Ok(vec![]);
        };
        let mut out = Vec::new();
        while let Some((&start, _)) = self.buckets.first_key_value() {
            if !window.kind.is_closed(start, wm) {
                break;
            }
            let (_, mut bucket) = self.buckets.pop_first().expect("non-empty");
            out.push(bucket.evaluate(&self.spec, &self.converter)?);
            self.closed_before = self.closed_before.max(start.saturating_add(1));
        }
        // Windows keyed below this can no longer receive rows.
        self.closed_before = self.closed_before.max(window.kind.open_from(wm));
        Ok(out)
    }

    /// Windows starting before this have been emitted.
    pub fn closed_before(&self) -> i64 {
        self.closed_before
    }

    /// The open state as one batch per window: `__bucket` (the window start), the group
    /// key columns, then every accumulator's state columns. The accumulators keep their
    /// state (it is taken and merged back).
    pub fn export(&mut self) -> Result<Vec<RecordBatch>> {
        let converter = &self.converter;
        let mut out = Vec::with_capacity(self.buckets.len());
        for (&start, bucket) in self.buckets.iter_mut() {
            let n = bucket.keys.num_rows();
            if n == 0 {
                continue;
            }
            let mut fields = vec![Field::new("__bucket", DataType::Int64, true)];
            let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![start; n]))];
            for (i, c) in converter
                .convert_rows(bucket.keys.iter())?
                .into_iter()
                .enumerate()
            {
                fields.push(Field::new(format!("k{i}"), c.data_type().clone(), true));
                columns.push(c);
            }
            let all: Vec<usize> = (0..n).collect();
            for (a, acc) in bucket.accumulators.iter_mut().enumerate() {
                let state = acc.state(EmitTo::All)?;
                acc.merge_batch(&state, &all, n)?;
                for (j, c) in state.into_iter().enumerate() {
                    fields.push(Field::new(format!("s{a}_{j}"), c.data_type().clone(), true));
                    columns.push(c);
                }
            }
            out.push(RecordBatch::try_new(
                Arc::new(Schema::new(fields)),
                columns,
            )?);
        }
        Ok(out)
    }

    /// Replaces the state with one [`export`](Self::export)ed earlier. A batch may hold
    /// several windows (consecutive rows of one `__bucket`), as a checkpoint file does.
    pub fn import(
        &mut self,
        buckets: &[RecordBatch],
        closed_before: i64,
        dropped_rows: u64,
    ) -> Result<()> {
        self.buckets.clear();
        self.closed_before = closed_before;
        self.dropped_rows = dropped_rows;
        let keys = self.key_count;
        let arities: Vec<usize> = self
            .spec
            .aggregates
            .iter()
            .map(|a| Ok(a.state_fields()?.len()))
            .collect::<Result<_>>()?;
        let expected = 1 + keys + arities.iter().sum::<usize>();
        for whole in buckets {
            if whole.num_rows() == 0 {
                continue;
            }
            if whole.num_columns() != expected {
                return Err(EngineError::Checkpoint(format!(
                    "state has {} columns, this view needs {expected}",
                    whole.num_columns()
                )));
            }
            let starts = timestamps_ns(whole.column(0))?;
            let mut from = 0;
            while from < whole.num_rows() {
                let start = starts.value(from);
                let mut to = from + 1;
                while to < whole.num_rows() && starts.value(to) == start {
                    to += 1;
                }
                let batch = whole.slice(from, to - from);
                from = to;
                let n = batch.num_rows();
                let rows = self
                    .converter
                    .convert_columns(&batch.columns()[1..1 + keys])?;
                let bucket = match self.buckets.entry(start) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(new_bucket(&self.spec, &self.converter)?)
                    }
                };
                let groups: Vec<usize> = (0..n).map(|i| bucket.intern(rows.row(i))).collect();
                let total = bucket.keys.num_rows();
                let mut col = 1 + keys;
                for (acc, &arity) in bucket.accumulators.iter_mut().zip(&arities) {
                    acc.merge_batch(&batch.columns()[col..col + arity], &groups, total)?;
                    col += arity;
                }
            }
        }
        Ok(())
    }

    /// Evaluates every open window without consuming it.
    pub fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let spec = &self.spec;
        let converter = &self.converter;
        self.buckets
            .values_mut()
            .map(|b| b.peek(spec, converter))
            .collect()
    }
}

pub(crate) fn evaluate_all(
    exprs: &[Arc<dyn PhysicalExpr>],
    batch: &RecordBatch,
) -> Result<Vec<ArrayRef>> {
    exprs
        .iter()
        .map(|e| Ok(e.evaluate(batch)?.into_array(batch.num_rows())?))
        .collect()
}

fn create_accumulator(agg: &Arc<AggregateFunctionExpr>) -> Result<Box<dyn GroupsAccumulator>> {
    if agg.groups_accumulator_supported() {
        Ok(agg.create_groups_accumulator()?)
    } else {
        let agg = agg.clone();
        Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
            agg.create_accumulator()
        })))
    }
}

fn new_bucket(spec: &AggregateSpec, converter: &RowConverter) -> Result<Bucket> {
    Ok(Bucket {
        index: HashMap::default(),
        keys: converter.empty_rows(64, 1024),
        accumulators: spec
            .aggregates
            .iter()
            .map(create_accumulator)
            .collect::<Result<_>>()?,
    })
}

impl Bucket {
    fn intern(&mut self, row: datafusion::arrow::row::Row<'_>) -> usize {
        if let Some(&g) = self.index.get(row.as_ref()) {
            return g as usize;
        }
        let g = self.keys.num_rows();
        self.keys.push(row);
        self.index.insert(row.as_ref().into(), g as u32);
        g
    }

    fn key_columns(&self, spec: &AggregateSpec, converter: &RowConverter) -> Result<Vec<ArrayRef>> {
        if spec.group_exprs.is_empty() {
            return Ok(vec![]);
        }
        Ok(converter.convert_rows(self.keys.iter())?)
    }

    fn evaluate(&mut self, spec: &AggregateSpec, converter: &RowConverter) -> Result<RecordBatch> {
        let mut columns = self.key_columns(spec, converter)?;
        for acc in &mut self.accumulators {
            columns.push(acc.evaluate(EmitTo::All)?);
        }
        batch_with_schema(&spec.output_schema, columns)
    }

    fn peek(&mut self, spec: &AggregateSpec, converter: &RowConverter) -> Result<RecordBatch> {
        let n = self.keys.num_rows();
        let mut columns = self.key_columns(spec, converter)?;
        let all: Vec<usize> = (0..n).collect();
        for (acc, agg) in self.accumulators.iter_mut().zip(&spec.aggregates) {
            let state = acc.state(EmitTo::All)?;
            acc.merge_batch(&state, &all, n)?;
            let mut fresh = create_accumulator(agg)?;
            fresh.merge_batch(&state, &all, n)?;
            columns.push(fresh.evaluate(EmitTo::All)?);
        }
        batch_with_schema(&spec.output_schema, columns)
    }
}

/// Builds a batch of `schema`, casting columns whose type differs only in detail (an
/// accumulator may report e.g. a different timezone string).
pub(crate) fn batch_with_schema(schema: &SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    let columns = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c)
            } else {
                Ok(cast(&c, f.data_type())?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let options = datafusion::arrow::record_batch::RecordBatchOptions::new()
        .with_row_count(Some(columns.first().map(|c| c.len()).unwrap_or(0)));
    if let Ok(batch) = RecordBatch::try_new_with_options(schema.clone(), columns.clone(), &options)
    {
        return Ok(batch);
    }
    // Nullability of aggregate outputs is advisory; relax it rather than fail.
    let relaxed = Arc::new(datafusion::arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    Ok(RecordBatch::try_new_with_options(
        relaxed, columns, &options,
    )?)
}

/// The checkpointed form: a first batch with `closed_before` and `dropped_rows`, then the
/// open windows ([`IncrementalAggregate::export`]) as one batch.
impl Operator for IncrementalAggregate {
    fn kind(&self) -> &'static str {
        "aggregate"
    }

    fn process(&mut self, rows: Vec<RecordBatch>, tick: &Tick<'_>) -> Result<Vec<RecordBatch>> {
        for b in &rows {
            self.update(b)?;
        }
        self.close(tick.watermark)
    }

    fn open_rows(&mut self, _upstream: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        self.snapshot()
    }

    fn describe(&self) -> String {
        let fields = self.spec.output_schema.fields();
        let groups: Vec<&str> = fields
            .iter()
            .take(self.spec.group_exprs.len())
            .map(|f| f.name().as_str())
            .collect();
        let aggregates: Vec<&str> = self.spec.aggregates.iter().map(|a| a.name()).collect();
        let windows = match self.spec.window.as_ref().map(|w| w.kind) {
            Some(WindowKind::Tumble { size }) => {
                format!("tumbling windows of {}", super::describe_ns(size))
            }
            Some(WindowKind::Hop { slide, size }) => format!(
                "hopping windows of {} every {}",
                super::describe_ns(size),
                super::describe_ns(slide)
            ),
            Some(WindowKind::Cumulate { step, size }) => format!(
                "cumulative windows growing by {} up to {}, keyed by window_end",
                super::describe_ns(step),
                super::describe_ns(size)
            ),
            Some(WindowKind::Session { gap }) => {
                format!("session windows, gap {}", super::describe_ns(gap))
            }
            None => "no windows: one state per group for the whole stream".to_string(),
        };
        format!(
            "{windows}; group by {}; aggregates {}; open groups {}",
            if groups.is_empty() {
                "()".to_string()
            } else {
                groups.join(", ")
            },
            aggregates.join(", "),
            self.groups()
        )
    }

    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let meta = counters_batch(self.closed_before, self.dropped_rows)?;
        let buckets = self.export()?;
        let mut out = vec![meta];
        if let Some(first) = buckets.first() {
            out.push(datafusion::arrow::compute::concat_batches(
                &first.schema(),
                &buckets,
            )?);
        }
        Ok(out)
    }

    fn restore(&mut self, state: &[RecordBatch]) -> Result<()> {
        let meta = state
            .first()
            .filter(|m| m.num_rows() == 1 && m.num_columns() == 2)
            .ok_or_else(|| {
                EngineError::Checkpoint("aggregate state without its counters".into())
            })?;
        let closed_before = timestamps_ns(meta.column(0))?.value(0);
        let dropped_rows = timestamps_ns(meta.column(1))?.value(0).max(0) as u64;
        self.import(&state[1..], closed_before, dropped_rows)
    }

    fn groups(&self) -> usize {
        IncrementalAggregate::groups(self)
    }

    fn state_bytes(&self) -> usize {
        IncrementalAggregate::state_bytes(self)
    }

    fn dropped_rows(&self) -> u64 {
        self.dropped_rows
    }

    /// Future windows start after `wm − size`.
    fn output_watermark(&self, wm: i64) -> i64 {
        match &self.spec.window {
            Some(w) if wm != i64::MAX => wm.saturating_sub(w.kind.size()),
            _ => wm,
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The first batch of a window aggregate's checkpointed state: `closed_before` and
/// `dropped_rows`.
pub fn counters_batch(closed_before: i64, dropped_rows: u64) -> Result<RecordBatch> {
    Ok(RecordBatch::try_from_iter(vec![
        (
            "closed_before",
            Arc::new(Int64Array::from(vec![closed_before])) as ArrayRef,
        ),
        (
            "dropped_rows",
            Arc::new(Int64Array::from(vec![dropped_rows as i64])) as ArrayRef,
        ),
    ])?)
}

/// Reads a timestamp (or integer) column as nanoseconds since the epoch.
pub fn timestamps_ns(array: &ArrayRef) -> Result<Int64Array> {
    let factor = match array.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, _) | DataType::Int64 => 1,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 1_000,
        DataType::Timestamp(TimeUnit::Millisecond, _) => 1_000_000,
        DataType::Timestamp(TimeUnit::Second, _) => 1_000_000_000,
        other => {
            return Err(EngineError::Unsupported(format!(
                "event time must be a timestamp, found {other}"
            )))
        }
    };
    let raw = cast(array, &DataType::Int64)?;
    let raw = raw
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| EngineError::Internal("cast to Int64 gave another type".into()))?;
    if factor == 1 {
        return Ok(raw.clone());
    }
    Ok(raw
        .iter()
        .map(|v| v.map(|v| v.saturating_mul(factor)))
        .collect())
}
