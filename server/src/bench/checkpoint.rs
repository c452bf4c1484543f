//! `weir bench-checkpoint`: what checkpoints cost — throughput with and without them over the
//! same input, checkpoint size and duration, and the time to restore the state and serve.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use weir_sql::{Database, DatabaseOptions, Session};

use weir_server::error::{Result, ServerError};

/// What a run measured.
#[derive(Debug)]
pub struct CheckpointBench {
    pub events: u64,
    /// Open (key, window) groups at the end of the input.
    pub groups: usize,
    /// Events/s without checkpoints.
    pub without: f64,
    /// Events/s with a checkpoint every `interval`.
    pub with: f64,
    pub interval: Duration,
    /// Checkpoints written during the run.
    pub checkpoints: u64,
    /// Size of the last checkpoint (all files it names).
    pub size_bytes: u64,
    /// Duration of the last checkpoint (state capture + write + fsync).
    pub last: Duration,
    /// How long processing stopped for it (the state capture; the write runs alongside).
    pub capture: Duration,
    /// Open + restore + first query after a restart.
    pub restore: Duration,
    /// Groups after the restore.
    pub restored_groups: usize,
}

/// Reads the file into `kpi_1m` (its one window stays open) and returns the time taken.
async fn read_all(db: &Database, path: &Path) -> Result<Duration> {
    let started = Instant::now();
    // CREATE MATERIALIZED VIEW returns once the view has caught up with the file.
    db.run(
        &mut Session::default(),
        &crate::bench::file_session_with(path, "follow = 'true'"),
    )
    .await?;
    Ok(started.elapsed())
}

/// Runs the benchmark in `dir` (the events file and the data dir go there).
pub async fn run(
    dir: &Path,
    events: u64,
    sources: u32,
    interval: Duration,
) -> Result<CheckpointBench> {
    let file = dir.join(format!("events-{events}-{sources}.jsonl"));
    if !file.exists() {
        eprintln!(
            "generating {events} events over {sources} keys into {} …",
            file.display()
        );
        // All inside one minute of event time: every group stays open.
        crate::bench::write_generated(
            &file,
            events,
            &[
                ("seed", "5".to_string()),
                ("rate", (events / 50).max(1).to_string()),
                ("sources", sources.to_string()),
            ],
        )?;
    }
    let memory =
        Database::open(DatabaseOptions::in_memory(weir_connectors::register_all())).await?;
    let without = read_all(&memory, &file).await?;
    let groups = memory.view("kpi_1m").map(|v| v.groups()).unwrap_or(0);
    memory.shutdown();
    drop(memory);

    let data = dir.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let open = || {
        let mut options = DatabaseOptions::persistent(&data, weir_connectors::register_all());
        options.checkpoint_interval = interval;
        Database::open(options)
    };
    let db = open().await?;
    let with = read_all(&db, &file).await?;
    // The last checkpoint covers all of the input: what a shutdown (or the next interval)
    // writes.
    let stats = db
        .engine()
        .source_stats("events")
        .ok_or_else(|| ServerError::Config("source events is gone".into()))?;
    let before = stats.checkpoint_epoch.load(Ordering::Relaxed);
    let deadline = Instant::now() + interval * 3 + Duration::from_secs(30);
    while stats.checkpoint_epoch.load(Ordering::Relaxed) == before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let checkpoints = stats.checkpoint_epoch.load(Ordering::Relaxed);
    let size_bytes = stats.checkpoint_total_bytes.load(Ordering::Relaxed);
    let last = Duration::from_micros(stats.checkpoint_micros.load(Ordering::Relaxed));
    let capture = Duration::from_micros(stats.checkpoint_capture_micros.load(Ordering::Relaxed));
    db.shutdown();
    drop(db);

    let started = Instant::now();
    let db = open().await?;
    db.run(&mut Session::default(), "SELECT count(*) FROM kpi_1m")
        .await?;
    let restore = started.elapsed();
    let restored_groups = db.view("kpi_1m").map(|v| v.groups()).unwrap_or(0);
    db.shutdown();
    Ok(CheckpointBench {
        events,
        groups,
        without: events as f64 / without.as_secs_f64(),
        with: events as f64 / with.as_secs_f64(),
        interval,
        checkpoints,
        size_bytes,
        last,
        capture,
        restore,
        restored_groups,
    })
}
