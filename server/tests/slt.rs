//! Runs every `tests/slt/*.slt` file through the PostgreSQL wire protocol against a real
//! server (one server and data dir per file). Errors are reported as `SQLSTATE code: message`
//! so files can assert the code.

use std::path::PathBuf;

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
        let config = weir_server::Config {
            data_dir: data.path().to_path_buf(),
            file_dirs: Some(file_dirs),
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
        match runner.run_file_async(&file).await {
            Ok(()) => println!("ok {}", file.display()),
            Err(e) => failures.push(format!("{}: {}", file.display(), e.display(true))),
        }
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
    // Every file runs; each failing one reports its first failing record.
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
