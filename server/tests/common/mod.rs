//! Shared test helpers: generated event files and an independent reference computation.
#![allow(dead_code)]

pub mod alerts;
pub mod compare;
pub mod kafka;
pub mod process;
pub mod s3;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use datafusion::prelude::{JsonReadOptions, SessionContext};
use weir_sql::{Database, DatabaseOptions, Session};

/// The PostgreSQL the tests use, without a database name: `WEIR_TEST_POSTGRES` (libpq
/// `key=value` words; a superuser), by default the machine's (user postgres, trust).
pub fn pg() -> String {
    std::env::var("WEIR_TEST_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres".to_string())
}

/// One `key=value` word of [`pg`], or `default`.
fn pg_setting(key: &str, default: &str) -> String {
    pg().split_whitespace()
        .filter_map(|w| w.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| default.to_string())
}

/// [`pg`]'s port.
pub fn pg_port() -> u16 {
    pg_setting("port", "5432")
        .parse()
        .expect("WEIR_TEST_POSTGRES port")
}

/// [`pg`] as a URL for `database` (what the postgres sink takes); `query` is appended.
pub fn pg_url(database: &str, query: &str) -> String {
    let (user, password) = (pg_setting("user", "postgres"), pg_setting("password", ""));
    let password = if password.is_empty() {
        String::new()
    } else {
        format!(":{password}")
    };
    format!(
        "postgres://{user}{password}@{}:{}/{database}{query}",
        pg_setting("host", "127.0.0.1"),
        pg_port()
    )
}

/// A fresh database on the machine's PostgreSQL (which must be running).
pub async fn fresh_database(name: &str) -> tokio_postgres::Client {
    let (admin, conn) = tokio_postgres::connect(
        &format!("{} dbname=postgres", pg()),
        tokio_postgres::NoTls,
    )
    .await
    .expect(
        "PostgreSQL must run on 127.0.0.1:5432 (user postgres, trust) or where WEIR_TEST_POSTGRES says; scripts/test.sh starts it",
    );
    tokio::spawn(conn);
    for statement in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin.batch_execute(&statement).await.unwrap();
    }
    let (client, conn) =
        tokio_postgres::connect(&format!("{} dbname={name}", pg()), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    client
}

pub async fn drop_database(name: &str) {
    if let Ok((admin, conn)) =
        tokio_postgres::connect(&format!("{} dbname=postgres", pg()), tokio_postgres::NoTls).await
    {
        tokio::spawn(conn);
        let _ = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    }
}

/// One HTTP/1.1 request; returns the status and the JSON body.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let (status, text) = http_text(addr, method, path, body).await;
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
    (status, json)
}

/// One HTTP/1.1 request; returns the status and the body as text.
pub async fn http_text(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    http_with(addr, method, path, "", body).await
}

/// One HTTP/1.1 request with extra header lines (`Name: value\r\n` each); returns the
/// status and the body as text.
pub async fn http_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: weir\r\nConnection: close\r\nContent-Type: text/plain\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// The seed's source over a file.
pub fn create_source(path: &Path) -> String {
    weir_server::demo::seed_source(
        "events",
        &format!(
            "connector = 'file', path = '{}', format = 'json'",
            path.display()
        ),
    )
}

/// The seed's kpi_1m body over a window expression.
pub fn kpi_query(from: &str) -> String {
    weir_server::demo::kpi_query(from)
}

/// Writes `count` generated events, with events shifted up to `disorder_ms` back in time, and
/// a malformed line every `bad_every` lines (0 = none). Returns the lines written.
pub fn write_events(
    path: &Path,
    count: u64,
    seed: u64,
    disorder_ms: u64,
    bad_every: u64,
) -> Vec<String> {
    let lines = event_lines(&kafka::generator(seed, disorder_ms), count, bad_every);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for l in &lines {
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
    lines
}

/// `count` events of `g` as JSON lines, a malformed line every `bad_every` lines (0 = none).
pub fn event_lines(
    g: &weir_connectors::datagen::EventGenerator,
    count: u64,
    bad_every: u64,
) -> Vec<String> {
    let mut lines = Vec::with_capacity(count as usize);
    let mut buf = Vec::new();
    for i in 0..count {
        if bad_every > 0 && i % bad_every == bad_every - 1 {
            lines.push(match (i / bad_every) % 3 {
                0 => "{\"event_id\": \"broken".to_string(),
                1 => "{\"event_id\":\"x\",\"source\":\"src-0001\",\"timestamp\":\"2026-11-27T10:00:00Z\",\"attributes\":{\"metric\":\"not a number\"}}".to_string(),
                _ => "not json at all".to_string(),
            });
            continue;
        }
        buf.clear();
        g.write_event(i, &mut buf);
        lines.push(String::from_utf8(buf.trim_ascii_end().to_vec()).unwrap());
    }
    lines
}

/// One valid event as the reference computation sees it.
#[derive(Debug, Clone)]
pub struct RefEvent {
    pub source: String,
    pub time_ns: i64,
    pub metric: f64,
    pub error: bool,
    pub line: String,
}

/// Splits lines into (valid on-time events, late count, malformed count), computing lateness
/// independently: late = time below (max earlier time − delay).
pub fn reference_events(lines: &[String], delay_ns: i64) -> (Vec<RefEvent>, usize, usize) {
    let mut max: Option<i64> = None;
    let mut out = Vec::new();
    let (mut late, mut bad) = (0, 0);
    for l in lines {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            bad += 1;
            continue;
        };
        let metric = match v["attributes"]["metric"].as_f64() {
            Some(m) => m,
            None if v["attributes"]["metric"].is_null() => f64::NAN,
            None => {
                bad += 1;
                continue;
            }
        };
        let Some(t) = v["timestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .and_then(|t| t.timestamp_nanos_opt())
        else {
            bad += 1;
            continue;
        };
        let is_late = matches!(max, Some(m) if t < m - delay_ns);
        max = Some(max.map_or(t, |m| m.max(t)));
        if is_late {
            late += 1;
            continue;
        }
        out.push(RefEvent {
            source: v["source"].as_str().unwrap().to_string(),
            time_ns: t,
            metric,
            error: v["attributes"]["status"].as_str() != Some("ok"),
            line: l.clone(),
        });
    }
    (out, late, bad)
}

/// Opens an in-memory database with all connectors.
pub async fn memory_db() -> Arc<Database> {
    Database::open(DatabaseOptions::in_memory(weir_connectors::register_all()))
        .await
        .unwrap()
}

/// A scenario size from the environment (`loadtests/` scripts set them), or `default`.
pub fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Opens (or reopens) a database persisted in `dir`, checkpointing every `interval`.
pub async fn persistent_db(dir: &Path, interval: Duration) -> Arc<Database> {
    let mut options = DatabaseOptions::persistent(dir, weir_connectors::register_all_in(dir));
    options.checkpoint_interval = interval;
    Database::open(options).await.unwrap()
}

/// Runs statements, panicking with the error on failure.
pub async fn exec(db: &Database, sql: &str) {
    let mut session = Session::default();
    if let Err(e) = db.run(&mut session, sql).await {
        panic!("{sql}\nfailed: {e}");
    }
}

/// Waits until the source has processed all input.
pub async fn wait_caught_up(db: &Arc<Database>, source: &str) {
    let engine = db.engine().clone();
    let source = source.to_string();
    let ok = tokio::task::spawn_blocking(move || {
        engine.wait_caught_up(&source, Duration::from_secs(120))
    })
    .await
    .unwrap();
    assert!(ok, "source did not catch up within 120 s");
}

/// A KPI row keyed by (source, window_start ns).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kpi {
    pub count: i64,
    pub avg_metric: f64,
    pub p95_metric: f64,
    pub error_rate: f64,
}

/// Reads (source, window_start, count, avg_metric, p95_metric, error_rate) rows.
pub fn kpis(batches: &[RecordBatch]) -> BTreeMap<(String, i64), Kpi> {
    let mut out = BTreeMap::new();
    for b in batches {
        let source = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let ws = cast(b.column(1), &DataType::Int64).unwrap();
        let ws = ws.as_any().downcast_ref::<Int64Array>().unwrap();
        let count = cast(b.column(2), &DataType::Int64).unwrap();
        let count = count.as_any().downcast_ref::<Int64Array>().unwrap();
        let f = |i: usize| {
            let a = cast(b.column(i), &DataType::Float64).unwrap();
            a.as_any().downcast_ref::<Float64Array>().unwrap().clone()
        };
        let (avg, p95, err) = (f(3), f(4), f(5));
        for r in 0..b.num_rows() {
            let key = (source.value(r).to_string(), ws.value(r));
            let kpi = Kpi {
                count: count.value(r),
                avg_metric: avg.value(r),
                p95_metric: if p95.is_null(r) {
                    f64::NAN
                } else {
                    p95.value(r)
                },
                error_rate: err.value(r),
            };
            assert!(
                out.insert(key.clone(), kpi).is_none(),
                "duplicate row for {key:?}"
            );
        }
    }
    out
}

/// Relative difference.
pub fn rel(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / a.abs().max(b.abs())
    }
}

/// The batch reference of `kpi_1m` (1-minute tumbling windows) over table `events`.
pub const KPI_1M_BATCH_SQL: &str = "SELECT source, date_bin(INTERVAL '1 minute', \"timestamp\") AS ws, count(*), avg(attributes['metric']), \
     approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY attributes['metric']), \
     avg(CASE WHEN attributes['status'] <> 'ok' THEN 1.0 ELSE 0.0 END) FROM events GROUP BY 1, 2";

/// The seed event schema, for the batch reference.
pub fn event_schema() -> Schema {
    Schema::new(vec![
        Field::new("event_id", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, true),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
            true,
        ),
        Field::new(
            "attributes",
            DataType::Struct(Fields::from(vec![
                Field::new("user_id", DataType::Utf8, true),
                Field::new("metric", DataType::Float64, true),
                Field::new("status", DataType::Utf8, true),
            ])),
            true,
        ),
    ])
}

/// Runs `sql` with DataFusion over the reference events (written to a file of their own).
pub async fn batch(
    dir: &std::path::Path,
    events: &[RefEvent],
    sql: &str,
) -> BTreeMap<(String, i64), Kpi> {
    let path = dir.join("reference.json");
    let text: String = events.iter().map(|e| format!("{}\n", e.line)).collect();
    std::fs::write(&path, text).unwrap();
    let ctx = SessionContext::new();
    let schema = event_schema();
    ctx.register_json(
        "events",
        path.to_str().unwrap(),
        JsonReadOptions::default()
            .schema(&schema)
            .file_extension(".json"),
    )
    .await
    .unwrap();
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    kpis(&batches)
}

pub fn exact_p95(
    events: &[RefEvent],
    window: impl Fn(i64) -> Vec<i64>,
) -> BTreeMap<(String, i64), f64> {
    let mut values: BTreeMap<(String, i64), Vec<f64>> = BTreeMap::new();
    for e in events {
        for w in window(e.time_ns) {
            values
                .entry((e.source.clone(), w))
                .or_default()
                .push(e.metric);
        }
    }
    values
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let rank = 0.95 * (v.len() - 1) as f64;
            let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
            let p = v[lo] + (v[hi] - v[lo]) * (rank - lo as f64);
            (k, p)
        })
        .collect()
}

pub fn assert_equivalent(
    streaming: &BTreeMap<(String, i64), Kpi>,
    batch: &BTreeMap<(String, i64), Kpi>,
    exact: &BTreeMap<(String, i64), f64>,
) {
    assert_eq!(
        streaming.keys().collect::<Vec<_>>(),
        batch.keys().collect::<Vec<_>>(),
        "the view has other windows than the batch query"
    );
    for (key, s) in streaming {
        let b = &batch[key];
        assert_eq!(s.count, b.count, "count of {key:?}");
        assert!(
            rel(s.avg_metric, b.avg_metric) <= 1e-9,
            "avg of {key:?}: {} vs {}",
            s.avg_metric,
            b.avg_metric
        );
        assert!(
            rel(s.error_rate, b.error_rate) <= 1e-9,
            "error_rate of {key:?}"
        );
        if s.count >= 100 {
            let want = exact[key];
            assert!(
                rel(s.p95_metric, want) <= 0.05,
                "p95 of {key:?}: {} vs exact {want}",
                s.p95_metric
            );
        }
    }
}

/// Debian's Prometheus scraping `target` every second, stopped on drop.
pub struct Prometheus {
    child: std::process::Child,
    pub addr: std::net::SocketAddr,
}

impl Prometheus {
    /// Starts it with its data under `dir`.
    pub fn start(dir: &Path, target: std::net::SocketAddr) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: weir\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus is missing: run the tests with scripts/test.sh (it installs Debian's prometheus)");
        Self {
            child,
            addr: ([127, 0, 0, 1], port).into(),
        }
    }

    /// The result vector of instant query `expr` (empty while it cannot answer yet).
    pub async fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let encoded: String = expr
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let Ok(Ok(mut s)) = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            tokio::net::TcpStream::connect(self.addr),
        )
        .await
        else {
            return Vec::new();
        };
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let request = format!(
            "GET /api/v1/query?query={encoded} HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"
        );
        if s.write_all(request.as_bytes()).await.is_err() {
            return Vec::new();
        }
        let mut response = Vec::new();
        let _ = s.read_to_end(&mut response).await;
        let text = String::from_utf8_lossy(&response).into_owned();
        text.split_once("\r\n\r\n")
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(body).ok())
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1 made with openssl, as (cert,
/// key) PEM files in `dir`.
pub fn self_signed_cert(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is missing: run the tests with scripts/test.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}
