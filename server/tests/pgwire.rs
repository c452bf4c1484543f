//! The core issue's psql session over the PostgreSQL wire protocol, against a real server.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use tokio::net::TcpListener;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<weir_server::Result<()>>,
}

impl Server {
    async fn start(data_dir: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let config = weir_server::Config {
            data_dir: data_dir.to_path_buf(),
            ..Default::default()
        };
        let task = tokio::spawn(weir_server::run(config, listener, None, async move {
            let _ = rx.await;
        }));
        Server {
            addr,
            stop: Some(tx),
            task,
        }
    }

    async fn client(&self) -> Client {
        let conn = format!(
            "host=127.0.0.1 port={} user=weir dbname=weir",
            self.addr.port()
        );
        let (client, connection) = tokio_postgres::connect(&conn, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

fn rows(messages: &[SimpleQueryMessage]) -> Vec<&tokio_postgres::SimpleQueryRow> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect()
}

async fn sqlstate(client: &Client, sql: &str) -> String {
    let err = client.simple_query(sql).await.expect_err(sql);
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql}: not a server error: {err}"));
    assert!(!db.message().is_empty());
    db.code().code().to_string()
}

/// psql connected to Weir on `port` as `weir`, without a psqlrc.
fn psql_to(port: u16) -> std::process::Command {
    let mut psql = std::process::Command::new("psql");
    psql.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "weir",
        "-d",
        "weir",
        "-X",
    ]);
    psql
}

async fn wait_view_caught_up(client: &Client, view: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = client
            .simple_query(&format!(
                "SELECT caught_up FROM weir.views WHERE name = '{view}'"
            ))
            .await
            .unwrap();
        if rows(&r).first().and_then(|r| r.get(0)) == Some("t") {
            return;
        }
        assert!(Instant::now() < deadline, "{view} did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const KPI_1M: &str = r#"CREATE MATERIALIZED VIEW kpi_1m AS
SELECT source, window_start, window_end,
       count(*) AS count,
       avg(attributes.metric) AS avg_metric,
       approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY attributes.metric) AS p95_metric,
       avg(CASE WHEN attributes.status <> 'ok' THEN 1.0 ELSE 0.0 END) AS error_rate
FROM TUMBLE(events, "timestamp", INTERVAL '1 minute')
GROUP BY source, window_start, window_end;"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_psql_session_works_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("events.jsonl");
    write_events(&file, 200_000, 1, 0, 0);

    let server = Server::start(&data).await;
    let client = server.client().await;
    client
        .batch_execute(&format!("{};\n{KPI_1M}", create_source(&file)))
        .await
        .unwrap();
    wait_view_caught_up(&client, "kpi_1m").await;

    let r = client
        .simple_query("SELECT * FROM kpi_1m WHERE source = 'src-0001' ORDER BY window_start")
        .await
        .unwrap();
    let simple_rows = rows(&r);
    assert!(simple_rows.len() >= 3, "got {} rows", simple_rows.len());
    let ts = simple_rows[0].get("window_start").unwrap();
    assert_eq!(
        ts, "2026-11-27 10:00:00+00",
        "timestamptz in PostgreSQL's text format"
    );
    assert_eq!(simple_rows[0].get("source"), Some("src-0001"));

    // Extended protocol with a parameter: same rows, typed values.
    let typed = client
        .query(
            "SELECT source, count, avg_metric FROM kpi_1m WHERE source = $1 ORDER BY window_start",
            &[&"src-0001"],
        )
        .await
        .unwrap();
    assert_eq!(typed.len(), simple_rows.len());
    let count: i64 = typed[0].get(1);
    assert_eq!(count.to_string(), simple_rows[0].get("count").unwrap());

    let sources = client.simple_query("SHOW SOURCES").await.unwrap();
    assert_eq!(rows(&sources)[0].get("name"), Some("events"));
    let views = client
        .simple_query("SHOW MATERIALIZED VIEWS")
        .await
        .unwrap();
    assert_eq!(rows(&views)[0].get("name"), Some("kpi_1m"));

    // Several statements in one query; empty queries.
    let multi = client
        .simple_query("SELECT 1 AS a; SELECT 2 AS b")
        .await
        .unwrap();
    assert_eq!(rows(&multi).len(), 2);
    client.simple_query(";").await.unwrap();
    client.simple_query("-- ping").await.unwrap();

    // Errors name the problem, carry a SQLSTATE, and keep the connection.
    assert_eq!(sqlstate(&client, "SELEC 1").await, "42601");
    assert_eq!(
        sqlstate(&client, "SELECT * FROM no_such_view").await,
        "42P01"
    );
    assert_eq!(sqlstate(&client, &create_source(&file)).await, "42P07");
    assert_eq!(
        sqlstate(
            &client,
            "CREATE SOURCE s2 (a TEXT) WITH (connector = 'datagen', rate = 'fast')"
        )
        .await,
        "22023"
    );
    assert_eq!(
        sqlstate(
            &client,
            "CREATE SOURCE s3 (a TEXT) WITH (connector = 'nope')"
        )
        .await,
        "22023"
    );
    assert_eq!(sqlstate(&client, "DROP SOURCE events").await, "2BP01");
    assert_eq!(
        sqlstate(&client, "DROP MATERIALIZED VIEW missing").await,
        "42P01"
    );
    assert_eq!(
        sqlstate(&client, "SELECT no_such_column FROM kpi_1m").await,
        "42703"
    );
    assert_eq!(
        sqlstate(&client, "CREATE MATERIALIZED VIEW j AS SELECT a.source FROM kpi_1m a JOIN kpi_1m b ON a.source = b.source").await,
        "0A000"
    );
    let one = client.simple_query("SELECT 1").await.unwrap();
    assert_eq!(rows(&one).len(), 1, "connection still usable after errors");
    let before: Vec<String> = simple_rows
        .iter()
        .map(|r| format!("{:?}", r.get("count")))
        .collect();
    drop(client);
    server.stop().await;

    // Restart on the same data dir: definitions and rows come back.
    let server = Server::start(&data).await;
    let client = server.client().await;
    let views = client
        .simple_query("SHOW MATERIALIZED VIEWS")
        .await
        .unwrap();
    assert_eq!(rows(&views)[0].get("name"), Some("kpi_1m"));
    wait_view_caught_up(&client, "kpi_1m").await;
    let r = client
        .simple_query("SELECT * FROM kpi_1m WHERE source = 'src-0001' ORDER BY window_start")
        .await
        .unwrap();
    let after: Vec<String> = rows(&r)
        .iter()
        .map(|r| format!("{:?}", r.get("count")))
        .collect();
    assert_eq!(after, before);

    client
        .batch_execute("DROP MATERIALIZED VIEW kpi_1m; DROP SOURCE events;")
        .await
        .unwrap();
    let sources = client.simple_query("SHOW SOURCES").await.unwrap();
    assert!(rows(&sources).is_empty());
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_meta_commands_describe_views() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    write_events(&file, 5_000, 2, 0, 0);
    let server = Server::start(&dir.path().join("data")).await;
    let client = server.client().await;
    client
        .batch_execute(&format!("{};\n{KPI_1M}", create_source(&file)))
        .await
        .unwrap();
    wait_view_caught_up(&client, "kpi_1m").await;

    let port = server.addr.port();
    let psql = move |cmd: &'static str| {
        let out = psql_to(port)
            .args(["-c", cmd])
            .output()
            .expect("psql must be installed (apt-get install postgresql-client)");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success() && !stderr.contains("ERROR"),
            "psql -c '{cmd}' failed:\n{stdout}\n{stderr}"
        );
        stdout
    };
    let all = tokio::task::spawn_blocking(move || {
        // \dt lists tables; Weir has none, but the query must work.
        psql("\\dt");
        (
            psql("\\d"),
            psql("\\dm"),
            psql("\\d kpi_1m"),
            psql("SELECT count(*) FROM kpi_1m"),
        )
    })
    .await
    .unwrap();
    assert!(all.0.contains("kpi_1m"), "\\d:\n{}", all.0);
    assert!(
        all.1.contains("kpi_1m") && all.1.contains("materialized view"),
        "\\dm:\n{}",
        all.1
    );
    assert!(
        all.2.contains("window_start") && all.2.contains("timestamp with time zone"),
        "\\d kpi_1m:\n{}",
        all.2
    );
    assert!(all.3.contains("(1 row)"), "{}", all.3);
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_columns_are_named_as_postgresql_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let client = server.client().await;
    let sql = "SELECT count(*), sum(x) AS total, max(x), x + 1, 1 FROM (VALUES (1), (2)) t(x) GROUP BY x ORDER BY x";
    let want = ["count", "total", "max", "?column?", "?column?"];
    // Extended protocol (the names come from Describe) and simple protocol.
    let statement = client.prepare(sql).await.unwrap();
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, want);
    let rows = client.simple_query(sql).await.unwrap();
    let Some(SimpleQueryMessage::Row(row)) = rows
        .iter()
        .find(|m| matches!(m, SimpleQueryMessage::Row(_)))
    else {
        panic!("no rows");
    };
    let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, want);
}

/// A CREATE MATERIALIZED VIEW that backfills for more than a second tells psql how far it
/// is (NOTICEs while it runs), and `weir.views.backfill_progress` ends at 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_backfill_sends_progress_notices_to_psql() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    write_events(&file, 300_000, 2, 0, 0);
    let server = Server::start(&dir.path().join("data")).await;
    let client = server.client().await;
    client.batch_execute(&create_source(&file)).await.unwrap();
    // Each event in 300 windows: several seconds of backfill in a test build.
    let port = server.addr.port();
    let out = tokio::task::spawn_blocking(move || {
        psql_to(port)
            .args(["-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!(
                "CREATE MATERIALIZED VIEW slow AS {}",
                weir_server::demo::kpi_query(
                    "HOP(events, \"timestamp\", INTERVAL '1 second', INTERVAL '5 minutes')"
                )
            ))
            .output()
            .expect("psql must be installed (apt-get install postgresql-client)")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let notices: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("NOTICE:  backfilling \"slow\": "))
        .collect();
    println!("{}", notices.join("\n"));
    assert!(!notices.is_empty(), "no progress NOTICE: {stderr}");
    assert!(
        notices
            .iter()
            .all(|n| n.contains(" events read, ") && n.contains("% of the input")),
        "{notices:?}"
    );
    let progress = client
        .simple_query("SELECT backfill_progress FROM weir.views WHERE name = 'slow'")
        .await
        .unwrap();
    let done: f64 = rows(&progress)[0].get(0).unwrap().parse().unwrap();
    assert_eq!(done, 1.0);
}

/// A table filled from psql's `\copy` (CSV), a client library's `COPY … FROM STDIN` (text
/// format), prepared INSERT/UPDATE with parameters, a file and a PostgreSQL query; a COPY
/// with a bad row adds nothing; every row is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_take_rows_from_copy_prepared_statements_files_and_postgres() {
    use futures::SinkExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data).await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE devices (id TEXT PRIMARY KEY, site TEXT, weight DOUBLE PRECISION)",
        )
        .await
        .unwrap();
    let csv = dir.path().join("devices.csv");
    let mut text = String::from("id,site,weight\n");
    for i in 0..1000 {
        text.push_str(&format!("d{i},\"site, {}\",{}.5\n", i % 7, i));
    }
    std::fs::write(&csv, &text).unwrap();
    let port = server.addr.port();
    let copy = |command: String| {
        tokio::task::spawn_blocking(move || {
            psql_to(port)
                .args(["-v", "ON_ERROR_STOP=1", "-c"])
                .arg(command)
                .output()
                .expect("psql must be installed (apt-get install postgresql-client)")
        })
    };
    let out = copy(format!(
        "\\copy devices FROM '{}' WITH (FORMAT csv, HEADER)",
        csv.display()
    ))
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "COPY 1000");

    // A repeated key fails the whole COPY.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "x1,a,1\nd5,b,2\n").unwrap();
    let out = copy(format!("\\copy devices FROM '{}' CSV", bad.display()))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("Key (id)=(d5) already exists"), "{stderr}");

    // Text format from a client library, two columns.
    let sink = client
        .copy_in("COPY devices (id, site) FROM STDIN")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"t1\tnorth\nt2\t\\N\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);

    // Prepared statements with parameters.
    let n = client
        .execute(
            "INSERT INTO devices VALUES ($1, $2, $3)",
            &[&"p1", &"south", &2.25f64],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let n = client
        .execute(
            "UPDATE devices SET weight = $1 WHERE site = $2",
            &[&9.0f64, &"site, 3"],
        )
        .await
        .unwrap();
    assert_eq!(n, 143);
    assert_eq!(
        client
            .execute("DELETE FROM devices WHERE id = $1", &[&"t2"])
            .await
            .unwrap(),
        1
    );

    // Loaded from a file and from a PostgreSQL query.
    let url = pg_url("postgres", "");
    client
        .batch_execute(&format!(
            "CREATE TABLE from_file (id TEXT PRIMARY KEY, site TEXT, weight DOUBLE PRECISION) \
               WITH (connector = 'file', path = '{}');\n\
             CREATE TABLE from_pg (id TEXT PRIMARY KEY, weight DOUBLE PRECISION) \
               WITH (connector = 'postgres', url = '{url}', \
                     query = 'SELECT * FROM (VALUES (''a'', 1.5), (''b'', 2.5)) AS v(id, weight)')",
            csv.display()
        ))
        .await
        .unwrap();
    let summary = "SELECT (SELECT count(*) FROM devices) AS n, \
                   (SELECT sum(weight) FROM devices) AS total, \
                   (SELECT site FROM devices WHERE id = 't1') AS t1, \
                   (SELECT count(*) FROM from_file) AS file_rows, \
                   (SELECT sum(weight) FROM from_pg) AS pg_total";
    let before: Vec<Option<String>> = {
        let r = client.simple_query(summary).await.unwrap();
        let row = rows(&r)[0];
        (0..5).map(|i| row.get(i).map(str::to_string)).collect()
    };
    let expected_sum: f64 = (0..1000)
        .map(|i| if i % 7 == 3 { 9.0 } else { i as f64 + 0.5 })
        .sum::<f64>()
        + 2.25;
    assert_eq!(before[0].as_deref(), Some("1002"));
    let sum: f64 = before[1].as_deref().unwrap().parse().unwrap();
    assert!((sum - expected_sum).abs() < 1e-6, "{sum} vs {expected_sum}");
    assert_eq!(before[2].as_deref(), Some("north"));
    assert_eq!(before[3].as_deref(), Some("1000"));
    assert_eq!(before[4].as_deref(), Some("4.0"));
    // A refused connection is 08001, with the URL's password masked.
    assert_eq!(
        sqlstate(
            &client,
            "CREATE TABLE gone (id INT PRIMARY KEY) WITH (connector = 'postgres', \
             url = 'postgres://u:secret@127.0.0.1:1/x', query = 'SELECT 1 AS id')"
        )
        .await,
        "08001"
    );
    drop(client);
    server.stop().await;

    let server = Server::start(&data).await;
    let client = server.client().await;
    let r = client.simple_query(summary).await.unwrap();
    let row = rows(&r)[0];
    let after: Vec<Option<String>> = (0..5).map(|i| row.get(i).map(str::to_string)).collect();
    assert_eq!(after, before);
    drop(client);
    server.stop().await;
}
