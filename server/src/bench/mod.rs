//! The benchmarks behind `weir bench*` — part of the binary, not of the `weir-server`
//! library. This file is `weir bench`: the core issue's file session over a generated file,
//! timed end to end; Kafka, checkpoints, sinks, the soak and alerts are submodules.

pub mod alerts;
pub mod checkpoint;
pub mod kafka;
pub mod sinks;
pub mod soak;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weir_connectors::datagen::{DatagenConfig, EventGenerator};
use weir_sql::{Database, DatabaseOptions, Session};

use weir_server::error::{Result, ServerError};

/// What a bench run measured.
#[derive(Debug)]
pub struct BenchReport {
    pub events: u64,
    pub elapsed: Duration,
    pub windows: usize,
    pub peak_rss_bytes: Option<u64>,
}

impl BenchReport {
    /// Events per second, first byte read to last window emitted.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

/// Writes `count` seed events (seed, 1000 sources, up to 1 s out of order) as JSON lines.
pub fn write_events(path: &Path, count: u64, seed: u64) -> Result<()> {
    write_generated(
        path,
        count,
        &[
            ("seed", seed.to_string()),
            ("rate", "10000".to_string()),
            ("sources", "1000".to_string()),
            ("error_rate", "0.02".to_string()),
            ("disorder_ms", "1000".to_string()),
        ],
    )
}

/// Writes events `0..count` of the datagen generator configured by `options` (its `start`
/// fixed at 2026-11-27T10:00:00Z) as JSON lines.
pub fn write_generated(path: &Path, count: u64, options: &[(&str, String)]) -> Result<()> {
    let mut options: BTreeMap<String, String> = options
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    options.insert("count".into(), count.to_string());
    options
        .entry("start".into())
        .or_insert_with(|| "2026-11-27T10:00:00Z".into());
    let config =
        DatagenConfig::from_options(&options).map_err(|e| ServerError::Config(e.to_string()))?;
    let generator = EventGenerator::new(config);
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut line = Vec::with_capacity(256);
    for i in 0..count {
        line.clear();
        generator.write_event(i, &mut line);
        out.write_all(&line)?;
    }
    out.flush()?;
    Ok(())
}

/// The file session with `options` added to the source's.
pub fn file_session_with(path: &Path, options: &str) -> String {
    file_session_windowed(path, options, Window::Tumble)
}

/// The window of the benchmark's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Window {
    /// `TUMBLE(events, "timestamp", INTERVAL '1 minute')`: the seed's `kpi_1m`.
    Tumble,
    /// `HOP(events, "timestamp", INTERVAL '10 seconds', INTERVAL '1 minute')`: each event
    /// in six windows, the demo's `kpi_1m_hop`.
    Hop,
    /// `CUMULATE(events, "timestamp", INTERVAL '10 seconds', INTERVAL '1 minute')`: each
    /// event in one to six windows (3.5 on average).
    Cumulate,
    /// `SESSION(events, "timestamp", INTERVAL '30 seconds')`: per source, one session while
    /// its events keep coming.
    Session,
}

impl Window {
    /// The view's `FROM`.
    pub fn windowed_relation(self) -> &'static str {
        match self {
            Window::Tumble => "TUMBLE(events, \"timestamp\", INTERVAL '1 minute')",
            Window::Hop => "HOP(events, \"timestamp\", INTERVAL '10 seconds', INTERVAL '1 minute')",
            Window::Cumulate => {
                "CUMULATE(events, \"timestamp\", INTERVAL '10 seconds', INTERVAL '1 minute')"
            }
            Window::Session => "SESSION(events, \"timestamp\", INTERVAL '30 seconds')",
        }
    }
}

fn file_session_windowed(path: &Path, options: &str, window: Window) -> String {
    file_session_joined(path, options, window, 0)
}

/// The file session; with `lookup_rows` > 0 the view joins each event to a table of that
/// many rows (`owners`, keyed by source, every event's source in it).
fn file_session_joined(path: &Path, options: &str, window: Window, lookup_rows: u64) -> String {
    let path = path.display().to_string().replace('\'', "''");
    let source = weir_server::demo::seed_source(
        "events",
        &format!("connector = 'file', path = '{path}', {options}"),
    );
    if lookup_rows == 0 {
        return format!(
            "{source};\nCREATE MATERIALIZED VIEW kpi_1m AS {};",
            weir_server::demo::kpi_query(window.windowed_relation())
        );
    }
    format!(
        "{source};\n\
         CREATE TABLE owners (source TEXT PRIMARY KEY, team TEXT NOT NULL);\n\
         INSERT INTO owners SELECT 'src-' || lpad(CAST(i AS TEXT), greatest(4, length(CAST(i AS TEXT))), '0'), \
           'team-' || CAST(i % 10 AS TEXT) FROM (SELECT unnest(range(0, {lookup_rows})) AS i);\n\
         CREATE MATERIALIZED VIEW kpi_1m AS {};",
        weir_server::demo::kpi_query(&format!(
            "{} JOIN owners USING (source)",
            window.windowed_relation()
        ))
    )
}

/// Runs the file session over `path` (containing `events` lines) and times it; with
/// `lookup_rows` > 0 the view joins a table of that many rows (created before the clock
/// starts).
pub async fn run(
    path: &Path,
    events: u64,
    window: Window,
    lookup_rows: u64,
) -> Result<BenchReport> {
    let db = Database::open(DatabaseOptions::in_memory(weir_connectors::register_all())).await?;
    let mut session = Session::default();
    let script = file_session_joined(path, "format = 'json'", window, lookup_rows);
    let (setup, view) = script
        .rsplit_once("CREATE MATERIALIZED VIEW")
        .unwrap_or(("", script.as_str()));
    // The source and the table first: the clock times the view's work.
    session.set("background_ddl", "on")?;
    db.run(&mut session, setup).await?;
    let started = Instant::now();
    db.run(&mut session, &format!("CREATE MATERIALIZED VIEW{view}"))
        .await?;
    let engine = db.engine().clone();
    let done = tokio::task::spawn_blocking(move || {
        engine.wait_caught_up("events", Duration::from_secs(3600))
    })
    .await
    .map_err(|e| ServerError::Config(e.to_string()))?;
    let elapsed = started.elapsed();
    if !done {
        return Err(ServerError::Config(
            "the benchmark did not finish within an hour".into(),
        ));
    }
    let windows = db
        .view("kpi_1m")
        .map(|v| v.row_count().unwrap_or(0))
        .unwrap_or(0);
    db.shutdown();
    Ok(BenchReport {
        events,
        elapsed,
        windows,
        peak_rss_bytes: peak_rss(),
    })
}

/// Peak resident set size of this process (Linux).
pub fn peak_rss() -> Option<u64> {
    weir_server::metrics::process_memory("VmHWM")
}

/// A file path for generated events in the system temp dir.
pub fn default_file(events: u64) -> PathBuf {
    std::env::temp_dir().join(format!("weir-bench-{events}.jsonl"))
}
