//! Findings of a hostile test (issue 22), each against the real `weir` binary or the
//! database it serves: one request must never take the process down, an error must mean
//! no change, and what a bad input costs is bounded.

mod common;

use std::time::Duration;

use common::process::{int, Weir};
use common::*;
use datafusion::arrow::array::Array;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// `events.jsonl` in `dir`: `count` seed events at `rate` per second of event time, with
/// `edit` applied to their lines first.
fn events_file(
    dir: &std::path::Path,
    rate: u64,
    count: u64,
    edit: impl FnOnce(&mut Vec<String>),
) -> std::path::PathBuf {
    let path = dir.join("events.jsonl");
    let mut lines = event_lines(&common::alerts::generator(rate), count, 0);
    edit(&mut lines);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// The SQLSTATE of a statement that must fail.
async fn sqlstate(client: &Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(_) => panic!("{} succeeded", &sql[..sql.len().min(200)]),
        Err(e) => e
            .as_db_error()
            .unwrap_or_else(|| panic!("no error response for {}: {e}", &sql[..sql.len().min(200)]))
            .code()
            .code()
            .to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_statement_never_takes_the_server_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start(dir.path());
    let client = weir.connect().await;
    // Deep expressions, long AND chains, thousands of UNIONs: 54001, not a stack overflow.
    for sql in [
        format!("SELECT {}1", "1+".repeat(2000)),
        format!("SELECT 1 WHERE {}true", "true AND ".repeat(2000)),
        format!("SELECT {}'a'", "'a'||".repeat(5000)),
        format!("SELECT 1{}", " UNION ALL SELECT 1".repeat(5000)),
        format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000)),
    ] {
        assert_eq!(sqlstate(&client, &sql).await, "54001");
    }
    // Below the limits the same shapes are answered.
    let sum = format!("SELECT ({}1)::BIGINT", "1+".repeat(900));
    assert_eq!(int(&client, &sum).await, 901);
    // Window arguments that would allocate without bound: 22023 with the allowed range.
    exec_ok(
        &client,
        "CREATE SOURCE g (source TEXT, \"timestamp\" TIMESTAMPTZ, \
         WATERMARK FOR \"timestamp\" AS \"timestamp\" - INTERVAL '1 second') \
         WITH (connector = 'datagen', rate = '10')",
    )
    .await;
    assert_eq!(
        sqlstate(
            &client,
            "SELECT count(*) FROM HOP(g, \"timestamp\", INTERVAL '1 nanosecond', INTERVAL '1 day')"
        )
        .await,
        "22023"
    );
    // Sizes and durations out of range: 22023 when created, not an abort when run.
    let path = dir.path().join("tiny.jsonl");
    std::fs::write(&path, "{}\n").unwrap();
    for (sql, state) in [
        (
            format!(
                "CREATE SOURCE f (x TEXT) WITH (connector = 'file', path = '{}', chunk_bytes = '99999999999999')",
                path.display()
            ),
            "22023",
        ),
        (
            "CREATE SOURCE d (x TEXT) WITH (connector = 'datagen', burst_every = '99999999999999999999s', burst_length = '1s', burst_error_rate = '0.5', burst_sources = '1')".to_string(),
            "22023",
        ),
    ] {
        assert_eq!(sqlstate(&client, &sql).await, state, "{sql}");
    }
    // Any SQL user could read any file the server can: only the configured directories.
    assert_eq!(
        sqlstate(
            &client,
            "CREATE SOURCE sh (l TEXT) WITH (connector = 'file', path = '/etc/shadow')"
        )
        .await,
        "22023"
    );
    // The server lives and answers the next client.
    let other = weir.connect().await;
    assert_eq!(int(&other, "SELECT 2::BIGINT").await, 2);
    assert!(
        weir.child.try_wait().unwrap().is_none(),
        "{}",
        weir.log_text()
    );
}

async fn exec_ok(client: &Client, sql: &str) {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_get_53300_and_the_others_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start_with(dir.path(), &[("WEIR_MAX_CONNECTIONS", "3")]);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(weir.connect().await);
    }
    let conn = format!("host=127.0.0.1 port={} user=weir dbname=weir", weir.port);
    let e = match tokio_postgres::connect(&conn, NoTls).await {
        Ok(_) => panic!("a fourth connection was accepted"),
        Err(e) => e,
    };
    assert_eq!(e.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{e}");
    for c in &open {
        assert_eq!(int(c, "SELECT 1::BIGINT").await, 1);
    }
    // A closed connection frees its slot.
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = weir.connect().await;
    assert_eq!(int(&again, "SELECT 3::BIGINT").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_that_cannot_be_written_to_the_catalog_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = events_file(dir.path(), 50, 600, |_| {});
    let data = dir.path().join("data");
    let db = persistent_db(&data, Duration::from_millis(100)).await;
    exec(&db, &create_source(&path)).await;
    // catalog.json cannot be replaced while a non-empty directory has its name (tests run
    // as root, so permissions would not stop the write).
    let catalog = data.join("catalog.json");
    std::fs::remove_file(&catalog).unwrap();
    std::fs::create_dir_all(catalog.join("blocked")).unwrap();
    let mut session = weir_sql::Session::default();
    for sql in [
        "CREATE MATERIALIZED VIEW v AS SELECT source, \"timestamp\" FROM events",
        "CREATE SOURCE other (x TEXT) WITH (connector = 'datagen')",
        "DROP SOURCE events CASCADE",
    ] {
        let e = db.run(&mut session, sql).await.unwrap_err();
        assert_eq!(e.sqlstate(), "58030", "{sql}: {e}");
    }
    let e = db.query("SELECT * FROM v").await.unwrap_err();
    assert_eq!(e.sqlstate(), "42P01", "{e}");
    let e = db.query("SELECT * FROM other").await.unwrap_err();
    assert_eq!(e.sqlstate(), "42P01", "{e}");
    assert_eq!(
        common::kafka::int(
            &db,
            "SELECT count(*) FROM weir.sources WHERE name = 'events'"
        )
        .await,
        1,
        "the failed DROP left the source"
    );
    // Once the catalog can be written, the same statement works.
    std::fs::remove_dir_all(&catalog).unwrap();
    exec(
        &db,
        "CREATE MATERIALIZED VIEW v AS SELECT source, \"timestamp\" FROM events",
    )
    .await;
    wait_caught_up(&db, "events").await;
    let rows: usize = db
        .query("SELECT * FROM v")
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 600);
    db.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_garbage_lines_cost_a_bounded_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let path = events_file(dir.path(), 50, 100, |lines| {
        let garbage = "x".repeat(3 << 20);
        lines.insert(50, garbage.clone());
        lines.insert(10, garbage);
    });
    let db = memory_db().await;
    exec(
        &db,
        &format!(
            "{};\nCREATE MATERIALIZED VIEW v AS SELECT source FROM events",
            create_source(&path)
        ),
    )
    .await;
    wait_caught_up(&db, "events").await;
    let batches = db.query("SELECT raw FROM weir.dead_letters").await.unwrap();
    let raws: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let a = datafusion::arrow::compute::cast(
                b.column(0),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            let a = a
                .as_any()
                .downcast_ref::<datafusion::arrow::array::StringArray>()
                .unwrap()
                .clone();
            (0..a.len()).map(move |i| a.value(i).to_string())
        })
        .collect();
    assert_eq!(raws.len(), 2, "{raws:?}");
    for raw in &raws {
        assert!(raw.len() < 2048, "{} bytes kept", raw.len());
        assert!(raw.contains(&format!("{} bytes in all", 3 << 20)), "{raw}");
    }
    db.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_from_the_far_future_is_a_dead_letter_not_the_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let path = events_file(dir.path(), 50, 1000, |lines| {
        let mut future: serde_json::Value = serde_json::from_str(&lines[100]).unwrap();
        future["timestamp"] = "2200-01-01T00:00:00Z".into();
        lines.insert(100, future.to_string());
    });
    let db = memory_db().await;
    exec(
        &db,
        &format!(
            "{};\nCREATE MATERIALIZED VIEW v AS SELECT source, \"timestamp\" FROM events",
            create_source(&path)
        ),
    )
    .await;
    wait_caught_up(&db, "events").await;
    let int = |sql: &'static str| {
        let db = db.clone();
        async move { common::kafka::int(&db, sql).await }
    };
    assert_eq!(
        int("SELECT count(*) FROM v").await,
        1000,
        "every valid event counts"
    );
    assert_eq!(int("SELECT late_events FROM weir.sources").await, 0);
    assert_eq!(
        int("SELECT count(*) FROM weir.dead_letters WHERE error LIKE '%max_future%'").await,
        1
    );
    // A bad value is refused when the source is created.
    let mut session = weir_sql::Session::default();
    let e = db
        .run(
            &mut session,
            "CREATE SOURCE x (t TIMESTAMPTZ) WITH (connector = 'datagen', max_future = 'soon')",
        )
        .await
        .unwrap_err();
    assert_eq!(e.sqlstate(), "22023", "{e}");
    db.shutdown();
}

/// A raw protocol session on `port`, after startup and the first ReadyForQuery.
async fn raw_session(port: u16) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut startup = Vec::new();
    startup.extend_from_slice(&196608i32.to_be_bytes());
    startup.extend_from_slice(b"user\0weir\0database\0weir\0\0");
    let mut message = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
    message.extend_from_slice(&startup);
    s.write_all(&message).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(5).any(|w| w == [b'Z', 0, 0, 0, 5]) {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed during startup");
        seen.extend_from_slice(&buf[..n]);
    }
    s
}

/// A typed protocol message.
fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protocol_messages_are_answered_08p01_and_the_server_lives() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start(dir.path());
    let _ = weir.connect().await;
    let parse = message(b'P', b"s1\0SELECT 1\0\0\0");
    let bind = message(b'B', b"\0s1\0\0\0\0\0\0\0");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // A Bind that claims -5 parameters (panicked inside the decoder).
        (
            "bind with a negative count",
            [
                parse.clone(),
                message(b'B', b"\0s1\0\0\0\xff\xfb"),
                message(b'S', b""),
            ]
            .concat(),
        ),
        // A Query whose length is shorter than its own length field (was executed).
        (
            "query of length 0",
            [vec![b'Q', 0, 0, 0, 0], b"SELECT 1\0".to_vec()].concat(),
        ),
        (
            "query of length 3",
            [vec![b'Q', 0, 0, 0, 3], b"SELECT 1\0".to_vec()].concat(),
        ),
        // An Execute without max_rows (hung waiting for bytes of the next message).
        (
            "execute without max_rows",
            [parse.clone(), bind.clone(), message(b'E', b"\0")].concat(),
        ),
    ];
    for (case, bytes) in cases {
        let mut s = raw_session(weir.port).await;
        s.write_all(&bytes).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "{case}: no answer within 10 s");
        assert!(
            rest.windows(5).any(|w| w == b"08P01"),
            "{case}: no 08P01 error: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
    // Well-formed extended queries still work, on a raw session and through a driver.
    let mut s = raw_session(weir.port).await;
    let execute = message(b'E', b"\0\0\0\0\0");
    s.write_all(&[parse, bind, execute, message(b'S', b"")].concat())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(5).any(|w| w == [b'Z', 0, 0, 0, 5]) {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("an answer to a well-formed Execute")
            .unwrap();
        assert!(n > 0, "closed");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(seen.contains(&b'D'), "a DataRow: {seen:?}");
    let client = weir.connect().await;
    assert_eq!(int(&client, "SELECT 1::BIGINT").await, 1);
    assert!(
        weir.child.try_wait().unwrap().is_none(),
        "{}",
        weir.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_and_cancel_requests_stop_a_runaway_query() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start(dir.path());
    let client = weir.connect().await;
    let forever =
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t";
    client
        .simple_query("SET statement_timeout = '500ms'")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(sqlstate(&client, forever).await, "57014");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(int(&client, "SELECT 1::BIGINT").await, 1);
    assert_eq!(
        sqlstate(&client, "SET statement_timeout = 'soon'").await,
        "22023"
    );

    // psql's Ctrl-C: a CancelRequest for the connection's pid and secret key.
    let other = weir.connect().await;
    let token = other.cancel_token();
    let running = tokio::spawn(async move {
        let r = other.simple_query(forever).await;
        (r.map(|_| ()), other)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(NoTls).await.unwrap();
    let (result, other) = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the cancelled query ended")
        .unwrap();
    let e = result.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    assert_eq!(int(&other, "SELECT 1::BIGINT").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_cascade_killed_midway_leaves_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = events_file(dir.path(), 100, 6000, |_| {});
    let mut weir = Weir::start(dir.path());
    for (round, delay_us) in [200u64, 1_000, 3_000].into_iter().enumerate() {
        let client = weir.connect().await;
        let setup = format!(
            "{};\nCREATE MATERIALIZED VIEW kpi_1m AS {};\n\
             CREATE MATERIALIZED VIEW kpi2 AS SELECT source, window_start, count FROM kpi_1m;\n\
             CREATE MATERIALIZED VIEW raw AS SELECT source, \"timestamp\" FROM events;\n{};",
            create_source(&path),
            kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '1 minute')"),
            weir_server::demo::outlier_alert("outliers", "events", "1 minute"),
        );
        client
            .batch_execute(&setup)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {:?}", e.as_db_error()));
        // Checkpoints of every pipeline exist before the DROP.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let dropping = tokio::spawn(async move {
            let _ = client.batch_execute("DROP SOURCE events CASCADE").await;
        });
        tokio::time::sleep(Duration::from_micros(delay_us)).await;
        weir.kill_and_restart();
        dropping.abort();
        let client = weir.connect().await;
        let objects = int(
            &client,
            "SELECT count(*) FROM weir.views WHERE name IN ('kpi_1m', 'kpi2', 'raw')",
        )
        .await
            + int(
                &client,
                "SELECT count(*) FROM weir.alert_rules WHERE name = 'outliers'",
            )
            .await;
        let sources = int(
            &client,
            "SELECT count(*) FROM weir.sources WHERE name = 'events'",
        )
        .await;
        assert!(
            (objects, sources) == (0, 0) || (objects, sources) == (4, 1),
            "round {round}: {objects} views and {sources} sources after the restart:\n{}",
            weir.log_text()
        );
        if sources == 1 {
            // The survivors work: state restored or rebuilt, no source in error.
            let status: String = client
                .query_one("SELECT status FROM weir.sources WHERE name = 'events'", &[])
                .await
                .unwrap()
                .get(0);
            assert!(!status.starts_with("error"), "round {round}: {status}");
            common::process::wait_for(
                &weir,
                &client,
                "SELECT count(*) FROM raw",
                6000,
                Duration::from_secs(60),
            )
            .await;
            client
                .batch_execute("DROP SOURCE events CASCADE")
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_the_memory_pool_gets_53200_and_others_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    // 32 MiB: with two sort partitions each gets half, which must hold the 10 MiB a sort
    // reserves for merging its spill files (16 MiB failed now and then).
    let mut weir = Weir::start_with(dir.path(), &[("WEIR_QUERY_MEMORY_MB", "32")]);
    let client = weir.connect().await;
    assert_eq!(
        sqlstate(
            &client,
            "SELECT cardinality(array_agg(x)) FROM generate_series(1, 20000000) t(x)"
        )
        .await,
        "53200"
    );
    // A sort larger than the pool spills to disk and finishes.
    assert_eq!(
        int(
            &client,
            "SELECT x FROM generate_series(1, 4000000) t(x) ORDER BY x DESC OFFSET 3999999"
        )
        .await,
        1
    );
    let other = weir.connect().await;
    assert_eq!(int(&other, "SELECT 1::BIGINT").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_catalog_is_an_error_not_an_empty_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = events_file(dir.path(), 50, 600, |_| {});
    let data = dir.path().join("data");
    let db = persistent_db(&data, Duration::from_millis(50)).await;
    exec(
        &db,
        &format!(
            "{};\nCREATE MATERIALIZED VIEW v AS SELECT source FROM events",
            create_source(&path)
        ),
    )
    .await;
    wait_caught_up(&db, "events").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    db.shutdown();
    drop(db);
    let catalog = data.join("catalog.json");
    let saved = std::fs::read(&catalog).unwrap();
    std::fs::remove_file(&catalog).unwrap();
    let options = weir_sql::DatabaseOptions::persistent(&data, weir_connectors::register_all());
    let e = weir_sql::Database::open(options).await.unwrap_err();
    assert_eq!(e.sqlstate(), "58030", "{e}");
    assert!(e.to_string().contains("catalog.json is missing"), "{e}");
    // Restored, the views come back with their state.
    std::fs::write(&catalog, saved).unwrap();
    let db = persistent_db(&data, Duration::from_millis(50)).await;
    wait_caught_up(&db, "events").await;
    assert_eq!(common::kafka::int(&db, "SELECT count(*) FROM v").await, 600);
    db.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_server_backs_off_quietly_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start(dir.path());
    let client = weir.connect().await;
    // The process may hold 64 descriptors from now on; idle clients take the rest.
    let limited = std::process::Command::new("prlimit")
        .args(["--pid", &weir.child.id().to_string(), "--nofile=64:64"])
        .status()
        .expect("prlimit (util-linux) lowers the server's descriptor limit");
    assert!(limited.success());
    let mut idle = Vec::new();
    for _ in 0..150 {
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", weir.port)).await {
            idle.push(s);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The clients already connected keep being answered, and the log does not flood.
    assert_eq!(int(&client, "SELECT 1::BIGINT").await, 1);
    let log = weir.log_text();
    let failures = log.matches("accept failed").count();
    assert!(
        (1..=3).contains(&failures),
        "{failures} 'accept failed' lines in 2 s"
    );
    // Once descriptors are free again, new clients get in.
    drop(idle);
    let again = tokio::time::timeout(Duration::from_secs(20), weir.connect())
        .await
        .expect("a new connection after the idle clients left");
    assert_eq!(int(&again, "SELECT 2::BIGINT").await, 2);
}

/// `weir` with `args`, without the test's own `WEIR_*` variables.
fn weir_command(args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_weir"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("WEIR_")) {
        command.env_remove(key);
    }
    command.args(args);
    command
}

#[test]
fn serving_other_machines_needs_credentials_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    // pgwire (no passwords yet) or REST without tokens on a non-loopback address: refused,
    // with the way out.
    for (pg, http, says) in [
        ("0.0.0.0:0", "127.0.0.1:0", "pgwire on 0.0.0.0:"),
        ("127.0.0.1:0", "0.0.0.0:0", "REST on 0.0.0.0:"),
    ] {
        let out = weir_command(&["--data-dir", data, "--pg-addr", pg, "--http-addr", http])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(says) && stderr.contains("--insecure"),
            "{stderr}"
        );
    }
    // --insecure starts, and says so in the log.
    let log = dir.path().join("insecure.log");
    let mut child = weir_command(&[
        "--data-dir",
        data,
        "--pg-addr",
        "0.0.0.0:0",
        "--http-addr",
        "127.0.0.1:0",
        "--insecure",
    ])
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("INSECURE: serving pgwire on 0.0.0.0:") {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "weir exited:\n{text}");
        assert!(
            std::time::Instant::now() < deadline,
            "no INSECURE warning:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
