-- The seed's pipeline over a Kafka topic (the chart's init.sql when kafka.brokers is set and
-- initSql is not): every replica runs it at start; IF NOT EXISTS makes it a no-op after.
-- Producers key messages by `source`, so every view below groups by it and runs split by
-- partition on any number of replicas.
CREATE SOURCE IF NOT EXISTS events (
    event_id TEXT,
    source TEXT,
    "timestamp" TIMESTAMPTZ,
    attributes STRUCT<user_id TEXT, metric DOUBLE PRECISION, status TEXT>,
    WATERMARK FOR "timestamp" AS "timestamp" - INTERVAL '2 seconds'
) WITH (connector = 'kafka', brokers = 'KAFKA_BROKERS', topic = 'KAFKA_TOPIC', format = 'json',
        partition_key = 'source');

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

CREATE ALERT IF NOT EXISTS error_burst
WITH (severity = 'warning', key = 'source', cooldown = '5 minutes') AS
SELECT source, window_start, count(*) AS events,
       avg(CASE WHEN attributes.status <> 'ok' THEN 1.0 ELSE 0.0 END) AS error_rate
FROM TUMBLE(events, "timestamp", INTERVAL '1 minute')
GROUP BY source, window_start
HAVING count(*) >= 100 AND avg(CASE WHEN attributes.status <> 'ok' THEN 1.0 ELSE 0.0 END) > 0.05;
