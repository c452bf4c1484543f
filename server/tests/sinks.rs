//! Sinks against the real services: PostgreSQL and Redis on the machine, a Kafka-compatible
//! broker. After `kill -9` of Weir, a Redis restart and a PostgreSQL restart in the middle of
//! the run, each target holds exactly the view's rows (and `events_raw` every event once).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::ClientConfig;
use tokio_postgres::{Client, NoTls};
use weir_sql::Database;

use common::kafka::{broker, unique_topic};
use common::process::{int, wait_for, Weir};

use common::{drop_database, fresh_database, pg, pg_url};

/// One test at a time: the main scenario restarts PostgreSQL.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn unique(prefix: &str) -> String {
    unique_topic(prefix).replace('-', "_")
}

/// A Redis server of the test's own (the machine's is shared and keeps nothing on disk),
/// saving to its directory on shutdown so that a restart keeps the keys.
struct Redis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl Redis {
    fn start(dir: &Path) -> Self {
        let mut r = Self::stopped(dir);
        r.spawn();
        r
    }

    /// Chooses a port and a directory; nothing listens until [`spawn`](Self::spawn).
    fn stopped(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self {
            port,
            dir: dir.to_path_buf(),
            child: None,
        }
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (Debian package redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `SHUTDOWN SAVE`: the keys are written to the directory and read back on start.
    fn stop(&mut self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "save"])
            .status();
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Restarts the machine's PostgreSQL cluster (as root), or, where that is not allowed,
/// cuts every connection to `database` — what a restart looks like from Weir.
fn restart_postgres(database: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned());
    // Restarting the machine's cluster is a change `WEIR_TEST_NO_INSTALL` rules out, and
    // impossible for a server named by `WEIR_TEST_POSTGRES`.
    let may_restart = std::env::var_os("WEIR_TEST_NO_INSTALL").is_none()
        && std::env::var_os("WEIR_TEST_POSTGRES").is_none();
    let restarted = may_restart
        && version.is_some_and(|v| {
            Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect", &v, "main", "restart"])
                .status()
                .is_ok_and(|s| s.success())
        });
    if restarted {
        println!("PostgreSQL restarted");
        return;
    }
    println!("cannot restart PostgreSQL here (not root?): terminating the connections to {database} instead");
    let status = Command::new("psql")
        .arg(format!("{} dbname=postgres", pg()))
        .arg("-c")
        .arg(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
        ))
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until PostgreSQL accepts connections again.
async fn wait_postgres() -> Client {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((c, conn)) =
            tokio_postgres::connect(&format!("{} dbname=postgres", pg()), NoTls).await
        {
            tokio::spawn(conn);
            return c;
        }
        assert!(Instant::now() < deadline, "PostgreSQL did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `kpi_1m` row as the sinks should hold it.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    count: i64,
    avg_metric: f64,
    p95_metric: Option<f64>,
    error_rate: f64,
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn same(a: &Row, b: &Row) -> bool {
    a.count == b.count
        && close(a.avg_metric, b.avg_metric)
        && close(a.error_rate, b.error_rate)
        && match (a.p95_metric, b.p95_metric) {
            (Some(x), Some(y)) => close(x, y),
            (None, None) => true,
            _ => false,
        }
}

fn assert_same_rows(
    what: &str,
    got: &BTreeMap<(String, i64), Row>,
    want: &BTreeMap<(String, i64), Row>,
) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} rows, the view has {}",
        got.len(),
        want.len()
    );
    for (k, w) in want {
        let g = got
            .get(k)
            .unwrap_or_else(|| panic!("{what}: no row for {k:?}"));
        assert!(same(g, w), "{what}: {k:?} is {g:?}, the view has {w:?}");
    }
}

/// Rows of `sql` returning (source, window start as epoch seconds, count, avg, p95, error_rate).
async fn pg_rows(client: &Client, sql: &str) -> BTreeMap<(String, i64), Row> {
    let mut out = BTreeMap::new();
    for r in client.query(sql, &[]).await.unwrap() {
        out.insert(
            (r.get(0), r.get(1)),
            Row {
                count: r.get(2),
                avg_metric: r.get(3),
                p95_metric: r.get(4),
                error_rate: r.get(5),
            },
        );
    }
    out
}

fn json_row(v: &serde_json::Value) -> Row {
    Row {
        count: v["count"].as_i64().unwrap(),
        avg_metric: v["avg_metric"].as_f64().unwrap(),
        p95_metric: v["p95_metric"].as_f64(),
        error_rate: v["error_rate"].as_f64().unwrap(),
    }
}

/// The last message per key of `topic` (all partitions), read committed.
fn kafka_last(brokers: &str, topic: &str) -> BTreeMap<String, serde_json::Value> {
    common::kafka::read_topic(brokers, topic)
        .into_iter()
        .map(|(k, v)| (k.unwrap(), v))
        .collect()
}

/// Scale of the run (`loadtests/sinks_faults.sh` runs it long): events (4000/s of wall and
/// event time), `kill -9`s, seconds Redis stays down.
fn scenario() -> (u64, u64, u64) {
    (
        common::env_u64("WEIR_SINK_EVENTS", 100_000),
        common::env_u64("WEIR_SINK_KILLS", 1),
        common::env_u64("WEIR_SINK_REDIS_DOWN", 3),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_hold_the_view_after_kill_and_outages() {
    let _serial = SERIAL.lock().await;
    let (events, kills, redis_down) = scenario();
    println!("{events} events, {kills} kill -9, Redis down {redis_down} s, one PostgreSQL restart");
    let dir = tempfile::tempdir().unwrap();
    let db_name = unique("weir_sinks");
    fresh_database(&db_name).await;
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let mut redis = Redis::start(&redis_dir);
    let brokers = broker();
    let topic = unique_topic("kpi-out");
    let prefix = unique("t");
    let url = pg_url(&db_name, "");
    let mut weir = Weir::start(dir.path());
    let client = weir.connect().await;
    client
        .batch_execute(&format!(
            "SET background_ddl = on;\n{};\n\
             CREATE MATERIALIZED VIEW kpi_1m AS {};\n\
             CREATE SINK kpi_hot FROM kpi_1m WITH (connector = 'redis', url = '{}', \
                 key = '{prefix}:agg:{{source}}:1m:{{window_start}}', ttl = '1 hour', \
                 latest_key = '{prefix}:agg:{{source}}:1m:latest');\n\
             CREATE SINK kpi_history FROM kpi_1m WITH (connector = 'postgres', url = '{url}', table = 'kpi_1m');\n\
             CREATE SINK raw_archive FROM events WITH (connector = 'postgres', url = '{url}', \
                 table = 'events_raw', buffer_rows = '20000');\n\
             CREATE SINK kpi_out FROM kpi_1m WITH (connector = 'kafka', brokers = '{brokers}', \
                 topic = '{topic}', format = 'json');",
            weir_server::demo::seed_source(
                "events",
                &format!(
                    "connector = 'datagen', count = '{events}', rate = '4000', seed = '5', \
                     sources = '300', error_rate = '0.05', disorder_ms = '1000'"
                )
            ),
            // 10-second windows: one closes every 2.5 s of the run.
            common::kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '10 seconds')"),
            redis.url(),
        ))
        .await
        .unwrap();
    let progress = |n: u64| format!("SELECT CAST(events_in >= {n} AS BIGINT) FROM weir.sources");

    // 1. kill -9, after a checkpoint.
    let steps = kills + 3;
    let mut client = client;
    for k in 0..kills {
        wait_for(
            &weir,
            &client,
            &progress(events * (k + 1) / steps),
            1,
            Duration::from_secs(600),
        )
        .await;
        wait_for(
            &weir,
            &client,
            "SELECT CAST(min(checkpoint_epoch) > 0 AS BIGINT) FROM weir.sources",
            1,
            Duration::from_secs(30),
        )
        .await;
        let at = int(&client, "SELECT events_in FROM weir.sources").await;
        drop(client);
        weir.kill_and_restart();
        client = weir.connect().await;
        println!("kill -9 at {at} events; restarted");
    }

    // 2. Redis down: the pipeline goes on, the sink says it is retrying, then catches up.
    redis.stop();
    let down = Instant::now();
    wait_for(
        &weir,
        &client,
        "SELECT count(*) FROM weir.sinks WHERE name = 'kpi_hot' AND status LIKE 'retrying%'",
        1,
        Duration::from_secs(30),
    )
    .await;
    let before = int(&client, "SELECT events_in FROM weir.sources").await;
    tokio::time::sleep(Duration::from_secs(redis_down)).await;
    let after = int(&client, "SELECT events_in FROM weir.sources").await;
    assert!(
        after > before || after == events as i64,
        "the pipeline stalled while Redis was down"
    );
    assert!(int(&client, "SELECT count(*) FROM kpi_1m").await > 0);
    redis.spawn();
    println!("Redis was down for {:?}", down.elapsed());

    // 3. PostgreSQL restarted.
    wait_for(
        &weir,
        &client,
        &progress(events * (kills + 2) / steps),
        1,
        Duration::from_secs(600),
    )
    .await;
    restart_postgres(&db_name);
    let pg_again = wait_postgres().await;
    drop(pg_again);

    // Everything through, every sink caught up.
    wait_for(
        &weir,
        &client,
        &progress(events),
        1,
        Duration::from_secs(600),
    )
    .await;
    wait_for(
        &weir,
        &client,
        "SELECT count(*) FROM weir.views WHERE caught_up",
        1,
        Duration::from_secs(60),
    )
    .await;
    wait_for(
        &weir,
        &client,
        "SELECT count(*) FROM weir.sinks WHERE backlog = 0 AND status = 'running'",
        4,
        Duration::from_secs(120),
    )
    .await;
    let sinks = client
        .query(
            "SELECT name, rows_written, errors, coalesce(last_error, '') FROM weir.sinks ORDER BY name",
            &[],
        )
        .await
        .unwrap();
    for r in &sinks {
        println!(
            "sink {}: {} rows written, {} errors (last: {})",
            r.get::<_, String>(0),
            r.get::<_, i64>(1),
            r.get::<_, i64>(2),
            r.get::<_, String>(3)
        );
    }

    // The view, as Weir serves it.
    let view = {
        let mut out = BTreeMap::new();
        for r in client
            .query("SELECT source, CAST(extract(epoch FROM window_start) AS BIGINT), count, avg_metric, p95_metric, error_rate FROM kpi_1m", &[])
            .await
            .unwrap()
        {
            out.insert(
                (r.get(0), r.get(1)),
                Row { count: r.get(2), avg_metric: r.get(3), p95_metric: r.get(4), error_rate: r.get(5) },
            );
        }
        out
    };
    assert!(view.len() > 100, "{} windows", view.len());

    // PostgreSQL: the view's rows, exactly.
    let (pg, conn) = tokio_postgres::connect(&format!("{} dbname={db_name}", pg()), NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let history = pg_rows(
        &pg,
        "SELECT source, CAST(extract(epoch FROM window_start) AS BIGINT), count, avg_metric, p95_metric, error_rate FROM kpi_1m",
    )
    .await;
    assert_same_rows("PostgreSQL kpi_1m", &history, &view);

    // events_raw: every event once, and the seed's query works on it.
    let valid = int(&client, "SELECT events_in - dead_letters FROM weir.sources").await;
    // The archive has a pipeline of its own (it read the source from its start): wait for
    // it to write its last events.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n: i64 = pg
            .query_one("SELECT count(*) FROM events_raw", &[])
            .await
            .unwrap()
            .get(0);
        if n >= valid || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let raw = pg
        .query_one(
            "SELECT count(*), count(DISTINCT event_id) FROM events_raw",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(raw.get::<_, i64>(0), valid, "events_raw rows");
    assert_eq!(
        raw.get::<_, i64>(1),
        valid,
        "distinct event ids in events_raw"
    );
    let recent = pg
        .query_one(
            "SELECT count(*) FROM (SELECT ts, metric, status FROM events_raw \
             WHERE source = 'src-0001' AND ts > now() - interval '1 hour' ORDER BY ts DESC) r",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    let per_source = int(
        &client,
        "SELECT CAST(sum(count) AS BIGINT) FROM kpi_1m WHERE source = 'src-0001'",
    )
    .await;
    assert!(
        recent > 0 && recent >= per_source,
        "seed query found {recent} events of src-0001"
    );

    // Redis: one key per row, holding the row.
    let mut conn = redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:agg:*:1m:*"))
        .query(&mut conn)
        .unwrap();
    let mut hot = BTreeMap::new();
    let mut latest = HashMap::new();
    for k in keys {
        let text: String = redis::cmd("GET").arg(&k).query(&mut conn).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let parts: Vec<&str> = k.split(':').collect();
        let source = parts[2].to_string();
        if parts[4] == "latest" {
            latest.insert(source, v);
            continue;
        }
        let ttl: i64 = redis::cmd("TTL").arg(&k).query(&mut conn).unwrap();
        assert!(ttl > 0 && ttl <= 3600, "{k} has TTL {ttl}");
        hot.insert((source, parts[4].parse::<i64>().unwrap()), json_row(&v));
    }
    assert_same_rows("Redis keys", &hot, &view);
    for (source, v) in &latest {
        let newest = view
            .keys()
            .filter(|(s, _)| s == source)
            .map(|(_, w)| *w)
            .max()
            .unwrap();
        let at = chrono::DateTime::parse_from_rfc3339(v["window_start"].as_str().unwrap())
            .unwrap()
            .timestamp();
        assert_eq!(at, newest, "latest key of {source}");
    }

    // Kafka: the last message per key is the view's row.
    let last = kafka_last(&brokers, &topic);
    let mut out = BTreeMap::new();
    for (key, v) in last {
        let k: serde_json::Value = serde_json::from_str(&key).unwrap();
        let at = chrono::DateTime::parse_from_rfc3339(k["window_start"].as_str().unwrap())
            .unwrap()
            .timestamp();
        out.insert(
            (k["source"].as_str().unwrap().to_string(), at),
            json_row(&v),
        );
    }
    assert_same_rows("Kafka topic", &out, &view);

    drop(client);
    drop(weir);
    drop_database(&db_name).await;
}

/// DDL, errors that stay on one sink, masking, and exactly-once Kafka delivery across an
/// in-process crash (librdkafka's mock cluster, which has transactions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_ddl_errors_and_exactly_once_kafka() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let db_name = unique("weir_sinkddl");
    let pg = fresh_database(&db_name).await;
    // A table that does not fit kpi_1m: CREATE SINK refuses it.
    pg.batch_execute("CREATE TABLE wrong (source TEXT PRIMARY KEY, n INT)")
        .await
        .unwrap();
    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    let brokers = mock.bootstrap_servers();
    let lines = common::write_events(&dir.path().join("events.jsonl"), 30_000, 3, 500, 0);
    // No checkpoint before the crash: the restart replays everything, and the Kafka sink
    // must recognise all of it as delivered.
    let db = common::persistent_db(&dir.path().join("data"), Duration::from_secs(600)).await;
    let url = pg_url(&db_name, "").replacen("://postgres@", "://postgres:hunter2@", 1);
    common::exec(
        &db,
        &common::create_source(&dir.path().join("events.jsonl")),
    )
    .await;
    common::exec(
        &db,
        &format!(
            "CREATE MATERIALIZED VIEW kpi_1m AS {}",
            common::kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '1 minute')")
        ),
    )
    .await;
    // A table that does not fit the view is refused when the sink is created: the reason,
    // never the password.
    let mut session = weir_sql::Session::default();
    let e = db
        .run(&mut session, &format!("CREATE SINK bad FROM kpi_1m WITH (connector = 'postgres', url = '{url}', table = 'wrong')"))
        .await
        .expect_err("a sink into a table of other columns");
    assert_eq!(e.sqlstate(), "08001", "{e}");
    assert!(
        e.to_string().contains("wrong") && !e.to_string().contains("hunter2"),
        "{e}"
    );
    common::exec(&db, &format!("CREATE SINK bad FROM kpi_1m WITH (connector = 'postgres', url = '{url}', table = 'kpi_masked')")).await;
    common::exec(&db, &format!("CREATE SINK out FROM kpi_1m WITH (connector = 'kafka', brokers = '{brokers}', topic = 'kpi', delivery = 'exactly_once')")).await;

    // Bad definitions are SQL errors with a SQLSTATE.
    for (sql, state) in [
        ("CREATE SINK x FROM nope WITH (connector = 'redis', url = 'redis://127.0.0.1/')", "42P01"),
        ("CREATE SINK x FROM kpi_1m WITH (connector = 'nope')", "22023"),
        ("CREATE SINK x FROM kpi_1m WITH (connector = 'redis', url = 'redis://127.0.0.1/', key = '{nope}')", "22023"),
        ("CREATE SINK out FROM kpi_1m WITH (connector = 'redis', url = 'redis://127.0.0.1/')", "42P07"),
        ("DROP MATERIALIZED VIEW kpi_1m", "2BP01"),
    ] {
        let e = db.run(&mut session, sql).await.expect_err(sql);
        assert_eq!(e.sqlstate(), state, "{sql}: {e}");
    }
    // A database that does not exist is refused at creation, with the command to create it.
    let missing = pg_url("weir_surely_no_such_database", "");
    let e = db
        .run(&mut session, &format!("CREATE SINK x FROM kpi_1m WITH (connector = 'postgres', url = '{missing}', table = 't')"))
        .await
        .expect_err("a sink into a missing database");
    assert_eq!(e.sqlstate(), "08001", "{e}");
    assert!(
        e.to_string().contains("does not exist") && e.to_string().contains("CREATE DATABASE"),
        "{e}"
    );
    let shown = common::kafka::texts(&db, "SELECT definition FROM weir.sinks WHERE name = 'bad'")
        .await
        .join(" ");
    assert!(
        shown.contains("postgres:***@127.0.0.1") && !shown.contains("hunter2"),
        "{shown}"
    );

    common::wait_caught_up(&db, "events").await;
    let rows = common::kafka::int(&db, "SELECT count(*) FROM kpi_1m").await;
    common::kafka::wait_for_int(
        &db,
        "SELECT rows_written FROM weir.sinks WHERE name = 'out'",
        rows,
        Duration::from_secs(30),
    )
    .await;
    let written_before = rows;

    // Crash (no last checkpoint) and reopen: the Kafka topic keeps each row once.
    db.engine().crash();
    drop(db);
    let db: Arc<Database> =
        common::persistent_db(&dir.path().join("data"), Duration::from_secs(600)).await;
    common::wait_caught_up(&db, "events").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let messages = {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "check")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&["kpi"]).unwrap();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.unwrap();
                *seen
                    .entry(String::from_utf8_lossy(m.key().unwrap()).into_owned())
                    .or_default() += 1;
            }
        }
        seen
    };
    assert_eq!(messages.len() as i64, written_before, "one key per window");
    let twice: Vec<_> = messages.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "published twice: {twice:?}");
    common::kafka::assert_kpi_1m_matches(&db, &lines).await;
    assert_eq!(
        common::kafka::int(&db, "SELECT count(*) FROM kpi_1m").await,
        written_before
    );

    // DROP SINK; SHOW SINKS lists what is left.
    common::exec(&db, "DROP SINK bad").await;
    let names = common::kafka::texts(&db, "SELECT name FROM weir.sinks").await;
    assert_eq!(names, vec!["out".to_string()]);
    common::exec(&db, "DROP MATERIALIZED VIEW kpi_1m CASCADE").await;
    assert!(common::kafka::texts(&db, "SELECT name FROM weir.sinks")
        .await
        .is_empty());
    drop(db);
    drop_database(&db_name).await;
}

/// `on_full = 'spill'`: with the target down the pipeline reads on, the queue lives in the
/// checkpoint files rather than in memory, and the sink delivers all of it once the target
/// is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spilling_sink_lets_the_pipeline_go_on_and_catches_up() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    // CREATE SINK checks its target, so Redis runs while the sink is created and stops
    // before the first event arrives.
    let mut redis = Redis::start(&redis_dir);
    let events = 20_000u64;
    let path = dir.path().join("events.jsonl");
    std::fs::write(&path, "").unwrap();
    let db = common::persistent_db(&dir.path().join("data"), Duration::from_millis(100)).await;
    common::exec(
        &db,
        &weir_server::demo::seed_source(
            "events",
            &format!(
                "connector = 'file', path = '{}', format = 'json', follow = 'true'",
                path.display()
            ),
        ),
    )
    .await;
    common::exec(
        &db,
        &format!(
            "CREATE SINK raw FROM events WITH (connector = 'redis', url = '{}', \
             key = 'ev:{{event_id}}', buffer_rows = '1000', batch_rows = '500', on_full = 'spill')",
            redis.url()
        ),
    )
    .await;
    redis.stop();
    common::write_events(&path, events, 8, 0, 0);
    // Nothing listens: the sink retries, the pipeline reads the whole file anyway.
    common::kafka::wait_for_int(
        &db,
        "SELECT events_in FROM weir.sources",
        events as i64,
        Duration::from_secs(60),
    )
    .await;
    common::kafka::wait_for_text(
        &db,
        "SELECT status FROM weir.sinks",
        |t| t.starts_with("retrying"),
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let backlog = common::kafka::int(&db, "SELECT backlog FROM weir.sinks").await;
    let buffered = common::kafka::int(&db, "SELECT buffered FROM weir.sinks").await;
    println!("target down: backlog {backlog}, in memory {buffered}");
    assert_eq!(backlog, events as i64, "every event waits for the target");
    assert!(
        buffered <= 1_000 + 500,
        "{buffered} rows in memory with buffer_rows 1000"
    );

    redis.spawn();
    common::kafka::wait_for_int(
        &db,
        "SELECT CAST(backlog = 0 AS BIGINT) FROM weir.sinks",
        1,
        Duration::from_secs(60),
    )
    .await;
    let mut conn = redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("ev:*").query(&mut conn).unwrap();
    assert_eq!(keys.len() as u64, events, "one key per event");
    let value: String = redis::cmd("GET").arg(&keys[0]).query(&mut conn).unwrap();
    let v: serde_json::Value = serde_json::from_str(&value).unwrap();
    assert!(v["attributes"]["metric"].is_number(), "{value}");
}
