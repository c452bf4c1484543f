//! Planning a view that joins its source with itself in a time interval:
//!
//! ```sql
//! SELECT a.source, a."timestamp" AS failed_at, b."timestamp" AS recovered_at
//! FROM events a JOIN events b
//!   ON a.source = b.source
//!  AND b."timestamp" BETWEEN a."timestamp" AND a."timestamp" + INTERVAL '30 seconds'
//! WHERE a.attributes.status = 'error' AND b.attributes.status = 'ok'
//! ```
//!
//! The query is planned by DataFusion as usual; its two leaves reading the stream get a feed
//! each, and the engine's [`IntervalJoin`](weir_engine::operator::join::IntervalJoin) feeds
//! them the new batch and the rows it kept. The time bound is read from the join condition:
//! comparisons between the two sides' event-time columns, each side optionally shifted by an
//! interval, must bound `a.ts − b.ts` from below and above; the larger bound is how long a
//! row is kept after the watermark passes it.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan, Operator};
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
use datafusion::physical_plan::ExecutionPlan;
use weir_engine::operator::feed::{Feed, FeedExec};
use weir_engine::operator::join::JoinSpec;
use weir_engine::pipeline::view::ViewPlan;

use crate::error::{Result, SqlError};
use crate::planner::{reads, StreamRelation};

/// What every refusal of an interval join ends with: the shape that works.
const SHAPE: &str = "join a source with itself in a time interval, e.g. FROM events a JOIN events b ON a.source = b.source AND b.\"timestamp\" BETWEEN a.\"timestamp\" - INTERVAL '10 seconds' AND a.\"timestamp\" + INTERVAL '10 seconds'";

/// Plans view `name`, a self-join of stream `input` (`relation`), from its optimized logical
/// plan and its physical plan.
pub fn plan(
    name: &str,
    logical: &LogicalPlan,
    physical: Arc<dyn ExecutionPlan>,
    input: &str,
    relation: &StreamRelation,
    task: Arc<TaskContext>,
) -> Result<ViewPlan> {
    let refuse = |why: String| -> Result<ViewPlan> {
        Err(SqlError::FeatureNotSupported(format!("{why}; {SHAPE}")))
    };
    let Some(time) = relation.event_time.clone() else {
        return refuse(format!(
            "an interval join pairs the rows of a source with WATERMARK FOR its event time; {input} is not such a source"
        ));
    };
    let time_column = relation
        .schema
        .index_of(&time)
        .map_err(|_| SqlError::Internal(format!("{input} has no event-time column {time}")))?;
    if !matches!(
        relation.schema.field(time_column).data_type(),
        DataType::Timestamp(TimeUnit::Nanosecond, _)
    ) {
        return refuse(format!("{input}.{time} is not a nanosecond timestamp"));
    }
    let mut stateful = false;
    physical.apply(|p| {
        if p.downcast_ref::<AggregateExec>().is_some()
            || p.downcast_ref::<BoundedWindowAggExec>().is_some()
            || p.downcast_ref::<WindowAggExec>().is_some()
        {
            stateful = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if stateful {
        return refuse(
            "a view with an interval join emits the pairs: aggregate them (GROUP BY, OVER) in a view over it".into(),
        );
    }
    let mut joins = Vec::new();
    logical.apply_with_subqueries(|node| {
        if let LogicalPlan::Join(join) = node {
            if reads(&join.left, input) && reads(&join.right, input) {
                joins.push(join.clone());
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let [join] = joins.as_slice() else {
        return refuse(format!(
            "{input} must be read twice, by the two sides of one JOIN"
        ));
    };
    if join.join_type != JoinType::Inner {
        return refuse(format!(
            "an interval join is an inner JOIN (this is a {} join: its unmatched rows would be emitted before a match could still arrive)",
            join.join_type
        ));
    }
    let (low, high) = join
        .filter
        .as_ref()
        .map(|f| bounds(f, join.left.schema(), join.right.schema(), &time))
        .unwrap_or((None, None));
    let (Some(low), Some(high)) = (low, high) else {
        return refuse(format!(
            "the JOIN condition must bound the time between the two rows from both sides, comparing their {time} columns (BETWEEN, or >= and <=, with intervals)"
        ));
    };
    if low > high {
        return refuse("the JOIN's time bounds exclude every pair".into());
    }
    let horizon_ns = low.abs().max(high.abs());

    // One feed per side: the stream's two leaves get their own.
    let schema = relation.schema.clone();
    let (left, right) = (Feed::new(schema.clone()), Feed::new(schema.clone()));
    let mut leaves = 0;
    let plan = physical
        .clone()
        .transform_up(|p| {
            if p.downcast_ref::<FeedExec>().is_some() {
                leaves += 1;
                let feed = if leaves == 1 { &left } else { &right };
                Ok(Transformed::yes(feed.exec()))
            } else {
                Ok(Transformed::no(p))
            }
        })?
        .data;
    if leaves != 2 {
        return Err(SqlError::Internal(format!(
            "an interval join planned with {leaves} stream leaves"
        )));
    }
    let output_schema = physical.schema();
    let mut view = crate::planner::row_plan(name, Feed::new(schema), physical, output_schema, task);
    view.join = Some(JoinSpec {
        plan,
        left,
        right,
        time_column,
        horizon_ns,
    });
    Ok(view)
}

/// Which side of the join a term reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// The bounds `filter` sets on `left.time − right.time` (ns): (lowest, highest).
fn bounds(
    filter: &Expr,
    left: &DFSchema,
    right: &DFSchema,
    time: &str,
) -> (Option<i64>, Option<i64>) {
    let (mut low, mut high): (Option<i64>, Option<i64>) = (None, None);
    for conjunct in split_conjunction(filter) {
        let comparisons: Vec<(&Expr, Operator, &Expr)> = match conjunct {
            Expr::Between(b) if !b.negated => vec![
                (b.expr.as_ref(), Operator::GtEq, b.low.as_ref()),
                (b.expr.as_ref(), Operator::LtEq, b.high.as_ref()),
            ],
            Expr::BinaryExpr(b)
                if matches!(
                    b.op,
                    Operator::Gt | Operator::GtEq | Operator::Lt | Operator::LtEq
                ) =>
            {
                vec![(b.left.as_ref(), b.op, b.right.as_ref())]
            }
            _ => continue,
        };
        for (l, op, r) in comparisons {
            let (Some((side_l, shift_l)), Some((side_r, shift_r))) =
                (term(l, left, right, time), term(r, left, right, time))
            else {
                continue;
            };
            if side_l == side_r {
                continue;
            }
            // t_l + shift_l op t_r + shift_r  ⇔  t_l − t_r op shift_r − shift_l.
            let k = shift_r.saturating_sub(shift_l);
            let (op, k) = match side_l {
                Side::Left => (op, k),
                // −(t_left − t_right) op k  ⇔  t_left − t_right flip(op) −k.
                Side::Right => (flip(op), -k),
            };
            match op {
                Operator::Gt | Operator::GtEq => low = Some(low.map_or(k, |x| x.max(k))),
                Operator::Lt | Operator::LtEq => high = Some(high.map_or(k, |x| x.min(k))),
                _ => {}
            }
        }
    }
    (low, high)
}

fn flip(op: Operator) -> Operator {
    match op {
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        other => other,
    }
}

/// `side.time ± interval …`: the side it reads and the total shift (ns).
fn term(e: &Expr, left: &DFSchema, right: &DFSchema, time: &str) -> Option<(Side, i64)> {
    match e {
        Expr::Cast(c) => term(&c.expr, left, right, time),
        Expr::TryCast(c) => term(&c.expr, left, right, time),
        Expr::Column(c) if c.name == time => {
            if left.has_column(c) {
                Some((Side::Left, 0))
            } else if right.has_column(c) {
                Some((Side::Right, 0))
            } else {
                None
            }
        }
        Expr::BinaryExpr(b) if matches!(b.op, Operator::Plus | Operator::Minus) => {
            match (term(&b.left, left, right, time), interval_ns(&b.right)) {
                (Some((side, k)), Some(v)) => Some((
                    side,
                    if b.op == Operator::Plus {
                        k.saturating_add(v)
                    } else {
                        k.saturating_sub(v)
                    },
                )),
                _ if b.op == Operator::Plus => {
                    let (side, k) = term(&b.right, left, right, time)?;
                    Some((side, k.saturating_add(interval_ns(&b.left)?)))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// A constant interval or duration in nanoseconds (not months: their length varies).
fn interval_ns(e: &Expr) -> Option<i64> {
    let value = match e {
        Expr::Literal(v, _) => v,
        Expr::Cast(c) => return interval_ns(&c.expr),
        _ => return None,
    };
    const DAY: i64 = 86_400_000_000_000;
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => Some(
            (v.days as i64)
                .saturating_mul(DAY)
                .saturating_add(v.nanoseconds),
        ),
        ScalarValue::IntervalDayTime(Some(v)) => Some(
            (v.days as i64)
                .saturating_mul(DAY)
                .saturating_add(v.milliseconds as i64 * 1_000_000),
        ),
        ScalarValue::DurationNanosecond(Some(v)) => Some(*v),
        ScalarValue::DurationMicrosecond(Some(v)) => Some(v.saturating_mul(1_000)),
        ScalarValue::DurationMillisecond(Some(v)) => Some(v.saturating_mul(1_000_000)),
        ScalarValue::DurationSecond(Some(v)) => Some(v.saturating_mul(1_000_000_000)),
        _ => None,
    }
}
