//! `weir bench-soak`: many simulated days through a view with retention, printing memory,
//! data-dir size and throughput per simulated day, then a 7-day range query over history.
//!
//! A datagen source with `realtime = 'false'` runs event time as fast as the pipeline reads:
//! `rate` events per second of event time, so a day is `rate × 86,400` events. The view is
//! `kpi_1m` (1-minute windows per source) with `retention = '1 hour'`; without
//! `--no-retention` everything stays in memory, for comparison.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use weir_sql::{Database, DatabaseOptions, Outcome, Session};

use weir_server::error::{Result, ServerError};

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub days: u64,
    /// Events per second of event time.
    pub rate: u64,
    pub sources: u64,
    /// `None`: every row in memory.
    pub retention: Option<String>,
}

const START: &str = "2026-10-01T00:00:00Z";
const DAY_NS: i64 = 86_400_000_000_000;

/// Resident set size of this process now.
fn rss() -> u64 {
    weir_server::metrics::process_memory("VmRSS").unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

async fn rows(db: &Database, sql: &str) -> Result<usize> {
    let mut session = Session::default();
    let mut n = 0;
    for outcome in db.run(&mut session, sql).await? {
        if let Outcome::Rows(df) = outcome {
            for b in df
                .collect()
                .await
                .map_err(|e| ServerError::Config(e.to_string()))?
            {
                n += b.num_rows();
            }
        }
    }
    Ok(n)
}

/// Runs the soak in `dir` (emptied first) and prints a line per simulated day.
pub async fn run(dir: &Path, options: &SoakOptions) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let mut db_options =
        DatabaseOptions::persistent(dir.join("data"), weir_connectors::register_all());
    // CREATE returns at once; the run is watched below.
    db_options.backfill_timeout = Duration::from_millis(10);
    let db = Database::open(db_options).await?;
    let count = options.days * 86_400 * options.rate;
    let with = match &options.retention {
        Some(r) => format!(" WITH (retention = '{r}', history = '400 days')"),
        None => String::new(),
    };
    let mut session = Session::default();
    db.run(
        &mut session,
        &format!(
            "CREATE SOURCE ev (source TEXT, \"timestamp\" TIMESTAMPTZ, \
             WATERMARK FOR \"timestamp\" AS \"timestamp\" - INTERVAL '2 seconds') \
             WITH (connector = 'datagen', count = '{count}', rate = '{}', sources = '{}', \
             seed = '1', start = '{START}', realtime = 'false'); \
             CREATE MATERIALIZED VIEW kpi_1m{with} AS SELECT source, window_start, count(*) AS count \
             FROM TUMBLE(ev, \"timestamp\", INTERVAL '1 minute') GROUP BY source, window_start;",
            options.rate, options.sources
        ),
    )
    .await?;
    let view = db
        .view("kpi_1m")
        .ok_or_else(|| ServerError::Config("kpi_1m was not created".into()))?;
    let start_ns = chrono::DateTime::parse_from_rfc3339(START)
        .map_err(|e| ServerError::Config(e.to_string()))?
        .timestamp_nanos_opt()
        .unwrap_or(0);
    println!(
        "{} simulated days, {} events ({}/s of event time, {} sources), retention {}",
        options.days,
        count,
        options.rate,
        options.sources,
        options.retention.as_deref().unwrap_or("none")
    );
    println!(
        "day  wall_s  events/s   rss_MiB  state_MiB  data_MiB  rows_in_memory  history_rows  history_files"
    );
    // What the process holds before any view state: the growth of RSS past it is what
    // state_bytes should account for.
    let baseline = rss();
    let began = Instant::now();
    let mut last = (Instant::now(), 0u64);
    let mut day = 0i64;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let wm = view.stats.watermark.load(Ordering::Relaxed);
        let events = view.stats.rows_in.load(Ordering::Relaxed);
        let finished = events >= count;
        let now_day = if wm == i64::MAX || finished {
            options.days as i64
        } else {
            (wm - start_ns).max(0) / DAY_NS
        };
        if now_day > day || finished {
            day = now_day;
            let (memory, history) = view
                .rows_and_history()
                .map_err(|e| ServerError::Config(e.to_string()))?;
            let rate = (events - last.1) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), events);
            println!(
                "{day:>3}  {:>6.1}  {:>9.0}  {:>7.0}  {:>9.1}  {:>8.1}  {:>14}  {:>12}  {:>13}",
                began.elapsed().as_secs_f64(),
                rate,
                rss() as f64 / 1048576.0,
                view.state_bytes() as f64 / 1048576.0,
                dir_bytes(&dir.join("data")) as f64 / 1048576.0,
                memory,
                history.rows,
                history.files
            );
        }
        if finished {
            break;
        }
    }
    let elapsed = began.elapsed();
    println!(
        "state_bytes {:.1} MiB; RSS grew {:.1} MiB from {:.1} MiB before the view had state",
        view.state_bytes() as f64 / 1048576.0,
        rss().saturating_sub(baseline) as f64 / 1048576.0,
        baseline as f64 / 1048576.0
    );
    println!(
        "throughput: {:.0} events/s over the whole run ({:.1} s)",
        count as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    // Let the last checkpoints move what they will.
    tokio::time::sleep(Duration::from_secs(3)).await;
    if options.days >= 8 {
        let end = start_ns + options.days as i64 * DAY_NS;
        let from = chrono::DateTime::from_timestamp_nanos(end - 8 * DAY_NS).to_rfc3339();
        let to = chrono::DateTime::from_timestamp_nanos(end - DAY_NS).to_rfc3339();
        let sql = format!(
            "SELECT window_start, sum(count) FROM kpi_1m \
             WHERE window_start >= '{from}' AND window_start < '{to}' GROUP BY 1 ORDER BY 1"
        );
        for run in 1..=3 {
            let t = Instant::now();
            let n = rows(&db, &sql).await?;
            println!(
                "7-day range query (run {run}): {n} rows in {:.1} ms",
                t.elapsed().as_secs_f64() * 1e3
            );
        }
        // The same days straight from the Parquet files, with DataFusion alone (files merged
        // in the last minute are still on disk, so it may count some rows twice).
        let history = dir.join("data").join("history").join("kpi_1m");
        if history.exists() {
            let ctx = datafusion::prelude::SessionContext::new();
            ctx.register_parquet(
                "files",
                history.to_string_lossy().as_ref(),
                datafusion::prelude::ParquetReadOptions::default(),
            )
            .await
            .map_err(|e| ServerError::Config(e.to_string()))?;
            let direct = sql.replace("FROM kpi_1m", "FROM files");
            for run in 1..=3 {
                let t = Instant::now();
                let df_error =
                    |e: datafusion::error::DataFusionError| ServerError::Config(e.to_string());
                let batches = ctx
                    .sql(&direct)
                    .await
                    .map_err(df_error)?
                    .collect()
                    .await
                    .map_err(df_error)?;
                let n: usize = batches.iter().map(|b| b.num_rows()).sum();
                println!(
                    "same query, DataFusion over the Parquet files alone (run {run}): {n} rows in {:.1} ms",
                    t.elapsed().as_secs_f64() * 1e3
                );
            }
            duckdb(&history, &from, &to);
        }
    }
    db.shutdown();
    Ok(())
}

/// The same 7-day query by DuckDB (Python's `duckdb` package) over the same files, for
/// comparison with an established engine; says so when DuckDB is not installed.
fn duckdb(history: &Path, from: &str, to: &str) {
    let script = r#"
import sys, time, duckdb
files, lo, hi = sys.argv[1] + "/**/*.parquet", sys.argv[2], sys.argv[3]
con = duckdb.connect()
sql = f"""SELECT window_start, sum("count") FROM read_parquet('{files}', hive_partitioning = false)
          WHERE window_start >= TIMESTAMPTZ '{lo}' AND window_start < TIMESTAMPTZ '{hi}'
          GROUP BY 1 ORDER BY 1"""
for run in (1, 2, 3):
    t = time.perf_counter()
    n = len(con.execute(sql).fetchall())
    print(f"same query, DuckDB {duckdb.__version__} over the Parquet files (run {run}): {n} rows in {(time.perf_counter() - t) * 1e3:.1f} ms")
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(history)
        .arg(from)
        .arg(to)
        .output();
    match out {
        Ok(o) if o.status.success() => print!("{}", String::from_utf8_lossy(&o.stdout)),
        _ => println!("DuckDB: not available (pip install duckdb) — comparison skipped"),
    }
}
