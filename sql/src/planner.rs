//! Planning a materialized view into an engine pipeline.
//!
//! The view's query is planned by DataFusion, once, in a context where every relation is a
//! [`Feed`]. From the physical plan we take the `AggregateExec` apart: its input becomes the
//! per-batch pre-aggregation plan, its group and aggregate expressions the incremental
//! state, and the plan above it the post-aggregation step — so the view computes exactly
//! what DataFusion would, batch by batch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::ScalarValue;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::{WindowFrameBound, WindowFrameUnits};
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::window::{
    PlainAggregateWindowExpr, SlidingAggregateWindowExpr, WindowExpr,
};
use datafusion::physical_plan::aggregates::{aggregate_expressions, AggregateExec, AggregateMode};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use parking_lot::Mutex;
use weir_engine::connector::pair::pair_name;
use weir_engine::operator::aggregate::{AggregateSpec, WindowBinding};
use weir_engine::operator::feed::Feed;
use weir_engine::operator::over::{
    Bound, Frame, OverFunction, OverKind, OverOrder, OverSpec, Units,
};
use weir_engine::operator::plan::FedPlan;
use weir_engine::operator::window::WindowKind;
use weir_engine::pipeline::view::{EmitMode, ViewPlan};

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
    /// For a source: its event-time column (`WATERMARK FOR …`).
    pub event_time: Option<String>,
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
    /// The tables it joins (lookup joins).
    pub tables: Vec<String>,
    /// For an interval join of two sources: both (the view reads their pair, `root_source`).
    pub pair: Option<(String, String)>,
}

/// What a view may read: streams (sources and views) and tables.
#[derive(Debug, Default, Clone)]
pub struct Relations {
    /// Sources and views, by name.
    pub streams: BTreeMap<String, StreamRelation>,
    /// Tables, by name, as the relations their scans read at execution.
    pub tables: BTreeMap<String, Arc<dyn TableProvider>>,
}

/// Why a view over `SESSION(…)` must aggregate per key and window.
const SESSION_NEEDS_GROUP_BY: &str = "SESSION(…) windows are formed per group key: GROUP BY the key and window_start (and window_end), e.g. SELECT user_id, window_start, window_end, count(*) FROM SESSION(events, \"timestamp\", INTERVAL '30 minutes') GROUP BY user_id, window_start, window_end";

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
    crate::percentile_exact::register(&ctx);
    crate::ewm::register(&ctx);
    crate::bounded::register(&ctx);
    ctx
}

/// Plans `query` as view `name` over the given relations.
pub async fn plan_view(
    name: &str,
    query: &str,
    emit: Option<EmitMode>,
    relations: &Relations,
) -> Result<PlannedView> {
    plan_stream(name, query, emit, relations, false).await
}

/// Plans `query` like a view; `over_updating` lets it read an `EMIT ON UPDATE` view (alert
/// rules see every version of its open rows).
pub async fn plan_stream(
    name: &str,
    query: &str,
    emit: Option<EmitMode>,
    all: &Relations,
    over_updating: bool,
) -> Result<PlannedView> {
    let relations = &all.streams;
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
    for (n, table) in &all.tables {
        ctx.register_table(n.as_str(), table.clone())?;
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
        Arc::new(WindowFunction::hop(resolver.clone(), capture.clone())),
    );
    ctx.register_udtf(
        "cumulate",
        Arc::new(WindowFunction::cumulate(resolver.clone(), capture.clone())),
    );
    ctx.register_udtf(
        "session",
        Arc::new(WindowFunction::session(resolver, capture.clone())),
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
    let (mut scans, joined): (Vec<String>, Vec<String>) =
        scans.into_iter().partition(|s| !all.tables.contains_key(s));
    let tables: Vec<String> = joined
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let inputs: BTreeSet<String> = scans.iter().cloned().collect();
    if scans.len() == 2 {
        let physical = state.create_physical_plan(&logical).await?;
        let inputs = inputs
            .iter()
            .map(|n| {
                Ok(crate::interval_join::Input {
                    name: n,
                    relation: relations.get(n).ok_or_else(|| {
                        SqlError::Internal(format!("planned over unknown relation {n}"))
                    })?,
                    feed: feeds[n].clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (plan, pair) =
            crate::interval_join::plan(name, &optimized, physical, &inputs, ctx.task_ctx())?;
        let input = inputs[0].name.to_string();
        let pair = pair.map(|p| (p.first.0, p.second.0));
        let root_source = match &pair {
            Some((a, b)) => pair_name(a, b),
            None => inputs[0].relation.root_source.clone(),
        };
        return Ok(PlannedView {
            plan,
            root_source,
            input,
            tables,
            pair,
        });
    }
    let input = match scans.len() {
        1 => scans.remove(0),
        0 if !tables.is_empty() => {
            return Err(SqlError::FeatureNotSupported(format!(
                "a materialized view reads a stream (a source or another materialized view) and may join tables to it; {} only reads tables, which a query reads directly",
                tables.join(", ")
            )))
        }
        0 => {
            return Err(SqlError::FeatureNotSupported(
                "a materialized view must read a source or another materialized view".into(),
            ))
        }
        _ => {
            return Err(SqlError::FeatureNotSupported(format!(
                "a materialized view reads one stream, or joins two in a time interval; this query reads {} (a view may also JOIN tables: CREATE TABLE)",
                inputs.into_iter().collect::<Vec<_>>().join(", ")
            )))
        }
    };
    check_lookup_joins(&optimized, &input)?;
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
    if relation.updating && !over_updating {
        return Err(SqlError::FeatureNotSupported(format!(
            "{input} is an EMIT ON UPDATE aggregate whose rows change in place; define views over an EMIT ON WINDOW CLOSE view instead"
        )));
    }

    let output_schema = physical.schema();
    let sessions = capture
        .lock()
        .windows
        .iter()
        .any(|w| matches!(w, WindowKind::Session { .. }));
    let mut windows: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
    physical.apply(|p| {
        if p.downcast_ref::<BoundedWindowAggExec>().is_some()
            || p.downcast_ref::<WindowAggExec>().is_some()
        {
            windows.push(p.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if sessions && aggregates.is_empty() {
        return Err(SqlError::FeatureNotSupported(SESSION_NEEDS_GROUP_BY.into()));
    }
    if !windows.is_empty() {
        if !aggregates.is_empty() {
            return Err(SqlError::FeatureNotSupported(
                "a materialized view may use OVER windows or GROUP BY, not both: aggregate in a view and use OVER in a view over it".into(),
            ));
        }
        let [window] = windows.as_slice() else {
            return Err(SqlError::FeatureNotSupported(
                "every OVER window of a materialized view must have the same PARTITION BY and ORDER BY".into(),
            ));
        };
        let (over, input_plan) = over_spec(window)?;
        let post = replace_with_feed(&physical, window)?;
        let mut plan = row_plan(name, feed, input_plan, output_schema, task);
        plan.over = Some(over);
        plan.post = post;
        return Ok(PlannedView {
            plan,
            input,
            root_source: relation.root_source.clone(),
            tables,
            pair: None,
        });
    }
    let (top, bottom) = match aggregates.as_slice() {
        [] => {
            let plan = row_plan(name, feed, physical, output_schema, task);
            return Ok(PlannedView {
                plan,
                input,
                root_source: relation.root_source.clone(),
                tables,
                pair: None,
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
        match capture.windows.first() {
            Some(kind) => {
                group_names
                    .iter()
                    .position(|n| n == kind.key_column())
                    .map(|group_index| WindowBinding {
                        group_index,
                        kind: *kind,
                    })
            }
            None => None,
        }
    };
    let cumulative = capture
        .lock()
        .windows
        .iter()
        .any(|w| matches!(w, WindowKind::Cumulate { .. }));
    if cumulative && window.is_none() {
        return Err(SqlError::FeatureNotSupported(
            "CUMULATE windows of one period share their window_start: GROUP BY window_end (and window_start), e.g. GROUP BY source, window_start, window_end".into(),
        ));
    }
    if sessions && window.is_none() {
        return Err(SqlError::FeatureNotSupported(SESSION_NEEDS_GROUP_BY.into()));
    }
    if sessions && emit == Some(EmitMode::OnUpdate) {
        return Err(SqlError::FeatureNotSupported(
            "EMIT ON UPDATE is not supported for SESSION windows: a session is emitted once the watermark passes its end".into(),
        ));
    }
    let emit = match (emit, &window) {
        (Some(EmitMode::OnWindowClose), None) => {
            return Err(SqlError::FeatureNotSupported(
                "EMIT ON WINDOW CLOSE needs a windowed GROUP BY: group by window_start of TUMBLE(…) or HOP(…) (window_end of CUMULATE(…))".into(),
            ))
        }
        (Some(e), _) => e,
        (None, Some(_)) => EmitMode::OnWindowClose,
        (None, None) => EmitMode::OnUpdate,
    };
    // Accumulators are created when a window first gets rows: create one of each now, so a
    // bad argument (a percentile outside [0, 1]) fails CREATE, not the running view.
    for a in &aggr {
        a.create_accumulator()?;
    }
    let spec = AggregateSpec {
        group_exprs: group_by.expr().iter().map(|(e, _)| e.clone()).collect(),
        aggregates: aggr,
        args,
        filters: bottom_exec.filter_expr().to_vec(),
        output_schema: top.schema(),
        window,
    };
    let post = replace_with_feed(&physical, &top)?;
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
        join: None,
        aggregate: Some(spec),
        over: None,
        post,
        alert: None,
        output_schema,
        emit,
        key_columns,
        task,
        fingerprint: String::new(),
        retention: None,
    };
    Ok(PlannedView {
        plan,
        input,
        root_source: relation.root_source.clone(),
        tables,
        pair: None,
    })
}

/// Refuses a join that would emit a table's rows on its own: a view's output comes from its
/// stream, so the stream's side of every join must be kept (`JOIN`, `LEFT JOIN` with the
/// stream on the left, semi and anti joins from `IN`/`EXISTS`), never only the table's
/// (`RIGHT JOIN` with the stream on the left, `FULL JOIN`), which would repeat the table's
/// unmatched rows with every micro-batch.
fn check_lookup_joins(plan: &LogicalPlan, stream: &str) -> Result<()> {
    use datafusion::logical_expr::JoinType as J;
    let mut refused = None;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Join(join) = node {
            let left = reads(&join.left, stream);
            let right = reads(&join.right, stream);
            let kept = match (left, right) {
                (true, false) => matches!(
                    join.join_type,
                    J::Inner | J::Left | J::LeftSemi | J::LeftAnti | J::LeftMark
                ),
                (false, true) => matches!(
                    join.join_type,
                    J::Inner | J::Right | J::RightSemi | J::RightAnti | J::RightMark
                ),
                _ => true,
            };
            if !kept {
                refused = Some(join.join_type);
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    match refused {
        None => Ok(()),
        Some(kind) => Err(SqlError::FeatureNotSupported(format!(
            "a materialized view joins tables to its stream {stream} as lookups: use JOIN or LEFT JOIN with {stream} on the left; this {kind} join would emit the table's unmatched rows with every batch"
        ))),
    }
}

/// Whether `plan` scans `relation`.
pub(crate) fn reads(plan: &LogicalPlan, relation: &str) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if scan.table_name.table() == relation {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// A view without aggregation: `plan` over `feed` produces its rows.
pub(crate) fn row_plan(
    name: &str,
    feed: Feed,
    plan: Arc<dyn ExecutionPlan>,
    output_schema: SchemaRef,
    task: Arc<datafusion::execution::TaskContext>,
) -> ViewPlan {
    ViewPlan {
        name: name.to_string(),
        input: FedPlan { feed, plan },
        join: None,
        aggregate: None,
        over: None,
        post: None,
        alert: None,
        output_schema,
        emit: EmitMode::OnWindowClose,
        key_columns: vec![],
        task,
        fingerprint: String::new(),
        retention: None,
    }
}

/// The part of `physical` above `node`, reading a feed of `node`'s output (`None` when
/// `node` is the root).
fn replace_with_feed(
    physical: &Arc<dyn ExecutionPlan>,
    node: &Arc<dyn ExecutionPlan>,
) -> Result<Option<FedPlan>> {
    if Arc::ptr_eq(node, physical) {
        return Ok(None);
    }
    let feed = Feed::new(node.schema());
    let replaced = physical
        .clone()
        .transform_up(|p| {
            if Arc::ptr_eq(&p, node) {
                Ok(Transformed::yes(feed.exec()))
            } else {
                Ok(Transformed::no(p))
            }
        })?
        .data;
    Ok(Some(FedPlan {
        feed,
        plan: replaced,
    }))
}

const OVER_FUNCTIONS: &str =
    "count, sum, avg, min, max, stddev, stddev_pop, var, var_pop, ewma, ewm_zscore";

/// The engine's streaming form of a DataFusion window operator, and the plan below it
/// (without the sort DataFusion puts there: events are taken in arrival order).
fn over_spec(window: &Arc<dyn ExecutionPlan>) -> Result<(OverSpec, Arc<dyn ExecutionPlan>)> {
    let exprs: &[Arc<dyn WindowExpr>] = match window.downcast_ref::<BoundedWindowAggExec>() {
        Some(w) => w.window_expr(),
        None => window
            .downcast_ref::<WindowAggExec>()
            .map(|w| w.window_expr())
            .unwrap_or_default(),
    };
    let mut input = window.children()[0].clone();
    while input.downcast_ref::<SortExec>().is_some() {
        input = input.children()[0].clone();
    }
    let unsupported = |m: String| SqlError::FeatureNotSupported(m);
    let first = exprs
        .first()
        .ok_or_else(|| SqlError::Internal("a window operator without functions".into()))?;
    let describe = |e: &Arc<dyn WindowExpr>| {
        (
            e.partition_by()
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
            e.order_by()
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>(),
        )
    };
    let order = match first.order_by() {
        [o] if !o.options.descending => o.expr.clone(),
        [] => {
            return Err(unsupported(
                "a streaming OVER window needs ORDER BY <event time>: a window over all rows of a partition would wait for the end of the stream".into(),
            ))
        }
        _ => {
            return Err(unsupported(
                "a streaming OVER window is ordered by one event-time column, ascending".into(),
            ))
        }
    };
    let input_schema = input.schema();
    let order_type = order.data_type(&input_schema)?;
    if !matches!(order_type, DataType::Timestamp(_, _)) {
        return Err(unsupported(format!(
            "OVER (… ORDER BY …) orders by event time: a timestamp column, not {order_type}"
        )));
    }
    let mut functions = Vec::with_capacity(exprs.len());
    for e in exprs {
        if describe(e) != describe(first) {
            return Err(unsupported(
                "every OVER window of a materialized view must have the same PARTITION BY and ORDER BY".into(),
            ));
        }
        let aggregate = e
            .as_any()
            .downcast_ref::<PlainAggregateWindowExpr>()
            .map(|a| a.get_aggregate_expr())
            .or_else(|| {
                e.as_any()
                    .downcast_ref::<SlidingAggregateWindowExpr>()
                    .map(|a| a.get_aggregate_expr())
            });
        let Some(aggregate) = aggregate else {
            return Err(unsupported(format!(
                "{} is not available in streaming OVER windows; these are: {OVER_FUNCTIONS}",
                e.name()
            )));
        };
        let fname = aggregate.fun().name().to_string();
        let Some(kind) = OverKind::from_name(&fname) else {
            return Err(unsupported(format!(
                "{fname}(…) OVER (…) is not available in streaming views; these are: {OVER_FUNCTIONS}"
            )));
        };
        if aggregate.is_distinct() {
            return Err(unsupported(format!(
                "{fname}(DISTINCT …) OVER (…) is not supported"
            )));
        }
        let args = e.expressions();
        let (arg, half_life_ns) = match kind {
            OverKind::Ewma | OverKind::EwmZscore => {
                let half_life = args
                    .get(1)
                    .and_then(|a| a.downcast_ref::<Literal>().map(|l| l.value().clone()));
                let ns = half_life
                    .as_ref()
                    .and_then(interval_value_ns)
                    .filter(|ns| *ns > 0);
                let Some(ns) = ns else {
                    return Err(SqlError::InvalidParameter(format!(
                        "{fname}(x, half_life): the half-life must be a positive fixed interval such as INTERVAL '5 minutes'"
                    )));
                };
                (args.first().cloned(), ns)
            }
            _ => (args.first().cloned(), 0),
        };
        let frame = e.get_window_frame();
        let units =
            match frame.units {
                WindowFrameUnits::Rows => Units::Rows,
                WindowFrameUnits::Range => Units::Range,
                WindowFrameUnits::Groups => return Err(unsupported(
                    "GROUPS frames are not supported in streaming OVER windows; use ROWS or RANGE"
                        .into(),
                )),
            };
        let start = frame_bound(&frame.start_bound, units, true)?;
        let end = frame_bound(&frame.end_bound, units, false)?;
        match (start, end) {
            (_, Bound::Unbounded) => {}
            (Bound::Preceding(a), Bound::Preceding(b)) if a < b => {
                return Err(SqlError::InvalidParameter(
                    "the frame starts after it ends: the start must precede the end".into(),
                ))
            }
            _ => {}
        }
        functions.push(OverFunction {
            kind,
            arg,
            frame: Frame { units, start, end },
            half_life_ns,
        });
    }
    Ok((
        OverSpec {
            partition_by: first.partition_by().to_vec(),
            order_by: order,
            functions,
            output_schema: window.schema(),
            order: OverOrder::default(),
        },
        input,
    ))
}

/// One end of a frame as rows or nanoseconds before the current event.
fn frame_bound(bound: &WindowFrameBound, units: Units, start: bool) -> Result<Bound> {
    let offset = |v: &ScalarValue| -> Result<Option<i64>> {
        if v.is_null() {
            return Ok(None);
        }
        let n = match units {
            Units::Rows => match v.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(Some(n))) => Some(n),
                _ => None,
            },
            Units::Range => interval_value_ns(v),
        };
        n.map(Some).ok_or_else(|| {
            SqlError::InvalidParameter(format!(
                "frame offset {v}: RANGE offsets are fixed intervals such as INTERVAL '5 minutes', ROWS offsets are row counts"
            ))
        })
    };
    match bound {
        WindowFrameBound::CurrentRow => Ok(Bound::Preceding(0)),
        WindowFrameBound::Preceding(v) => Ok(match offset(v)? {
            None => Bound::Unbounded,
            Some(n) => Bound::Preceding(n),
        }),
        WindowFrameBound::Following(v) => match offset(v)? {
            Some(0) => Ok(Bound::Preceding(0)),
            _ if start => Err(SqlError::FeatureNotSupported(
                "a streaming frame cannot start after the current event".into(),
            )),
            _ => Err(SqlError::FeatureNotSupported(
                "FOLLOWING would wait for events that have not arrived: end a streaming frame at CURRENT ROW or before (… AND INTERVAL '1 millisecond' PRECEDING scores each event against the ones before it)".into(),
            )),
        },
    }
}

/// A fixed interval (or a plain number of nanoseconds) as nanoseconds.
fn interval_value_ns(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) if i.months == 0 => {
            Some(i.days as i64 * 86_400_000_000_000 + i.nanoseconds)
        }
        ScalarValue::IntervalDayTime(Some(i)) => {
            Some(i.days as i64 * 86_400_000_000_000 + i.milliseconds as i64 * 1_000_000)
        }
        ScalarValue::DurationNanosecond(Some(n)) => Some(*n),
        ScalarValue::DurationMicrosecond(Some(n)) => Some(n * 1_000),
        ScalarValue::DurationMillisecond(Some(n)) => Some(n * 1_000_000),
        ScalarValue::DurationSecond(Some(n)) => Some(n * 1_000_000_000),
        _ => None,
    }
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
