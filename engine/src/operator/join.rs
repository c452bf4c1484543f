//! Interval joins of two sources, or of a stream with itself: `FROM orders o JOIN payments p
//! ON o.id = p.order_id AND p.ts BETWEEN o.ts AND o.ts + INTERVAL '…'`.
//!
//! A join of two sources reads their [pair](crate::connector::pair): each batch holds rows of
//! either, told apart by its side column. A self-join reads one stream on both sides. Each
//! micro-batch `N` (left rows `Nl`, right rows `Nr`) is joined with the rows kept from
//! earlier batches `S` (`Sl`, `Sr`): the view's plan runs once with the left side reading
//! `Nl` and the right `Sr ∪ Nr`, and once with the left reading `Sl` and the right `Nr`.
//! Together these are every pair of rows with at least one row in `N`, each pair once, so
//! over the whole stream the view's rows are the batch join of all its (on-time) events.
//!
//! The time bound caps how far apart a pair's event times are (`horizon`). Rows arriving
//! later are at or past the watermark, so once the watermark is `horizon` past a row, no
//! future row pairs with it: it leaves the state. Rows the view emits therefore have event
//! times at or after `watermark − horizon` (its output watermark, which views over it use).

use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::compute::{cast, max};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;

use super::feed::Feed;
use super::{describe_ns, Operator, Tick};
use crate::connector::pair::PairLayout;
use crate::error::Result;

/// An interval join, as planned.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    /// The view's plan; one of its two leaves reads `left`, the other `right`.
    pub plan: Arc<dyn ExecutionPlan>,
    /// The feed of one side.
    pub left: Feed,
    /// The feed of the other side.
    pub right: Feed,
    /// The event-time column of the rows the join receives (the stream's, or the pair's).
    pub time_column: usize,
    /// For a join of two sources: the shape of their pair's rows (the left side reads the
    /// pair's first source). `None`: a self-join, both sides read the rows received.
    pub pair: Option<PairLayout>,
    /// The most the event times of a pair may differ (ns).
    pub horizon_ns: i64,
}

/// The interval join operator: the stream's recent rows and the plan that pairs them.
#[derive(Debug)]
pub struct IntervalJoin {
    spec: JoinSpec,
    task: Arc<TaskContext>,
    /// Rows of earlier batches that may still pair, each batch with its latest event time.
    kept: VecDeque<(RecordBatch, i64)>,
}

impl IntervalJoin {
    /// A join with no rows kept yet.
    pub fn new(spec: JoinSpec, task: Arc<TaskContext>) -> Self {
        Self {
            spec,
            task,
            kept: VecDeque::new(),
        }
    }

    /// The plan's rows with one side reading `left` and the other `right`.
    fn run(&self, left: Vec<RecordBatch>, right: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        self.spec.left.fill(left);
        let out = self.spec.right.run(&self.spec.plan, &self.task, right);
        self.spec.left.clear();
        out
    }

    /// The latest event time of `batch` (ns; `i64::MIN` when it has none).
    fn latest(&self, batch: &RecordBatch) -> Result<i64> {
        let column = cast(batch.column(self.spec.time_column), &DataType::Int64)?;
        let times = column
            .as_any()
            .downcast_ref::<Int64Array>()
            .map(|a| max(a).unwrap_or(i64::MIN))
            .unwrap_or(i64::MAX);
        Ok(times)
    }

    /// The left and the right side's rows of `batches`.
    fn sides(&self, batches: &[RecordBatch]) -> Result<(Vec<RecordBatch>, Vec<RecordBatch>)> {
        match &self.spec.pair {
            None => Ok((batches.to_vec(), batches.to_vec())),
            Some(pair) => Ok((pair.rows_of(0, batches)?, pair.rows_of(1, batches)?)),
        }
    }

    /// Keeps `batch` for later batches to pair with.
    fn keep(&mut self, batch: RecordBatch) -> Result<()> {
        let latest = self.latest(&batch)?;
        self.kept.push_back((batch, latest));
        Ok(())
    }
}

impl Operator for IntervalJoin {
    fn kind(&self) -> &'static str {
        "join"
    }

    fn process(&mut self, rows: Vec<RecordBatch>, tick: &Tick<'_>) -> Result<Vec<RecordBatch>> {
        let rows: Vec<RecordBatch> = rows.into_iter().filter(|b| b.num_rows() > 0).collect();
        let mut out = Vec::new();
        if !rows.is_empty() {
            let kept: Vec<RecordBatch> = self.kept.iter().map(|(b, _)| b.clone()).collect();
            let (new_left, new_right) = self.sides(&rows)?;
            let (kept_left, mut right) = self.sides(&kept)?;
            right.extend(new_right.iter().cloned());
            if !new_left.is_empty() && !right.is_empty() {
                out.extend(self.run(new_left, right)?);
            }
            if !kept_left.is_empty() && !new_right.is_empty() {
                out.extend(self.run(kept_left, new_right)?);
            }
            for batch in rows {
                self.keep(batch)?;
            }
        }
        if tick.watermark == i64::MAX {
            // A bounded input ended: nothing arrives to pair with.
            self.kept.clear();
        } else {
            let cutoff = tick.watermark.saturating_sub(self.spec.horizon_ns);
            self.kept.retain(|(_, latest)| *latest >= cutoff);
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        let what = match &self.spec.pair {
            Some(p) => format!("{} and {}", p.first.0, p.second.0),
            None => "the stream with itself".into(),
        };
        format!(
            "interval join of {what}: rows kept until the watermark is {} past them\n{}",
            describe_ns(self.spec.horizon_ns),
            datafusion::physical_plan::displayable(self.spec.plan.as_ref())
                .indent(false)
                .to_string()
                .trim_end()
        )
    }

    /// Rows still unpaired are none: a join's open rows are what it already emitted.
    fn open_rows(&mut self, _upstream: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        Ok(Vec::new())
    }

    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        Ok(self.kept.iter().map(|(b, _)| b.clone()).collect())
    }

    fn restore(&mut self, state: &[RecordBatch]) -> Result<()> {
        self.kept.clear();
        let schema = match &self.spec.pair {
            Some(p) => p.schema.clone(),
            None => self.spec.left.schema(),
        };
        for batch in state {
            // Checkpoint files store every field nullable: back to the received schema.
            let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())?;
            self.keep(batch)?;
        }
        Ok(())
    }

    fn groups(&self) -> usize {
        self.kept.iter().map(|(b, _)| b.num_rows()).sum()
    }

    fn state_bytes(&self) -> usize {
        self.kept
            .iter()
            .map(|(b, _)| b.get_array_memory_size())
            .sum()
    }

    fn output_watermark(&self, wm: i64) -> i64 {
        if wm == i64::MAX {
            wm
        } else {
            wm.saturating_sub(self.spec.horizon_ns)
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
