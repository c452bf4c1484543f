//! Planning a view that joins two sources, or a source with itself, in a time interval:
//!
//! ```sql
//! SELECT o.id, o.amount, p."timestamp" - o."timestamp" AS paid_after
//! FROM orders o JOIN payments p
//!   ON p.order_id = o.id
//!  AND p."timestamp" BETWEEN o."timestamp" AND o."timestamp" + INTERVAL '10 minutes'
//! ```
//!
//! ```sql
//! SELECT a.source, a."timestamp" AS failed_at, b."timestamp" AS recovered_at
//! FROM events a JOIN events b
//!   ON a.source = b.source
//!  AND b."timestamp" BETWEEN a."timestamp" AND a."timestamp" + INTERVAL '30 seconds'
//! WHERE a.attributes.status = 'error' AND b.attributes.status = 'ok'
//! ```
//!
//! The query is planned by DataFusion as usual; its two leaves reading the streams get a feed
//! each, and the engine's [`IntervalJoin`](weir_engine::operator::join::IntervalJoin) feeds
//! them the new batch and the rows it kept. The time bound is read from the join condition:
//! comparisons between the two sides' event-time columns, each side optionally shifted by an
//! interval, must bound `a.ts − b.ts` from below and above; the larger bound is how long a
//! row is kept after the watermark passes it. A join of two sources reads their pair (both
//! sources read as one by one pipeline: [`weir_engine::connector::pair`]).

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
use weir_engine::connector::pair::{PairLayout, TIME_INDEX};
use weir_engine::operator::feed::{Feed, FeedExec};
use weir_engine::operator::join::JoinSpec;
use weir_engine::pipeline::view::ViewPlan;

use crate::error::{Result, SqlError};
use crate::planner::{reads, StreamRelation};

/// What every refusal of an interval join ends with: the shape that works.
const SHAPE: &str = "join two sources, or a source with itself, in a time interval, e.g. FROM orders o JOIN payments p ON o.id = p.order_id AND p.\"timestamp\" BETWEEN o.\"timestamp\" - INTERVAL '10 seconds' AND o.\"timestamp\" + INTERVAL '10 seconds'";

/// A stream an interval join reads: a source with a watermark.
pub struct Input<'a> {
    pub name: &'a str,
    pub relation: &'a StreamRelation,
    /// The feed its scans read while planning.
    pub feed: Feed,
}

fn refuse<T>(why: String) -> Result<T> {
    Err(SqlError::FeatureNotSupported(format!("{why}; {SHAPE}")))
}

/// The event-time column of `input`: its name and index.
fn event_time(input: &Input<'_>) -> Result<(String, usize)> {
    let name = input.name;
    let Some(time) = input.relation.event_time.clone() else {
        return refuse(format!(
            "an interval join pairs the rows of sources with WATERMARK FOR their event time; {name} is not such a source"
        ));
    };
    let schema = &input.relation.schema;
    let column = schema
        .index_of(&time)
        .map_err(|_| SqlError::Internal(format!("{name} has no event-time column {time}")))?;
    if !matches!(
        schema.field(column).data_type(),
        DataType::Timestamp(TimeUnit::Nanosecond, _)
    ) {
        return refuse(format!("{name}.{time} is not a nanosecond timestamp"));
    }
    Ok((time, column))
}

/// Plans view `name`, an interval join of one stream with itself (`inputs` of one) or of two
/// sources, from its optimized logical plan and its physical plan. For two sources, the view
/// reads their pair (the layout returned).
pub fn plan(
    name: &str,
    logical: &LogicalPlan,
    physical: Arc<dyn ExecutionPlan>,
    inputs: &[Input<'_>],
    task: Arc<TaskContext>,
) -> Result<(ViewPlan, Option<PairLayout>)> {
    let times = inputs.iter().map(event_time).collect::<Result<Vec<_>>>()?;
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
    let (a, b) = (inputs[0].name, inputs[inputs.len() - 1].name);
    // The join of the two streams, and which input its left side reads.
    let mut joins = Vec::new();
    logical.apply_with_subqueries(|node| {
        if let LogicalPlan::Join(join) = node {
            if reads(&join.left, a) && reads(&join.right, b) {
                joins.push((join.clone(), 0));
            } else if reads(&join.left, b) && reads(&join.right, a) {
                joins.push((join.clone(), inputs.len() - 1));
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let [(join, left_input)] = joins.as_slice() else {
        return refuse(if a == b {
            format!("{a} must be read twice, by the two sides of one JOIN")
        } else {
            format!("{a} and {b} must be the two sides of one JOIN")
        });
    };
    if join.join_type != JoinType::Inner {
        return refuse(format!(
            "an interval join is an inner JOIN (this is a {} join: its unmatched rows would be emitted before a match could still arrive)",
            join.join_type
        ));
    }
    let left_time = &times[*left_input].0;
    let right_time = &times[inputs.len() - 1 - left_input].0;
    let (low, high) = join
        .filter
        .as_ref()
        .map(|f| {
            bounds(
                f,
                (join.left.schema().as_ref(), left_time),
                (join.right.schema().as_ref(), right_time),
            )
        })
        .unwrap_or((None, None));
    let (Some(low), Some(high)) = (low, high) else {
        return refuse(format!(
            "the JOIN condition must bound the time between the two rows from both sides, comparing their event-time columns ({}) (BETWEEN, or >= and <=, with intervals)",
            if left_time == right_time {
                left_time.clone()
            } else {
                format!("{left_time} and {right_time}")
            }
        ));
    };
    if low > high {
        return refuse("the JOIN's time bounds exclude every pair".into());
    }
    let horizon_ns = low.abs().max(high.abs());

    // One feed per side; for two sources the left reads the pair's first.
    let pair = (inputs.len() == 2).then(|| {
        PairLayout::new(
            (inputs[0].name, inputs[0].relation.schema.clone()),
            (inputs[1].name, inputs[1].relation.schema.clone()),
        )
    });
    let (left, right, leaf_feeds) = match &pair {
        None => {
            let schema = inputs[0].relation.schema.clone();
            (Feed::new(schema.clone()), Feed::new(schema), None)
        }
        Some(p) => {
            let feed_of = |source: &str| {
                inputs
                    .iter()
                    .find(|i| i.name == source)
                    .map(|i| i.feed.clone())
                    .ok_or_else(|| SqlError::Internal(format!("no feed for {source}")))
            };
            (
                Feed::new(p.first.1.clone()),
                Feed::new(p.second.1.clone()),
                Some((feed_of(&p.first.0)?, feed_of(&p.second.0)?)),
            )
        }
    };
    let (mut to_left, mut to_right) = (0, 0);
    let plan = physical
        .clone()
        .transform_up(|p| {
            let Some(leaf) = p.downcast_ref::<FeedExec>() else {
                return Ok(Transformed::no(p));
            };
            let is_left = match &leaf_feeds {
                // A self-join: the first leaf is the left side.
                None => to_left == 0,
                Some((first, _)) => leaf.feed().same(first),
            };
            if is_left {
                to_left += 1;
                Ok(Transformed::yes(left.exec()))
            } else {
                to_right += 1;
                Ok(Transformed::yes(right.exec()))
            }
        })?
        .data;
    if (to_left, to_right) != (1, 1) {
        return Err(SqlError::Internal(format!(
            "an interval join planned with {to_left} left and {to_right} right stream leaves"
        )));
    }
    let output_schema = physical.schema();
    let (received, time_column) = match &pair {
        Some(p) => (p.schema.clone(), TIME_INDEX),
        None => (inputs[0].relation.schema.clone(), times[0].1),
    };
    let mut view =
        crate::planner::row_plan(name, Feed::new(received), physical, output_schema, task);
    view.join = Some(JoinSpec {
        plan,
        left,
        right,
        time_column,
        horizon_ns,
        pair: pair.clone(),
    });
    Ok((view, pair))
}

/// Which side of the join a term reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// A side of the join: its schema and event-time column.
type SideTime<'a> = (&'a DFSchema, &'a String);

/// The bounds `filter` sets on `left.time − right.time` (ns): (lowest, highest).
fn bounds(filter: &Expr, left: SideTime<'_>, right: SideTime<'_>) -> (Option<i64>, Option<i64>) {
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
                (term(l, left, right), term(r, left, right))
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
fn term(e: &Expr, left: SideTime<'_>, right: SideTime<'_>) -> Option<(Side, i64)> {
    match e {
        Expr::Cast(c) => term(&c.expr, left, right),
        Expr::TryCast(c) => term(&c.expr, left, right),
        Expr::Column(c) => {
            if &c.name == left.1 && left.0.has_column(c) {
                Some((Side::Left, 0))
            } else if &c.name == right.1 && right.0.has_column(c) {
                Some((Side::Right, 0))
            } else {
                None
            }
        }
        Expr::BinaryExpr(b) if matches!(b.op, Operator::Plus | Operator::Minus) => {
            match (term(&b.left, left, right), interval_ns(&b.right)) {
                (Some((side, k)), Some(v)) => Some((
                    side,
                    if b.op == Operator::Plus {
                        k.saturating_add(v)
                    } else {
                        k.saturating_sub(v)
                    },
                )),
                _ if b.op == Operator::Plus => {
                    let (side, k) = term(&b.right, left, right)?;
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
