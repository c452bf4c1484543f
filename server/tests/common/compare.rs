//! Weir and the machine's PostgreSQL holding the same rows, for comparing their answers
//! (Grafana's statements, real client drivers).

use std::path::Path;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, SimpleQueryMessage};

use super::fresh_database;
use super::process::{int, Weir};

/// One hour of events from 2024-05-01T12:00Z (Grafana's test range), 3 sources.
pub const FIXTURE: &str = r#"
CREATE SOURCE events (event_id TEXT, source TEXT, "timestamp" TIMESTAMPTZ,
    attributes STRUCT<user_id TEXT, metric DOUBLE PRECISION, status TEXT>,
    WATERMARK FOR "timestamp" AS "timestamp" - INTERVAL '2 seconds')
  WITH (connector = 'datagen', count = '36000', rate = '10', sources = '3', seed = '1',
        start = '2024-05-01T12:00:00Z', realtime = 'false');
CREATE MATERIALIZED VIEW kpi_1m AS
  SELECT window_start, source, count(*) AS count, avg(attributes.metric) AS avg_metric,
         max(attributes.metric) AS p95_metric,
         avg(CASE WHEN attributes.status <> 'ok' THEN 1.0 ELSE 0.0 END) AS error_rate
  FROM TUMBLE(events, "timestamp", INTERVAL '1 minute') GROUP BY source, window_start;
CREATE ALERT any_error WITH (severity = 'info', key = 'source', cooldown = '10 minutes') AS
  SELECT source, window_start, error_rate FROM kpi_1m WHERE error_rate > 0;
"#;

pub const PG_FIXTURE: &str = "
CREATE TABLE kpi_1m (window_start timestamptz, source text, count bigint,
    avg_metric double precision, p95_metric double precision, error_rate double precision);
CREATE SCHEMA weir;
CREATE TABLE weir.alerts (alert_id text, name text, severity text, key text, status text,
    event_time timestamptz, detected_at timestamptz, resolved_at timestamptz, repeats bigint,
    last_event_time timestamptz, payload text, threshold boolean);";

#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Empty,
    Rows {
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    Error(String),
}

pub async fn answer(client: &Client, sql: &str) -> Answer {
    let messages = match client.simple_query(sql).await {
        Ok(m) => m,
        Err(e) => {
            return Answer::Error(
                e.as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_else(|| e.to_string()),
            )
        }
    };
    let mut columns = None;
    let mut rows = Vec::new();
    for m in messages {
        match m {
            SimpleQueryMessage::RowDescription(c) if columns.is_none() => {
                columns = Some(c.iter().map(|c| c.name().to_string()).collect());
            }
            SimpleQueryMessage::Row(r) => {
                rows.push(
                    (0..r.len())
                        .map(|i| r.get(i).unwrap_or("NULL").to_string())
                        .collect(),
                );
            }
            _ => {}
        }
    }
    match columns {
        Some(columns) => Answer::Rows { columns, rows },
        None => Answer::Empty,
    }
}

/// Copies `sql`'s rows from Weir into PostgreSQL table `table`, as text literals.
pub async fn copy_rows(weir: &Client, pg: &Client, sql: &str, table: &str) {
    let Answer::Rows { rows, .. } = answer(weir, sql).await else {
        panic!("{sql}");
    };
    for chunk in rows.chunks(200) {
        let values: Vec<String> = chunk
            .iter()
            .map(|r| {
                let cells: Vec<String> = r
                    .iter()
                    .map(|v| {
                        if v == "NULL" {
                            "NULL".to_string()
                        } else {
                            format!("'{}'", v.replace('\'', "''"))
                        }
                    })
                    .collect();
                format!("({})", cells.join(", "))
            })
            .collect();
        pg.batch_execute(&format!("INSERT INTO {table} VALUES {}", values.join(", ")))
            .await
            .unwrap();
    }
}

/// A Weir running [`FIXTURE`] and a fresh PostgreSQL database holding its `kpi_1m` and
/// `weir.alerts` rows.
pub struct SameRows {
    pub weir: Weir,
    pub weir_client: Client,
    pub pg: Client,
    /// The PostgreSQL database's name (dropped on drop).
    pub database: String,
}

impl SameRows {
    /// Starts Weir in `dir`, waits for every window and an alert, and copies the rows into
    /// PostgreSQL database `weir_<name>_<pid>`.
    pub async fn start(dir: &Path, name: &str) -> Self {
        Self::start_with(dir, name, &[]).await
    }

    /// Like [`start`](Self::start), Weir started with `env` settings.
    pub async fn start_with(dir: &Path, name: &str, env: &[(&str, &str)]) -> Self {
        let mut weir = Weir::start_with(dir, env);
        let client = weir.connect().await;
        client.batch_execute(FIXTURE).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while int(&client, "SELECT count(*)::BIGINT FROM kpi_1m").await < 180
            || int(&client, "SELECT count(*)::BIGINT FROM weir.alerts").await == 0
        {
            assert!(Instant::now() < deadline, "{}", weir.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let database = format!("weir_{name}_{}", std::process::id());
        let pg = fresh_database(&database).await;
        pg.batch_execute(PG_FIXTURE).await.unwrap();
        copy_rows(
            &client,
            &pg,
            "SELECT window_start, source, count, avg_metric, p95_metric, error_rate FROM kpi_1m",
            "kpi_1m",
        )
        .await;
        copy_rows(&client, &pg, "SELECT * FROM weir.alerts", "weir.alerts").await;
        Self {
            weir,
            weir_client: client,
            pg,
            database,
        }
    }
}
