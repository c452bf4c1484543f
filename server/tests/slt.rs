//! Runs every `tests/slt/*.slt` file through the PostgreSQL wire protocol against a real
//! server (one server and data dir per file). Errors are reported as `SQLSTATE code: message`
//! so files can assert the code.

mod common;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio::net::TcpListener;
use tokio_postgres::{NoTls, SimpleQueryMessage};

#[derive(Debug)]
struct PgError(String);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PgError {}

struct Pg {
    client: tokio_postgres::Client,
}

#[async_trait]
impl AsyncDB for Pg {
    type Error = PgError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, PgError> {
        let messages = self
            .client
            .simple_query(sql)
            .await
            .map_err(|e| match e.as_db_error() {
                Some(db) => PgError(format!("SQLSTATE {}: {}", db.code().code(), db.message())),
                None => PgError(e.to_string()),
            })?;
        let mut rows = Vec::new();
        let mut columns = None;
        for m in messages {
            match m {
                SimpleQueryMessage::RowDescription(d) => columns = Some(d.len()),
                SimpleQueryMessage::Row(r) => {
                    columns = Some(r.len());
                    rows.push(
                        (0..r.len())
                            .map(|i| r.get(i).unwrap_or("NULL").to_string())
                            .collect(),
                    );
                }
                _ => {}
            }
        }
        match columns {
            Some(n) => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            }),
            None => Ok(DBOutput::StatementComplete(0)),
        }
    }

    async fn shutdown(&mut self) {}

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await
    }
}

/// The files are written against PostgreSQL at 127.0.0.1:5432 (user postgres, trust): the
/// machine's. With `WEIR_TEST_POSTGRES` naming another, a copy of `file` (in `dir`) points
/// there: `psql` command lines, sink URLs and the masked URLs `SHOW CREATE SINK` prints.
fn localize(file: &Path, dir: &Path) -> PathBuf {
    let Ok(words) = std::env::var("WEIR_TEST_POSTGRES") else {
        return file.to_path_buf();
    };
    let word = |key: &str, default: &str| {
        words
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .find(|(k, _)| *k == key)
            .map_or(default.to_string(), |(_, v)| v.to_string())
    };
    let (host, port, user) = (
        word("host", "127.0.0.1"),
        word("port", "5432"),
        word("user", "postgres"),
    );
    let password = word("password", "");
    if !password.is_empty() {
        std::env::set_var("PGPASSWORD", &password);
    }
    let at = format!("@{host}:{port}");
    let with_password = if password.is_empty() {
        "hunter2"
    } else {
        &password
    };
    let url = common::pg_url("", "");
    let plain = url.trim_end_matches('/');
    let text = std::fs::read_to_string(file).unwrap();
    let localized: Vec<String> = text
        .lines()
        .map(|l| {
            let l = match l.strip_prefix("psql -h 127.0.0.1 -U postgres") {
                Some(rest) => format!("psql -h {host} -p {port} -U {user}{rest}"),
                None => l.to_string(),
            };
            l.replace(
                "postgres://postgres:hunter2@127.0.0.1:5432",
                &format!("postgres://{user}:{with_password}{at}"),
            )
            .replace(
                "postgres://postgres:***@127.0.0.1:5432",
                &format!("postgres://{user}:***{at}"),
            )
            .replace("postgres://postgres@127.0.0.1:5432", plain)
        })
        .collect();
    let copy = dir.join(file.file_name().unwrap());
    std::fs::write(&copy, localized.join("\n") + "\n").unwrap();
    copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    // `SLT=name` runs only the files whose name contains it.
    if let Ok(only) = std::env::var("SLT") {
        files.retain(|f| f.to_string_lossy().contains(&only));
    }
    let mut failures = Vec::new();
    for file in files {
        let data = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // File sources may also read the fixtures: `path = 'tests/slt/data/….jsonl'`.
        let mut file_dirs = weir_connectors::default_file_dirs(data.path());
        file_dirs.push(dir.join("data"));
        // `# weir: cluster` on a file's first line: the server is replica weir-0 of 2.
        let text = std::fs::read_to_string(&file).unwrap();
        let cluster = text
            .lines()
            .next()
            .is_some_and(|l| l.trim() == "# weir: cluster")
            .then(|| weir_server::config::ClusterSettings {
                replicas: 2,
                ordinal: Some(0),
                replica: Some("weir-0".into()),
                state_dir: Some(data.path().join("shared")),
                ..Default::default()
            });
        let config = weir_server::Config {
            data_dir: data.path().to_path_buf(),
            file_dirs: Some(file_dirs),
            cluster,
            ..Default::default()
        };
        let server = tokio::spawn(weir_server::run(config, listener, None, async move {
            let _ = stopped.await;
        }));
        let mut runner = sqllogictest::Runner::new(move || async move {
            let conn = format!("host=127.0.0.1 port={port} user=weir dbname=weir");
            let (client, connection) = tokio_postgres::connect(&conn, NoTls)
                .await
                .map_err(|e| PgError(e.to_string()))?;
            tokio::spawn(connection);
            Ok(Pg { client })
        });
        let localized = localize(&file, data.path());
        match runner.run_file_async(&localized).await {
            Ok(()) => println!("ok {}", file.display()),
            Err(e) => failures.push(format!("{}: {}", file.display(), e.display(true))),
        }
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
    // Every file runs; each failing one reports its first failing record.
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
