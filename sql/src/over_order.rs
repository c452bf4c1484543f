//! The `emit` option of views and alert rules with `OVER` windows: score rows in event-time
//! order once the watermark passes them (`'on_watermark'`, the default: equals the batch
//! query) or as they arrive (`'on_arrival'`: no watermark wait, depends on arrival order).

use std::collections::BTreeMap;

use weir_engine::operator::over::OverOrder;
use weir_engine::pipeline::view::ViewPlan;

use crate::error::{Result, SqlError};

/// The option's name.
pub const EMIT_OPTION: &str = "emit";

/// Applies `options["emit"]` to `plan`'s OVER windows. Returns the value to keep in the
/// catalog (`Some` exactly for a plan with OVER windows). `watermarked` says whether the
/// relation's root source declares a watermark (event-time order needs one).
pub fn apply_emit_option(
    options: &BTreeMap<String, String>,
    plan: &mut ViewPlan,
    root_source: &str,
    watermarked: bool,
) -> Result<Option<String>> {
    let given = options.get(EMIT_OPTION);
    let Some(over) = plan.over.as_mut() else {
        return match given {
            None => Ok(None),
            Some(v) => Err(SqlError::InvalidParameter(format!(
                "emit = '{v}' chooses when OVER windows score a row; this query has no OVER window (aggregates choose with EMIT ON WINDOW CLOSE or EMIT ON UPDATE after GROUP BY)"
            ))),
        };
    };
    let order = match given {
        None => OverOrder::EventTime,
        Some(v) => OverOrder::from_option(v).ok_or_else(|| {
            SqlError::InvalidParameter(format!(
                "emit = '{v}': use 'on_watermark' (the default: rows are scored in event-time order once the watermark passes them, exactly as the batch query) or 'on_arrival' (scored as they arrive, without waiting for the watermark)"
            ))
        })?,
    };
    if order == OverOrder::EventTime && !watermarked {
        return Err(SqlError::FeatureNotSupported(format!(
            "OVER windows score rows in event-time order once the watermark passes them, and source {root_source} has no watermark: declare WATERMARK FOR <event time> AS <event time> - INTERVAL '…' on it, or score rows as they arrive with WITH (emit = 'on_arrival')"
        )));
    }
    over.order = order;
    Ok(Some(order.as_option().to_string()))
}
