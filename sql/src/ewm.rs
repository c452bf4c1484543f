//! `ewma(x, half_life)` and `ewm_zscore(x, half_life)`: exponentially weighted baselines
//! for `OVER (PARTITION BY … ORDER BY <event time>)` in materialized views and alerts.
//!
//! They are registered so DataFusion can plan them; the engine computes them
//! (`weir_engine::operator::over`), decaying by event time: an event `half_life` older weighs half
//! as much. Both score an event against the events before it and keep three numbers per
//! key, no events. Outside a streaming view there is no event-time order to decay along,
//! so evaluating them in an ordinary query is an error that says so.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{not_impl_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

/// Registers both functions in `ctx`.
pub fn register(ctx: &datafusion::prelude::SessionContext) {
    for name in ["ewma", "ewm_zscore"] {
        ctx.register_udaf(AggregateUDF::from(Ewm::new(name)));
    }
}

/// Either function (they differ only in what the engine returns).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Ewm {
    name: &'static str,
    signature: Signature,
}

impl Ewm {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for Ewm {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if !args[0].is_numeric() && args[0] != DataType::Null {
            return plan_err!(
                "{}(x, half_life) needs a numeric x, got {}",
                self.name,
                args[0]
            );
        }
        if !matches!(args[1], DataType::Interval(_) | DataType::Null) {
            return plan_err!(
                "{}(x, half_life): the half-life must be an interval such as INTERVAL '1 minute', got {}",
                self.name,
                args[1]
            );
        }
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "ewm"),
            DataType::Float64,
            true,
        ))])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Unavailable(self.name)))
    }
}

#[derive(Debug)]
struct Unavailable(&'static str);

impl Accumulator for Unavailable {
    fn update_batch(&mut self, _values: &[ArrayRef]) -> Result<()> {
        not_impl_err!(
            "{}() decays along event time and is computed by materialized views and alerts: use it as {}(x, INTERVAL '…') OVER (PARTITION BY … ORDER BY <event time>) in CREATE MATERIALIZED VIEW or CREATE ALERT",
            self.0,
            self.0
        )
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(None))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Float64(None)])
    }

    fn merge_batch(&mut self, _states: &[ArrayRef]) -> Result<()> {
        Ok(())
    }
}
