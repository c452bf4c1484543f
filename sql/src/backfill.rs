//! How far a backfill is: the NOTICEs `CREATE MATERIALIZED VIEW` (and `CREATE ALERT`) send
//! while they wait for the new relation to catch up, and `weir.views.backfill_progress`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use weir_engine::pipeline::Engine;
use weir_engine::serving::system::SourceStats;

/// Where the slowest pipeline of a source stands while it is not caught up.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Events it has read.
    pub events: u64,
    /// Share of the input available now that it has read (0–1), when the connector tells:
    /// Kafka partitions' positions against their high watermarks, a file's byte offset
    /// against its length.
    pub fraction: Option<f64>,
    /// The event time its watermark reached.
    pub watermark: Option<i64>,
}

impl Progress {
    /// The NOTICE text for relation `name`.
    pub fn notice(&self, name: &str) -> String {
        let mut text = format!("backfilling \"{name}\": {} events read", self.events);
        if let Some(f) = self.fraction {
            text.push_str(&format!(", {:.0}% of the input", f * 100.0));
        }
        if let Some(t) = self.watermark {
            let t = DateTime::<Utc>::from_timestamp_nanos(t);
            text.push_str(&format!(
                ", event time {}",
                t.to_rfc3339_opts(SecondsFormat::Secs, true)
            ));
        }
        text
    }
}

/// The progress of `source`'s slowest pipeline that has not caught up; `None` when every
/// pipeline has.
pub fn progress(engine: &Engine, source: &str) -> Option<Progress> {
    let info = engine.sources().into_iter().find(|s| s.name == source)?;
    engine
        .pipeline_stats(source)
        .into_iter()
        .filter(|s| !s.caught_up.load(Ordering::Acquire))
        .map(|s| Progress {
            events: s.events_in.load(Ordering::Relaxed),
            fraction: fraction(&s, info.spec.options.get("path").map(String::as_str)),
            watermark: match s.watermark.load(Ordering::Relaxed) {
                i64::MIN | i64::MAX => None,
                wm => Some(wm),
            },
        })
        .min_by(|a, b| {
            let key = |p: &Progress| p.fraction.unwrap_or(0.0);
            key(a).total_cmp(&key(b))
        })
}

/// The share of the input read, from the reader's splits or a file's offset.
fn fraction(stats: &Arc<SourceStats>, path: Option<&str>) -> Option<f64> {
    let (read, end) = stats
        .splits
        .lock()
        .iter()
        .filter_map(|s| Some((s.position.max(0), s.high_watermark?.max(0))))
        .fold((0i64, 0i64), |(r, e), (p, h)| (r + p.min(h), e + h));
    if end > 0 {
        return Some(read as f64 / end as f64);
    }
    let offset = stats.position.lock().get("offset")?.as_u64()?;
    let length = std::fs::metadata(path?).ok()?.len();
    (length > 0).then(|| (offset as f64 / length as f64).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_says_events_share_and_event_time() {
        let p = Progress {
            events: 412_000,
            fraction: Some(0.414),
            watermark: Some(1_764_237_612_000_000_000),
        };
        assert_eq!(
            p.notice("kpi_1m"),
            "backfilling \"kpi_1m\": 412000 events read, 41% of the input, event time 2025-11-27T10:00:12Z"
        );
        let bare = Progress {
            events: 5,
            fraction: None,
            watermark: None,
        };
        assert_eq!(bare.notice("v"), "backfilling \"v\": 5 events read");
    }
}
