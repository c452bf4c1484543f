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

/// The seed's per-event outlier query: each event's metric against its source's trailing
/// five minutes (the events before it), over relation `source`.
pub fn outlier_query(source: &str) -> String {
    format!(
        r#"SELECT source, "timestamp", metric, z FROM (
    SELECT source, "timestamp", attributes.metric AS metric,
           (attributes.metric - avg(attributes.metric) OVER w) / stddev(attributes.metric) OVER w AS z
    FROM {source}
    WINDOW w AS (PARTITION BY source ORDER BY "timestamp"
                 RANGE BETWEEN INTERVAL '5 minutes' PRECEDING AND INTERVAL '1 millisecond' PRECEDING)
) WHERE abs(z) > 4"#
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

/// The demo's statements for a generator of `rate` events/s.
pub fn statements(rate: u64) -> String {
    let source = format!(
        "CREATE SOURCE IF NOT EXISTS events {}",
        seed_source_body(&format!(
            "connector = 'datagen', rate = '{rate}', sources = '20', error_rate = '0.02', outlier_rate = '0.001', \
             burst_every = '10 minutes', burst_length = '1 minute', burst_error_rate = '0.3', burst_sources = '2'"
        ))
    );
    let tumble = kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '1 minute')");
    let hop = kpi_query("HOP(events, \"timestamp\", INTERVAL '10 seconds', INTERVAL '1 minute')");
    format!(
        "{source};\nCREATE MATERIALIZED VIEW IF NOT EXISTS kpi_1m AS {tumble} EMIT ON UPDATE;\n\
         CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_1m_hop AS {hop} EMIT ON UPDATE;\n{};\n{};",
        outlier_alert("metric_outlier", "events", "1 minute"),
        error_rate_alert("high_error_rate", "kpi_1m", "5 minutes"),
    )
}
