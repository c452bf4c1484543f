//! `max_future`: a watermarked source's guard against events dated far past the wall clock
//! (one such event would move the watermark there and make every later event late). It is
//! a source option Weir reads itself: taken out before the connector sees the options,
//! kept in the catalog with them, and given to the engine with the watermark.

use std::collections::BTreeMap;

use crate::error::{Result, SqlError};

/// The source option that bounds how far past the wall clock an event may be dated.
pub const MAX_FUTURE: &str = "max_future";

/// `max_future` when a watermarked source does not set it.
const DEFAULT_MAX_FUTURE: &str = "1 hour";

/// A source's options without `max_future` (what its connector validates), and
/// `max_future` as written.
pub fn split_max_future(
    options: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Option<String>) {
    let mut rest = options.clone();
    let max_future = rest.remove(MAX_FUTURE);
    (rest, max_future)
}

/// `max_future` in nanoseconds: the default when unset, `None` for `'off'`.
pub fn max_future_ns(text: Option<&str>) -> Result<Option<i64>> {
    let text = text.unwrap_or(DEFAULT_MAX_FUTURE);
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match crate::dialect::parse_interval_ns(text) {
        Ok(ns) if ns > 0 => Ok(Some(ns)),
        _ => Err(SqlError::InvalidParameter(format!(
            "invalid value for option \"max_future\": expected a positive interval such as '1 hour', or 'off', got '{text}'"
        ))),
    }
}
