//! A stateless step: a physical plan planned once and executed for every micro-batch over
//! the rows it is given (see [`super::feed`]).

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;

use super::feed::{Feed, FeedExec};
use super::{Operator, Tick};
use crate::error::Result;

/// A pre-planned plan and the feed its leaves read.
#[derive(Debug, Clone)]
pub struct FedPlan {
    /// Filled before each execution.
    pub feed: Feed,
    /// Executed once per micro-batch.
    pub plan: Arc<dyn ExecutionPlan>,
}

impl FedPlan {
    /// The schema of the rows the plan produces.
    pub fn feed_output_schema(&self) -> SchemaRef {
        self.plan.schema()
    }

    /// The same plan reading a feed of its own, for a second runtime of the same view (a
    /// partition's lane): two threads never fill one feed.
    pub fn fresh(&self) -> Result<FedPlan> {
        let feed = Feed::new(self.feed.schema());
        let old = self.feed.clone();
        let plan = self
            .plan
            .clone()
            .transform_up(|node| match node.downcast_ref::<FeedExec>() {
                Some(exec) if exec.feed().same(&old) => Ok(Transformed::yes(feed.exec())),
                _ => Ok(Transformed::no(node)),
            })?
            .data;
        Ok(FedPlan { feed, plan })
    }
}

/// A [`FedPlan`] as a step of a view: runs when it is given rows, passes nothing on
/// otherwise.
#[derive(Debug)]
pub struct PlanStage {
    plan: FedPlan,
    task: Arc<TaskContext>,
}

impl PlanStage {
    /// Runs `plan` in `task`.
    pub fn new(plan: FedPlan, task: Arc<TaskContext>) -> Self {
        Self { plan, task }
    }

    fn run(&self, rows: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        let rows: Vec<RecordBatch> = rows.into_iter().filter(|b| b.num_rows() > 0).collect();
        if rows.is_empty() {
            return Ok(rows);
        }
        self.plan.feed.run(&self.plan.plan, &self.task, rows)
    }
}

impl Operator for PlanStage {
    fn kind(&self) -> &'static str {
        "plan"
    }

    fn process(&mut self, rows: Vec<RecordBatch>, _tick: &Tick<'_>) -> Result<Vec<RecordBatch>> {
        self.run(rows)
    }

    fn open_rows(&mut self, upstream: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        self.run(upstream)
    }

    /// The physical plan, one node per line, leaves last (its feed reads the batch).
    fn describe(&self) -> String {
        datafusion::physical_plan::displayable(self.plan.plan.as_ref())
            .indent(false)
            .to_string()
            .trim_end()
            .to_string()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
