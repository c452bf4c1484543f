//! Planning a materialized view into an engine pipeline.
//!
//! The view's query is planned by DataFusion, once, in a context where every relation is a
//! [`Feed`]. From the physical plan we take the `AggregateExec` apart: its input becomes the
//! per-batch pre-aggregation plan, its group and aggregate expressions the incremental
//! state, and the plan above it the post-aggregation step — so the view computes exactly
//! what DataFusion would, batch by batch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::aggregates::{aggregate_expressions, AggregateExec, AggregateMode};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use parking_lot::Mutex;
use weir_engine::aggregate::{AggregateSpec, WindowBinding};
use weir_engine::feed::Feed;
use weir_engine::view::{EmitMode, FedPlan, ViewPlan};

use crate::dialect::{parse_statement, WeirStatement};
use crate::error::{Result, SqlError};
use crate::functions::{PlanCapture, RelationResolver, WindowFunction};

/// A relation a view can read.
#[derive(Debug, Clone)]
pub struct StreamRelation {
    /// Output schema.
    pub schema: SchemaRef,
    /// The source at the root of this relation's pipeline.
    pub root_source: String,
    /// For a view: whether its rows are updated in place (EMIT ON UPDATE aggregate).
    pub updating: bool,
}

/// A view planned against its input.
#[derive(Debug)]
pub struct PlannedView {
    /// The engine's plan.
    pub plan: ViewPlan,
    /// The relation it reads (a source or a view).
    pub input: String,
    /// The source at the root.
    pub root_source: String,
}

/// Session settings shared by every context Weir plans in.
pub fn base_config() -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema("weir", "public")
        // Weir serves its own information_schema with PostgreSQL type names.
        .with_information_schema(false);
    let options = config.options_mut();
    options.sql_parser.map_string_types_to_utf8view = false;
    options.execution.time_zone = Some("+00:00".into());
    config
}

/// A context for planning one view: one partition, so the plan runs on one thread per batch,
/// and no rewrite of DISTINCT aggregates into two aggregation levels.
fn streaming_context() -> SessionContext {
    let config = base_config()
        .with_target_partitions(1)
        .with_information_schema(false);
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    let rules: Vec<_> = state
        .optimizers()
        .iter()
        .filter(|r| r.name() != "single_distinct_aggregation_to_group_by")
        .cloned()
        .collect();
    let state = SessionStateBuilder::new_from_existing(state)
        .with_optimizer_rules(rules)
        .build();
    let ctx = SessionContext::new_with_state(state);
    crate::percentile::register(&ctx);
    ctx
}

/// Plans `query` as view `name` over the given relations.
pub async fn plan_view(
    name: &str,
    query: &str,
    emit: Option<EmitMode>,
    relations: &BTreeMap<String, StreamRelation>,
) -> Result<PlannedView> {
    let WeirStatement::Query(sql) = parse_statement(query)? else {
        return Err(SqlError::Syntax(
            "a materialized view is defined by a SELECT query".into(),
        ));
    };
    let ctx = streaming_context();
    let feeds: HashMap<String, Feed> = relations
        .iter()
        .map(|(n, r)| (n.clone(), Feed::new(r.schema.clone())))
        .collect();
    for (n, feed) in &feeds {
        ctx.register_table(n.as_str(), feed.table())?;
    }
    let capture = Arc::new(Mutex::new(PlanCapture::default()));
    let resolver: RelationResolver = {
        let feeds = feeds.clone();
        Arc::new(move |n: &str| feeds.get(n).map(|f| f.table()))
    };
    ctx.register_udtf(
        "tumble",
        Arc::new(WindowFunction::tumble(resolver.clone(), capture.clone())),
    );
    ctx.register_udtf(
        "hop",
        Arc::new(WindowFunction::hop(resolver, capture.clone())),
    );

    let state = ctx.state();
    let logical = state.create_logical_plan(&sql).await?;
    if !is_query(&logical) {
        return Err(SqlError::Syntax(
            "a materialized view is defined by a SELECT query".into(),
        ));
    }
    let optimized = state.optimize(&logical)?;
    let mut scans = Vec::new();
    optimized.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            scans.push(scan.table_name.table().to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let inputs: BTreeSet<String> = scans.iter().cloned().collect();
    let input = match scans.len() {
        1 => scans.remove(0),
        0 => {
            return Err(SqlError::FeatureNotSupported(
                "a materialized view must read a source or another materialized view".into(),
            ))
        }
        _ => {
            return Err(SqlError::FeatureNotSupported(format!(
                "a materialized view reads one stream once; this query reads {} {} times — joins between streams are not supported yet",
                inputs.into_iter().collect::<Vec<_>>().join(", "),
                scans.len()
            )))
        }
    };
    let relation = relations
        .get(&input)
        .ok_or_else(|| SqlError::Internal(format!("planned over unknown relation {input}")))?;
    let feed = feeds[&input].clone();
    let physical = state.create_physical_plan(&logical).await?;
    let task = ctx.task_ctx();

    let mut aggregates: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
    physical.apply(|p| {
        if p.downcast_ref::<AggregateExec>().is_some() {
            aggregates.push(p.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if relation.updating {
        return Err(SqlError::FeatureNotSupported(format!(
            "{input} is an EMIT ON UPDATE aggregate whose rows change in place; define views over an EMIT ON WINDOW CLOSE view instead"
        )));
    }

    let output_schema = physical.schema();
    let (top, bottom) = match aggregates.as_slice() {
        [] => {
            let plan = ViewPlan {
                name: name.to_string(),
                input: FedPlan {
                    feed,
                    plan: physical,
                },
                aggregate: None,
                post: None,
                output_schema,
                emit: EmitMode::OnWindowClose,
                key_columns: vec![],
                task,
                fingerprint: String::new(),
            };
            return Ok(PlannedView {
                plan,
                input,
                root_source: relation.root_source.clone(),
            });
        }
        [single] => (single.clone(), single.clone()),
        [top, bottom] => (top.clone(), bottom.clone()),
        _ => return Err(SqlError::FeatureNotSupported(
            "a materialized view may aggregate once; aggregate the result in a view over this view"
                .into(),
        )),
    };
    let top_exec = top.downcast_ref::<AggregateExec>().expect("aggregate");
    let bottom_exec = bottom.downcast_ref::<AggregateExec>().expect("aggregate");
    let paired = Arc::ptr_eq(&top, &bottom)
        && matches!(
            top_exec.mode(),
            AggregateMode::Single | AggregateMode::SinglePartitioned
        )
        || matches!(bottom_exec.mode(), AggregateMode::Partial)
            && matches!(
                top_exec.mode(),
                AggregateMode::Final | AggregateMode::FinalPartitioned
            );
    if !paired {
        return Err(SqlError::FeatureNotSupported(
            "a materialized view may aggregate once; aggregate the result in a view over this view"
                .into(),
        ));
    }
    let group_by = bottom_exec.group_expr();
    if !group_by.is_single() {
        return Err(SqlError::FeatureNotSupported(
            "GROUPING SETS, ROLLUP and CUBE are not supported in materialized views".into(),
        ));
    }
    let group_names: Vec<String> = group_by.expr().iter().map(|(_, n)| n.clone()).collect();
    let aggr = bottom_exec.aggr_expr().to_vec();
    let args = aggregate_expressions(&aggr, bottom_exec.mode(), 0)?;
    let window = {
        let capture = capture.lock();
        match (
            capture.windows.first(),
            group_names.iter().position(|n| n == "window_start"),
        ) {
            (Some(kind), Some(group_index)) => Some(WindowBinding {
                group_index,
                kind: *kind,
            }),
            _ => None,
        }
    };
    let emit = match (emit, &window) {
        (Some(EmitMode::OnWindowClose), None) => {
            return Err(SqlError::FeatureNotSupported(
                "EMIT ON WINDOW CLOSE needs a windowed GROUP BY: group by window_start of TUMBLE(…) or HOP(…)".into(),
            ))
        }
        (Some(e), _) => e,
        (None, Some(_)) => EmitMode::OnWindowClose,
        (None, None) => EmitMode::OnUpdate,
    };
    let spec = AggregateSpec {
        group_exprs: group_by.expr().iter().map(|(e, _)| e.clone()).collect(),
        aggregates: aggr,
        args,
        filters: bottom_exec.filter_expr().to_vec(),
        output_schema: top.schema(),
        window,
    };
    let post = if Arc::ptr_eq(&top, &physical) {
        None
    } else {
        let post_feed = Feed::new(top.schema());
        let replaced = physical
            .clone()
            .transform_up(|p| {
                if Arc::ptr_eq(&p, &top) {
                    Ok(Transformed::yes(post_feed.exec()))
                } else {
                    Ok(Transformed::no(p))
                }
            })?
            .data;
        Some(FedPlan {
            feed: post_feed,
            plan: replaced,
        })
    };
    let key_columns = group_names
        .iter()
        .filter(|n| *n != "window_start" && *n != "window_end")
        .filter_map(|n| output_schema.index_of(n).ok())
        .collect();
    let plan = ViewPlan {
        name: name.to_string(),
        input: FedPlan {
            feed,
            plan: bottom_exec.input().clone(),
        },
        aggregate: Some(spec),
        post,
        output_schema,
        emit,
        key_columns,
        task,
        fingerprint: String::new(),
    };
    Ok(PlannedView {
        plan,
        input,
        root_source: relation.root_source.clone(),
    })
}

fn is_query(plan: &LogicalPlan) -> bool {
    !matches!(
        plan,
        LogicalPlan::Ddl(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::DescribeTable(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
    )
}
