//! Streaming table functions: `TUMBLE(rel, col, size)` and `HOP(rel, col, slide, size)`.
//!
//! Both expand to a plain logical plan over the relation, adding `window_start` and
//! `window_end` computed with `date_bin`, so a windowed view is an ordinary GROUP BY to
//! DataFusion. `HOP` cross-joins each row with the `size / slide` window offsets it belongs
//! to. The engine learns the window shape through [`PlanCapture`].

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, TimeUnit};
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{plan_err, Column, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{cast, lit, Expr, LogicalPlan, LogicalPlanBuilder};
use parking_lot::Mutex;
use weir_engine::operator::window::WindowKind;

use crate::error::SqlError;

/// Finds a relation by name while a query is planned.
pub type RelationResolver = Arc<dyn Fn(&str) -> Option<Arc<dyn TableProvider>> + Send + Sync>;

/// What the table functions saw while a query was planned.
#[derive(Debug, Default, Clone)]
pub struct PlanCapture {
    /// Relations read through TUMBLE/HOP.
    pub relations: Vec<String>,
    /// Window shapes used.
    pub windows: Vec<WindowKind>,
}

/// Which window table function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Tumble,
    Hop,
    Cumulate,
    Session,
}

/// `TUMBLE`, `HOP` or `SESSION`.
#[derive(Clone)]
pub struct WindowFunction {
    shape: Shape,
    resolver: RelationResolver,
    capture: Arc<Mutex<PlanCapture>>,
}

impl std::fmt::Debug for WindowFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.shape)
    }
}

impl WindowFunction {
    /// The `TUMBLE` function.
    pub fn tumble(resolver: RelationResolver, capture: Arc<Mutex<PlanCapture>>) -> Self {
        Self {
            shape: Shape::Tumble,
            resolver,
            capture,
        }
    }

    /// The `HOP` function.
    pub fn hop(resolver: RelationResolver, capture: Arc<Mutex<PlanCapture>>) -> Self {
        Self {
            shape: Shape::Hop,
            resolver,
            capture,
        }
    }

    /// The `CUMULATE` function.
    pub fn cumulate(resolver: RelationResolver, capture: Arc<Mutex<PlanCapture>>) -> Self {
        Self {
            shape: Shape::Cumulate,
            resolver,
            capture,
        }
    }

    /// The `SESSION` function: per-row provisional bounds that the view's session operator
    /// replaces (see `weir_engine::operator::session`), so only views may use it.
    pub fn session(resolver: RelationResolver, capture: Arc<Mutex<PlanCapture>>) -> Self {
        Self {
            shape: Shape::Session,
            resolver,
            capture,
        }
    }

    fn usage(&self) -> &'static str {
        match self.shape {
            Shape::Hop => "HOP(relation, time_column, slide, size), e.g. HOP(events, \"timestamp\", INTERVAL '10 seconds', INTERVAL '1 minute')",
            Shape::Tumble => "TUMBLE(relation, time_column, size), e.g. TUMBLE(events, \"timestamp\", INTERVAL '1 minute')",
            Shape::Cumulate => "CUMULATE(relation, time_column, step, size), e.g. CUMULATE(events, \"timestamp\", INTERVAL '1 minute', INTERVAL '1 hour')",
            Shape::Session => "SESSION(relation, time_column, gap), e.g. SESSION(events, \"timestamp\", INTERVAL '30 minutes')",
        }
    }
}

/// `SESSION(…)` outside a materialized view: session windows are kept by views only.
#[derive(Debug)]
pub struct SessionOutsideViews;

impl TableFunctionImpl for SessionOutsideViews {
    fn call_with_args(&self, _args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        Err(datafusion::error::DataFusionError::External(Box::new(
            SqlError::FeatureNotSupported(
                "SESSION windows are kept by materialized views: CREATE MATERIALIZED VIEW … AS \
                 SELECT …, window_start, window_end, … FROM SESSION(…) GROUP BY …, then query the view"
                    .into(),
            ),
        )))
    }
}

impl TableFunctionImpl for WindowFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let want = match self.shape {
            Shape::Hop | Shape::Cumulate => 4,
            Shape::Tumble | Shape::Session => 3,
        };
        if exprs.len() != want {
            return plan_err!("wrong number of arguments: {}", self.usage());
        }
        let relation = name_arg(&exprs[0]).ok_or_else(|| {
            datafusion::error::DataFusionError::Plan(format!(
                "first argument must name a relation: {}",
                self.usage()
            ))
        })?;
        let column = name_arg(&exprs[1]).ok_or_else(|| {
            datafusion::error::DataFusionError::Plan(format!(
                "second argument must name a column: {}",
                self.usage()
            ))
        })?;
        let kind = if self.shape == Shape::Session {
            WindowKind::Session {
                gap: interval_ns(&exprs[2], self.usage())?,
            }
        } else if matches!(self.shape, Shape::Hop | Shape::Cumulate) {
            let slide = interval_ns(&exprs[2], self.usage())?;
            let size = interval_ns(&exprs[3], self.usage())?;
            let (name, step) = match self.shape {
                Shape::Hop => ("HOP", "slide"),
                _ => ("CUMULATE", "step"),
            };
            if size % slide != 0 {
                return plan_err!("{name} size must be a multiple of its {step}");
            }
            if size / slide > MAX_HOP_WINDOWS {
                let up_to = if self.shape == Shape::Hop {
                    ""
                } else {
                    "up to "
                };
                return Err(invalid_window(format!(
                    "{name} puts each row in {up_to}size / {step} = {} windows; at most {MAX_HOP_WINDOWS} are allowed: use a longer {step} or a shorter size",
                    size / slide
                )));
            }
            match self.shape {
                Shape::Hop => WindowKind::Hop { slide, size },
                _ => WindowKind::Cumulate { step: slide, size },
            }
        } else {
            WindowKind::Tumble {
                size: interval_ns(&exprs[2], self.usage())?,
            }
        };
        let Some(provider) = (self.resolver)(&relation) else {
            return plan_err!("table '{relation}' not found");
        };
        let plan = window_plan(&relation, provider, &column, kind)?;
        let mut capture = self.capture.lock();
        capture.relations.push(relation);
        capture.windows.push(kind);
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

fn name_arg(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)), _) => Some(s.clone()),
        Expr::Column(c) => Some(c.name.clone()),
        _ => None,
    }
}

/// The most windows `HOP` or `CUMULATE` assigns one row to (`size / slide`): each is a copy
/// of the row.
pub const MAX_HOP_WINDOWS: i64 = 10_000;

/// A window argument out of range: SQLSTATE 22023 through DataFusion.
fn invalid_window(message: String) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(SqlError::InvalidParameter(message)))
}

fn interval_ns(e: &Expr, usage: &str) -> DfResult<i64> {
    const DAY: i64 = 86_400_000_000_000;
    let too_long = || invalid_window(format!("window sizes must be at most 100 years: {usage}"));
    let ns = match e {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => (v.days
            as i64)
            .checked_mul(DAY)
            .and_then(|d| d.checked_add(v.nanoseconds))
            .ok_or_else(too_long)?,
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            v.days as i64 * DAY + v.milliseconds as i64 * 1_000_000
        }
        _ => {
            return plan_err!(
                "window sizes must be fixed intervals like INTERVAL '1 minute': {usage}"
            )
        }
    };
    if ns <= 0 {
        return plan_err!("window sizes must be positive: {usage}");
    }
    if ns > 100 * 365 * DAY {
        return Err(too_long());
    }
    Ok(ns)
}

fn interval_lit(ns: i64) -> Expr {
    lit(ScalarValue::IntervalMonthDayNano(Some(
        IntervalMonthDayNano::new(0, 0, ns),
    )))
}

/// The relation with `window_start` / `window_end` columns (one row per window for HOP).
pub fn window_plan(
    relation: &str,
    provider: Arc<dyn TableProvider>,
    column: &str,
    kind: WindowKind,
) -> DfResult<LogicalPlan> {
    let scan = LogicalPlanBuilder::scan(relation, provider_as_source(provider), None)?;
    let schema = scan.schema().clone();
    let Ok((_, field)) = schema.qualified_field_with_unqualified_name(column) else {
        return plan_err!("column \"{column}\" does not exist in {relation}");
    };
    if !matches!(field.data_type(), DataType::Timestamp(_, _)) {
        return plan_err!(
            "window time column \"{column}\" must be a timestamp, but it is {}",
            field.data_type()
        );
    }
    let ts = Expr::Column(Column::new(Some(relation), column));
    // The relation's own window columns (a view over a windowed view) are replaced.
    let mut exprs: Vec<Expr> = schema
        .columns()
        .into_iter()
        .filter(|c| c.name != "window_start" && c.name != "window_end")
        .map(Expr::Column)
        .collect();
    let date_bin = datafusion::functions::datetime::date_bin();
    // Nanosecond timestamps (every TIMESTAMPTZ Weir decodes) shift by whole nanoseconds as
    // integers: timestamp ± interval goes through a calendar per row, which was a quarter of
    // a HOP view's time.
    let time_type = field.data_type().clone();
    let nanos = matches!(time_type, DataType::Timestamp(TimeUnit::Nanosecond, _));
    let shift = |t: Expr, by: Expr, forward: bool| -> Expr {
        if nanos {
            let t = cast(t, DataType::Int64);
            cast(if forward { t + by } else { t - by }, time_type.clone())
        } else if forward {
            t + by
        } else {
            t - by
        }
    };
    let amount = |ns: i64| if nanos { lit(ns) } else { interval_lit(ns) };
    let (builder, start) = match kind {
        WindowKind::Tumble { size } => (scan, date_bin.call(vec![interval_lit(size), ts])),
        // Each event's own session; the view's session operator merges them.
        WindowKind::Session { .. } => (scan, ts),
        WindowKind::Hop { slide, size } => {
            let offsets: Vec<Vec<Expr>> =
                (0..size / slide).map(|i| vec![amount(i * slide)]).collect();
            // The offsets are the cross join's left input, the one it collects: each batch
            // of events then comes out as size/slide batches of the same length (with the
            // events on the left, every event became an output batch of its own).
            let offsets = LogicalPlanBuilder::values(offsets)?
                .project(vec![
                    Expr::Column(Column::from_name("column1")).alias("__weir_hop_offset")
                ])?;
            let start = shift(
                date_bin.call(vec![interval_lit(slide), ts]),
                Expr::Column(Column::from_name("__weir_hop_offset")),
                false,
            );
            (offsets.cross_join(scan.build()?)?, start)
        }
        WindowKind::Cumulate { step, size } => {
            // Every window of the event's period, `step` to `size` long; those ending at or
            // before the event are filtered out below.
            let ends: Vec<Vec<Expr>> = (1..=size / step).map(|i| vec![amount(i * step)]).collect();
            let ends = LogicalPlanBuilder::values(ends)?
                .project(vec![
                    Expr::Column(Column::from_name("column1")).alias("__weir_cumulate_end")
                ])?;
            let start = date_bin.call(vec![interval_lit(size), ts.clone()]);
            let end = shift(
                start.clone(),
                Expr::Column(Column::from_name("__weir_cumulate_end")),
                true,
            );
            exprs.push(start.alias("window_start"));
            exprs.push(end.clone().alias("window_end"));
            return ends
                .cross_join(scan.build()?)?
                .filter(end.gt(ts))?
                .project(exprs)?
                .build();
        }
    };
    let end = shift(start.clone(), amount(kind.size()), true);
    exprs.push(start.alias("window_start"));
    exprs.push(end.alias("window_end"));
    builder.project(exprs)?.build()
}
