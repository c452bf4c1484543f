//! The alert rules' reference: generated events with outliers and error bursts, the rules
//! run as DataFusion batch queries, and the event-time cooldown applied from scratch.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::prelude::{JsonReadOptions, SessionContext};
use weir_connectors::datagen::{DatagenConfig, EventGenerator};

use super::event_schema;

pub const MINUTE: i64 = 60_000_000_000;
pub const OUTLIER_COOLDOWN: i64 = MINUTE;
pub const ERROR_COOLDOWN: i64 = 3 * MINUTE;

/// Ten minutes of events: 4 sources, 0.3% outliers, and an error burst on `src-0000`
/// during the first minute of every four; events arrive up to 1.5 s out of order (within the
/// seed's 2 s watermark delay), so OVER rules must score them in event-time order.
pub fn generator(rate: u64) -> EventGenerator {
    let options: BTreeMap<String, String> = [
        ("seed", "11"),
        ("rate", &rate.to_string()),
        ("sources", "4"),
        ("error_rate", "0.01"),
        ("outlier_rate", "0.003"),
        ("burst_every", "4 minutes"),
        ("burst_length", "1 minute"),
        ("burst_error_rate", "0.5"),
        ("burst_sources", "1"),
        ("disorder_ms", "1500"),
        ("start", "2026-11-27T10:00:00Z"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    EventGenerator::new(DatagenConfig::from_options(&options).unwrap())
}

/// (key, event time ns) of every row `sql` selects in a batch over the events.
pub async fn batch_rows(
    dir: &std::path::Path,
    lines: &[String],
    sql: &str,
) -> Vec<(String, i64, f64)> {
    let path = dir.join("batch.json");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let ctx = SessionContext::new();
    ctx.register_json(
        "events",
        path.to_str().unwrap(),
        JsonReadOptions::default()
            .schema(&event_schema())
            .file_extension(".json"),
    )
    .await
    .unwrap();
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    triples(&batches)
}

/// Column 0 as text and column 1 (a timestamp) as ns.
pub fn keys_and_times(b: &RecordBatch) -> (StringArray, Int64Array) {
    let keys = cast(b.column(0), &DataType::Utf8).unwrap();
    let times = cast(
        b.column(1),
        &DataType::Timestamp(TimeUnit::Nanosecond, None),
    )
    .unwrap();
    let times = cast(&times, &DataType::Int64).unwrap();
    (
        keys.as_any().downcast_ref::<StringArray>().unwrap().clone(),
        times.as_any().downcast_ref::<Int64Array>().unwrap().clone(),
    )
}

/// (text of column 0, column 1 as ns, column 2 as f64) per row.
pub fn triples(batches: &[RecordBatch]) -> Vec<(String, i64, f64)> {
    let mut out = Vec::new();
    for b in batches {
        let (keys, times) = keys_and_times(b);
        let values = cast(b.column(2), &DataType::Float64).unwrap();
        let values = values.as_any().downcast_ref::<Float64Array>().unwrap();
        for r in 0..b.num_rows() {
            out.push((keys.value(r).to_string(), times.value(r), values.value(r)));
        }
    }
    out
}

/// One alert: (key, event time) → (repeats, resolved at).
pub type Alerts = BTreeMap<(String, i64), (i64, Option<i64>)>;

/// The alerts a rule raises from the rows it selects (`held`) with an event-time cooldown;
/// for a threshold rule, `all` are every input row (key, time): a later row of a firing
/// key that is not selected resolves it.
pub fn expected(held: &[(String, i64)], all: Option<&[(String, i64)]>, cooldown: i64) -> Alerts {
    let mut rows: Vec<(String, i64, bool)> =
        held.iter().map(|(k, t)| (k.clone(), *t, true)).collect();
    if let Some(all) = all {
        let holding: std::collections::HashSet<&(String, i64)> = held.iter().collect();
        rows.extend(
            all.iter()
                .filter(|r| !holding.contains(r))
                .map(|(k, t)| (k.clone(), *t, false)),
        );
    }
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut out = Alerts::new();
    // Per key: (start of the current alert, last time sent, firing).
    let mut state: BTreeMap<String, (i64, bool)> = BTreeMap::new();
    for (key, t, holds) in rows {
        let current = state.get(&key).copied();
        match (holds, current) {
            (true, Some((start, _))) if t - start < cooldown => {
                out.get_mut(&(key.clone(), start)).unwrap().0 += 1;
            }
            (true, _) => {
                out.insert((key.clone(), t), (0, None));
                state.insert(key, (t, all.is_some()));
            }
            (false, Some((start, true))) => {
                out.get_mut(&(key.clone(), start)).unwrap().1 = Some(t);
                state.insert(key, (start, false));
            }
            (false, _) => {}
        }
    }
    out
}

/// The alerts of rule `name` in `weir.alerts`.
pub async fn weir_alerts(db: &weir_sql::Database, name: &str) -> Alerts {
    let batches = db
        .query(&format!(
            "SELECT key, event_time, repeats, resolved_at FROM weir.alerts WHERE name = '{name}'"
        ))
        .await
        .unwrap();
    let mut out = Alerts::new();
    for b in &batches {
        let keys = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let t = cast(
            b.column(1),
            &DataType::Timestamp(TimeUnit::Nanosecond, None),
        )
        .unwrap();
        let t = cast(&t, &DataType::Int64).unwrap();
        let t = t.as_any().downcast_ref::<Int64Array>().unwrap();
        let repeats = b.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        let resolved = cast(
            b.column(3),
            &DataType::Timestamp(TimeUnit::Nanosecond, None),
        )
        .unwrap();
        let resolved = cast(&resolved, &DataType::Int64).unwrap();
        let resolved = resolved.as_any().downcast_ref::<Int64Array>().unwrap();
        for r in 0..b.num_rows() {
            out.insert(
                (keys.value(r).to_string(), t.value(r)),
                (
                    repeats.value(r),
                    resolved.is_valid(r).then(|| resolved.value(r)),
                ),
            );
        }
    }
    out
}

/// Every 1-minute window's error rate, per source, over the events.
pub const ERROR_RATE_WINDOWS_SQL: &str =
    "SELECT source, date_bin(INTERVAL '1 minute', \"timestamp\") AS ws, \
     avg(CASE WHEN attributes['status'] <> 'ok' THEN 1.0 ELSE 0.0 END) FROM events GROUP BY 1, 2";

/// The error-rate rule's expected alerts from every window's rate (windows starting at or
/// after `closed_before` are still open and left out).
pub fn expected_error_alerts(windows: &[(String, i64, f64)], closed_before: i64) -> Alerts {
    let windows: Vec<&(String, i64, f64)> = windows
        .iter()
        .filter(|(_, t, _)| *t < closed_before)
        .collect();
    let all: Vec<(String, i64)> = windows.iter().map(|(k, t, _)| (k.clone(), *t)).collect();
    let hot: Vec<(String, i64)> = windows
        .iter()
        .filter(|(_, _, rate)| *rate > 0.05)
        .map(|(k, t, _)| (k.clone(), *t))
        .collect();
    expected(&hot, Some(&all), ERROR_COOLDOWN)
}

/// (source, event time) of every injected outlier (metric ×20, so above 400).
pub fn injected_outliers(lines: &[String]) -> Vec<(String, i64)> {
    lines
        .iter()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let m = v["attributes"]["metric"].as_f64()?;
            (m > 400.0).then(|| {
                (
                    v["source"].as_str().unwrap().to_string(),
                    time_ns(&v["timestamp"]),
                )
            })
        })
        .collect()
}

/// The injected outliers the outlier rule scores: those with at least
/// `demo::OUTLIER_MIN_HISTORY` events of their source in the five minutes before them (the
/// rule's frame ends 1 ms before the event).
pub fn scored_outliers(lines: &[String]) -> Vec<(String, i64)> {
    let mut times: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for l in lines {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        if let (Some(source), Some(_)) = (v["source"].as_str(), v["timestamp"].as_str()) {
            times
                .entry(source.to_string())
                .or_default()
                .push(time_ns(&v["timestamp"]));
        }
    }
    times.values_mut().for_each(|t| t.sort_unstable());
    injected_outliers(lines)
        .into_iter()
        .filter(|(source, t)| {
            let ts = &times[source];
            let from = ts.partition_point(|x| *x < t - 5 * MINUTE);
            let to = ts.partition_point(|x| *x <= t - 1_000_000);
            to - from >= weir_server::demo::OUTLIER_MIN_HISTORY as usize
        })
        .collect()
}

/// An RFC 3339 JSON string as ns.
pub fn time_ns(v: &serde_json::Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap()
}

/// The first window start (1-minute windows) not closed by the watermark of a followed
/// source (2 s behind the newest event of `lines`).
pub fn open_from(lines: &[String]) -> i64 {
    let watermark = newest(lines) - 2_000_000_000;
    (watermark - MINUTE).div_euclid(MINUTE) * MINUTE + MINUTE
}

/// The outlier rule's reference: (source, event time) of every event the batch query
/// selects, and the alerts they raise with the outlier cooldown from the events a followed
/// source has scored: those below its watermark (2 s behind the newest event).
pub async fn expected_outliers(
    dir: &std::path::Path,
    lines: &[String],
) -> (Vec<(String, i64)>, Alerts) {
    let rows = batch_rows(dir, lines, &weir_server::demo::outlier_query("events")).await;
    let held: Vec<(String, i64)> = rows.into_iter().map(|(k, t, _)| (k, t)).collect();
    let watermark = newest(lines) - 2_000_000_000;
    let scored: Vec<(String, i64)> = held
        .iter()
        .filter(|(_, t)| *t < watermark)
        .cloned()
        .collect();
    let alerts = expected(&scored, None, OUTLIER_COOLDOWN);
    (held, alerts)
}

/// The newest event time of `lines` (ns).
pub fn newest(lines: &[String]) -> i64 {
    lines
        .iter()
        .map(|l| time_ns(&serde_json::from_str::<serde_json::Value>(l).unwrap()["timestamp"]))
        .max()
        .unwrap()
}
