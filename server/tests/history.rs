//! Retention and Parquet history (issue 14): rows past a view's retention leave memory for
//! Parquet files at a checkpoint, and the view still answers with every row exactly once —
//! equal to the same view kept wholly in memory, before and after `kill -9`. The files are
//! plain Parquet: the `parquet` crate reads them without Weir.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::process::{int, Weir};
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use tokio_postgres::Client;

/// One minute of event time: 60,000 events over 3 sources, 1-second windows.
const SOURCE: &str = "CREATE SOURCE ev (source TEXT, \"timestamp\" TIMESTAMPTZ, \
    WATERMARK FOR \"timestamp\" AS \"timestamp\" - INTERVAL '1 second') \
    WITH (connector = 'datagen', count = '60000', rate = '1000', sources = '3', seed = '5', \
          start = '2026-11-27T10:00:00Z', realtime = 'false')";
const QUERY: &str = "SELECT source, window_start, window_end, count(*) AS count \
    FROM TUMBLE(ev, \"timestamp\", INTERVAL '1 second') GROUP BY source, window_start, window_end";

/// Every row of `sql`, as text.
async fn rows(client: &Client, sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    for m in client.simple_query(sql).await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            let cells: Vec<&str> = (0..r.len()).map(|i| r.get(i).unwrap_or("NULL")).collect();
            out.push(cells.join("|"));
        }
    }
    out
}

/// The Parquet files under `dir`, recursively.
fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(parquet_files(&p));
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out
}

/// The history files the checkpoint manifests name for `view`.
fn manifest_files(data: &Path, view: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for source in std::fs::read_dir(data.join("checkpoints"))
        .unwrap()
        .flatten()
    {
        for pipeline in std::fs::read_dir(source.path()).unwrap().flatten() {
            let Ok(text) = std::fs::read_to_string(pipeline.path().join("MANIFEST.json")) else {
                continue;
            };
            let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
            for v in manifest["views"].as_array().unwrap() {
                if v["name"] == view {
                    for f in v["history"].as_array().unwrap() {
                        out.push(data.join("history").join(f["path"].as_str().unwrap()));
                    }
                }
            }
        }
    }
    out
}

/// Memory + history of `kpi` against `kpi_all` (the same query, all in memory).
async fn assert_complete(client: &Client, weir: &Weir) {
    let data = weir.data.as_path();
    let all = rows(
        client,
        "SELECT source, window_start, count FROM kpi_all ORDER BY 1, 2",
    )
    .await;
    let kept = rows(
        client,
        "SELECT source, window_start, count FROM kpi ORDER BY 1, 2",
    )
    .await;
    assert_eq!(all.len(), 180, "60 one-second windows × 3 sources");
    assert_eq!(kept, all, "memory + history equals the view kept in memory");
    // A range that history files prune on, and one that ends in memory.
    for range in [
        "window_start < '2026-11-27T10:00:20Z'",
        "window_start BETWEEN '2026-11-27T10:00:30Z' AND '2026-11-27T10:00:55Z'",
    ] {
        let a = rows(
            client,
            &format!("SELECT source, window_start, count FROM kpi_all WHERE {range} ORDER BY 1, 2"),
        )
        .await;
        let k = rows(
            client,
            &format!("SELECT source, window_start, count FROM kpi WHERE {range} ORDER BY 1, 2"),
        )
        .await;
        assert_eq!(k, a, "{range}");
    }
    let lookup = "SELECT window_start, count FROM kpi WHERE source = 'src-0001' ORDER BY 1";
    let lookup_all = "SELECT window_start, count FROM kpi_all WHERE source = 'src-0001' ORDER BY 1";
    assert_eq!(rows(client, lookup).await, rows(client, lookup_all).await);
    assert_eq!(
        int(client, "SELECT sum(count)::BIGINT FROM kpi").await,
        60_000
    );
    // /series pages through memory and history alike.
    for range in ["", "&from=2026-11-27T10:00:20Z&to=2026-11-27T10:00:55Z"] {
        let mut pages = [Vec::new(), Vec::new()];
        for (view, rows) in ["kpi", "kpi_all"].iter().zip(pages.iter_mut()) {
            let mut cursor = String::new();
            loop {
                let path = format!("/series?view={view}&source=src-0002&limit=7{range}{cursor}");
                let (status, body) = weir.get(&path).await;
                assert_eq!(status, 200, "{path}: {body}");
                rows.extend(body["rows"].as_array().unwrap().iter().cloned());
                match body["next_cursor"].as_str() {
                    Some(c) => cursor = format!("&cursor={c}"),
                    None => break,
                }
            }
        }
        assert!(!pages[0].is_empty());
        assert_eq!(pages[0], pages[1], "/series{range}");
    }
    // weir.views: most rows are in history, the rest in memory, none in both.
    let memory = int(
        client,
        "SELECT rows::BIGINT FROM weir.views WHERE name = 'kpi'",
    )
    .await;
    let history = int(
        client,
        "SELECT history_rows::BIGINT FROM weir.views WHERE name = 'kpi'",
    )
    .await;
    eprintln!("kpi: {memory} rows in memory, {history} in history");
    assert_eq!(memory + history, 180, "memory {memory} + history {history}");
    assert!(
        history >= 100,
        "rows older than 10 s of event time left memory: {history}"
    );
    // The files the manifests name are plain Parquet, and hold exactly the rows weir.views
    // counts (files merged away stay on disk for a minute).
    let files = manifest_files(data, "kpi");
    assert!(!files.is_empty());
    assert!(parquet_files(&data.join("history")).len() >= files.len());
    let in_files: i64 = files
        .iter()
        .map(|f| {
            let reader = SerializedFileReader::new(std::fs::File::open(f).unwrap()).unwrap();
            reader.metadata().file_metadata().num_rows()
        })
        .sum();
    assert_eq!(in_files, history);
    // /metrics: the same figures for Prometheus.
    let (_, metrics) =
        common::http_text(([127, 0, 0, 1], weir.http).into(), "GET", "/metrics", "").await;
    assert!(
        metrics.contains(&format!("weir_view_history_rows{{view=\"kpi\"}} {history}")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("weir_view_rows{{view=\"kpi\"}} {memory}")),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_process_resident_memory_bytes "),
        "{metrics}"
    );
    let listed = int(
        client,
        "SELECT history_files::BIGINT FROM weir.views WHERE name = 'kpi'",
    )
    .await;
    assert_eq!(listed as usize, files.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_past_retention_move_to_parquet_and_every_row_stays_queryable_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    // The server's default retention applies to a view that names none.
    let mut weir = Weir::start_with(
        dir.path(),
        &[
            ("WEIR_VIEW_RETENTION", "10 seconds"),
            ("WEIR_VIEW_HISTORY", "30 days"),
        ],
    );
    let client = weir.connect().await;
    client.batch_execute(SOURCE).await.unwrap();
    client
        .batch_execute(&format!("CREATE MATERIALIZED VIEW kpi AS {QUERY}"))
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "CREATE MATERIALIZED VIEW kpi_all WITH (retention = 'none') AS {QUERY}"
        ))
        .await
        .unwrap();
    let show = rows(&client, "SHOW CREATE MATERIALIZED VIEW kpi")
        .await
        .join("\n");
    assert!(
        show.contains("retention = '10 seconds'") && show.contains("history = '30 days'"),
        "{show}"
    );
    // Until the input is read and the last checkpoint has moved rows to history.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = int(
            &client,
            "SELECT count(*)::BIGINT FROM weir.sources WHERE name = 'ev' AND caught_up",
        )
        .await;
        let history = int(
            &client,
            "SELECT history_rows::BIGINT FROM weir.views WHERE name = 'kpi'",
        )
        .await;
        let memory = int(
            &client,
            "SELECT rows::BIGINT FROM weir.views WHERE name = 'kpi'",
        )
        .await;
        if done == 1 && history > 0 && history + memory == 180 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "history_rows {history}, rows {memory}:\n{}",
            weir.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_complete(&client, &weir).await;
    // A view created over a view with history starts from all of its rows.
    for (name, over) in [("kpi_10s", "kpi"), ("kpi_10s_all", "kpi_all")] {
        client
            .batch_execute(&format!(
                "CREATE MATERIALIZED VIEW {name} WITH (retention = 'none') AS \
                 SELECT source, window_start, sum(count) AS n \
                 FROM TUMBLE({over}, window_start, INTERVAL '10 seconds') GROUP BY source, window_start"
            ))
            .await
            .unwrap();
    }
    let ten = "SELECT source, window_start, n FROM kpi_10s ORDER BY 1, 2";
    let ten_all = "SELECT source, window_start, n FROM kpi_10s_all ORDER BY 1, 2";
    assert_eq!(
        rows(&client, ten).await.len(),
        18,
        "6 ten-second windows × 3 sources"
    );
    assert_eq!(rows(&client, ten).await, rows(&client, ten_all).await);
    client
        .batch_execute("ALTER MATERIALIZED VIEW kpi SET (history = '60 days')")
        .await
        .unwrap();
    drop(client);
    weir.kill_and_restart();
    let client = weir.connect().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while int(&client, "SELECT count(*)::BIGINT FROM kpi_all").await < 180 {
        assert!(Instant::now() < deadline, "{}", weir.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_complete(&client, &weir).await;
    let show = rows(&client, "SHOW CREATE MATERIALIZED VIEW kpi")
        .await
        .join("\n");
    assert!(
        show.contains("history = '60 days'"),
        "ALTER survives kill -9: {show}"
    );
    let ten = "SELECT source, window_start, n FROM kpi_10s ORDER BY 1, 2";
    let ten_all = "SELECT source, window_start, n FROM kpi_10s_all ORDER BY 1, 2";
    assert_eq!(rows(&client, ten).await, rows(&client, ten_all).await);
    // Dropping the view deletes its history.
    client
        .batch_execute("DROP MATERIALIZED VIEW kpi CASCADE")
        .await
        .unwrap();
    assert!(parquet_files(&weir.data.join("history")).is_empty());
}

/// `kill -9` at instants spread over a run that moves rows to history every 100 ms and
/// merges the files: afterwards every window is there exactly once (equal to the same view
/// kept in memory, and to the number of events), and the Parquet files the manifest names,
/// read without Weir, hold exactly the rows that are not in memory. Sizes:
/// `WEIR_HISTORY_SECONDS` of events at 20,000/s (12), `WEIR_HISTORY_KILLS` (3) —
/// `loadtests/history_kills.sh` runs it long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_moves_and_merges_loses_and_repeats_no_window() {
    let seconds = common::env_u64("WEIR_HISTORY_SECONDS", 12) as i64;
    let kills = common::env_u64("WEIR_HISTORY_KILLS", 3);
    let events = seconds * 20_000;
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start_with(dir.path(), &[("WEIR_CHECKPOINT_INTERVAL", "100ms")]);
    let client = weir.connect().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE ev (source TEXT, \"timestamp\" TIMESTAMPTZ, \
             WATERMARK FOR \"timestamp\" AS \"timestamp\" - INTERVAL '1 second') \
             WITH (connector = 'datagen', count = '{events}', rate = '20000', sources = '20', \
                   seed = '9', realtime = 'true')"
        ))
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "CREATE MATERIALIZED VIEW kpi WITH (retention = '2 seconds', history = '30 days') AS {QUERY}; \
             CREATE MATERIALIZED VIEW kpi_all WITH (retention = 'none') AS {QUERY}"
        ))
        .await
        .unwrap();
    drop(client);
    // Pseudo-random instants (printed, to replay a failure).
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("kill seed {seed}");
    let mut state = seed | 1;
    let spread = (seconds as u64 * 1000 / kills.max(1)).max(1_500);
    for _ in 0..kills {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait = 500 + (state >> 33) % spread;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        weir.kill_and_restart();
    }
    let client = weir.connect().await;
    let deadline = Instant::now() + Duration::from_secs(120 + seconds as u64);
    loop {
        let done = int(
            &client,
            "SELECT count(*)::BIGINT FROM weir.sources WHERE name = 'ev' AND status = 'finished' AND caught_up",
        )
        .await;
        let all = "SELECT coalesce(sum(count), 0)::BIGINT FROM kpi_all";
        if done == 1 && int(&client, all).await == events {
            break;
        }
        assert!(Instant::now() < deadline, "{}", weir.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = rows(
        &client,
        "SELECT source, window_start, count FROM kpi_all ORDER BY 1, 2",
    )
    .await;
    let kept = rows(
        &client,
        "SELECT source, window_start, count FROM kpi ORDER BY 1, 2",
    )
    .await;
    // `seconds` of events from a start that is not on a second: that many windows per
    // source, or one more where the partial first and last seconds hold its events (a
    // sliver of a second may miss some of the 20 sources).
    let windows = seconds as usize * 20;
    assert!(
        (windows..=windows + 20).contains(&all.len()),
        "{}",
        all.len()
    );
    assert_eq!(kept, all, "memory + history equals the view kept in memory");
    assert_eq!(
        int(&client, "SELECT sum(count)::BIGINT FROM kpi").await,
        events
    );
    let memory = int(
        &client,
        "SELECT rows::BIGINT FROM weir.views WHERE name = 'kpi'",
    )
    .await;
    let history = int(
        &client,
        "SELECT history_rows::BIGINT FROM weir.views WHERE name = 'kpi'",
    )
    .await;
    assert_eq!(
        memory + history,
        all.len() as i64,
        "memory {memory} + history {history}"
    );
    assert!(history > 0, "rows moved to history");
    // The files, read by the parquet crate alone: no window twice, each one of kpi_all's.
    let mut in_files = Vec::new();
    for f in manifest_files(&weir.data, "kpi") {
        for batch in read_parquet(&f) {
            let sources = texts(batch.column(0));
            let start = datafusion::arrow::compute::cast(
                batch.column(1),
                &datafusion::arrow::datatypes::DataType::Int64,
            )
            .unwrap();
            let start = start
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .unwrap();
            for (r, source) in sources.into_iter().enumerate() {
                in_files.push((source, start.value(r)));
            }
        }
    }
    let mut unique = in_files.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), in_files.len(), "a window in two files");
    assert_eq!(in_files.len() as i64, history);
}

/// The HTTP ingest log does not grow with uptime: bytes every pipeline has checkpointed
/// past are freed, across `kill -9`; a view created afterwards reads from the log's new
/// start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_log_is_freed_below_the_checkpointed_position() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start(dir.path());
    let mut client = weir.connect().await;
    client
        .batch_execute(
            "CREATE SOURCE pushed (n BIGINT, pad TEXT) WITH (connector = 'http'); \
             CREATE MATERIALIZED VIEW total AS SELECT count(*) AS n, sum(n) AS s FROM pushed",
        )
        .await
        .unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], weir.http).into();
    let pad = "x".repeat(200);
    let mut sent = 0i64;
    for round in 0..2 {
        for _ in 0..10 {
            ingest(addr, &numbered(sent, 2_000, &pad)).await;
            sent += 2_000;
        }
        wait_for_count(
            &weir,
            &client,
            "SELECT coalesce(max(n), 0)::BIGINT FROM total",
            sent,
        )
        .await;
        if round == 0 {
            weir.kill_and_restart();
            client = weir.connect().await;
        }
    }
    let log = weir.data.join("ingest").join("pushed.jsonl");
    // Wait for a checkpoint past the end, then for the release it triggers.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (len, allocated) = loop {
        let meta = std::fs::metadata(&log).unwrap();
        let allocated = meta.blocks() * 512;
        if allocated < meta.len() / 4 {
            break (meta.len(), allocated);
        }
        assert!(
            Instant::now() < deadline,
            "{allocated} of {} bytes still allocated\n{}",
            meta.len(),
            weir.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("ingest log: {len} bytes long, {allocated} allocated");
    assert_eq!(int(&client, "SELECT n FROM total").await, sent);
    assert_eq!(
        int(&client, "SELECT s FROM total").await,
        sent * (sent - 1) / 2,
        "every event once"
    );
    // A new view starts at the log's new start: only events after it, none twice.
    let start: serde_json::Value =
        serde_json::from_slice(&std::fs::read(weir.data.join("ingest/pushed.start")).unwrap())
            .unwrap();
    let first = start["line"].as_i64().unwrap() - 1;
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW later AS SELECT count(*) AS n, min(n) AS lowest FROM pushed",
        )
        .await
        .unwrap();
    ingest(addr, &numbered(sent, 500, "-")).await;
    sent += 500;
    wait_for_count(
        &weir,
        &client,
        "SELECT coalesce(max(n), 0)::BIGINT FROM later",
        sent - first,
    )
    .await;
    wait_for_count(&weir, &client, "SELECT n FROM total", sent).await;
    assert_eq!(
        rows(&client, "SELECT n, lowest FROM later").await,
        vec![format!("{}|{first}", sent - first)]
    );
}

async fn wait_for_count(weir: &Weir, client: &Client, sql: &str, want: i64) {
    common::process::wait_for(weir, client, sql, want, Duration::from_secs(60)).await;
}

/// The raw event archive: a Parquet sink over a source, killed -9 while it writes, holds
/// every event exactly once, in hourly partitions of event time that the parquet crate
/// reads without Weir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parquet_archive_of_raw_events_holds_each_event_once_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start(dir.path());
    let client = weir.connect().await;
    client
        .batch_execute(&format!(
            "{};\nCREATE SINK raw FROM ev WITH (connector = 'parquet', path = 'archive/raw', batch_rows = '5000')",
            weir_server::demo::seed_source(
                "ev",
                "connector = 'datagen', count = '60000', rate = '20000', sources = '5', seed = '3', realtime = 'true'"
            )
        ))
        .await
        .unwrap();
    let show = rows(
        &client,
        "SELECT definition FROM weir.sinks WHERE name = 'raw'",
    )
    .await
    .join("\n");
    assert!(show.contains("time = 'timestamp'"), "{show}");
    drop(client);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    weir.kill_and_restart();
    let client = weir.connect().await;
    let archive = weir.data.join("archive/raw");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut ids = loop {
        let finished = int(
            &client,
            "SELECT count(*)::BIGINT FROM weir.sources WHERE name = 'ev' AND status = 'finished'",
        )
        .await;
        let idle = int(
            &client,
            "SELECT count(*)::BIGINT FROM weir.sinks WHERE name = 'raw' AND backlog = 0",
        )
        .await;
        if finished == 1 && idle == 1 {
            let ids = archived_ids(&archive);
            if ids.len() >= 60_000 {
                break ids;
            }
        }
        assert!(Instant::now() < deadline, "{}", weir.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ids.len(), 60_000, "rows in the archive");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 60_000, "distinct event ids in the archive");
    let partitions = parquet_files(&archive)
        .iter()
        .filter_map(|f| {
            Some(
                f.parent()?
                    .strip_prefix(&archive)
                    .ok()?
                    .display()
                    .to_string(),
            )
        })
        .collect::<std::collections::BTreeSet<_>>();
    assert!(
        partitions
            .iter()
            .all(|p| p.starts_with("date=") && p.contains("/hour=")),
        "{partitions:?}"
    );
}

/// The `event_id` of every row in the Parquet files under `dir`.
fn archived_ids(dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for f in parquet_files(dir) {
        for batch in read_parquet(&f) {
            ids.extend(texts(batch.column_by_name("event_id").unwrap()));
        }
    }
    ids
}

/// Every row of a Parquet file, read by the parquet crate alone.
fn read_parquet(path: &Path) -> Vec<datafusion::arrow::record_batch::RecordBatch> {
    datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(path).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap()
    .map(|b| b.unwrap())
    .collect()
}

/// A column's values as text.
fn texts(column: &datafusion::arrow::array::ArrayRef) -> Vec<String> {
    let format = datafusion::arrow::util::display::ArrayFormatter::try_new(
        column.as_ref(),
        &Default::default(),
    )
    .unwrap();
    (0..column.len())
        .map(|r| format.value(r).to_string())
        .collect()
}

/// History in S3-compatible object storage (`history_url`, against moto's server): rows
/// move to Parquet objects in the bucket, nothing to the data dir, and the view answers
/// exactly as one kept in memory, before and after `kill -9`; dropping it deletes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_in_object_storage_is_one_relation_with_memory_across_kill_9() {
    let s3 = common::s3::S3Server::start().await;
    let (status, body) = common::http_text(s3.addr, "PUT", "/weir-history", "").await;
    assert_eq!(status, 200, "creating the bucket: {body}");
    let endpoint = format!("http://{}", s3.addr);
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start_with(
        dir.path(),
        &[
            ("WEIR_HISTORY_URL", "s3://weir-history/views"),
            ("AWS_ENDPOINT", &endpoint),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "weir-test"),
            ("AWS_SECRET_ACCESS_KEY", "weir-test"),
            ("AWS_REGION", "us-east-1"),
        ],
    );
    let client = weir.connect().await;
    client.batch_execute(SOURCE).await.unwrap();
    client
        .batch_execute(&format!(
            "CREATE MATERIALIZED VIEW kpi WITH (retention = '10 seconds', history = '30 days') AS {QUERY}; \
             CREATE MATERIALIZED VIEW kpi_all WITH (retention = 'none') AS {QUERY}; \
             CREATE SINK raw FROM ev WITH (connector = 'parquet', path = 's3://weir-history/raw')"
        ))
        .await
        .unwrap();
    let settled = "SELECT (rows + history_rows)::BIGINT FROM weir.views WHERE name = 'kpi' AND history_rows > 0";
    let deadline = Instant::now() + Duration::from_secs(120);
    while rows(&client, settled).await != vec!["180".to_string()] {
        assert!(Instant::now() < deadline, "{}", weir.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = "SELECT source, window_start, count FROM kpi_all ORDER BY 1, 2";
    let kept = "SELECT source, window_start, count FROM kpi ORDER BY 1, 2";
    let range = "SELECT source, window_start, count FROM kpi \
        WHERE window_start < '2026-11-27T10:00:20Z' ORDER BY 1, 2";
    let range_all = range.replace("FROM kpi", "FROM kpi_all");
    assert_eq!(rows(&client, kept).await, rows(&client, all).await);
    assert_eq!(rows(&client, range).await, rows(&client, &range_all).await);
    let files = int(
        &client,
        "SELECT history_files::BIGINT FROM weir.views WHERE name = 'kpi'",
    )
    .await;
    let objects = s3
        .keys_ending("weir-history", "views/kpi/", ".parquet")
        .await;
    assert!(
        files > 0 && objects >= files as usize,
        "{files} history files, {objects} objects"
    );
    assert!(
        parquet_files(&weir.data.join("history")).is_empty(),
        "nothing goes to the data dir"
    );
    // The raw archive sink writes hourly objects to the bucket too.
    let sink_done = "SELECT count(*)::BIGINT FROM weir.sinks WHERE name = 'raw' AND backlog = 0 AND rows_written = 60000";
    while int(&client, sink_done).await != 1 {
        assert!(Instant::now() < deadline, "{}", weir.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        s3.keys_ending("weir-history", "raw/date=2026-11-27/hour=10/", ".parquet")
            .await
            >= 1,
        "archive objects"
    );
    drop(client);
    weir.kill_and_restart();
    let client = weir.connect().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while int(&client, "SELECT count(*)::BIGINT FROM kpi_all").await < 180 {
        assert!(Instant::now() < deadline, "{}", weir.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows(&client, kept).await, rows(&client, all).await);
    assert_eq!(
        int(&client, "SELECT sum(count)::BIGINT FROM kpi").await,
        60_000
    );
    client
        .batch_execute("DROP MATERIALIZED VIEW kpi")
        .await
        .unwrap();
    assert_eq!(
        s3.keys_ending("weir-history", "views/kpi/", ".parquet")
            .await,
        0
    );
}

/// `system_log_retention`: dead letters older than it leave memory for Parquet files under
/// the history root, and `weir.dead_letters` still shows every one once, also after
/// `kill -9`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_dead_letters_move_to_parquet_and_stay_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start_with(dir.path(), &[("WEIR_SYSTEM_LOG_RETENTION", "2 seconds")]);
    let mut client = weir.connect().await;
    client
        .batch_execute(
            "CREATE SOURCE pushed (n BIGINT) WITH (connector = 'http'); \
             CREATE MATERIALIZED VIEW total AS SELECT count(*) AS n FROM pushed",
        )
        .await
        .unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], weir.http).into();
    let count = "SELECT count(*)::BIGINT FROM weir.dead_letters";
    let mut sent = 0;
    for round in 0..3 {
        let body: String = (0..50)
            .map(|i| format!("{{not json {round} {i}\n"))
            .collect();
        ingest(addr, &body).await;
        sent += 50;
        common::process::wait_for(&weir, &client, count, sent, Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_millis(2_500)).await;
    }
    // The first rounds are older than the retention: in files now.
    let archive = weir.data.join("history").join("weir.dead_letters");
    let deadline = Instant::now() + Duration::from_secs(30);
    while parquet_files(&archive).len() < 2 {
        assert!(Instant::now() < deadline, "{}", weir.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let archived: usize = parquet_files(&archive)
        .iter()
        .flat_map(|f| read_parquet(f))
        .map(|b| b.num_rows())
        .sum();
    assert!(archived >= 100, "{archived} rows archived");
    assert_eq!(int(&client, count).await, sent, "every dead letter once");
    let distinct = "SELECT count(DISTINCT location)::BIGINT FROM weir.dead_letters";
    assert_eq!(int(&client, distinct).await, sent);
    weir.kill_and_restart();
    client = weir.connect().await;
    common::process::wait_for(&weir, &client, count, sent, Duration::from_secs(30)).await;
    assert_eq!(
        int(&client, distinct).await,
        sent,
        "none twice after kill -9"
    );
}

/// `count` events `{"n": …, "pad": pad}` numbered from `from`, as JSON lines.
fn numbered(from: i64, count: i64, pad: &str) -> String {
    (from..from + count)
        .map(|n| format!("{{\"n\": {n}, \"pad\": \"{pad}\"}}\n"))
        .collect()
}

/// Pushes JSON lines to source `pushed`; they must be accepted.
async fn ingest(addr: std::net::SocketAddr, body: &str) {
    let (status, reply) = common::http(addr, "POST", "/ingest/pushed", body).await;
    assert_eq!(status, 202, "{reply}");
}
