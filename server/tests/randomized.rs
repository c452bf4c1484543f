//! Randomized hostile input against a live `weir --demo`: protocol messages with random
//! tags, lengths and bodies (and truncated ones) on the pgwire port, and random statements
//! built from the dialect's words. Whatever arrives, the server must answer or close that
//! one connection, never panic, and keep serving other clients and its views.
//!
//! Inputs come from a seeded generator (splitmix64), so a failure replays exactly: the
//! message names the seed; `WEIR_FUZZ_SEED=<seed> WEIR_FUZZ_CASES=<n>` runs one seed with
//! more cases. The seeds below are the kept corpus: every seed that ever found a problem is
//! added to them.

mod common;

use std::time::{Duration, Instant};

use common::process::{int, Weir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Seeds run by the test command (the corpus).
const SEEDS: [u64; 4] = [1, 2, 3, 0x5eed_2026_1204];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// (seed, cases) to run: the corpus, or the one seed of `WEIR_FUZZ_SEED`.
fn plan(default_cases: u64) -> Vec<(u64, u64)> {
    let cases = common::env_u64("WEIR_FUZZ_CASES", default_cases);
    match std::env::var("WEIR_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![(seed, cases)],
        None => SEEDS.iter().map(|&s| (s, cases)).collect(),
    }
}

fn startup() -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for kv in ["user", "weir", "database", "weir"] {
        body.extend_from_slice(kv.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// Words statements are made of.
const WORDS: [&str; 48] = [
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "ORDER",
    "LIMIT",
    "kpi_1m",
    "events",
    "weir.views",
    "weir.alerts",
    "count(*)",
    "avg(",
    ")",
    "(",
    ",",
    "*",
    "+",
    "-",
    "/",
    "=",
    "<>",
    "AND",
    "OR",
    "NOT",
    "1",
    "0",
    "-1",
    "9223372036854775807",
    "'x'",
    "''",
    "NULL",
    "source",
    "window_start",
    "TUMBLE(events, \"timestamp\", INTERVAL '1 minute')",
    "CREATE",
    "MATERIALIZED",
    "VIEW",
    "v",
    "AS",
    "DROP",
    "SOURCE",
    "WITH",
    "connector",
    "'datagen'",
    "SHOW",
    "SET",
    ";",
];

fn statement(rng: &mut Rng) -> String {
    let n = 1 + rng.below(14);
    let mut words: Vec<String> = Vec::new();
    if rng.below(3) > 0 {
        words.push("SELECT".into());
    }
    for _ in 0..n {
        words.push(rng.pick(&WORDS).to_string());
    }
    words.join(" ")
}

/// One frontend message: a random tag (mostly real ones), a body (random bytes or a
/// statement), and a length field that is right, off, or absurd.
fn message(rng: &mut Rng) -> Vec<u8> {
    const TAGS: &[u8] = b"QPBEDCSHXdcfFp";
    let tag = if rng.below(8) == 0 {
        rng.next() as u8
    } else {
        *rng.pick(TAGS)
    };
    let mut body: Vec<u8> = match rng.below(3) {
        0 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        1 => {
            let mut b = statement(rng).into_bytes();
            b.push(0);
            b
        }
        _ => {
            // A Bind/Parse-like layout with random counts.
            let mut b = b"\0\0".to_vec();
            b.extend((rng.below(5) as u16).to_be_bytes());
            for _ in 0..rng.below(4) {
                b.extend((rng.next() as i32 % 70_000).to_be_bytes());
            }
            b
        }
    };
    let true_len = body.len() as i64 + 4;
    let len = match rng.below(6) {
        0 => true_len + rng.below(9) as i64 - 4,
        1 => rng.next() as i32 as i64,
        _ => true_len,
    };
    let mut out = vec![tag];
    out.extend((len as i32).to_be_bytes());
    if rng.below(10) == 0 {
        body.truncate(rng.below(body.len() as u64 + 1) as usize);
    }
    out.extend(body);
    out
}

/// Sends `bytes` after `prefix` and reads whatever comes back until the server closes
/// the connection or is quiet for `quiet`.
async fn exchange(port: u16, prefix: &[u8], bytes: &[u8], quiet: Duration) {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let _ = s.write_all(prefix).await;
    let _ = s.write_all(bytes).await;
    let mut buf = [0u8; 8192];
    while let Ok(Ok(n)) = tokio::time::timeout(quiet, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
}

/// The server still serves: a new client queries a view and the demo's source keeps
/// reading; the log shows no panic.
async fn still_serving(weir: &mut Weir, what: &str) {
    let client = weir.connect().await;
    let before = int(&client, "SELECT events_in::BIGINT FROM weir.sources").await;
    int(&client, "SELECT count(*)::BIGINT FROM kpi_1m").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while int(&client, "SELECT events_in::BIGINT FROM weir.sources").await <= before {
        assert!(Instant::now() < deadline, "{what}: the source stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        weir.child.try_wait().unwrap().is_none(),
        "{what}: weir exited"
    );
    let log = weir.log_text();
    assert!(
        !log.contains("panicked"),
        "{what}: a panic in the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_protocol_messages_never_take_the_server_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start_with(
        dir.path(),
        &[("WEIR_DEMO", "true"), ("WEIR_DEMO_RATE", "200")],
    );
    weir.connect().await;
    for (seed, cases) in plan(200) {
        let mut rng = Rng(seed);
        let inputs: Vec<(Vec<u8>, Vec<u8>)> = (0..cases)
            .map(|_| {
                // Mostly after a good startup; sometimes the startup itself is random.
                let prefix = if rng.below(8) == 0 {
                    Vec::new()
                } else {
                    startup()
                };
                let mut bytes = Vec::new();
                for _ in 0..1 + rng.below(4) {
                    bytes.extend(message(&mut rng));
                }
                (prefix, bytes)
            })
            .collect();
        // Sixteen connections at a time.
        for (chunk, batch) in inputs.chunks(16).enumerate() {
            let port = weir.port;
            futures::future::join_all(
                batch.iter().map(|(prefix, bytes)| {
                    exchange(port, prefix, bytes, Duration::from_millis(200))
                }),
            )
            .await;
            if chunk % 4 == 3 {
                let what = format!(
                    "seed {seed}, cases to {} (replay: WEIR_FUZZ_SEED={seed} WEIR_FUZZ_CASES={})",
                    (chunk + 1) * 16,
                    (chunk + 1) * 16
                );
                still_serving(&mut weir, &what).await;
            }
        }
        still_serving(&mut weir, &format!("seed {seed}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_statements_get_an_answer_or_a_sqlstate_never_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start_with(
        dir.path(),
        &[("WEIR_DEMO", "true"), ("WEIR_DEMO_RATE", "200")],
    );
    let client = weir.connect().await;
    client
        .batch_execute("SET statement_timeout = '5s'")
        .await
        .unwrap();
    for (seed, cases) in plan(150) {
        let mut rng = Rng(seed);
        for case in 0..cases {
            let sql = statement(&mut rng);
            if let Err(e) = client.simple_query(&sql).await {
                let code = e.as_db_error().map(|d| d.code().code().to_string());
                assert!(
                    code.as_deref().is_some_and(|c| c != "XX000"),
                    "seed {seed}, case {case}: {sql}\n{e:?}\nreplay: WEIR_FUZZ_SEED={seed} WEIR_FUZZ_CASES={}",
                    case + 1
                );
            }
        }
        still_serving(&mut weir, &format!("seed {seed}")).await;
    }
}

/// Seed event lines with random mutations: bytes flipped or replaced, cut short, garbage
/// inserted, quotes dropped. Never an empty line or a newline inside one.
fn mutated(rng: &mut Rng, line: &str) -> String {
    let mut bytes = line.as_bytes().to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(bytes.len() as u64) as usize;
        match rng.below(5) {
            0 => bytes[at] = rng.next() as u8,
            1 => bytes.truncate(at.max(1)),
            2 => {
                let junk: Vec<u8> = (0..rng.below(8)).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, junk);
            }
            3 => bytes.retain(|&b| b != b'"' || rng.below(4) != 0),
            _ => bytes[at] ^= 1 << rng.below(8),
        }
    }
    bytes.retain(|&b| b != b'\n' && b != b'\r');
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        bytes = b"x".to_vec();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Every line of a file of partly mutated events is either an event or a dead letter:
/// none is lost, and the decoder never panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_event_lines_are_events_or_dead_letters_never_lost() {
    let g = common::kafka::generator(9, 500);
    for (seed, cases) in plan(2_000) {
        let mut rng = Rng(seed);
        let lines: Vec<String> = common::event_lines(&g, cases, 0)
            .into_iter()
            .map(|l| {
                if rng.below(3) == 0 {
                    mutated(&mut rng, &l)
                } else {
                    l
                }
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let mut weir = Weir::start(dir.path());
        let client = weir.connect().await;
        client
            .batch_execute(&format!(
                "{};\nCREATE MATERIALIZED VIEW per_source AS SELECT source, count(*) AS n FROM events GROUP BY source;",
                weir_server::demo::seed_source(
                    "events",
                    &format!("connector = 'file', path = '{}', format = 'json'", path.display())
                )
            ))
            .await
            .unwrap();
        let what = format!("seed {seed} (replay: WEIR_FUZZ_SEED={seed} WEIR_FUZZ_CASES={cases})");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let row = client
                .query_one(
                    "SELECT events_in::BIGINT, dead_letters::BIGINT, status FROM weir.sources",
                    &[],
                )
                .await
                .unwrap();
            let (events, dead, status): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
            if status == "finished" {
                assert_eq!(events + dead, cases as i64, "{what}: lines lost");
                assert!(dead > 0, "{what}: no mutation made a dead letter");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {status}\n{}",
                weir.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!weir.log_text().contains("panicked"), "{what}");
    }
}

/// Random requests on the REST port (methods, routes, query strings, bodies, headers): an
/// answer below 500 (or 503 from `/ready`), never a crash; the API keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_rest_requests_get_a_4xx_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start_with(
        dir.path(),
        &[("WEIR_DEMO", "true"), ("WEIR_DEMO_RATE", "200")],
    );
    weir.connect().await;
    const PATHS: [&str; 10] = [
        "/kpi",
        "/series",
        "/alerts",
        "/sql",
        "/ingest/events",
        "/ingest/nope",
        "/metrics",
        "/health",
        "/ready",
        "/%ff%00",
    ];
    const QUERIES: [&str; 8] = [
        "",
        "?source=src-0001&window=1m",
        "?window=forever",
        "?since=yesterday",
        "?limit=-1",
        "?source=%00",
        "?from=2026-01-01T00:00:00Z&to=1",
        "?a=b&a=c&&&=",
    ];
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], weir.http).into();
    for (seed, cases) in plan(100) {
        let mut rng = Rng(seed);
        for case in 0..cases {
            let method = *rng.pick(&["GET", "POST", "PUT", "DELETE", "OPTIONS"]);
            let path = format!("{}{}", rng.pick(&PATHS), rng.pick(&QUERIES));
            let body = match rng.below(3) {
                0 => String::new(),
                1 => statement(&mut rng),
                _ => mutated(
                    &mut rng,
                    "{\"event_id\":\"e\",\"source\":\"s\",\"timestamp\":\"2026-12-04T00:00:00Z\"}",
                ),
            };
            let (status, text) = common::http_text(addr, method, &path, &body).await;
            assert!(
                status < 500 || (status == 503 && path.starts_with("/ready")),
                "seed {seed}, case {case}: {method} {path} {body:?} → {status} {text}\nreplay: WEIR_FUZZ_SEED={seed} WEIR_FUZZ_CASES={}",
                case + 1
            );
        }
        still_serving(&mut weir, &format!("seed {seed}")).await;
    }
}
