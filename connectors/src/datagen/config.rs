//! Options of the datagen connector.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use weir_engine::error::{EngineError, Result};

use crate::options::Options;

/// `WITH (connector = 'datagen', …)`.
#[derive(Debug, Clone)]
pub struct DatagenConfig {
    /// Events per second of event time (and of wall time when `realtime`).
    pub rate: u64,
    /// Number of distinct `source` values, named `src-0000`, `src-0001`, ….
    pub sources: u32,
    /// Fraction of events with status `error`.
    pub error_rate: f64,
    /// Fraction of events whose metric is multiplied by 20 (at least 500).
    pub outlier_rate: f64,
    /// Random seed.
    pub seed: u64,
    /// Stop after this many events (unbounded when absent).
    pub count: Option<u64>,
    /// Event time of event 0, in ns since the epoch.
    pub start_ns: i64,
    /// Up to this many ms, events are shifted back in time (out-of-order input).
    pub disorder_ms: u64,
    /// Release event *i* no earlier than wall time `start + i/rate` (default true).
    pub realtime: bool,
    /// Error bursts: the period, in ns of event time counted from `start`, whose first
    /// `burst_length_ns` is a burst (no bursts when absent).
    pub burst_every_ns: Option<u64>,
    /// Length of each burst, in ns (default 30 s).
    pub burst_length_ns: u64,
    /// Fraction of events with status `error` of the affected sources during a burst
    /// (default 0.5).
    pub burst_error_rate: f64,
    /// The sources a burst affects: `src-0000` up to `src-<burst_sources - 1>` (default 1).
    pub burst_sources: u32,
}

impl DatagenConfig {
    /// Reads and checks the options; `start` defaults to now.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self> {
        let mut o = Options::new("datagen", options);
        let rate = o
            .parse_in("rate", "events per second", 1, 100_000_000)?
            .unwrap_or(1000u64);
        let sources = o
            .parse_in("sources", "a number of sources", 1, 10_000_000)?
            .unwrap_or(10u32);
        let error_rate = fraction(
            o.parse("error_rate", "a fraction between 0 and 1")?,
            "error_rate",
            0.01,
        )?;
        let outlier_rate = fraction(
            o.parse("outlier_rate", "a fraction between 0 and 1")?,
            "outlier_rate",
            0.001,
        )?;
        let seed = o.parse("seed", "an integer")?.unwrap_or(0u64);
        let count = o.parse("count", "a number of events")?;
        let start_ns = match o.optional("start") {
            None => Utc::now().timestamp_millis() * 1_000_000,
            Some(s) => DateTime::parse_from_rfc3339(s.trim())
                .map_err(|e| bad("start", &format!("expected an RFC 3339 timestamp: {e}")))?
                .timestamp_nanos_opt()
                .ok_or_else(|| bad("start", "out of range"))?,
        };
        let disorder_ms = o
            .parse_in("disorder_ms", "milliseconds", 0, 86_400_000)?
            .unwrap_or(0u64);
        let realtime = o.flag("realtime")?.unwrap_or(true);
        let burst_every = o.duration("burst_every")?;
        let burst_length = o.duration("burst_length")?;
        let burst_error_rate = o.parse::<f64>("burst_error_rate", "a fraction between 0 and 1")?;
        let burst_sources =
            o.parse_in::<u32>("burst_sources", "a number of sources", 1, 10_000_000)?;
        o.finish()?;
        if burst_every.is_none() {
            let given = [
                ("burst_length", burst_length.is_some()),
                ("burst_error_rate", burst_error_rate.is_some()),
                ("burst_sources", burst_sources.is_some()),
            ];
            if let Some((key, _)) = given.iter().find(|(_, set)| *set) {
                return Err(bad(
                    key,
                    "needs burst_every (the period of the error bursts)",
                ));
            }
        }
        let burst_every_ns = burst_every.map(|d| nanos("burst_every", d)).transpose()?;
        if burst_every_ns == Some(0) {
            return Err(bad("burst_every", "must be positive"));
        }
        let burst_length_ns = nanos(
            "burst_length",
            burst_length.unwrap_or(std::time::Duration::from_secs(30)),
        )?;
        if let Some(every) = burst_every_ns {
            if burst_length_ns == 0 {
                return Err(bad("burst_length", "must be positive"));
            }
            if burst_length_ns > every {
                return Err(bad("burst_length", "must not be longer than burst_every"));
            }
        }
        let burst_error_rate = fraction(burst_error_rate, "burst_error_rate", 0.5)?;
        let burst_sources = burst_sources.unwrap_or(1);
        if burst_sources == 0 || burst_sources > sources {
            return Err(bad(
                "burst_sources",
                &format!("must be between 1 and sources ({sources}), got {burst_sources}"),
            ));
        }
        Ok(Self {
            rate,
            sources,
            error_rate,
            outlier_rate,
            seed,
            count,
            start_ns,
            disorder_ms,
            realtime,
            burst_every_ns,
            burst_length_ns,
            burst_error_rate,
            burst_sources,
        })
    }

    /// The start as RFC 3339, as persisted.
    pub fn start_rfc3339(&self) -> String {
        DateTime::<Utc>::from_timestamp_nanos(self.start_ns)
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

fn bad(option: &str, message: &str) -> EngineError {
    EngineError::InvalidOption {
        option: option.into(),
        message: message.into(),
    }
}

/// A duration in ns, refused when it does not fit in 64 bits.
fn nanos(key: &str, d: std::time::Duration) -> Result<u64> {
    u64::try_from(d.as_nanos()).map_err(|_| bad(key, "too long"))
}

fn fraction(v: Option<f64>, key: &str, default: f64) -> Result<f64> {
    let v = v.unwrap_or(default);
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(bad(key, &format!("must be between 0 and 1, got {v}")))
    }
}
