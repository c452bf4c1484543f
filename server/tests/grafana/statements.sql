-- What Grafana's PostgreSQL data source sends, statement by statement, rendered for the
-- test fixture (view kpi_1m, time column window_start, range 2024-05-01T12:00:00Z to
-- 13:00:00Z, interval 1m), from grafana/grafana (postgresMetaQuery.ts, meta_query.ts,
-- macros.go), grafana/grafana-postgresql-datasource, jackc/pgx and lib/pq.
-- Each block: a `-- name:` line, the statement exactly as sent (one simple-protocol Query
-- message; whitespace kept), then `-- end`. tests/grafana.rs replays them.
-- name: ping_pgx | source: jackc/pgx pgconn/pgconn.go (PgConn.Ping = Exec(ctx, "-- ping")) via grafana/grafana pkg/tsdb/grafana-postgresql-datasource/pgx/handler_checkhealth.go@1b13755cdccf (pool.Ping) | grafana versions: >= 12.4 (pgx default); 12.x with feature toggle postgresDSUsePGX; external plugin grafana-postgresql-datasource
-- ping
-- end
-- name: ping_libpq | source: lib/pq conn_go18.go (conn.Ping = simpleQuery(";")) via grafana/grafana pkg/tsdb/grafana-postgresql-datasource/sqleng/handler_checkhealth.go@0c059270ae12 (db.Ping) | grafana versions: ~9.4 - 12.3
;
-- end
-- name: health_select_1 | source: grafana/grafana public/app/plugins/datasource/postgres/datasource.ts (testDatasource: metricFindQuery('SELECT 1')) / packages/grafana-sql SqlDatasource.testDatasource (early 9.x) | grafana versions: 5.x - ~9.3 (frontend test, sent through the normal query path)
SELECT 1
-- end
-- name: version | source: grafana/grafana public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts@eb607c510fe9 getVersion() (same text in postgres/postgresMetaQuery.ts and in the external plugin) | grafana versions: ~9.3 - current (React config editor, useAutoDetectFeatures.ts; runs only when creating a data source)
SELECT current_setting('server_version_num')::int/100 as version
-- end
-- name: version_legacy_noalias | source: grafana/grafana public/app/plugins/datasource/postgres/datasource.ts getVersion() (called from config_ctrl.ts@94cf4bda0a14 autoDetectFeatures) | grafana versions: 5.3 - ~9.2 (Angular config page)
SELECT current_setting('server_version_num')::int/100
-- end
-- name: timescaledb_version | source: grafana/grafana public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts@eb607c510fe9 getTimescaleDBVersion() (identical in Angular datasource.ts and external plugin) | grafana versions: 5.3 - current (only if server_version_num/100 >= 906)
SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'
-- end
-- name: showTables_r0 | source: grafana/grafana public/app/plugins/datasource/postgres/postgresMetaQuery.ts (first React version; commit not identified, text read from index id 44924387146) | grafana versions: ~9.3 pre-release React builder (release status not verified)
select table_name from information_schema.tables
    where table_schema not in ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
      and table_type = 'BASE TABLE'
-- end
-- name: getSchema_r0 | source: grafana/grafana public/app/plugins/datasource/postgres/postgresMetaQuery.ts (first React version; commit not identified) | grafana versions: ~9.3 pre-release React builder (release status not verified)
select column_name as "column", data_type as "type"
    from information_schema.columns
    where table_name = 'kpi_1m'
-- end
-- name: showDatabases_r0_r1 | source: grafana/grafana public/app/plugins/datasource/postgres/postgresMetaQuery.ts@680d2f2ee9a6 showDatabases() (called by datasource.ts fetchDatasets) | grafana versions: ~9.3 - ~9.4 (dataset picker of the first React builder)
SELECT datname FROM pg_database WHERE datistemplate = false
-- end
-- name: showTables_r1_base_table | source: grafana/grafana public/app/plugins/datasource/postgres/postgresMetaQuery.ts@680d2f2ee9a6 | grafana versions: ~9.3 - 9.4
select quote_ident(table_name) as "table" from information_schema.tables
    where quote_ident(table_schema) not in ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
      and table_type = 'BASE TABLE' and 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
-- end
-- name: getSchema_r1_r2 | source: grafana/grafana public/app/plugins/datasource/postgres/postgresMetaQuery.ts@680d2f2ee9a6 / @ec129a119e3e | grafana versions: ~9.3 - 10.3
select quote_ident(column_name) as "column", data_type as "type"
    from information_schema.columns
    where quote_ident(table_name) = 'kpi_1m'
-- end
-- name: showTables_r2_r3 | source: grafana/grafana public/app/plugins/datasource/postgres/postgresMetaQuery.ts@ec129a119e3e (views listed: PR #62867) | grafana versions: 9.5 - ~11.3
select quote_ident(table_name) as "table" from information_schema.tables
    where quote_ident(table_schema) not in ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
      and 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
-- end
-- name: getSchema_r3_escaped | source: grafana/grafana public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts (PR #80951; text from fork copies MAFLO321/grafana@d8b9a57008fa and a third-party plugin copy) | grafana versions: 10.4 - ~11.3
select quote_ident(column_name) as "column", data_type as "type"
    from information_schema.columns
    where quote_ident(table_name) = 'kpi_1m';
    
-- end
-- name: showTables_pr95636_wip | source: MAFLO321/grafana public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts@d8b9a57008fa | grafana versions: none released (work-in-progress state of PR #95636 in the author's fork)
SELECT
      CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          ) THEN quote_ident(table_name) ELSE quote_ident(table_schema) || '.' || quote_ident(table_name) END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          ) THEN 0 ELSE 1 END, 1
-- end
-- name: showTables_r4 | source: grafana/grafana public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts@eb607c510fe9 / @12f912ab8d01 showTables() / external plugin grafana/grafana-postgresql-datasource src/postgresMetaQuery.ts@0666bf10c27f | grafana versions: ~11.4 - current (PR #95636); also external plugin without a schema
SELECT
    CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          ) THEN 0 ELSE 1 END, 1
-- end
-- name: getSchema_r4 | source: grafana/grafana public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts@eb607c510fe9 / @12f912ab8d01 / external plugin grafana/grafana-postgresql-datasource src/postgresMetaQuery.ts@0666bf10c27f | grafana versions: ~11.4 - current (PR #95636); external plugin
SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('kpi_1m'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('kpi_1m'))[1]
          AND quote_ident(table_name) = (parse_ident('kpi_1m'))[2]
        ELSE quote_ident(table_name) = 'kpi_1m'
          AND 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      END
-- end
-- name: getSchema_r4_qualified | source: grafana/grafana public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts@eb607c510fe9 (table picked as schema.table) | grafana versions: ~11.4 - current; external plugin
SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('weir.alerts'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('weir.alerts'))[1]
          AND quote_ident(table_name) = (parse_ident('weir.alerts'))[2]
        ELSE quote_ident(table_name) = 'weir.alerts'
          AND 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      END
-- end
-- name: showSchemas_r5 | source: grafana/grafana public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts@12f912ab8d01 showSchemas() (datasource.ts fetchDatasets) | grafana versions: grafana/grafana main 2026 (dataset/schema picker; release not verified)
SELECT schema_name AS "name"
    FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema',
                              'pg_catalog',
                              'pg_toast',
                              '_timescaledb_cache',
                              '_timescaledb_catalog',
                              '_timescaledb_internal',
                              '_timescaledb_config',
                              'timescaledb_information',
                              'timescaledb_experimental')
    ORDER BY schema_name
-- end
-- name: showTables_r5_schema | source: grafana/grafana public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts@12f912ab8d01 showTables('public') | grafana versions: grafana/grafana main 2026 (release not verified)
SELECT quote_ident(table_name) AS "table"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = 'public'
      ORDER BY 1
-- end
-- name: ext_showDatabases | source: grafana/grafana-postgresql-datasource src/postgresMetaQuery.ts@0666bf10c27f showDatabases() (only with jsonData.enableMultiDatabase) | grafana versions: external plugin grafana-postgresql-datasource (2026)
SELECT datname FROM pg_database WHERE datistemplate = false ORDER BY datname
-- end
-- name: ext_showSchemas | source: grafana/grafana-postgresql-datasource src/postgresMetaQuery.ts@0666bf10c27f showSchemas() | grafana versions: external plugin grafana-postgresql-datasource (2026)
SELECT schema_name FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema', 'pg_catalog', 'pg_toast',
                              '_timescaledb_cache', '_timescaledb_catalog',
                              '_timescaledb_internal', '_timescaledb_config',
                              'timescaledb_information', 'timescaledb_experimental')
    ORDER BY schema_name
-- end
-- name: ext_showTables_schema | source: grafana/grafana-postgresql-datasource src/postgresMetaQuery.ts@0666bf10c27f showTables('public') | grafana versions: external plugin grafana-postgresql-datasource (2026)
SELECT quote_ident(table_name) AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) = quote_ident('public')
    ORDER BY 1
-- end
-- name: legacy_findMetricTable | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts (quote_ident variant; text per meta_query.test.ts@56e7908c587e + Grafana 8.x webpack bundle) | grafana versions: ~8.5 - 9.2 (after PR #45754 quote_ident)

SELECT
	quote_ident(table_name) as table_name,
	( SELECT
	    quote_ident(column_name) as column_name
	  FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name IN ('timestamptz','timestamp')
    ORDER BY ordinal_position LIMIT 1
  ) AS time_column,
  ( SELECT
      quote_ident(column_name) AS column_name
    FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name='float8'
    ORDER BY ordinal_position LIMIT 1
  ) AS value_column
FROM information_schema.tables t
WHERE 
quote_ident(table_schema) IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND
  EXISTS
  ( SELECT 1
    FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name IN ('timestamptz','timestamp')
  ) AND
  EXISTS
  ( SELECT 1
    FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name='float8'
  )
LIMIT 1
;
-- end
-- name: legacy_findMetricTable_pre85 | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts@027e669f230f (same text @c026e6f320c8) | grafana versions: 5.3 - ~8.4

SELECT
	quote_ident(table_name) as table_name,
	( SELECT
	    quote_ident(column_name) as column_name
	  FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name IN ('timestamptz','timestamp')
    ORDER BY ordinal_position LIMIT 1
  ) AS time_column,
  ( SELECT
      quote_ident(column_name) AS column_name
    FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name='float8'
    ORDER BY ordinal_position LIMIT 1
  ) AS value_column
FROM information_schema.tables t
WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND
  EXISTS
  ( SELECT 1
    FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name IN ('timestamptz','timestamp')
  ) AND
  EXISTS
  ( SELECT 1
    FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name='float8'
  )
LIMIT 1
;
-- end
-- name: legacy_tableQuery | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts (quote_ident variant; text per meta_query.test.ts@56e7908c587e + Grafana 8.x webpack bundle) | grafana versions: ~8.5 - 9.2 (after PR #45754 quote_ident)
SELECT quote_ident(table_name) FROM information_schema.tables WHERE 
quote_ident(table_schema) IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) ORDER BY table_name
-- end
-- name: legacy_tableQuery_pre85 | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts@027e669f230f | grafana versions: 5.3 - ~8.4
SELECT quote_ident(table_name) FROM information_schema.tables WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) ORDER BY table_name
-- end
-- name: legacy_columnQuery_time | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts (quote_ident variant; text per meta_query.test.ts@56e7908c587e + Grafana 8.x webpack bundle) | grafana versions: ~8.5 - 9.2 (after PR #45754 quote_ident)
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
quote_ident(table_schema) IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'kpi_1m' AND data_type IN ('timestamp without time zone','timestamp with time zone','bigint','integer','double precision','real') ORDER BY column_name
-- end
-- name: legacy_columnQuery_metric | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts (quote_ident variant; text per meta_query.test.ts@56e7908c587e + Grafana 8.x webpack bundle) | grafana versions: ~8.5 - 9.2 (after PR #45754 quote_ident)
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
quote_ident(table_schema) IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'kpi_1m' AND data_type IN ('text','character','character varying') ORDER BY column_name
-- end
-- name: legacy_columnQuery_value | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts (quote_ident variant; text per meta_query.test.ts@56e7908c587e + Grafana 8.x webpack bundle) | grafana versions: ~8.5 - 9.2 (after PR #45754 quote_ident)
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
quote_ident(table_schema) IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'kpi_1m' AND data_type IN ('bigint','integer','double precision','real','numeric') AND column_name <> 'window_start' ORDER BY column_name
-- end
-- name: legacy_columnQuery_group | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts (quote_ident variant; text per meta_query.test.ts@56e7908c587e + Grafana 8.x webpack bundle) | grafana versions: ~8.5 - 9.2 (after PR #45754 quote_ident)
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
quote_ident(table_schema) IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'kpi_1m' AND data_type IN ('text','character','character varying','uuid') ORDER BY column_name
-- end
-- name: legacy_columnQuery_any | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts (quote_ident variant; text per meta_query.test.ts@56e7908c587e + Grafana 8.x webpack bundle) | grafana versions: ~8.5 - 9.2 (after PR #45754 quote_ident)
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
quote_ident(table_schema) IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'kpi_1m' ORDER BY column_name
-- end
-- name: legacy_columnQuery_time_pre85 | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts@027e669f230f | grafana versions: 5.3 - ~8.4
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'kpi_1m' AND data_type IN ('timestamp without time zone','timestamp with time zone','bigint','integer','double precision','real') ORDER BY column_name
-- end
-- name: legacy_columnQuery_metric_pre85 | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts@027e669f230f | grafana versions: 5.3 - ~8.4
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'kpi_1m' AND data_type IN ('text','character','character varying') ORDER BY column_name
-- end
-- name: legacy_columnQuery_value_pre85 | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts@027e669f230f | grafana versions: 5.3 - ~8.4
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'kpi_1m' AND data_type IN ('bigint','integer','double precision','real','numeric') AND column_name <> 'window_start' ORDER BY column_name
-- end
-- name: legacy_columnQuery_group_pre85 | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts@027e669f230f | grafana versions: 5.3 - ~8.4
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'kpi_1m' AND data_type IN ('text','character','character varying','uuid') ORDER BY column_name
-- end
-- name: legacy_columnQuery_any_pre85 | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts@027e669f230f | grafana versions: 5.3 - ~8.4
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'kpi_1m' ORDER BY column_name
-- end
-- name: legacy_columnQuery_value_5_3 | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts@c026e6f320c8 | grafana versions: 5.3 - ? (earliest meta_query.ts)
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'kpi_1m' AND data_type IN ('bigint','integer','double precision','real') AND column_name <> 'window_start' ORDER BY column_name
-- end
-- name: legacy_columnQuery_group_5_3 | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts@c026e6f320c8 | grafana versions: 5.3 - ? (earliest meta_query.ts)
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'kpi_1m' AND data_type IN ('text','character','character varying') ORDER BY column_name
-- end
-- name: legacy_columnQuery_time_qualified | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts (quote_ident variant; text per meta_query.test.ts@56e7908c587e + Grafana 8.x webpack bundle) (schema-qualified table weir.alerts) | grafana versions: 5.3 - 9.2
SELECT quote_ident(column_name) FROM information_schema.columns WHERE table_schema = 'weir' AND table_name = 'alerts' AND data_type IN ('timestamp without time zone','timestamp with time zone','bigint','integer','double precision','real') ORDER BY column_name
-- end
-- name: legacy_udtName | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts (quote_ident variant; text per meta_query.test.ts@56e7908c587e + Grafana 8.x webpack bundle) buildDatatypeQuery('count') | grafana versions: ~8.5 - 9.2 (after PR #45754 quote_ident)
SELECT udt_name FROM information_schema.columns WHERE 
quote_ident(table_schema) IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'kpi_1m' AND column_name = 'count'
-- end
-- name: legacy_udtName_pre85 | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts@027e669f230f buildDatatypeQuery('count') (same result from @c026e6f320c8) | grafana versions: 5.3 - ~8.4
SELECT udt_name FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = 'kpi_1m' AND column_name = 'count'
-- end
-- name: legacy_udtName_qualified | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts (quote_ident variant; text per meta_query.test.ts@56e7908c587e + Grafana 8.x webpack bundle) buildDatatypeQuery on weir.alerts | grafana versions: ~6.x - 9.2
SELECT udt_name FROM information_schema.columns WHERE table_schema = 'weir' AND table_name = 'alerts' AND column_name = 'event_time'
-- end
-- name: legacy_aggregateList | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts@027e669f230f buildAggregateQuery() (same @c026e6f320c8) | grafana versions: 5.3 - 9.2
SELECT DISTINCT proname FROM pg_aggregate INNER JOIN pg_proc ON pg_aggregate.aggfnoid = pg_proc.oid INNER JOIN pg_type ON pg_type.oid=pg_proc.prorettype WHERE pronargs=1 AND typname IN ('float8') AND aggkind='n' ORDER BY 1
-- end
-- name: legacy_valueList_quote_literal | source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts@027e669f230f buildValueQuery('source') + macro expansion by grafana/grafana pkg/tsdb/grafana-postgresql-datasource/macros.go@0577088076c3 (+ global Interpolate in pgx/sql_engine.go@124e2418015e) | grafana versions: 5.3 - 9.2
SELECT DISTINCT quote_literal(source) FROM kpi_1m WHERE window_start BETWEEN '2024-05-01T12:00:00Z' AND '2024-05-01T13:00:00Z' AND source IS NOT NULL ORDER BY 1 LIMIT 100
-- end
-- name: legacy_builder_panel_sum | source: grafana/grafana public/app/plugins/datasource/postgres/postgres_query_model.ts@711769882707 buildQuery() + grafana/grafana pkg/tsdb/grafana-postgresql-datasource/macros.go@0577088076c3 (+ global Interpolate in pgx/sql_engine.go@124e2418015e) | grafana versions: 5.3 - 9.2 (Angular builder default shape)
SELECT
  floor(extract(epoch from window_start)/60)*60 AS "time",
  sum(count) AS "count"
FROM kpi_1m
WHERE
  window_start BETWEEN '2024-05-01T12:00:00Z' AND '2024-05-01T13:00:00Z'
GROUP BY 1
ORDER BY 1
-- end
-- name: legacy_builder_panel_sum_metric | source: grafana/grafana public/app/plugins/datasource/postgres/postgres_query_model.ts@711769882707 buildQuery() + grafana/grafana pkg/tsdb/grafana-postgresql-datasource/macros.go@0577088076c3 (+ global Interpolate in pgx/sql_engine.go@124e2418015e) | grafana versions: 5.3 - 9.2 (Angular builder with metric column)
SELECT
  floor(extract(epoch from window_start)/60)*60 AS "time",
  source AS metric,
  sum(count) AS "count"
FROM kpi_1m
WHERE
  window_start BETWEEN '2024-05-01T12:00:00Z' AND '2024-05-01T13:00:00Z'
GROUP BY 1,2
ORDER BY 1,2
-- end
-- name: react_builder_sum | source: grafana/grafana public/app/plugins/datasource/grafana-postgresql-datasource/sqlUtil.ts@1137a659434e toRawSql + packages/grafana-sql/src/utils/sql.utils.ts createSelectClause | grafana versions: ~9.3 - current (note the trailing space)
SELECT window_start, SUM(count) FROM kpi_1m GROUP BY window_start LIMIT 50 
-- end
-- name: ts_sum | source: grafana/grafana pkg/tsdb/grafana-postgresql-datasource/macros.go@0577088076c3 (+ global Interpolate in pgx/sql_engine.go@124e2418015e) | grafana versions: 5.3 - current
SELECT floor(extract(epoch from window_start)/60)*60 AS "time", sum(count) AS value FROM kpi_1m WHERE window_start BETWEEN '2024-05-01T12:00:00Z' AND '2024-05-01T13:00:00Z' GROUP BY 1 ORDER BY 1
-- end
-- name: ts_sum_by_source | source: grafana/grafana pkg/tsdb/grafana-postgresql-datasource/macros.go@0577088076c3 (+ global Interpolate in pgx/sql_engine.go@124e2418015e) | grafana versions: 5.3 - current
SELECT floor(extract(epoch from window_start)/60)*60 AS "time", source, sum(count) AS value FROM kpi_1m WHERE window_start BETWEEN '2024-05-01T12:00:00Z' AND '2024-05-01T13:00:00Z' GROUP BY 1, 2 ORDER BY 1, 2
-- end
-- name: ts_sum_interval_var_timegroup | source: grafana/grafana pkg/tsdb/grafana-postgresql-datasource/macros.go@0577088076c3 (+ global Interpolate in pgx/sql_engine.go@124e2418015e) | grafana versions: 5.3 - current
SELECT floor(extract(epoch from window_start)/60)*60 AS "time", sum(count) AS value FROM kpi_1m WHERE window_start BETWEEN '2024-05-01T12:00:00Z' AND '2024-05-01T13:00:00Z' GROUP BY floor(extract(epoch from window_start)/60)*60 ORDER BY 1
-- end
-- name: ts_timegroup_compat_comma | source: grafana/grafana pkg/tsdb/grafana-postgresql-datasource/macros.go@0577088076c3 (+ global Interpolate in pgx/sql_engine.go@124e2418015e) (pre-5.3 compatibility: ',' right after $__timeGroup adds AS "time") | grafana versions: 5.3 - current
SELECT floor(extract(epoch from window_start)/60)*60 AS "time", sum(count) AS value FROM kpi_1m WHERE window_start BETWEEN '2024-05-01T12:00:00Z' AND '2024-05-01T13:00:00Z' GROUP BY 1 ORDER BY 1
-- end
-- name: ts_timescaledb_time_bucket | source: grafana/grafana pkg/tsdb/grafana-postgresql-datasource/macros.go@0577088076c3 (+ global Interpolate in pgx/sql_engine.go@124e2418015e) (jsonData.timescaledb = true) | grafana versions: 5.3 - current (TimescaleDB mode only)
SELECT time_bucket('60.000s',window_start) AS "time", sum(count) AS value FROM kpi_1m WHERE window_start BETWEEN '2024-05-01T12:00:00Z' AND '2024-05-01T13:00:00Z' GROUP BY 1 ORDER BY 1
-- end
-- name: ts_timescaledb_time_bucket_by_source | source: grafana/grafana pkg/tsdb/grafana-postgresql-datasource/macros.go@0577088076c3 (+ global Interpolate in pgx/sql_engine.go@124e2418015e) (jsonData.timescaledb = true) | grafana versions: 5.3 - current (TimescaleDB mode only)
SELECT time_bucket('60.000s',window_start) AS "time", source, sum(count) AS value FROM kpi_1m WHERE window_start BETWEEN '2024-05-01T12:00:00Z' AND '2024-05-01T13:00:00Z' GROUP BY 1, 2 ORDER BY 1, 2
-- end
-- name: ts_time_epoch | source: grafana/grafana pkg/tsdb/grafana-postgresql-datasource/macros.go@0577088076c3 (+ global Interpolate in pgx/sql_engine.go@124e2418015e) | grafana versions: 5.3 - current
SELECT extract(epoch from window_start) as "time", count AS value FROM kpi_1m WHERE window_start BETWEEN '2024-05-01T12:00:00Z' AND '2024-05-01T13:00:00Z' ORDER BY 1
-- end
-- name: ts_unix_epoch_filter_extract_broken | source: grafana/grafana pkg/tsdb/grafana-postgresql-datasource/macros.go@0577088076c3 (+ global Interpolate in pgx/sql_engine.go@124e2418015e) (macro regex stops at the first ')': grafana#18507) | grafana versions: 5.3 - current
SELECT window_start AS "time", count AS value FROM kpi_1m WHERE extract(epoch from window_start >= 1714564800 AND extract(epoch from window_start <= 1714568400) ORDER BY 1
-- end
-- name: ts_unix_epoch_filter_subquery | source: grafana/grafana pkg/tsdb/grafana-postgresql-datasource/macros.go@0577088076c3 (+ global Interpolate in pgx/sql_engine.go@124e2418015e) | grafana versions: 5.3 - current
SELECT "time", value FROM (SELECT extract(epoch from window_start) AS "time", count AS value FROM kpi_1m) t WHERE "time" >= 1714564800 AND "time" <= 1714568400 ORDER BY 1
-- end
-- name: ts_unix_epoch_from_to | source: grafana/grafana pkg/tsdb/grafana-postgresql-datasource/macros.go@0577088076c3 (+ global Interpolate in pgx/sql_engine.go@124e2418015e) (global $__unixEpochFrom()/$__unixEpochTo()) | grafana versions: 5.3 - current
SELECT window_start AS "time", count AS value FROM kpi_1m WHERE extract(epoch from window_start) BETWEEN 1714564800 AND 1714568400 ORDER BY 1
-- end
-- name: table_time_from_to | source: grafana/grafana pkg/tsdb/grafana-postgresql-datasource/macros.go@0577088076c3 (+ global Interpolate in pgx/sql_engine.go@124e2418015e) | grafana versions: 5.3 - current
SELECT source, sum(count) AS total FROM kpi_1m WHERE window_start >= '2024-05-01T12:00:00Z' AND window_start < '2024-05-01T13:00:00Z' GROUP BY source ORDER BY total DESC
-- end
-- name: variable_distinct_source | source: grafana/grafana packages/grafana-sql/src/datasource/SqlDatasource.ts@053063638b18 metricFindQuery (sent as written, format table) | grafana versions: 5.x - current
SELECT DISTINCT source FROM kpi_1m
-- end
-- name: annotation_alerts | source: grafana/grafana pkg/tsdb/grafana-postgresql-datasource/macros.go@0577088076c3 (+ global Interpolate in pgx/sql_engine.go@124e2418015e) (annotation query, format table) | grafana versions: 5.3 - current
SELECT
  event_time AS "time",
  name AS text,
  severity AS tags
FROM weir.alerts
WHERE event_time BETWEEN '2024-05-01T12:00:00Z' AND '2024-05-01T13:00:00Z'
ORDER BY 1
-- end
-- name: annotation_alerts_timeend | source: grafana/grafana pkg/tsdb/grafana-postgresql-datasource/macros.go@0577088076c3 (+ global Interpolate in pgx/sql_engine.go@124e2418015e) (annotation query, format table) | grafana versions: 5.3 - current
SELECT event_time AS "time", detected_at AS timeend, name || ' [' || status || ']' AS text, severity AS tags FROM weir.alerts WHERE event_time BETWEEN '2024-05-01T12:00:00Z' AND '2024-05-01T13:00:00Z' AND key IS NOT NULL ORDER BY 1
-- end
-- name: schemads_querySchemas | source: grafana/grafana pkg/tsdb/grafana-postgresql-datasource/schema.go@043dd88a4794 querySchemas | grafana versions: grafana/grafana main 2026 (schemads, PR #123416; release not verified)
SELECT schema_name FROM information_schema.schemata
		 WHERE schema_name NOT LIKE 'pg_%' AND schema_name != 'information_schema'
		 ORDER BY schema_name
-- end
-- name: schemads_queryTables | source: grafana/grafana pkg/tsdb/grafana-postgresql-datasource/schema.go@043dd88a4794 queryTables | grafana versions: grafana/grafana main 2026 (schemads, PR #123416; release not verified)
SELECT table_name FROM information_schema.tables
		 WHERE table_schema = $1 AND table_type IN ('BASE TABLE', 'VIEW')
		 ORDER BY table_name
-- end
-- name: schemads_queryColumns | source: grafana/grafana pkg/tsdb/grafana-postgresql-datasource/schema.go@043dd88a4794 queryColumns | grafana versions: grafana/grafana main 2026 (schemads, PR #123416; release not verified)
SELECT column_name, data_type, udt_name, numeric_precision, numeric_scale
		 FROM information_schema.columns
		 WHERE table_schema = $1 AND table_name = $2
		 ORDER BY ordinal_position
-- end
-- name: schemads_columnValues | source: grafana/grafana pkg/tsdb/grafana-postgresql-datasource/schema.go@043dd88a4794 ColumnValues (columns source, count) | grafana versions: grafana/grafana main 2026 (schemads, PR #123416; release not verified)
SELECT 'source' AS col_name, "source"::text AS val FROM (SELECT DISTINCT "source" FROM "public"."kpi_1m" WHERE "source" IS NOT NULL ORDER BY "source" LIMIT 100) sub_0 UNION ALL SELECT 'count' AS col_name, "count"::text AS val FROM (SELECT DISTINCT "count" FROM "public"."kpi_1m" WHERE "count" IS NOT NULL ORDER BY "count" LIMIT 100) sub_1
-- end
