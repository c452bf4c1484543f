//! `--demo`: the seed's source and views over generated events, created if missing. The
//! seed's DDL lives here once, for the demo, the benchmark and the tests.

/// `CREATE SOURCE name (<the seed's event columns and watermark>) WITH (options)`.
pub fn seed_source(name: &str, options: &str) -> String {
    format!("CREATE SOURCE {name} {}", seed_source_body(options))
}

/// `(<the seed's event columns and watermark>) WITH (options)`.
fn seed_source_body(options: &str) -> String {
    format!(
        r#"(
    event_id TEXT,
    source TEXT,
    "timestamp" TIMESTAMPTZ,
    attributes STRUCT<user_id TEXT, metric DOUBLE PRECISION, status TEXT>,
    WATERMARK FOR "timestamp" AS "timestamp" - INTERVAL '2 seconds'
) WITH ({options})"#
    )
}

/// The seed's hot aggregate (count, avg, p95, error rate per source and window) over `from`,
/// a `TUMBLE(…)` or `HOP(…)` call.
pub fn kpi_query(from: &str) -> String {
    format!(
        r#"SELECT source, window_start, window_end,
       count(*) AS count,
       avg(attributes.metric) AS avg_metric,
       approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY attributes.metric) AS p95_metric,
       avg(CASE WHEN attributes.status <> 'ok' THEN 1.0 ELSE 0.0 END) AS error_rate
FROM {from}
GROUP BY source, window_start, window_end"#
    )
}

/// Events a source must have in its trailing five minutes before the outlier rule scores
/// its next one: a standard deviation over a handful of events calls ordinary values extreme.
pub const OUTLIER_MIN_HISTORY: u32 = 100;

/// The seed's per-event outlier query: each event's metric against its source's trailing
/// five minutes (the events before it, at least [`OUTLIER_MIN_HISTORY`]), over relation
/// `source`.
pub fn outlier_query(source: &str) -> String {
    format!(
        r#"SELECT source, "timestamp", metric, z FROM (
    SELECT source, "timestamp", attributes.metric AS metric,
           (attributes.metric - avg(attributes.metric) OVER w) / stddev(attributes.metric) OVER w AS z,
           count(*) OVER w AS history
    FROM {source}
    WINDOW w AS (PARTITION BY source ORDER BY "timestamp"
                 RANGE BETWEEN INTERVAL '5 minutes' PRECEDING AND INTERVAL '1 millisecond' PRECEDING)
) WHERE history >= {OUTLIER_MIN_HISTORY} AND abs(z) > 5"#
    )
}

/// Events a window must hold before the error-burst rule judges it.
pub const ERROR_BURST_MIN_EVENTS: u32 = 100;

/// The demo's error-rate rule over relation `source`: each closed 1-minute window of a
/// source with at least [`ERROR_BURST_MIN_EVENTS`] events and more than 5% errors. The rule
/// aggregates itself, so every window is judged once, when it is complete.
pub fn error_burst_query(source: &str) -> String {
    let rate = "avg(CASE WHEN attributes.status <> 'ok' THEN 1.0 ELSE 0.0 END)";
    format!(
        r#"SELECT source, window_start, count(*) AS events, {rate} AS error_rate
FROM TUMBLE({source}, "timestamp", INTERVAL '1 minute')
GROUP BY source, window_start
HAVING count(*) >= {ERROR_BURST_MIN_EVENTS} AND {rate} > 0.05"#
    )
}

/// `CREATE ALERT` for [`error_burst_query`], keyed by source.
pub fn error_burst_alert(name: &str, source: &str, cooldown: &str) -> String {
    format!(
        "CREATE ALERT IF NOT EXISTS {name} WITH (severity = 'warning', key = 'source', cooldown = '{cooldown}') AS\n{}",
        error_burst_query(source)
    )
}

/// The seed's error-rate threshold query over a KPI view.
pub fn error_rate_query(view: &str) -> String {
    format!("SELECT source, window_start, error_rate FROM {view} WHERE error_rate > 0.05")
}

/// `CREATE ALERT` for the outlier query, keyed by source.
pub fn outlier_alert(name: &str, source: &str, cooldown: &str) -> String {
    outlier_alert_emitting(name, source, cooldown, "on_watermark")
}

/// [`outlier_alert`] scoring events as `emit` says (`on_watermark` or `on_arrival`).
pub fn outlier_alert_emitting(name: &str, source: &str, cooldown: &str, emit: &str) -> String {
    let emit = emit.replace('\'', "''");
    format!(
        "CREATE ALERT IF NOT EXISTS {name} WITH (severity = 'critical', key = 'source', cooldown = '{cooldown}', emit = '{emit}') AS\n{}",
        outlier_query(source)
    )
}

/// `CREATE ALERT` for the error-rate query, keyed by source.
pub fn error_rate_alert(name: &str, view: &str, cooldown: &str) -> String {
    format!(
        "CREATE ALERT IF NOT EXISTS {name} WITH (severity = 'warning', key = 'source', cooldown = '{cooldown}') AS\n{}",
        error_rate_query(view)
    )
}

/// The demo generator's options at `rate` events/s: 20 sources, 2% errors, 0.1% outliers,
/// and an error burst (30%) for two sources in the first minute of every ten.
pub fn generator_options(rate: u64) -> String {
    let settings: Vec<String> = generator_settings(rate)
        .into_iter()
        .map(|(k, v)| format!("{k} = '{v}'"))
        .collect();
    format!("connector = 'datagen', {}", settings.join(", "))
}

/// [`generator_options`] as (option, value) pairs, without the connector.
pub fn generator_settings(rate: u64) -> Vec<(&'static str, String)> {
    [
        ("rate", rate.to_string()),
        ("sources", "20".into()),
        ("error_rate", "0.02".into()),
        ("outlier_rate", "0.001".into()),
        ("burst_every", "10 minutes".into()),
        ("burst_length", "1 minute".into()),
        ("burst_error_rate", "0.3".into()),
        ("burst_sources", "2".into()),
    ]
    .into()
}

/// The demo's alert rules over source `source`: outliers and error bursts.
pub fn alert_rules(source: &str) -> String {
    format!(
        "{};\n{};",
        outlier_alert("metric_outlier", source, "1 minute"),
        error_burst_alert("error_burst", source, "5 minutes"),
    )
}

/// The demo's statements for a generator of `rate` events/s.
pub fn statements(rate: u64) -> String {
    let source = format!(
        "CREATE SOURCE IF NOT EXISTS events {}",
        seed_source_body(&generator_options(rate))
    );
    let tumble = kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '1 minute')");
    let hop = kpi_query("HOP(events, \"timestamp\", INTERVAL '10 seconds', INTERVAL '1 minute')");
    format!(
        "{source};\nCREATE MATERIALIZED VIEW IF NOT EXISTS kpi_1m AS {tumble} EMIT ON UPDATE;\n\
         CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_1m_hop AS {hop} EMIT ON UPDATE;\n{}",
        alert_rules("events"),
    )
}
