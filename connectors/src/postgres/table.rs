//! `CREATE TABLE … WITH (connector = 'postgres', url = '…', query = 'SELECT …')`: a table's
//! rows from a PostgreSQL query, read once. Each row travels as `row_to_json`, so every
//! PostgreSQL type PostgreSQL can write as JSON arrives and is converted to the table's
//! column types by name.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};
use weir_engine::connector::sink::mask_url;
use weir_engine::connector::table::TableLoader;
use weir_engine::error::{EngineError, Result};

use crate::options::{resolve_secret, Options};

/// Loads tables from PostgreSQL queries.
#[derive(Debug)]
pub struct PostgresTableLoader;

fn options(options: &BTreeMap<String, String>) -> Result<(String, String)> {
    let mut o = Options::new("postgres", options);
    let url = o.required("url")?;
    let query = o.required("query")?;
    o.finish()?;
    Ok((url, query))
}

#[async_trait]
impl TableLoader for PostgresTableLoader {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn validate(&self, o: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
        let (url, _) = options(o)?;
        let resolved = resolve_secret("url", &url)?;
        PgConnectOptions::from_str(&resolved).map_err(|e| EngineError::InvalidOption {
            option: "url".into(),
            message: format!("{}: {e}", mask_url(&url)),
        })?;
        Ok(o.clone())
    }

    async fn load(
        &self,
        o: &BTreeMap<String, String>,
        schema: SchemaRef,
    ) -> Result<Vec<RecordBatch>> {
        let (url, query) = options(o)?;
        let masked = mask_url(&url);
        let connect = PgConnectOptions::from_str(&resolve_secret("url", &url)?)
            .map_err(|e| EngineError::InvalidOption {
                option: "url".into(),
                message: format!("{masked}: {e}"),
            })?
            .options([("TimeZone", "UTC")]);
        let unreachable = |e: String| {
            EngineError::Connection(format!(
                "table rows cannot be loaded from PostgreSQL at {masked}: {e}"
            ))
        };
        let mut conn = tokio::time::timeout(
            Duration::from_secs(10),
            PgConnection::connect_with(&connect),
        )
        .await
        .map_err(|_| unreachable("connecting timed out after 10 s".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
        let wrapped = format!("SELECT row_to_json(q)::text FROM ({query}) AS q");
        let rows = sqlx::query(&wrapped)
            .fetch_all(&mut conn)
            .await
            .map_err(|e| EngineError::InvalidOption {
                option: "query".into(),
                message: format!("PostgreSQL refused the query: {e}"),
            })?;
        let _ = conn.close().await;
        let mut lines = String::new();
        for row in rows {
            let text: String = row.try_get(0).map_err(|e| unreachable(e.to_string()))?;
            lines.push_str(&text);
            lines.push('\n');
        }
        // Read nullable: a missing NOT NULL value is reported by the table, with its name.
        let nullable = weir_engine::table::all_nullable(&schema);
        let bad = |e: datafusion::arrow::error::ArrowError| EngineError::InvalidOption {
            option: "query".into(),
            message: format!("its rows do not fit the table's columns: {e}"),
        };
        let reader = datafusion::arrow::json::ReaderBuilder::new(nullable)
            .build(std::io::Cursor::new(lines.into_bytes()))
            .map_err(bad)?;
        reader.map(|b| b.map_err(bad)).collect()
    }
}
