//! Feeding micro-batches through a plan that was planned once.
//!
//! Planning a query costs about half a millisecond, so a view is planned once and its physical
//! plan is executed again for every micro-batch. The leaf of such a plan is a [`FeedExec`]: it
//! yields whatever batches the pipeline last put into its [`Feed`].

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{reset_plan_states, Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::TryStreamExt;
use parking_lot::Mutex;

use crate::error::Result;

/// The slot a pipeline fills before each execution of a pre-planned plan.
#[derive(Debug, Clone)]
pub struct Feed {
    schema: SchemaRef,
    batches: Arc<Mutex<Vec<RecordBatch>>>,
}

impl Feed {
    /// An empty feed of the given schema.
    pub fn new(schema: SchemaRef) -> Self {
        Self {
            schema,
            batches: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Whether `other` is this feed (a clone of it).
    pub fn same(&self, other: &Feed) -> bool {
        Arc::ptr_eq(&self.batches, &other.batches)
    }

    /// The schema of the batches this feed carries.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Runs `plan` (whose leaves read this feed) over `input` and collects its output.
    pub fn run(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        task: &Arc<TaskContext>,
        input: Vec<RecordBatch>,
    ) -> Result<Vec<RecordBatch>> {
        // Joins cache their build side inside the plan node: reset such state first, or the
        // second batch would be joined against the first batch's rows.
        let plan = reset_plan_states(plan.clone())?;
        *self.batches.lock() = input;
        let out = futures::executor::block_on(async {
            let stream = plan.execute(0, task.clone())?;
            stream.try_collect::<Vec<_>>().await
        });
        self.batches.lock().clear();
        Ok(out?)
    }

    /// Puts `batches` in the feed for the next execution of a plan reading it (and another
    /// feed, which [`run`](Self::run) fills); [`clear`](Self::clear) empties it after.
    pub fn fill(&self, batches: Vec<RecordBatch>) {
        *self.batches.lock() = batches;
    }

    /// Empties the feed.
    pub fn clear(&self) {
        self.batches.lock().clear();
    }

    /// A table provider whose scans read this feed; register it under the source's name in
    /// the context a view is planned in.
    pub fn table(&self) -> Arc<dyn TableProvider> {
        Arc::new(FeedTable { feed: self.clone() })
    }

    /// A leaf plan reading this feed.
    pub fn exec(&self) -> Arc<dyn ExecutionPlan> {
        Arc::new(FeedExec::new(self.clone()))
    }
}

/// Table provider over a [`Feed`].
#[derive(Debug)]
pub struct FeedTable {
    feed: Feed,
}

#[async_trait]
impl TableProvider for FeedTable {
    fn schema(&self) -> SchemaRef {
        self.feed.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let exec = self.feed.exec();
        match projection {
            None => Ok(exec),
            Some(indices) => {
                let schema = self.feed.schema();
                let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = indices
                    .iter()
                    .map(|&i| {
                        let name = schema.field(i).name().clone();
                        let col: Arc<dyn PhysicalExpr> = Arc::new(
                            datafusion::physical_expr::expressions::Column::new(&name, i),
                        );
                        (col, name)
                    })
                    .collect();
                Ok(Arc::new(ProjectionExec::try_new(exprs, exec)?))
            }
        }
    }
}

/// Leaf execution plan yielding the batches currently in a [`Feed`].
#[derive(Debug)]
pub struct FeedExec {
    feed: Feed,
    properties: Arc<PlanProperties>,
}

impl FeedExec {
    /// The feed it reads.
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    fn new(feed: Feed) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(feed.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            feed,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for FeedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "FeedExec")
    }
}

impl ExecutionPlan for FeedExec {
    fn name(&self) -> &'static str {
        "FeedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let batches = self.feed.batches.lock().clone();
        Ok(Box::pin(MemoryStream::try_new(
            batches,
            self.feed.schema(),
            None,
        )?))
    }
}
