//! Operators: the steps a micro-batch goes through inside a view.
//!
//! A view is a chain of [`Operator`]s ([`chain`]): a stateless DataFusion plan over the
//! source's rows ([`plan::PlanStage`]: filters, projections, window assignment), then at most
//! one stateful step — window aggregates ([`aggregate`]) or streaming `OVER` frames
//! ([`over`]) — then the plan above it (HAVING, the final projection), then for an alert rule
//! the [`alert`] stage that turns rows into alert messages. A view that joins its stream with
//! itself in a time interval starts with the [`join`] operator instead of the input plan. The view runtime, the checkpoint
//! writer and recovery know operators only through the trait: each batch goes through
//! [`Operator::process`] in order, a checkpoint stores each operator's
//! [`Operator::snapshot`] (one file per batch, in chain order) and recovery hands the same
//! batches back to [`Operator::restore`].
//!
//! A new kind of step is one file implementing [`Operator`] plus one line in [`chain`].

pub mod aggregate;
pub mod alert;
pub mod feed;
pub mod join;
pub mod over;
pub mod plan;
pub mod session;
pub mod window;

use datafusion::arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::pipeline::view::ViewPlan;

/// What an operator knows about the micro-batch it is processing, besides its rows.
#[derive(Debug, Clone, Copy)]
pub struct Tick<'a> {
    /// The source's watermark after this batch (ns; `i64::MAX` once a bounded input ended).
    pub watermark: i64,
    /// The rows the view received for this batch, before any operator (an alert rule looks
    /// at them to see that its condition cleared).
    pub input: &'a [RecordBatch],
}

/// One step of a view.
pub trait Operator: Send {
    /// A short name for messages (`aggregate`, `over`, `alert`, `plan`).
    fn kind(&self) -> &'static str;

    /// Takes the rows the previous operator produced for one micro-batch and returns the
    /// rows it passes on (for a stateful operator, those the watermark completed).
    fn process(&mut self, rows: Vec<RecordBatch>, tick: &Tick<'_>) -> Result<Vec<RecordBatch>>;

    /// What this step does, for `EXPLAIN MATERIALIZED VIEW` and `weir.view_operators`.
    fn describe(&self) -> String;

    /// The current rows of what is still open, given the open rows of the operators before
    /// it: a window aggregate evaluates its open windows, a plan transforms what it is given,
    /// anything else passes them on.
    fn open_rows(&mut self, upstream: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        Ok(upstream)
    }

    /// The operator's state for a checkpoint, as batches (each is written to a file of its
    /// own). Stateless operators have none.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        Ok(Vec::new())
    }

    /// Replaces the state with one [`snapshot`](Self::snapshot) returned.
    fn restore(&mut self, _state: &[RecordBatch]) -> Result<()> {
        Ok(())
    }

    /// Live groups (open windows' groups, keys of `OVER` frames, alert keys).
    fn groups(&self) -> usize {
        0
    }

    /// Approximate bytes of open state.
    fn state_bytes(&self) -> usize {
        0
    }

    /// Rows dropped because what they belonged to had already been emitted.
    fn dropped_rows(&self) -> u64 {
        0
    }

    /// The watermark of the rows this operator passes on, given the watermark `wm` of its
    /// input: rows it emits later have event times (window starts) at or above it.
    fn output_watermark(&self, wm: i64) -> i64 {
        wm
    }

    /// Keeps only what is still needed once the view's rows before `cutoff` (event time,
    /// ns) have left memory.
    fn prune(&mut self, _cutoff: i64) {}

    /// The operator as [`std::any::Any`], for the view runtime's typed questions (an alert
    /// rule's alerts).
    fn as_any(&self) -> &dyn std::any::Any;
}

/// `ns` as a duration a reader recognizes: `1 minute`, `30 seconds`, `250 ms`.
pub fn describe_ns(ns: i64) -> String {
    const UNITS: [(i64, &str); 5] = [
        (86_400_000_000_000, "day"),
        (3_600_000_000_000, "hour"),
        (60_000_000_000, "minute"),
        (1_000_000_000, "second"),
        (1_000_000, "ms"),
    ];
    for (unit, name) in UNITS {
        if ns % unit == 0 && ns != 0 {
            let n = ns / unit;
            return match (name, n) {
                ("ms", _) => format!("{n} ms"),
                (_, 1) => format!("1 {name}"),
                _ => format!("{n} {name}s"),
            };
        }
    }
    format!("{ns} ns")
}

/// The operators of `plan`, in the order a batch goes through them. The one place that
/// knows which operators exist.
pub fn chain(plan: &ViewPlan) -> Result<Vec<Box<dyn Operator>>> {
    let mut chain: Vec<Box<dyn Operator>> = vec![match &plan.join {
        Some(spec) => Box::new(join::IntervalJoin::new(spec.clone(), plan.task.clone())),
        None => Box::new(plan::PlanStage::new(plan.input.clone(), plan.task.clone())),
    }];
    if let Some(spec) = &plan.aggregate {
        chain.push(match spec.window.as_ref().map(|w| w.kind) {
            Some(window::WindowKind::Session { gap }) => {
                Box::new(session::SessionAggregate::new(spec.clone(), gap)?)
            }
            _ => Box::new(aggregate::IncrementalAggregate::new(spec.clone())?),
        });
    }
    if let Some(spec) = &plan.over {
        chain.push(Box::new(over::OverState::new(
            spec.clone(),
            &plan.input.feed_output_schema(),
        )?));
    }
    if let Some(post) = &plan.post {
        chain.push(Box::new(plan::PlanStage::new(
            post.clone(),
            plan.task.clone(),
        )));
    }
    if let Some(spec) = &plan.alert {
        chain.push(Box::new(alert::AlertStage::new(spec.clone())));
    }
    Ok(chain)
}
