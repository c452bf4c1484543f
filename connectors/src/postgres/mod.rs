//! `connector = 'postgres'` sinks: rows upserted into a PostgreSQL or TimescaleDB table.
//!
//! ```sql
//! CREATE SINK kpi_history FROM kpi_1m WITH (connector = 'postgres',
//!     url = 'postgres://postgres@127.0.0.1:5432/weir', table = 'kpi_1m');
//! CREATE SINK raw_archive FROM events WITH (connector = 'postgres',
//!     url = 'postgres://postgres@127.0.0.1:5432/weir', table = 'events_raw');
//! ```
//!
//! When the sink connects it applies Weir's schema (`migrations/`, which creates
//! `events_raw`) and creates a missing table from the relation's columns, with a primary key
//! on the view's group keys and `window_start`. A source's nested events are flattened
//! (`attributes.metric` → `metric`) and its event-time column fills `ts`.
//!
//! Each write is one statement, `INSERT … SELECT … FROM UNNEST($1, $2, …)`, with one array
//! per column: never a round trip per row. It upserts on the table's primary key (or
//! another unique index of mapped columns) — a row written again after a crash overwrites
//! itself with the same values, and events (keyed by `(event_id, ts)` in `events_raw`) are
//! skipped when present. A table with no such key gets plain inserts (at least once).

mod migrate;
mod table;

pub use migrate::{migrate, migrate_url, MIGRATIONS};
pub use table::PostgresTableLoader;

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::arrow::record_batch::RecordBatch;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};
use weir_engine::connector::sink::{
    mask_url, SinkError, SinkFactory, SinkSpec, SinkWriter, QUEUE_OPTIONS,
};
use weir_engine::error::Result;

use crate::options::{resolve_secret, Options};
use crate::rows::{cell_json, cell_key_text, leaf_array, leaves, timestamp_ns, Leaf};

/// Factory of PostgreSQL sinks.
#[derive(Debug)]
pub struct PostgresSinkConnector;

#[derive(Debug, Clone)]
struct PgConfig {
    url: String,
    table: String,
}

impl PgConfig {
    fn from_spec(spec: &SinkSpec) -> Result<Self> {
        let mut o = Options::new("postgres", &spec.options);
        for q in QUEUE_OPTIONS {
            o.optional(q);
        }
        let url = o.required("url")?;
        let table = o.optional("table").unwrap_or_else(|| spec.input.clone());
        o.finish()?;
        Ok(Self { url, table })
    }
}

impl SinkFactory for PostgresSinkConnector {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn validate(&self, spec: &SinkSpec) -> Result<BTreeMap<String, String>> {
        let config = PgConfig::from_spec(spec)?;
        let mut options = spec.options.clone();
        options.entry("table".into()).or_insert(config.table);
        Ok(options)
    }

    fn create(&self, spec: &SinkSpec) -> Result<Box<dyn SinkWriter>> {
        let config = PgConfig::from_spec(spec)?;
        Ok(Box::new(PgWriter {
            spec: spec.clone(),
            leaves: leaves(&spec.schema),
            config,
            connection: None,
            plan: None,
        }))
    }
}

/// How the relation's columns go into the table, found when the sink connects.
#[derive(Debug, Clone)]
struct WritePlan {
    sql: String,
    /// For each target column: the leaf that fills it.
    columns: Vec<usize>,
    /// Positions in `columns` of the conflict key (empty: plain inserts).
    key: Vec<usize>,
}

struct PgWriter {
    spec: SinkSpec,
    config: PgConfig,
    leaves: Vec<Leaf>,
    connection: Option<PgConnection>,
    plan: Option<WritePlan>,
}

impl PgWriter {
    fn err(&self, e: sqlx::Error) -> SinkError {
        classify(&self.config.url, e)
    }

    /// The PostgreSQL type a leaf gets in a table Weir creates.
    fn pg_type(leaf: &Leaf) -> &'static str {
        match &leaf.data_type {
            DataType::Boolean => "BOOLEAN",
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => "SMALLINT",
            DataType::Int32 | DataType::UInt16 => "INTEGER",
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "BIGINT",
            DataType::Float16 | DataType::Float32 | DataType::Float64 => "DOUBLE PRECISION",
            DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ",
            DataType::Timestamp(_, None) => "TIMESTAMP",
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "TEXT",
            _ => "JSONB",
        }
    }

    async fn create_table(&self, conn: &mut PgConnection) -> std::result::Result<(), SinkError> {
        let mut columns: Vec<String> = self
            .leaves
            .iter()
            .map(|l| format!("{} {}", quote(&l.name), Self::pg_type(l)))
            .collect();
        if !self.spec.key.is_empty() {
            let key: Vec<String> = self.spec.key.iter().map(|k| quote(k)).collect();
            let constraint = if self.spec.from_source {
                "UNIQUE"
            } else {
                "PRIMARY KEY"
            };
            columns.push(format!("{constraint} ({})", key.join(", ")));
        }
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            quote(&self.config.table),
            columns.join(", ")
        );
        // Replicas starting together create the same table: PostgreSQL's `IF NOT EXISTS`
        // does not hold against a concurrent creator, so creators take turns.
        let mut tx = conn.begin().await.map_err(|e| self.err(e))?;
        sqlx::query("SELECT pg_advisory_xact_lock(7357002)")
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        sqlx::raw_sql(&sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        tracing::info!(sink = %self.spec.name, table = %self.config.table, "created table");
        Ok(())
    }

    /// Maps the relation onto the table's columns and picks the conflict key.
    async fn plan(&self, conn: &mut PgConnection) -> std::result::Result<WritePlan, SinkError> {
        let table = &self.config.table;
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(quote(table))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        if exists.is_none() {
            self.create_table(conn).await?;
        }
        let rows = sqlx::query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull \
             FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 \
             AND NOT a.attisdropped ORDER BY a.attnum",
        )
        .bind(quote(table))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        let mut names = Vec::new();
        let mut types = Vec::new();
        let mut columns = Vec::new();
        for r in &rows {
            let name: String = r.get(0);
            let ty: String = r.get(1);
            let not_null: bool = r.get(2);
            let leaf = self.leaves.iter().position(|l| l.name == name).or_else(|| {
                // `ts` takes a source's event time, as in the seed's events_raw.
                (name == "ts")
                    .then_some(self.spec.event_time.as_ref())
                    .flatten()
                    .and_then(|t| self.leaves.iter().position(|l| &l.name == t))
            });
            match leaf {
                Some(l) => {
                    names.push(name);
                    types.push(ty);
                    columns.push(l);
                }
                None if not_null => {
                    return Err(SinkError::Permanent(format!(
                        "table {table} has a NOT NULL column {name} that {} has no column for",
                        self.spec.input
                    )))
                }
                None => {}
            }
        }
        let unmapped: Vec<&str> = self
            .leaves
            .iter()
            .enumerate()
            .filter(|(i, _)| !columns.contains(i))
            .map(|(_, l)| l.name.as_str())
            .collect();
        if !unmapped.is_empty() {
            return Err(SinkError::Permanent(format!(
                "table {table} has no column for {} of {} (its columns: {}); add them or write to another table",
                unmapped.join(", "),
                self.spec.input,
                rows.iter().map(|r| r.get::<String, _>(0)).collect::<Vec<_>>().join(", ")
            )));
        }
        let indexes: Vec<Vec<String>> = sqlx::query_scalar(
            "SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index i \
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indpred IS NULL \
             GROUP BY i.indexrelid, i.indisprimary ORDER BY i.indisprimary DESC, i.indexrelid",
        )
        .bind(quote(table))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.err(e))?;
        let key: Vec<usize> = indexes
            .iter()
            .find_map(|cols| {
                cols.iter()
                    .map(|c| names.iter().position(|n| n == c))
                    .collect::<Option<Vec<usize>>>()
            })
            .unwrap_or_default();
        if key.is_empty() {
            tracing::warn!(sink = %self.spec.name, table = %table, "table has no primary key or unique index of the sink's columns; rows are inserted, and a replay after a crash may insert some twice");
        }
        let binds: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, &l)| format!("${}::{}[]", i + 1, bind_type(&self.leaves[l].data_type)))
            .collect();
        let aliases: Vec<String> = (0..columns.len()).map(|i| format!("c{i}")).collect();
        let selects: Vec<String> = aliases
            .iter()
            .zip(&types)
            .map(|(a, t)| format!("u.{a}::{t}"))
            .collect();
        let quoted: Vec<String> = names.iter().map(|n| quote(n)).collect();
        let mut sql = format!(
            "INSERT INTO {} ({}) SELECT {} FROM UNNEST({}) AS u({})",
            quote(table),
            quoted.join(", "),
            selects.join(", "),
            binds.join(", "),
            aliases.join(", ")
        );
        if !key.is_empty() {
            let target: Vec<&str> = key.iter().map(|&k| quoted[k].as_str()).collect();
            let updates: Vec<String> = (0..names.len())
                .filter(|i| !key.contains(i))
                .map(|i| format!("{0} = EXCLUDED.{0}", quoted[i]))
                .collect();
            if updates.is_empty() || self.spec.from_source {
                sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", target.join(", ")));
            } else {
                sql.push_str(&format!(
                    " ON CONFLICT ({}) DO UPDATE SET {}",
                    target.join(", "),
                    updates.join(", ")
                ));
            }
        }
        Ok(WritePlan { sql, columns, key })
    }
}

/// The array type a leaf is bound as.
fn bind_type(dt: &DataType) -> &'static str {
    match dt {
        DataType::Boolean => "bool",
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => "int8",
        DataType::Float32 | DataType::Float64 => "float8",
        DataType::Timestamp(_, _) => "timestamptz",
        _ => "text",
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn classify(url: &str, e: sqlx::Error) -> SinkError {
    let message = format!("postgres {}: {e}", mask_url(url));
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            // Connection trouble, shutdown, lack of resources, conflicts: worth retrying.
            if ["08", "57", "53", "40"].iter().any(|c| code.starts_with(c)) {
                SinkError::Transient(message)
            } else {
                SinkError::Permanent(message)
            }
        }
        sqlx::Error::Configuration(_) | sqlx::Error::ColumnDecode { .. } => {
            SinkError::Permanent(message)
        }
        _ => SinkError::Transient(message),
    }
}

fn ints(a: &ArrayRef) -> Vec<Option<i64>> {
    macro_rules! conv {
        ($t:ty) => {
            a.as_primitive::<$t>()
                .iter()
                .map(|v| v.map(|v| v as i64))
                .collect()
        };
    }
    match a.data_type() {
        DataType::Int8 => conv!(Int8Type),
        DataType::Int16 => conv!(Int16Type),
        DataType::Int32 => conv!(Int32Type),
        DataType::Int64 => conv!(Int64Type),
        DataType::UInt8 => conv!(UInt8Type),
        DataType::UInt16 => conv!(UInt16Type),
        DataType::UInt32 => conv!(UInt32Type),
        DataType::UInt64 => conv!(UInt64Type),
        _ => vec![None; a.len()],
    }
}

fn floats(a: &ArrayRef) -> Vec<Option<f64>> {
    match a.data_type() {
        DataType::Float32 => a
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| v.map(|v| v as f64))
            .collect(),
        DataType::Float64 => a.as_primitive::<Float64Type>().iter().collect(),
        _ => vec![None; a.len()],
    }
}

fn texts(a: &ArrayRef) -> Vec<Option<String>> {
    // Strings directly; other types through their JSON form.
    match a.data_type() {
        DataType::Utf8 => {
            return a
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect()
        }
        DataType::LargeUtf8 => {
            return a
                .as_string::<i64>()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect()
        }
        DataType::Utf8View => {
            return a
                .as_string_view()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect()
        }
        _ => {}
    }
    (0..a.len())
        .map(|i| match cell_json(a, i) {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s),
            other => Some(other.to_string()),
        })
        .collect()
}

#[async_trait::async_trait(?Send)]
impl SinkWriter for PgWriter {
    async fn open(&mut self, _resume: &serde_json::Value) -> std::result::Result<(), SinkError> {
        self.connection = None;
        let url = resolve_secret("url", &self.config.url)
            .map_err(|e| SinkError::Permanent(e.to_string()))?;
        let options = PgConnectOptions::from_str(&url)
            .map_err(|e| SinkError::Permanent(format!("url {}: {e}", mask_url(&self.config.url))))?
            .options([("TimeZone", "UTC")]);
        let mut conn =
            tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&options))
                .await
                .map_err(|_| {
                    SinkError::Transient(format!(
                        "postgres {}: connect timed out",
                        mask_url(&self.config.url)
                    ))
                })?
                .map_err(|e| self.err(e))?;
        migrate(&mut conn).await.map_err(|e| self.err(e))?;
        let plan = self.plan(&mut conn).await?;
        self.plan = Some(plan);
        self.connection = Some(conn);
        Ok(())
    }

    async fn write(&mut self, batches: &[RecordBatch]) -> std::result::Result<(), SinkError> {
        let plan = self
            .plan
            .clone()
            .ok_or_else(|| SinkError::Transient("not connected".into()))?;
        // Each target column's values over all batches.
        let mut arrays: Vec<Vec<ArrayRef>> = vec![Vec::new(); plan.columns.len()];
        for b in batches {
            for (i, &l) in plan.columns.iter().enumerate() {
                arrays[i].push(leaf_array(b, &self.leaves[l]));
            }
        }
        // One row per key, the last: an upsert may not touch a row twice.
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let keep: Option<Vec<bool>> = (!plan.key.is_empty()).then(|| {
            let mut last: HashMap<String, usize> = HashMap::with_capacity(rows);
            let mut n = 0;
            for (bi, b) in batches.iter().enumerate() {
                for r in 0..b.num_rows() {
                    let key: Vec<String> = plan
                        .key
                        .iter()
                        .map(|&k| cell_key_text(&arrays[k][bi], r))
                        .collect();
                    last.insert(key.join("\u{1}"), n);
                    n += 1;
                }
            }
            let mut keep = vec![false; rows];
            for i in last.into_values() {
                keep[i] = true;
            }
            keep
        });
        let keep_row = |i: usize| keep.as_ref().is_none_or(|k| k[i]);
        let mut query = sqlx::query(&plan.sql);
        for (i, &l) in plan.columns.iter().enumerate() {
            let dt = &self.leaves[l].data_type;
            macro_rules! bind_all {
                ($f:expr) => {{
                    let mut values = Vec::with_capacity(rows);
                    let mut n = 0;
                    for a in &arrays[i] {
                        for v in $f(a) {
                            if keep_row(n) {
                                values.push(v);
                            }
                            n += 1;
                        }
                    }
                    query = query.bind(values);
                }};
            }
            match bind_type(dt) {
                "bool" => bind_all!(|a: &ArrayRef| a.as_boolean().iter().collect::<Vec<_>>()),
                "int8" => bind_all!(ints),
                "float8" => bind_all!(floats),
                "timestamptz" => bind_all!(|a: &ArrayRef| (0..a.len())
                    .map(|r| timestamp_ns(a, r).map(DateTime::<Utc>::from_timestamp_nanos))
                    .collect::<Vec<_>>()),
                _ => bind_all!(texts),
            }
        }
        let conn = self
            .connection
            .as_mut()
            .ok_or_else(|| SinkError::Transient("not connected".into()))?;
        let result = query.execute(conn).await;
        if let Err(e) = result {
            self.connection = None;
            return Err(classify(&self.config.url, e));
        }
        Ok(())
    }
}
