-- The psql steps of the real-client harness (server/tests/clients.rs): each `\echo step:`
-- line starts a step; its rows (unaligned) or its error's SQLSTATE follow.
\set VERBOSITY sqlstate
\echo step:simple
SELECT 1 AS one, 'it''s' AS t, NULL::text AS n, 2.5::float8 AS f, true AS b;
\echo step:ordered
SELECT source, count, window_start FROM kpi_1m WHERE source = 'src-0001' ORDER BY window_start LIMIT 3;
\echo step:aggregate
SELECT source, count(*), sum(count) FROM kpi_1m GROUP BY source ORDER BY source;
\echo step:error_relation
SELECT * FROM no_such_view;
\echo step:error_column
SELECT nonsense FROM kpi_1m;
\echo step:error_syntax
SELEC 1;
\echo step:transaction
BEGIN;
SELECT count(*) > 0 AS any FROM kpi_1m;
COMMIT;
\echo step:failed_transaction
BEGIN;
SELECT * FROM no_such_view;
SELECT 3;
ROLLBACK;
SELECT 4 AS four;
\echo step:metadata
SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'kpi_1m' ORDER BY ordinal_position;
