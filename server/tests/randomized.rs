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
