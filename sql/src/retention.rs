//! The `retention` and `history` options of materialized views: how long emitted rows stay
//! in memory, and how long the Parquet history they move to is kept (event time).

use std::collections::BTreeMap;

use weir_engine::history::Retention;
use weir_engine::pipeline::view::ViewPlan;

use crate::error::{Result, SqlError};

pub const RETENTION_OPTION: &str = "retention";
pub const HISTORY_OPTION: &str = "history";
/// History kept when a view names `retention` but not `history`.
pub const DEFAULT_HISTORY: &str = "7 days";

const NS_PER_SEC: i64 = 1_000_000_000;
/// Like every other duration: at most 100 years.
const MAX_NS: i64 = 100 * 365 * 86_400 * NS_PER_SEC;

/// Applies `retention`/`history` from `options` to `plan`; returns the options to keep in
/// the catalog (both, with the default history filled in, or neither). `persistent` says
/// whether the server has a data dir (history files need one).
pub fn apply_retention_options(
    options: &BTreeMap<String, String>,
    plan: &mut ViewPlan,
    persistent: bool,
) -> Result<BTreeMap<String, String>> {
    let retention = options.get(RETENTION_OPTION);
    let history = options.get(HISTORY_OPTION);
    let Some(retention) = retention else {
        if history.is_some() {
            return Err(SqlError::InvalidParameter(
                "history says how long rows are kept after they leave memory; set retention too, e.g. WITH (retention = '2 hours', history = '30 days')".into(),
            ));
        }
        return Ok(BTreeMap::new());
    };
    if retention.trim().eq_ignore_ascii_case("none") {
        if history.is_some() {
            return Err(SqlError::InvalidParameter(
                "retention = 'none' keeps every row in memory; it takes no history".into(),
            ));
        }
        plan.retention = None;
        return Ok(BTreeMap::from([(
            RETENTION_OPTION.to_string(),
            "none".to_string(),
        )]));
    }
    let history = history.map(String::as_str).unwrap_or(DEFAULT_HISTORY);
    let memory_ns = parse_age(RETENTION_OPTION, retention)?;
    let history_ns = parse_age(HISTORY_OPTION, history)?;
    if history_ns > 0 && !persistent {
        return Err(SqlError::FeatureNotSupported(
            "history is kept in Parquet files under the data dir, and this server has none: start it with --data-dir, or set history = '0' to drop rows when they leave memory".into(),
        ));
    }
    plan.retention = Some(Retention {
        memory_ns,
        history_ns,
    });
    Ok(BTreeMap::from([
        (RETENTION_OPTION.to_string(), retention.trim().to_string()),
        (HISTORY_OPTION.to_string(), history.trim().to_string()),
    ]))
}

/// Checks a server default for `option` (`retention` also takes `'none'`).
pub fn check_default(option: &str, text: &str) -> Result<()> {
    if option == RETENTION_OPTION && text.trim().eq_ignore_ascii_case("none") {
        return Ok(());
    }
    parse_age(option, text).map(|_| ())
}

/// `'2 hours'`, `'30 days'`, `'90s'`, `'0'` as nanoseconds (22023 otherwise).
pub fn parse_age(option: &str, text: &str) -> Result<i64> {
    match crate::dialect::parse_interval_ns(text) {
        Ok(ns) if (0..=MAX_NS).contains(&ns) => Ok(ns),
        _ => Err(SqlError::InvalidParameter(format!(
            "invalid value for option \"{option}\": '{text}'; use a duration such as '30 minutes', '2 hours' or '7 days' (seconds, minutes, hours, days, weeks; at most 100 years)"
        ))),
    }
}

/// A duration in the largest unit that states it exactly (`'2 hours'`, `'90 seconds'`).
pub fn format_age(ns: i64) -> String {
    let secs = ns / NS_PER_SEC;
    for (unit, size) in [
        ("week", 604_800),
        ("day", 86_400),
        ("hour", 3600),
        ("minute", 60),
    ] {
        if secs > 0 && secs % size == 0 && ns % NS_PER_SEC == 0 {
            let n = secs / size;
            return format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
        }
    }
    if ns % NS_PER_SEC == 0 {
        format!("{secs} seconds")
    } else {
        format!("{} seconds", ns as f64 / NS_PER_SEC as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_and_print() {
        assert_eq!(parse_age("r", "2 hours").unwrap(), 7200 * NS_PER_SEC);
        assert_eq!(parse_age("r", "30 days").unwrap(), 30 * 86_400 * NS_PER_SEC);
        assert_eq!(parse_age("r", "0").unwrap(), 0);
        assert_eq!(parse_age("r", "1.5m").unwrap(), 90 * NS_PER_SEC);
        for bad in ["", "soon", "-1 day", "1 fortnight", "999999999 weeks"] {
            assert_eq!(
                parse_age("r", bad).unwrap_err().sqlstate(),
                "22023",
                "{bad}"
            );
        }
        assert_eq!(format_age(7200 * NS_PER_SEC), "2 hours");
        assert_eq!(format_age(7 * 86_400 * NS_PER_SEC), "1 week");
        assert_eq!(format_age(90 * NS_PER_SEC), "90 seconds");
        assert_eq!(format_age(0), "0 seconds");
    }
}
