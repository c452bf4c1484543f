//! Sinks over TLS: the PostgreSQL sink with `sslmode=require` (the machine's PostgreSQL has
//! `ssl = on`; `pg_stat_ssl` shows the sink's connection encrypted) and the Redis sink with
//! a `rediss://` URL to a redis-server that listens with TLS only.

mod common;

use std::time::{Duration, Instant};

use common::{drop_database, fresh_database, memory_db};

/// An in-memory database with 2,000 generated events counted per source (5 sources) in
/// view `per_source`, written by a sink with `sink_options`.
async fn per_source_into(sink_options: &str) -> std::sync::Arc<weir_sql::Database> {
    let db = memory_db().await;
    common::exec(
        &db,
        &format!(
            "{};\nCREATE MATERIALIZED VIEW per_source AS SELECT source, count(*) AS n FROM events GROUP BY source;\n\
             CREATE SINK out FROM per_source WITH ({sink_options});",
            weir_server::demo::seed_source(
                "events",
                "connector = 'datagen', count = '2000', rate = '100000', seed = '3', sources = '5', realtime = 'false'",
            )
        ),
    )
    .await;
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_sink_writes_over_tls_with_sslmode_require() {
    let database = format!("weir_sink_tls_{}", std::process::id());
    let pg = fresh_database(&database).await;
    let url = common::pg_url(&database, "?sslmode=require&application_name=weir_tls_sink");
    let db = per_source_into(&format!(
        "connector = 'postgres', url = '{url}', table = 'per_source'"
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let total: Option<i64> = pg
            .query_opt("SELECT sum(n)::BIGINT FROM per_source", &[])
            .await
            .ok()
            .flatten()
            .and_then(|r| r.get(0));
        if total == Some(2000) {
            break;
        }
        assert!(Instant::now() < deadline, "rows did not arrive: {total:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let encrypted: Vec<bool> = pg
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'weir_tls_sink'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !encrypted.is_empty() && encrypted.iter().all(|&s| s),
        "{encrypted:?}"
    );
    db.shutdown();
    drop(pg);
    drop_database(&database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_sink_writes_over_tls_with_rediss() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = common::self_signed_cert(dir.path());
    let port = common::process::free_port();
    let mut redis = std::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--tls-auth-clients",
            "no",
        ])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .arg("--tls-ca-cert-file")
        .arg(&cert)
        .arg("--dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server must be installed (Debian package redis-server)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The server's certificate is self-signed: `#insecure` skips its verification.
    let url = format!("rediss://127.0.0.1:{port}/0#insecure");
    let db = per_source_into(&format!(
        "connector = 'redis', url = '{url}', key = 'tls:{{source}}'"
    ))
    .await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let keys: Vec<String> = redis::cmd("KEYS").arg("tls:*").query(&mut conn).unwrap();
        let mut total = 0;
        for k in &keys {
            let v: String = redis::cmd("GET").arg(k).query(&mut conn).unwrap();
            let row: serde_json::Value = serde_json::from_str(&v).unwrap();
            total += row["n"].as_i64().unwrap();
        }
        if keys.len() == 5 && total == 2000 {
            break;
        }
        assert!(Instant::now() < deadline, "{keys:?} {total}");
        std::thread::sleep(Duration::from_millis(100));
    }
    db.shutdown();
    let _ = redis.kill();
    let _ = redis.wait();
}
