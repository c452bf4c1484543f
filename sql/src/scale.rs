//! Which views run on several replicas (cluster mode).
//!
//! Replicas split a Kafka source by partition, and each partition's lane computes every view
//! over the events of that partition alone. A view is right that way only when none of its
//! results mixes events of two partitions: it keeps rows as they are (filters,
//! projections), or it groups by — or partitions its `OVER` frames by — the column the
//! producers partition the topic by (the source's `partition_key`, for the seed `source`,
//! the message key). Any other view would give every replica a partial answer for the same
//! group; it is refused with an error that says so, never computed partially.
//!
//! The key column is followed from the aggregate's input down to the source through
//! projections (renames included) and filters; a column computed from it (`lower(source)`)
//! or taken from a joined table does not count.

use std::sync::Arc;

use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;
use weir_engine::operator::feed::FeedExec;
use weir_engine::pipeline::view::ViewPlan;

use crate::error::{Result, SqlError};

/// Checks that view `name` can run split by partition of a source partitioned by `key`
/// (`None`: the source names no `partition_key`).
pub fn check_partition_local(
    name: &str,
    source: &str,
    plan: &ViewPlan,
    key: Option<&str>,
) -> Result<()> {
    let refuse = |why: String| {
        Err(SqlError::FeatureNotSupported(format!(
            "view {name} cannot run on several replicas: {why}. Each replica reads only its \
             share of {source}'s partitions, so such a view would hold a partial result on \
             every replica (see docs/sql.md, \"Views on several replicas\")"
        )))
    };
    if plan.join.is_some() {
        return refuse("it joins the stream with itself, across partitions".into());
    }
    let (what, exprs) = match (&plan.aggregate, &plan.over) {
        (Some(a), _) => ("GROUP BY", &a.group_exprs),
        (None, Some(o)) => ("PARTITION BY", &o.partition_by),
        // Row by row: every output row comes from one event of one partition.
        (None, None) => return Ok(()),
    };
    let Some(key) = key else {
        return refuse(format!(
            "it aggregates, and source {source} names no partition_key (the column its \
             producers partition the topic by, e.g. WITH (partition_key = 'source'))"
        ));
    };
    let input = &plan.input.plan;
    let local = exprs.iter().any(|e| {
        e.downcast_ref::<Column>()
            .is_some_and(|c| reaches_source_column(input, c.index(), key))
    });
    if local {
        Ok(())
    } else {
        refuse(format!(
            "its {what} does not contain {source}'s partition key column {key}"
        ))
    }
}

/// Whether output column `index` of `plan` is the source's column `key`, unchanged.
fn reaches_source_column(plan: &Arc<dyn ExecutionPlan>, index: usize, key: &str) -> bool {
    let schema = plan.schema();
    let Some(field) = schema.fields().get(index) else {
        return false;
    };
    if plan.downcast_ref::<FeedExec>().is_some() {
        return field.name() == key;
    }
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        let Some(expr) = projection.expr().get(index) else {
            return false;
        };
        let input = projection.input();
        return expr
            .expr
            .downcast_ref::<Column>()
            .is_some_and(|c| reaches_source_column(input, c.index(), key));
    }
    // Filters, batching, repartitioning, and joins (a window's offsets, a lookup table):
    // the column is the child's column of the same name, from the stream's side.
    plan.children().into_iter().any(|child| {
        child
            .schema()
            .index_of(field.name())
            .is_ok_and(|i| reaches_source_column(child, i, key))
    })
}
