//! The REST API against a real server: `/kpi` point reads equal SQL, `/series` pages through
//! every window, bad parameters are 400s naming the parameter, unknown keys and views 404s,
//! `/ready` reports a dead broker, and `/sql` runs statements.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::kafka::generator_at_rate;
use common::{event_lines, http, kpi_query};

async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    http(addr, "GET", path, "").await
}

async fn sql(addr: SocketAddr, statements: &str) -> Value {
    let (status, body) = http(addr, "POST", "/sql", statements).await;
    assert_eq!(status, 200, "{statements}: {body}");
    body
}

type Running = (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<weir_server::Result<()>>,
);

/// A server with its REST API on a free port, persisted in `dir`.
async fn start(dir: &std::path::Path) -> Running {
    start_with(weir_server::Config {
        data_dir: dir.join("data"),
        ..Default::default()
    })
    .await
}

/// A server with `config` and its REST API on a free port.
async fn start_with(config: weir_server::Config) -> Running {
    let pg = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rest = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = rest.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(weir_server::run(config, pg, Some(rest), async move {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "the REST API did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (addr, stop, server)
}

/// Polls `/ready` until its status is `want` and its body passes `check`.
async fn wait_ready(addr: SocketAddr, want: u16, check: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(addr, "/ready").await;
        if status == want && check(&body) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/ready is {status} {body}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_a_kafka_broker_down_and_back() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("events-r", 2, 1).unwrap();
    let g = common::kafka::generator(4, 0);
    common::kafka::produce_events(&brokers, "events-r", &g, 0, 2_000, 0.0, None);
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop, server) = start(dir.path()).await;
    sql(
        addr,
        &format!(
            "{};\nCREATE MATERIALIZED VIEW kpi_1m AS {} EMIT ON UPDATE;",
            common::kafka::kafka_source("events", &brokers, "events-r", ""),
            kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '1 minute')"),
        ),
    )
    .await;
    wait_ready(addr, 200, |_| true).await;
    cluster.broker_down(1).unwrap();
    wait_ready(addr, 503, |b| {
        b["reasons"].to_string().contains("\"source\":\"events\"")
    })
    .await;
    // Reads keep being served while the broker is away.
    assert_eq!(get(addr, "/kpi?source=src-0001&window=1m").await.0, 200);
    cluster.broker_up(1).unwrap();
    wait_ready(addr, 200, |_| true).await;
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpi_series_errors_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("events.jsonl");
    // 8 sources, 5 minutes of event time.
    let lines = event_lines(&generator_at_rate(9, 500, 20), 6_000, 0);
    std::fs::write(&feed, lines.join("\n") + "\n").unwrap();
    let (addr, stop, server) = start(dir.path()).await;
    assert_eq!(get(addr, "/health").await.0, 200);
    sql(
        addr,
        &format!(
            "{};\nCREATE MATERIALIZED VIEW kpi_1m_hop AS {} EMIT ON UPDATE;\n\
             CREATE MATERIALIZED VIEW kpi_1m AS {} EMIT ON UPDATE;",
            weir_server::demo::seed_source(
                "events",
                &format!("connector = 'file', path = '{}'", feed.display())
            ),
            kpi_query("HOP(events, \"timestamp\", INTERVAL '10 seconds', INTERVAL '1 minute')"),
            kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '1 minute')"),
        ),
    )
    .await;
    let (status, ready) = get(addr, "/ready").await;
    assert_eq!(status, 200, "{ready}");

    // The hot aggregate: the newest window of the tumbling view, equal to SQL.
    let (status, kpi) = get(addr, "/kpi?source=src-0003&window=1m").await;
    assert_eq!(status, 200, "{kpi}");
    assert_eq!(
        kpi["view"], "kpi_1m",
        "a tumbling view wins over a hopping one"
    );
    assert_eq!(kpi["window"], "1m");
    assert_eq!(kpi["source"], "src-0003");
    let want = sql(
        addr,
        "SELECT count, avg_metric, p95_metric, error_rate FROM kpi_1m WHERE source = 'src-0003' \
         ORDER BY window_start DESC LIMIT 1",
    )
    .await;
    let want = &want["rows"][0];
    for field in ["count", "avg_metric", "p95_metric", "error_rate"] {
        assert_eq!(kpi[field], want[field], "{field}: {kpi} vs {want}");
    }
    assert!(
        kpi["window_start"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-27T10:04"),
        "{kpi}"
    );
    let (status, hop) = get(addr, "/kpi?source=src-0003&view=kpi_1m_hop").await;
    assert_eq!(
        (status, hop["view"].as_str()),
        (200, Some("kpi_1m_hop")),
        "{hop}"
    );

    // The series pages through every window of the key, in time order.
    let all = sql(
        addr,
        "SELECT count(*) AS n FROM kpi_1m_hop WHERE source = 'src-0003'",
    )
    .await["rows"][0]["n"]
        .as_i64()
        .unwrap();
    let mut seen = Vec::new();
    let mut path = "/series?source=src-0003&view=kpi_1m_hop&limit=7".to_string();
    loop {
        let (status, page) = get(addr, &path).await;
        assert_eq!(status, 200, "{page}");
        for row in page["rows"].as_array().unwrap() {
            seen.push(row["window_start"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/series?source=src-0003&view=kpi_1m_hop&limit=7&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len() as i64, all);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    let (_, range) = get(
        addr,
        "/series?source=src-0003&window=1m&from=2026-11-27T10:01:00Z&to=1795773780000",
    )
    .await;
    let starts: Vec<&str> = range["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["window_start"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts.len(),
        2,
        "[10:01, 10:03) holds two 1-minute windows: {range}"
    );

    // Errors name the parameter; unknown keys and views are 404s.
    for (path, parameter) in [
        ("/kpi?source=src-0003&window=soon", "window"),
        ("/kpi?sorce=src-0003&window=1m", "sorce"),
        ("/kpi?source=src-0003", "window"),
        ("/kpi?source=src-0003&window=1m&closed=maybe", "closed"),
        ("/series?source=src-0003&window=1m&from=yesterday", "from"),
        ("/series?source=src-0003&window=1m&limit=0", "limit"),
        ("/series?source=src-0003&window=1m&cursor=x", "cursor"),
        // `to` before `from` (the docs once had it so): an error, not an empty page.
        (
            "/series?source=src-0003&window=1m&from=2026-12-02T09:00:00Z&to=1764666000000",
            "to",
        ),
        // A duration too large for event-time arithmetic: an error, not a dropped connection.
        (
            "/kpi?source=src-0003&window=99999999999999999999s",
            "window",
        ),
        ("/alerts?since=later", "since"),
    ] {
        let (status, body) = get(addr, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["parameter"], parameter, "{path}: {body}");
    }
    for path in [
        "/kpi?source=nobody&window=1m",
        "/kpi?source=src-0003&window=7m",
        "/kpi?source=src-0003&view=nothing",
    ] {
        assert_eq!(get(addr, path).await.0, 404, "{path}");
    }
    assert_eq!(
        get(addr, "/alerts?since=0").await,
        (200, serde_json::json!([]))
    );
    let (status, spec) = get(addr, "/openapi.json").await;
    assert_eq!(status, 200);
    for path in ["/kpi", "/series", "/alerts", "/sql", "/ready", "/metrics"] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    let (status, body) = http(addr, "POST", "/sql", "SELEC 1").await;
    assert_eq!(
        (status, body["sqlstate"].as_str()),
        (400, Some("42601")),
        "{body}"
    );

    // A source whose broker is down makes the server not ready, naming it.
    sql(
        addr,
        "SET background_ddl = on;\n\
         CREATE SOURCE down (x BIGINT) WITH (connector = 'kafka', brokers = '127.0.0.1:1', \
         topic = 't', kafka.reconnect.backoff.max.ms = '200');\n\
         CREATE MATERIALIZED VIEW down_n AS SELECT count(*) AS n FROM down;",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(addr, "/ready").await;
        if status == 503 && body["reasons"].to_string().contains("\"source\":\"down\"") {
            assert!(body.to_string().contains("disconnected"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still ready with a dead broker: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Prometheus exposition: engine facts and the requests just served.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    for needle in [
        "weir_source_events_total{source=\"events\"} 6000",
        "# TYPE weir_view_rows gauge",
        "weir_view_groups{view=\"kpi_1m\"}",
        "weir_view_history_rows{view=\"kpi_1m\"} 0",
        "weir_view_open_state_bytes{view=\"kpi_1m\"}",
        "weir_process_resident_memory_bytes ",
        "weir_http_requests_total{route=\"/kpi\",status=\"200\"}",
        "weir_http_request_duration_seconds_bucket{route=\"/series\"",
        "weir_checkpoint_epoch{source=\"events\"}",
        "weir_batch_duration_seconds_bucket{source=\"events\",le=\"+Inf\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let exposition = text.split_once("\r\n\r\n").unwrap().1.to_string();
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is missing: run the tests with scripts/test.sh (it installs it)");
    use std::io::Write as _;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// Waits until the view `pushed_counts` counts `want` events in all.
async fn wait_total(addr: SocketAddr, want: i64) {
    let total = "SELECT CAST(sum(n) AS BIGINT) AS n FROM pushed_counts";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = sql(addr, total).await;
        if body["rows"][0]["n"].as_i64() == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{body} != {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events pushed with `POST /ingest/{source}` are durable: after a restart the view holds
/// each once. A Prometheus server scraping Weir sees the series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_over_http_and_a_prometheus_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop, server) = start(dir.path()).await;
    sql(
        addr,
        &format!(
            "{};\nCREATE MATERIALIZED VIEW pushed_counts AS \
             SELECT source, count(*) AS n FROM pushed GROUP BY source;",
            weir_server::demo::seed_source("pushed", "connector = 'http'")
        ),
    )
    .await;
    let lines = event_lines(&generator_at_rate(4, 0, 100), 150, 0);
    let body = lines[..100].join("\n") + "\n{not json\n";
    let (status, reply) = http(addr, "POST", "/ingest/pushed", &body).await;
    assert_eq!(
        (status, reply["accepted"].as_u64()),
        (202, Some(101)),
        "{reply}"
    );
    let array = format!("[{}]", lines[100..].join(","));
    let (status, reply) = http(addr, "POST", "/ingest/pushed", &array).await;
    assert_eq!(
        (status, reply["accepted"].as_u64()),
        (202, Some(50)),
        "{reply}"
    );
    let (status, reply) = http(addr, "POST", "/ingest/pushed", "[{\"a\": 1},").await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["parameter"], "body");
    assert_eq!(http(addr, "POST", "/ingest/nope", "{}").await.0, 404);
    wait_total(addr, 150).await;
    let dead = sql(
        addr,
        "SELECT dead_letters FROM weir.sources WHERE name = 'pushed'",
    )
    .await;
    assert_eq!(dead["rows"][0]["dead_letters"], 1, "{dead}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();

    // Restarted: nothing replayed twice, and more events still go in.
    let (addr, stop, server) = start(dir.path()).await;
    wait_total(addr, 150).await;
    let more = event_lines(&generator_at_rate(5, 0, 100), 10, 0).join("\n");
    assert_eq!(http(addr, "POST", "/ingest/pushed", &more).await.0, 202);
    wait_total(addr, 160).await;

    // Prometheus (Debian's package) scraping /metrics every second.
    let prometheus = common::Prometheus::start(dir.path(), addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let result = prometheus
            .query("weir_source_events_total{source=\"pushed\"}")
            .await;
        if let Some(r) = result.first() {
            break r["value"][1].as_str().unwrap_or("").to_string();
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped weir_source_events_total"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    drop(prometheus);
    assert_eq!(seen, "160", "Prometheus sees the events of source pushed");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_with_scopes_guard_the_api() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "admin-secret-0123456789\n").unwrap();
    let tokens = toml::from_str::<toml::Table>(&format!(
        r#"api_tokens = [
            {{ token = "read-secret-0123456789", scopes = ["read"] }},
            {{ token = "ingest-secret-0123456789", scopes = ["ingest"] }},
            {{ token = "${{file:{}}}", scopes = ["admin"] }},
        ]"#,
        dir.path().join("admin.token").display()
    ))
    .unwrap();
    let mut config: weir_server::Config = toml::Value::Table(tokens).try_into().unwrap();
    config.data_dir = dir.path().join("data");
    let (addr, stop, server) = start_with(config).await;
    let call = |method: &'static str,
                path: &'static str,
                token: &'static str,
                body: &'static str| async move {
        let header = if token.is_empty() {
            String::new()
        } else {
            format!("Authorization: Bearer {token}\r\n")
        };
        common::http_with(addr, method, path, &header, body).await
    };
    let (read, ingest, admin) = (
        "read-secret-0123456789",
        "ingest-secret-0123456789",
        "admin-secret-0123456789",
    );
    // Open: liveness, probes and the API description.
    for path in ["/health", "/ready", "/metrics", "/openapi.json"] {
        assert_eq!(call("GET", path, "", "").await.0, 200, "{path}");
    }
    // No token, or an unknown one: 401 with a JSON error.
    let (status, body) = call("POST", "/sql", "", "SELECT 1").await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("needs a token"), "{body}");
    assert_eq!(
        call("GET", "/alerts", "not-a-token-0123456789", "").await.0,
        401
    );
    // An admin token creates; a read token reads and may not write.
    let ddl =
        "CREATE SOURCE pushed (source TEXT, \"timestamp\" TIMESTAMPTZ) WITH (connector = 'http')";
    let (status, body) = call("POST", "/sql", read, ddl).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("42501"), "{body}");
    assert_eq!(call("POST", "/sql", admin, ddl).await.0, 200);
    let (status, body) = call("POST", "/sql", read, "SELECT name FROM weir.sources").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("pushed"), "{body}");
    assert_eq!(call("GET", "/alerts", read, "").await.0, 200);
    // Ingest needs the ingest scope (or admin); ingest tokens do not read.
    let event = r#"{"source":"web","timestamp":"2026-11-27T10:00:00Z"}"#;
    assert_eq!(call("POST", "/ingest/pushed", read, event).await.0, 403);
    assert_eq!(call("POST", "/ingest/pushed", ingest, event).await.0, 202);
    assert_eq!(call("GET", "/alerts", ingest, "").await.0, 403);
    assert_eq!(
        call("POST", "/sql", read, "DROP SOURCE pushed").await.0,
        403
    );
    assert_eq!(
        call("POST", "/sql", admin, "DROP SOURCE pushed").await.0,
        200
    );
    let _ = stop.send(());
    let _ = server.await;
}

/// Reads server-sent events from `stream` until `want` of them have come (chunked transfer
/// encoding and comments skipped): `(event, data)` pairs.
async fn read_events(
    stream: &mut TcpStream,
    buffer: &mut String,
    want: usize,
) -> Vec<(String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Complete events: blocks ending with a blank line.
        let mut events = Vec::new();
        let mut kind = String::new();
        for line in buffer.lines() {
            if let Some(k) = line.strip_prefix("event: ") {
                kind = k.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                events.push((
                    kind.clone(),
                    serde_json::from_str(d).unwrap_or(Value::String(d.into())),
                ));
            }
        }
        if events.len() >= want {
            return events;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("{want} events did not come; got {buffer}"))
            .unwrap();
        assert!(n > 0, "the stream ended: {buffer}");
        buffer.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
}

/// `GET /subscribe`: the rows a view holds (`snapshot=true`), then each row it emits, as
/// server-sent events, filtered by key like `/kpi`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_receive_the_rows_a_view_emits() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop, server) = start(dir.path()).await;
    sql(
        addr,
        "CREATE SOURCE clicks (source TEXT, \"timestamp\" TIMESTAMPTZ, \
           WATERMARK FOR \"timestamp\" AS \"timestamp\" - INTERVAL '0 seconds') \
         WITH (connector = 'http'); \
         CREATE MATERIALIZED VIEW per_second AS SELECT source, window_start, count(*) AS n \
         FROM TUMBLE(clicks, \"timestamp\", INTERVAL '1 second') GROUP BY source, window_start;",
    )
    .await;
    let push = |lines: &[(&str, &str)]| {
        let body: Vec<String> = lines
            .iter()
            .map(|(s, t)| format!("{{\"source\":\"{s}\",\"timestamp\":\"2026-11-27T10:00:{t}Z\"}}"))
            .collect();
        async move {
            let (status, reply) = http(addr, "POST", "/ingest/clicks", &body.join("\n")).await;
            assert_eq!(status, 202, "{reply}");
        }
    };
    // Second 00 closes once an event of second 01 moves the watermark: a:3, b:1.
    push(&[
        ("a", "00.1"),
        ("a", "00.2"),
        ("b", "00.3"),
        ("a", "00.9"),
        ("b", "01.5"),
    ])
    .await;
    let closed = "SELECT count(*) AS n FROM per_second";
    let deadline = Instant::now() + Duration::from_secs(30);
    while sql(addr, closed).await["rows"][0]["n"] != 2 {
        assert!(Instant::now() < deadline, "window 10:00:00 never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /subscribe?view=per_second&source=a&snapshot=true HTTP/1.1\r\nHost: weir\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buffer = String::new();
    let events = read_events(&mut stream, &mut buffer, 1).await;
    assert!(buffer.starts_with("HTTP/1.1 200"), "{buffer}");
    assert!(buffer.contains("text/event-stream"), "{buffer}");
    assert_eq!(events[0].0, "snapshot");
    assert_eq!(events[0].1["source"], "a");
    assert_eq!(events[0].1["n"], 3);
    assert_eq!(events[0].1["window_start"], "2026-11-27T10:00:00Z");

    // Seconds 01 and 02 close: rows for a (01: 1, 02: 2) and b (01: 1); only a's come.
    push(&[("a", "01.7"), ("a", "02.1"), ("a", "02.2"), ("b", "03.0")]).await;
    let events = read_events(&mut stream, &mut buffer, 3).await;
    let rows: Vec<(String, String, i64)> = events[1..]
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v["window_start"].as_str().unwrap().to_string(),
                v["n"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("row".to_string(), "2026-11-27T10:00:01Z".to_string(), 1),
            ("row".to_string(), "2026-11-27T10:00:02Z".to_string(), 2),
        ]
    );
    assert!(events.iter().all(|(_, v)| v["source"] == "a"), "{events:?}");

    // `limit=1`: one event, then the response ends.
    let (status, body) = common::http_text(
        addr,
        "GET",
        "/subscribe?view=per_second&source=a&snapshot=true&limit=1",
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.matches("event: snapshot").count(), 1, "{body}");

    // Dropping the view ends the stream with a reason.
    sql(addr, "DROP MATERIALIZED VIEW per_second").await;
    let events = read_events(&mut stream, &mut buffer, 4).await;
    assert_eq!(events[3].0, "end", "{events:?}");
    assert!(
        events[3].1.as_str().unwrap().contains("per_second"),
        "{events:?}"
    );

    let (status, body) = get(addr, "/subscribe?view=nope").await;
    assert_eq!(status, 404, "{body}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
