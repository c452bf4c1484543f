//! Crash recovery: a run crashed at random batch boundaries and restored from its
//! checkpoints ends with exactly the rows of a run without crashes, for every window kind
//! (TUMBLE, HOP, CUMULATE, SESSION) and aggregate family (exact percentiles included), for
//! interval self-joins and lookup joins of a table, with dead letters and counters intact.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::util::display::array_value_to_string;
use weir_sql::{Database, DatabaseOptions, Outcome, Session};

use common::kafka::generator_at_rate;
use common::{event_lines, exec, kpi_query};

/// Views covering tumbling, hopping, EMIT ON UPDATE, unwindowed, non-aggregating and
/// view-over-view pipelines, and the aggregate families (count, sum, avg, min/max,
/// variance, percentile, DISTINCT, FILTER, boolean).
fn views() -> Vec<(&'static str, String)> {
    vec![
        (
            "kpi_1m",
            kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '1 minute')"),
        ),
        (
            "kpi_1m_hop",
            kpi_query("HOP(events, \"timestamp\", INTERVAL '10 seconds', INTERVAL '1 minute')"),
        ),
        (
            "kpi_live",
            format!(
                "{} EMIT ON UPDATE",
                kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '30 seconds')")
            ),
        ),
        (
            "wide",
            "SELECT source, window_start, sum(attributes.metric) AS total, \
             min(attributes.metric) AS lo, max(attributes.metric) AS hi, \
             stddev(attributes.metric) AS sd, var_pop(attributes.metric) AS var, \
             count(DISTINCT attributes.user_id) AS users, \
             bool_or(attributes.status = 'error') AS any_error, \
             count(*) FILTER (WHERE attributes.status <> 'ok') AS not_ok \
             FROM TUMBLE(events, \"timestamp\", INTERVAL '20 seconds') \
             GROUP BY source, window_start"
                .into(),
        ),
        (
            "totals",
            "SELECT source, count(*) AS n, sum(attributes.metric) AS total \
             FROM events GROUP BY source"
                .into(),
        ),
        (
            "errors",
            "SELECT event_id, source, \"timestamp\" FROM events \
             WHERE attributes.status = 'error'"
                .into(),
        ),
        (
            // Rows older than a minute of event time move to Parquet history.
            "kpi_kept",
            kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '20 seconds')"),
        ),
        (
            "kpi_5m",
            "SELECT source, window_start, sum(count) AS n \
             FROM TUMBLE(kpi_1m, window_start, INTERVAL '5 minutes') \
             GROUP BY source, window_start"
                .into(),
        ),
        (
            // Session windows per user: sessions open, extended and bridged across crashes.
            "sessions",
            "SELECT attributes.user_id AS user_id, window_start, window_end, count(*) AS n, \
             sum(attributes.metric) AS total, max(attributes.metric) AS hi \
             FROM SESSION(events, \"timestamp\", INTERVAL '3 seconds') \
             GROUP BY attributes.user_id, window_start, window_end"
                .into(),
        ),
        (
            "running",
            "SELECT source, window_start, window_end, count(*) AS n \
             FROM CUMULATE(events, \"timestamp\", INTERVAL '10 seconds', INTERVAL '1 minute') \
             GROUP BY source, window_start, window_end"
                .into(),
        ),
        (
            // Interval self-join: kept rows cross crashes in checkpoints.
            "recoveries",
            "SELECT a.event_id AS failed, b.event_id AS next, b.\"timestamp\" AS next_at \
             FROM events a JOIN events b ON a.source = b.source \
             AND b.\"timestamp\" BETWEEN a.\"timestamp\" AND a.\"timestamp\" + INTERVAL '800 milliseconds' \
             WHERE a.attributes.status = 'error' AND b.event_id <> a.event_id"
                .into(),
        ),
        (
            // A lookup join of a table the crashes do not change.
            "tiered",
            "SELECT t.tier, window_start, count(*) AS n \
             FROM TUMBLE(events, \"timestamp\", INTERVAL '30 seconds') e \
             JOIN tiers t ON e.source = t.source GROUP BY t.tier, window_start"
                .into(),
        ),
        (
            // An interval join of two sources: their pair's positions, watermark and kept
            // rows cross crashes in one checkpoint.
            "paired",
            "SELECT a.event_id AS alarm, e.event_id AS event \
             FROM alarms a JOIN events e ON a.source = e.source \
             AND e.\"timestamp\" BETWEEN a.\"timestamp\" - INTERVAL '300 milliseconds' \
                                  AND a.\"timestamp\" + INTERVAL '500 milliseconds' \
             WHERE a.attributes.status = 'error'"
                .into(),
        ),
        (
            "exact",
            "SELECT source, window_start, median(attributes.metric) AS med, \
             percentile_disc(0.9) WITHIN GROUP (ORDER BY attributes.metric) AS p90 \
             FROM TUMBLE(events, \"timestamp\", INTERVAL '30 seconds') \
             GROUP BY source, window_start"
                .into(),
        ),
    ]
}

async fn open(dir: &Path) -> Arc<Database> {
    // Short and irregular relative to the input, so crashes land between checkpoints.
    common::persistent_db(dir, Duration::from_millis(7)).await
}

/// The feed of the `alarms` source, next to `feed` (the one of `events`).
fn alarms_feed(feed: &Path) -> PathBuf {
    feed.with_file_name("alarms.jsonl")
}

async fn create(db: &Database, feed: &Path) {
    let alarms = alarms_feed(feed);
    if !alarms.exists() {
        std::fs::write(&alarms, "").unwrap();
    }
    for (name, path) in [("events", feed), ("alarms", alarms.as_path())] {
        exec(
            db,
            &weir_server::demo::seed_source(
                name,
                &format!(
                    "connector = 'file', path = '{}', follow = 'true', chunk_bytes = '4096'",
                    path.display()
                ),
            ),
        )
        .await;
    }
    exec(
        db,
        "CREATE TABLE tiers (source TEXT PRIMARY KEY, tier INT NOT NULL);\n\
         INSERT INTO tiers SELECT 'src-' || lpad(CAST(i AS TEXT), 4, '0'), i % 3 \
         FROM (SELECT unnest(range(0, 6)) AS i)",
    )
    .await;
    for (name, query) in views() {
        let with = match name {
            "kpi_kept" => " WITH (retention = '1 minute', history = '30 days')",
            _ => "",
        };
        exec(
            db,
            &format!("CREATE MATERIALIZED VIEW {name}{with} AS {query}"),
        )
        .await;
    }
}

fn append(feed: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(feed).unwrap();
    let mut text = String::new();
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    f.write_all(text.as_bytes()).unwrap();
    f.flush().unwrap();
}

/// Waits until every pipeline of `events` has read the whole feed, and the pipeline of the
/// pair of `alarms` and `events` both feeds.
async fn wait_read(db: &Arc<Database>, feed: &Path) {
    let len = std::fs::metadata(feed).unwrap().len();
    let alarms_len = std::fs::metadata(alarms_feed(feed)).unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(120);
    let offset = |p: &serde_json::Value| p.get("offset").and_then(|o| o.as_u64());
    loop {
        let stats = db.engine().pipeline_stats("events");
        let pair = db.engine().pipeline_stats("alarms⋈events");
        // The position moves when a batch arrives, before the views have processed it: wait
        // for the pipelines to have caught up too.
        let caught_up = |s: &weir_engine::serving::system::SourceStats| {
            s.caught_up.load(std::sync::atomic::Ordering::Acquire)
        };
        let done = !stats.is_empty()
            && stats
                .iter()
                .all(|s| offset(&s.position.lock()) == Some(len) && caught_up(s))
            && pair.iter().all(|s| {
                let p = s.position.lock();
                // Nothing read of an empty feed: no position yet.
                offset(&p["first"]).unwrap_or(0) == alarms_len
                    && offset(&p["second"]) == Some(len)
                    && caught_up(s)
            });
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pipelines did not read {len} bytes within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `kpi_kept` has moved rows to Parquet history.
async fn wait_history(db: &Arc<Database>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let sql = "SELECT history_rows FROM weir.views WHERE name = 'kpi_kept'";
    while rows(db, sql).await == ["0"] {
        assert!(
            Instant::now() < deadline,
            "kpi_kept moved no rows to history"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every row of `sql`, as sorted text.
async fn rows(db: &Database, sql: &str) -> Vec<String> {
    let mut session = Session::default();
    let mut out = Vec::new();
    for outcome in db.run(&mut session, sql).await.unwrap() {
        let Outcome::Rows(df) = outcome else { continue };
        for b in df.collect().await.unwrap() {
            for r in 0..b.num_rows() {
                let cells: Vec<String> = b
                    .columns()
                    .iter()
                    .map(|c| array_value_to_string(c, r).unwrap())
                    .collect();
                out.push(cells.join("|"));
            }
        }
    }
    out.sort();
    out
}

/// What a user would compare: every view, and the source's counters and logs.
async fn everything(db: &Database) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (name, _) in views() {
        out.push((
            name.to_string(),
            rows(db, &format!("SELECT * FROM {name}")).await,
        ));
    }
    for sql in [
        "SELECT events_in, late_events, dead_letters FROM weir.sources",
        "SELECT location, error FROM weir.dead_letters",
        "SELECT location FROM weir.late_events",
        "SELECT name, rows + history_rows FROM weir.views",
    ] {
        out.push((sql.to_string(), rows(db, sql).await));
    }
    out
}

/// Rows equal cell by cell; floating-point cells within 1e-9 relative (a restored
/// variance merges its state in another order than one accumulated row by row).
fn assert_same_rows(want: &[String], have: &[String], what: &str) {
    assert_eq!(want.len(), have.len(), "{what}: row counts differ");
    for (w, h) in want.iter().zip(have) {
        let same = w.split('|').zip(h.split('|')).all(|(a, b)| {
            a == b
                || match (a.parse::<f64>(), b.parse::<f64>()) {
                    (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
                    _ => false,
                }
        });
        assert!(same, "{what}:\n  want {w}\n  have {h}");
    }
}

/// xorshift: the crash points are random but reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn scratch(root: &Path, name: &str) -> PathBuf {
    let p = root.join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_at_random_points_change_no_result() {
    let seed = std::env::var("WEIR_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("WEIR_TEST_SEED={seed}");
    let mut rng = Rng(seed);
    let root = tempfile::tempdir().unwrap();
    // 1.5 s of disorder against a 2 s watermark delay, some late events, 1 line in 400 bad.
    // 8 minutes of event time, so windows of every view close.
    let mut lines = event_lines(&generator_at_rate(7, 1_500, 50), 24_000, 400);
    for i in (1_000..lines.len()).step_by(3_000) {
        // Events far behind the watermark: late in every run.
        lines[i] = lines[i].replace("2026-11-27T10:", "2026-11-27T09:");
    }
    let chunks: Vec<&[String]> = lines.chunks(1_000).collect();
    // Alarms arrive alongside, in step (on time: the pair's lateness does not depend on how
    // the two feeds interleave).
    let alarm_lines = event_lines(&generator_at_rate(8, 1_500, 50), 24_000, 0);
    let alarm_chunks: Vec<&[String]> = alarm_lines.chunks(1_000).collect();

    // The straight run.
    let straight_dir = scratch(root.path(), "straight");
    let straight_feed = straight_dir.join("events.jsonl");
    std::fs::write(&straight_feed, "").unwrap();
    let db = open(&straight_dir.join("data")).await;
    create(&db, &straight_feed).await;
    for (chunk, alarms) in chunks.iter().zip(&alarm_chunks) {
        append(&straight_feed, chunk);
        append(&alarms_feed(&straight_feed), alarms);
    }
    wait_read(&db, &straight_feed).await;
    wait_history(&db).await;
    let expected = everything(&db).await;
    drop(db);
    assert!(
        expected.iter().all(|(_, rows)| !rows.is_empty()),
        "every view and log has rows: {expected:?}"
    );

    // The same input, crashed three times at random points.
    let crash_dir = scratch(root.path(), "crashed");
    let feed = crash_dir.join("events.jsonl");
    std::fs::write(&feed, "").unwrap();
    let data = crash_dir.join("data");
    let mut db = open(&data).await;
    create(&db, &feed).await;
    let mut crashes: Vec<usize> = (0..3)
        .map(|_| 1 + rng.below(chunks.len() as u64 - 2) as usize)
        .collect();
    crashes.sort();
    for (i, (chunk, alarms)) in chunks.iter().zip(&alarm_chunks).enumerate() {
        append(&feed, chunk);
        append(&alarms_feed(&feed), alarms);
        if crashes.contains(&i) {
            tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
            db.engine().crash();
            drop(db);
            db = open(&data).await;
        }
    }
    wait_read(&db, &feed).await;
    wait_history(&db).await;
    let got = everything(&db).await;
    for ((name, want), (_, have)) in expected.iter().zip(&got) {
        assert_same_rows(
            want,
            have,
            &format!("{name} after crashes after chunks {crashes:?} (WEIR_TEST_SEED={seed})"),
        );
    }

    // A clean restart resumes without replaying: counters stay, pipelines that stopped at
    // the same point share one reader again.
    drop(db);
    let db = open(&data).await;
    wait_read(&db, &feed).await;
    for ((name, want), (_, have)) in expected.iter().zip(&everything(&db).await) {
        assert_same_rows(want, have, &format!("{name} after a clean restart"));
    }
    let pipelines = db.engine().pipeline_stats("events").len();
    assert_eq!(
        pipelines, 1,
        "views of a quiet source share one pipeline after a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_added_later_backfills_without_touching_the_others() {
    let root = tempfile::tempdir().unwrap();
    let lines = event_lines(&generator_at_rate(3, 0, 20), 6_000, 0);
    let feed = root.path().join("events.jsonl");
    std::fs::write(&feed, "").unwrap();
    let data = root.path().join("data");
    let db = open(&data).await;
    create(&db, &feed).await;
    append(&feed, &lines[..3_000]);
    wait_read(&db, &feed).await;
    let before = db.engine().pipeline_stats("events");
    let epochs: Vec<u64> = before
        .iter()
        .map(|s| {
            s.checkpoint_epoch
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .collect();

    // A new view reads the source from its start; the old pipelines keep their state.
    exec(
        &db,
        "CREATE MATERIALIZED VIEW late_comer AS SELECT source, count(*) AS n FROM events GROUP BY source",
    )
    .await;
    append(&feed, &lines[3_000..]);
    wait_read(&db, &feed).await;
    let total: i64 = rows(&db, "SELECT sum(n) FROM late_comer").await[0]
        .parse()
        .unwrap();
    assert_eq!(total, 6_000, "the new view saw the whole source");
    let after = db.engine().pipeline_stats("events");
    assert_eq!(after.len(), before.len() + 1);
    for (s, e) in before.iter().zip(&epochs) {
        assert!(
            s.checkpoint_epoch
                .load(std::sync::atomic::Ordering::Relaxed)
                >= *e,
            "an existing pipeline was reset"
        );
    }

    // DROP + CREATE of one view leaves the others' checkpoints alone.
    let kpi_before = rows(&db, "SELECT * FROM kpi_1m").await;
    exec(&db, "DROP MATERIALIZED VIEW kpi_5m").await;
    exec(&db, "DROP MATERIALIZED VIEW late_comer").await;
    exec(
        &db,
        "CREATE MATERIALIZED VIEW late_comer AS SELECT source, max(attributes.metric) AS hi FROM events GROUP BY source",
    )
    .await;
    drop(db);
    let db = open(&data).await;
    wait_read(&db, &feed).await;
    assert_eq!(rows(&db, "SELECT * FROM kpi_1m").await, kpi_before);
    assert_eq!(
        rows(&db, "SELECT count(*) FROM late_comer").await,
        vec!["8"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_from_another_build_is_refused_until_rebuilt() {
    let root = tempfile::tempdir().unwrap();
    let lines = event_lines(&generator_at_rate(5, 0, 10), 2_000, 0);
    let feed = root.path().join("events.jsonl");
    std::fs::write(&feed, "").unwrap();
    append(&feed, &lines);
    let data = root.path().join("data");
    let db = open(&data).await;
    create(&db, &feed).await;
    wait_read(&db, &feed).await;
    let want = rows(&db, "SELECT * FROM kpi_1m").await;
    drop(db);

    // Pretend another build wrote the checkpoints.
    for entry in walk(&data.join("checkpoints")) {
        if entry.file_name().is_some_and(|n| n == "MANIFEST.json") {
            let text = std::fs::read_to_string(&entry).unwrap().replace(
                weir_engine::checkpoint::STATE_FORMAT,
                "weir-state/0 datafusion/1",
            );
            std::fs::write(&entry, text).unwrap();
        }
    }
    let db = open(&data).await;
    let status = rows(&db, "SELECT status FROM weir.sources").await;
    assert!(
        status[0].contains("incompatible build") && status[0].contains("--rebuild-state"),
        "{status:?}"
    );
    assert!(rows(&db, "SELECT * FROM kpi_1m").await.is_empty());
    drop(db);

    let mut options = DatabaseOptions::persistent(&data, weir_connectors::register_all());
    options.rebuild_state = true;
    let db = Database::open(options).await.unwrap();
    wait_read(&db, &feed).await;
    assert_eq!(rows(&db, "SELECT * FROM kpi_1m").await, want);
    drop(db);
    // The rebuilt state is checkpointed under its source, and a restart resumes from it.
    let mut dirs: Vec<String> = std::fs::read_dir(data.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    // The pair of alarms and events (its name percent-encoded) holds the join's state.
    assert_eq!(dirs, vec!["alarms%E2%8B%88events", "events"]);
    let db = open(&data).await;
    assert_eq!(rows(&db, "SELECT * FROM kpi_1m").await, want);
    assert!(
        rows(
            &db,
            "SELECT checkpoint_epoch FROM weir.sources WHERE name = 'events'"
        )
        .await[0]
            != "0"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
