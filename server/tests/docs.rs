//! Docs that run: every `sh` and `sql` block of README.md, SECURITY.md and docs/*.md is
//! executed, in order, the way a reader would type it, and its output is checked where the
//! doc shows it. A doc example can no longer rot.
//!
//! How a page runs (one fresh working directory per page):
//! - A `sh` block runs as written under `bash -e -o pipefail`. `cargo run … -p weir-server --
//!   ARGS` and `weir ARGS` run the binary under test (`tests/docs/weir-shim.sh`): a server
//!   starts in the background as in a second terminal — the previous one is stopped first, as
//!   Ctrl-C would — and the block goes on once pgwire accepts connections.
//! - A `psql …` line without `-c`/`-f` opens the session: it connects (and quits, as stdin is
//!   empty here), and every later `sql` block runs through that command line with
//!   `ON_ERROR_STOP`, so every statement of the block must succeed.
//! - `127.0.0.1:9092` is the test Kafka broker (`WEIR_TEST_KAFKA`); the machine's
//!   PostgreSQL loses its `weir` database before each page, as on a fresh machine.
//! - Markers, an HTML comment on the line before a fence:
//!   `<!-- doc-test: output -->` — this (`text`) block is the previous block's expected
//!   output; `…` matches anything. A block with an expected output is run again until it
//!   shows it (60 s at most), since a reader's next command comes seconds later: keep such
//!   blocks read-only.
//!   `<!-- doc-test: skip: reason -->` — the block does not run here (a benchmark, a host
//!   that does not exist); keep these rare, the test prints them all.
//! - Every fence names its language; blocks other than `sh` and `sql` (`text`, `json`,
//!   `toml`) are not run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Block {
    line: usize,
    lang: String,
    text: String,
    skip: Option<String>,
    expected: Option<String>,
}

fn marker(line: &str) -> Option<&str> {
    line.trim()
        .strip_prefix("<!-- doc-test:")?
        .strip_suffix("-->")
        .map(str::trim)
}

/// The fenced blocks of a Markdown page, with markers and expected outputs attached.
fn blocks(path: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<Block> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let start = i + 1;
        let lang = lang.trim().to_string();
        assert!(
            !lang.is_empty(),
            "{}:{start}: a fence must name its language (sh, sql, text, …)",
            path.display()
        );
        let before = lines[..i]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| marker(l));
        let mut end = start;
        while end < lines.len() && !lines[end].trim_start().starts_with("```") {
            end += 1;
        }
        let body = lines[start..end].join("\n") + "\n";
        i = end + 1;
        match before {
            Some("output") => {
                let previous = out
                    .last_mut()
                    .filter(|b| b.lang == "sh" || b.lang == "sql")
                    .unwrap_or_else(|| {
                        panic!(
                            "{}:{start}: an output block follows no sh/sql block",
                            path.display()
                        )
                    });
                previous.expected = Some(body);
            }
            Some(m) => {
                let reason = m.strip_prefix("skip:").map(str::trim).unwrap_or_else(|| {
                    panic!(
                        "{}:{start}: unknown marker {m:?} (output, skip: reason)",
                        path.display()
                    )
                });
                assert!(
                    !reason.is_empty(),
                    "{}:{start}: a skip needs a reason",
                    path.display()
                );
                out.push(Block {
                    line: start,
                    lang,
                    text: body,
                    skip: Some(reason.to_string()),
                    expected: None,
                });
            }
            None => out.push(Block {
                line: start,
                lang,
                text: body,
                skip: None,
                expected: None,
            }),
        }
    }
    out
}

/// Whether `actual` shows `expected`, where `…` in `expected` matches any text. Lines are
/// compared without trailing blanks.
fn shows(actual: &str, expected: &str) -> bool {
    let norm = |s: &str| {
        s.lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_string()
    };
    let (actual, expected) = (norm(actual), norm(expected));
    let parts: Vec<&str> = expected.split('…').collect();
    if parts.len() == 1 {
        return actual == expected;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if actual.len() < first.len() + last.len()
        || !actual.starts_with(first)
        || !actual.ends_with(last)
    {
        return false;
    }
    let mut rest = &actual[first.len()..actual.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// The `psql …` command lines of a shell block that open an interactive session.
fn psql_sessions(text: &str) -> Vec<String> {
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .map(|l| l.split(" # ").next().unwrap_or("").trim().to_string())
        .filter(|l| {
            // `psql …`, or `NAME=value … psql …` (variables without blanks in their values).
            let Some(at) = l.find("psql ") else {
                return false;
            };
            let assignments = l[..at].split_whitespace().all(|w| w.contains('='));
            (at == 0 || (l.as_bytes()[at - 1] == b' ' && assignments))
                && !l.contains(" -c ")
                && !l.contains(" -f ")
        })
        .collect()
}

struct Page {
    file: String,
    dir: tempfile::TempDir,
    path: String,
    state: PathBuf,
    broker: String,
    psql: Option<String>,
}

impl Page {
    fn new(file: &str, shims: &Path, broker: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".doc-test");
        std::fs::create_dir(&state).unwrap();
        Self {
            file: file.to_string(),
            path: format!("{}:{}", shims.display(), std::env::var("PATH").unwrap()),
            dir,
            state,
            broker: broker.to_string(),
            psql: None,
        }
    }

    /// Runs `script` under bash in the page's directory: (success, stdout, stderr).
    fn bash(&self, script: &str) -> (bool, String, String) {
        let mut command = Command::new("timeout");
        command
            .arg("600")
            .arg("bash")
            .arg("-e")
            .arg("-o")
            .arg("pipefail")
            .arg("-c");
        command.arg(script);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("WEIR_")) {
            command.env_remove(key);
        }
        let out = command
            .current_dir(self.dir.path())
            .env("PATH", &self.path)
            .env("DOCS_WEIR_BIN", env!("CARGO_BIN_EXE_weir"))
            .env("DOCS_STATE", &self.state)
            .env("PAGER", "cat")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn run(&mut self, block: &Block) {
        let text = block.text.replace("127.0.0.1:9092", &self.broker);
        let script = match block.lang.as_str() {
            "sh" => text.clone(),
            "sql" => {
                let psql = self.psql.clone().unwrap_or_else(|| {
                    panic!(
                        "{}:{}: a SQL block before any `psql …` line opened a session",
                        self.file, block.line
                    )
                });
                let file = self.state.join(format!("block-{}.sql", block.line));
                std::fs::write(&file, &text).unwrap();
                format!("{psql} -X -q -v ON_ERROR_STOP=1 -f {}", file.display())
            }
            _ => return,
        };
        let started = Instant::now();
        loop {
            let (ok, stdout, stderr) = self.bash(&script);
            let context = || {
                format!(
                    "{}:{} ({} block)\n{}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server log\n{}",
                    self.file,
                    block.line,
                    block.lang,
                    block.text,
                    self.server_log()
                )
            };
            assert!(ok, "failed: {}", context());
            match &block.expected {
                Some(expected) if !shows(&stdout, expected) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(60),
                        "does not show what the doc shows within 60 s:\n--- expected\n{expected}\n{}",
                        context()
                    );
                    std::thread::sleep(Duration::from_millis(500));
                }
                _ => break,
            }
        }
        if block.lang == "sh" {
            if let Some(session) = psql_sessions(&text).pop() {
                self.psql = Some(session);
            }
        }
    }

    fn server_log(&self) -> String {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.state)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        logs.last()
            .map(|p| {
                let text = std::fs::read_to_string(p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            })
            .unwrap_or_default()
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.state.join("server.pid")) {
            let pid = pid.trim();
            let _ = Command::new("kill")
                .args(["-INT", pid])
                .stderr(Stdio::null())
                .status();
            for _ in 0..300 {
                // Running: its /proc entry exists and is not a zombie nobody reaped.
                let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
                    .unwrap_or(false);
                if !alive {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// README.md first (it produces the Kafka topic the others read), then SECURITY.md and
/// docs/*.md in name order.
fn pages() -> Vec<PathBuf> {
    let root = repo();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    let mut pages = vec![root.join("README.md"), root.join("SECURITY.md")];
    pages.extend(docs);
    pages
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_sh_and_sql_block_of_the_docs_runs_as_written() {
    for port in [6875, 8080] {
        assert!(
            port_is_free(port),
            "the docs use Weir's default ports; something already listens on 127.0.0.1:{port}"
        );
    }
    let broker = common::kafka::broker();
    let shims = tempfile::tempdir().unwrap();
    let shim = repo().join("server/tests/docs/weir-shim.sh");
    for name in ["cargo", "weir"] {
        std::os::unix::fs::symlink(&shim, shims.path().join(name)).unwrap();
    }
    let (mut ran, mut skipped) = (0, Vec::new());
    for path in pages() {
        let file = path.strip_prefix(repo()).unwrap().display().to_string();
        common::drop_database("weir").await;
        let mut page = Page::new(&file, shims.path(), &broker);
        for block in blocks(&path) {
            if block.lang != "sh" && block.lang != "sql" {
                continue;
            }
            if let Some(reason) = &block.skip {
                skipped.push(format!("{file}:{} — {reason}", block.line));
                continue;
            }
            eprintln!("{file}:{} ({})", block.line, block.lang);
            page.run(&block);
            ran += 1;
        }
    }
    common::drop_database("weir").await;
    eprintln!("{ran} blocks ran; {} not run:", skipped.len());
    for s in &skipped {
        eprintln!("  {s}");
    }
    assert!(ran >= 30, "only {ran} blocks ran");
}

#[test]
fn output_patterns_match_as_documented() {
    assert!(shows("a\nb  \n", "a\nb"));
    assert!(shows("{\"accepted\":1000}", "{\"accepted\":…}"));
    assert!(shows("x 1 y 2 z", "x … y … z"));
    assert!(!shows("x 1 y 2", "x … y … z"));
    assert!(!shows("a", "b"));
    assert_eq!(
        psql_sessions("weir --demo\npsql -h 127.0.0.1 -p 6875 -U weir -d weir   # a session\npsql -c 'SELECT 1'\nPGPASSWORD=x psql \"host=localhost\"\necho psql x\n"),
        vec![
            "psql -h 127.0.0.1 -p 6875 -U weir -d weir".to_string(),
            "PGPASSWORD=x psql \"host=localhost\"".to_string()
        ]
    );
}
