//! `weir bench-sinks`: what sinks cost — the file session (`events` + `kpi_1m`) with no
//! sinks, then with the four (Redis and PostgreSQL for `kpi_1m`, PostgreSQL
//! `events_raw` for every event, Kafka for `kpi_1m`), over the same input.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use weir_sql::{Database, DatabaseOptions, Session};

use weir_server::error::{Result, ServerError};

/// Where the sinks write.
#[derive(Debug, Clone)]
pub struct Targets {
    /// `postgres://…/db` (the bench drops and recreates `events_raw` and `kpi_1m` there).
    pub postgres: String,
    pub redis: String,
    pub brokers: String,
}

/// One sink's numbers.
#[derive(Debug)]
pub struct SinkResult {
    pub name: String,
    pub rows: u64,
    /// From the start of the run until its backlog was empty.
    pub elapsed: Duration,
}

/// What a run measured.
#[derive(Debug)]
pub struct SinkBench {
    pub events: u64,
    /// Events/s through `kpi_1m` without sinks.
    pub without: f64,
    /// Events/s through `kpi_1m` with the four sinks attached (the pipeline's own pace;
    /// sinks write from their queues alongside).
    pub with: f64,
    /// Events/s until every sink had written everything.
    pub end_to_end: f64,
    pub sinks: Vec<SinkResult>,
    /// A Redis sink alone writing every event as a key (`FROM events`): Redis keys/s.
    pub redis_keys: SinkResult,
}

/// Defines the session (with `sinks`, if any) over an empty followed file, stops, writes the
/// events, then reopens: one pipeline reads everything for the view and all sinks, as after
/// any restart. Returns the events/s of the pipeline and of the whole run (until every sink
/// had written everything), and each sink's numbers.
async fn run_once(dir: &Path, events: u64, sinks: &str) -> Result<(f64, f64, Vec<SinkResult>)> {
    let data = dir.join("data");
    let file = dir.join("events.jsonl");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::write(&file, b"")?;
    let options = |data: &Path| {
        let mut o = DatabaseOptions::persistent(data, weir_connectors::register_all_in(data));
        o.backfill_timeout = Duration::from_secs(1);
        o
    };
    let db = Database::open(options(&data)).await?;
    db.run(
        &mut Session::default(),
        &format!(
            "SET background_ddl = on;\n{}\n{sinks}",
            crate::bench::file_session_with(&file, "follow = 'true'")
        ),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    db.shutdown();
    drop(db);
    crate::bench::write_events(&file, events, 42)?;

    let started = Instant::now();
    let db = Database::open(options(&data)).await?;
    let engine = db.engine().clone();
    let done = tokio::task::spawn_blocking(move || {
        engine.wait_caught_up("events", Duration::from_secs(3600))
    })
    .await
    .map_err(|e| ServerError::Config(e.to_string()))?;
    if !done {
        return Err(ServerError::Config(
            "the source did not catch up within an hour".into(),
        ));
    }
    let pipeline = events as f64 / started.elapsed().as_secs_f64();
    let mut results = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3600);
    for (_, sink) in db.engine().sinks() {
        while sink.backlog() > 0 || sink.stats.rows_written.load(Ordering::Relaxed) == 0 {
            if sink.is_failed() || Instant::now() > deadline {
                return Err(ServerError::Config(format!(
                    "sink {} did not finish: {}",
                    sink.name(),
                    sink.stats.status()
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        results.push(SinkResult {
            name: sink.name().to_string(),
            rows: sink.stats.rows_written.load(Ordering::Relaxed),
            elapsed: started.elapsed(),
        });
    }
    let end_to_end = events as f64 / started.elapsed().as_secs_f64();
    db.shutdown();
    Ok((pipeline, end_to_end, results))
}

/// Runs the benchmark in `dir` over `events` generated events.
pub async fn run(dir: &Path, events: u64, targets: &Targets) -> Result<SinkBench> {
    let (without, _, _) = run_once(dir, events, "").await?;
    weir_connectors::postgres::migrate_url(&targets.postgres)
        .await
        .map_err(|e| ServerError::Config(format!("postgres: {e}")))?;
    clear_postgres(&targets.postgres).await?;
    let topic = format!("bench-sinks-{}", chrono::Utc::now().timestamp_millis());
    let sinks = format!(
        "CREATE SINK kpi_hot FROM kpi_1m WITH (connector = 'redis', url = '{redis}', key = 'bench:agg:{{source}}:1m:{{window_start}}', ttl = '1 hour');\n\
         CREATE SINK kpi_history FROM kpi_1m WITH (connector = 'postgres', url = '{pg}', table = 'bench_kpi_1m');\n\
         CREATE SINK raw_archive FROM events WITH (connector = 'postgres', url = '{pg}', table = 'events_raw');\n\
         CREATE SINK kpi_out FROM kpi_1m WITH (connector = 'kafka', brokers = '{brokers}', topic = '{topic}', format = 'json');",
        redis = targets.redis,
        pg = targets.postgres,
        brokers = targets.brokers,
    );
    let (with, end_to_end, sinks) = run_once(dir, events, &sinks).await?;
    let keys = format!(
        "CREATE SINK events_hot FROM events WITH (connector = 'redis', url = '{}', key = 'bench:ev:{{event_id}}', ttl = '10 minutes');",
        targets.redis
    );
    let (_, _, mut redis) = run_once(dir, events, &keys).await?;
    let redis_keys = redis
        .pop()
        .ok_or_else(|| ServerError::Config("the Redis run reported no sink".into()))?;
    Ok(SinkBench {
        events,
        without,
        with,
        end_to_end,
        sinks,
        redis_keys,
    })
}

/// Empties the tables the bench writes, so each run inserts every row.
async fn clear_postgres(url: &str) -> Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| ServerError::Config(format!("postgres: {e}")))?;
    sqlx::raw_sql("TRUNCATE events_raw; DROP TABLE IF EXISTS bench_kpi_1m")
        .execute(&mut conn)
        .await
        .map_err(|e| ServerError::Config(format!("postgres: {e}")))?;
    Ok(())
}
