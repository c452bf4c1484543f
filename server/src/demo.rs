//! `--demo`: the seed's source and views over generated events, created if missing.

use weir_sql::{Database, Session};

use crate::error::Result;

/// The demo's statements for a generator of `rate` events/s.
pub fn statements(rate: u64) -> String {
    format!(
        r#"
CREATE SOURCE IF NOT EXISTS events (
    event_id TEXT,
    source TEXT,
    "timestamp" TIMESTAMPTZ,
    attributes STRUCT<user_id TEXT, metric DOUBLE PRECISION, status TEXT>,
    WATERMARK FOR "timestamp" AS "timestamp" - INTERVAL '2 seconds'
) WITH (connector = 'datagen', rate = '{rate}', sources = '20', error_rate = '0.02', outlier_rate = '0.001');

CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_1m AS
SELECT source, window_start, window_end,
       count(*) AS count,
       avg(attributes.metric) AS avg_metric,
       approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY attributes.metric) AS p95_metric,
       avg(CASE WHEN attributes.status <> 'ok' THEN 1.0 ELSE 0.0 END) AS error_rate
FROM TUMBLE(events, "timestamp", INTERVAL '1 minute')
GROUP BY source, window_start, window_end
EMIT ON UPDATE;

CREATE MATERIALIZED VIEW IF NOT EXISTS kpi_1m_hop AS
SELECT source, window_start, window_end,
       count(*) AS count,
       avg(attributes.metric) AS avg_metric,
       approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY attributes.metric) AS p95_metric,
       avg(CASE WHEN attributes.status <> 'ok' THEN 1.0 ELSE 0.0 END) AS error_rate
FROM HOP(events, "timestamp", INTERVAL '10 seconds', INTERVAL '1 minute')
GROUP BY source, window_start, window_end
EMIT ON UPDATE;
"#
    )
}

/// Creates the demo objects that do not exist yet.
pub async fn install(db: &Database, rate: u64) -> Result<()> {
    let mut session = Session::default();
    db.run(&mut session, &statements(rate)).await?;
    Ok(())
}
