-- events_raw: every valid event, as the seed's history table had it. A TimescaleDB
-- hypertable when the extension is available, a plain table with the same columns and
-- indexes otherwise. The unique index on (event_id, ts) lets a sink write an event again
-- after a crash without duplicating it.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS timescaledb;
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'timescaledb is available but cannot be created (%); events_raw is a plain table', SQLERRM;
        END;
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS events_raw (
    ts TIMESTAMPTZ NOT NULL,
    source TEXT NOT NULL,
    metric DOUBLE PRECISION,
    status TEXT,
    user_id TEXT,
    event_id UUID
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('events_raw', 'ts', if_not_exists => TRUE);
    END IF;
END $$;

CREATE INDEX IF NOT EXISTS events_raw_source_ts_idx ON events_raw (source, ts DESC);
CREATE UNIQUE INDEX IF NOT EXISTS events_raw_event_id_ts_idx ON events_raw (event_id, ts);
