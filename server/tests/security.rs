//! pgwire users: SCRAM-SHA-256 logins, the read-only default and `ADMIN`, `weir.users`,
//! persistence across `kill -9`, and serving other machines once a password is set.

mod common;

use std::time::{Duration, Instant};

use common::process::Weir;
use tokio_postgres::{Client, NoTls};

/// Connects as `user` with `password`: the client, or the SQLSTATE of the refusal.
async fn login(weir: &Weir, user: &str, password: &str) -> Result<Client, String> {
    let conn = format!(
        "host=127.0.0.1 port={} user={user} password={password} dbname=weir",
        weir.port
    );
    match tokio_postgres::connect(&conn, NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Ok(client)
        }
        Err(e) => Err(e
            .as_db_error()
            .map(|d| d.code().code().to_string())
            .unwrap_or_else(|| e.to_string())),
    }
}

/// Waits until the server accepts `user`'s login.
async fn login_when_up(weir: &mut Weir, user: &str, password: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match login(weir, user, password).await {
            Ok(c) => return c,
            Err(e) => assert!(Instant::now() < deadline, "{e}\n{}", weir.log_text()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn code(client: &Client, sql: &str) -> String {
    match client.batch_execute(sql).await {
        Ok(()) => "ok".into(),
        Err(e) => e
            .as_db_error()
            .map(|d| d.code().code().to_string())
            .unwrap_or_else(|| e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_log_in_with_scram_and_read_only_users_get_42501() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("admin-password");
    std::fs::write(&secret, "adm1n pw\n").unwrap();
    let mut weir = Weir::start_with(
        dir.path(),
        &[("WEIR_ADMIN_PASSWORD_FILE", secret.to_str().unwrap())],
    );
    let admin = login_when_up(&mut weir, "weir", "'adm1n pw'").await;
    assert_eq!(login(&weir, "weir", "wrong").await.err().unwrap(), "28P01");
    assert_eq!(login(&weir, "nobody", "x").await.err().unwrap(), "28P01");

    admin
        .batch_execute(
            &(weir_server::demo::seed_source(
                "events",
                "connector = 'datagen', count = '100', rate = '1000', realtime = 'false'",
            ) + ";\
             CREATE MATERIALIZED VIEW per_source AS SELECT source, count(*) AS n FROM events GROUP BY source;\
             CREATE USER grafana WITH PASSWORD 'gr@fana';\
             CREATE USER ops WITH PASSWORD 'ops-pw' ADMIN;"),
        )
        .await
        .unwrap();
    assert_eq!(
        code(&admin, "CREATE USER grafana WITH PASSWORD 'x'").await,
        "42710"
    );
    assert_eq!(
        code(&admin, "ALTER USER nobody WITH PASSWORD 'x'").await,
        "42704"
    );
    assert_eq!(code(&admin, "CREATE USER nopw").await, "22023");
    let users: Vec<(String, bool)> = admin
        .query("SELECT name, admin FROM weir.users ORDER BY name", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        users,
        [
            ("grafana".to_string(), false),
            ("ops".to_string(), true),
            ("weir".to_string(), true)
        ]
    );
    let columns = admin.query("SELECT * FROM weir.users", &[]).await.unwrap()[0]
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect::<Vec<_>>();
    assert_eq!(columns, ["name", "admin", "created_at"]);

    // A read-only user queries views and system relations; DDL is 42501.
    let grafana = login(&weir, "grafana", "gr@fana").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while grafana
        .query("SELECT * FROM per_source", &[])
        .await
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    grafana
        .query("SELECT * FROM weir.sources", &[])
        .await
        .unwrap();
    grafana
        .batch_execute("SET statement_timeout = '5s'; SHOW ALL; DISCARD ALL; BEGIN; COMMIT")
        .await
        .unwrap();
    admin
        .batch_execute(
            "CREATE TABLE notes (id INT PRIMARY KEY, note TEXT); INSERT INTO notes VALUES (1, 'a')",
        )
        .await
        .unwrap();
    for ddl in [
        "CREATE TABLE t2 (id INT PRIMARY KEY)",
        "INSERT INTO notes VALUES (2, 'b')",
        "UPDATE notes SET note = 'c'",
        "DELETE FROM notes",
        "TRUNCATE notes",
        "COPY notes FROM STDIN",
        "DROP TABLE notes",
        "DROP MATERIALIZED VIEW per_source",
        "CREATE SINK s FROM per_source WITH (connector = 'parquet', path = 'out')",
        "CREATE MATERIALIZED VIEW v2 AS SELECT source FROM events",
        "CREATE USER eve WITH PASSWORD 'x' ADMIN",
        "ALTER USER grafana WITH ADMIN",
        "DROP USER ops",
    ] {
        assert_eq!(code(&grafana, ddl).await, "42501", "{ddl}");
    }
    // Over the extended protocol too.
    let err = grafana
        .query("DROP MATERIALIZED VIEW per_source", &[])
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501");
    let err = grafana
        .execute("INSERT INTO notes VALUES ($1, $2)", &[&5i32, &"e"])
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501");
    // The table is as the admin left it; a read-only user reads it.
    let rows = grafana.query("SELECT id FROM notes", &[]).await.unwrap();
    assert_eq!(rows.len(), 1);

    // An admin changes a password; the old one stops working.
    admin
        .batch_execute("ALTER USER grafana WITH PASSWORD 'n3w'")
        .await
        .unwrap();
    assert_eq!(
        login(&weir, "grafana", "gr@fana").await.err().unwrap(),
        "28P01"
    );
    login(&weir, "grafana", "n3w").await.unwrap();
    // A real client: psql with SCRAM.
    let psql = std::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-c", "SELECT count(*) FROM weir.users"])
        .arg(format!(
            "host=127.0.0.1 port={} user=grafana dbname=weir",
            weir.port
        ))
        .env("PGPASSWORD", "n3w")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&psql.stdout).trim(),
        "3",
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );

    // Users survive kill -9; the secrets on disk are not the passwords.
    weir.kill_and_restart();
    let admin = login_when_up(&mut weir, "ops", "ops-pw").await;
    login(&weir, "grafana", "n3w").await.unwrap();
    let file = std::fs::read_to_string(weir.data.join("users.json")).unwrap();
    assert!(!file.contains("n3w") && !file.contains("ops-pw") && !file.contains("adm1n"));

    // The last admin cannot go while other users exist.
    admin.batch_execute("DROP USER weir").await.unwrap();
    assert_eq!(code(&admin, "DROP USER ops").await, "55006");
    assert_eq!(code(&admin, "ALTER USER ops WITH NOADMIN").await, "55006");
    admin.batch_execute("DROP USER grafana").await.unwrap();
    assert_eq!(login(&weir, "grafana", "n3w").await.err().unwrap(), "28P01");

    // Guessing slows down: after four more failures from this address the next login
    // waits 100 ms × 2³ before its exchange starts.
    for _ in 0..4 {
        assert_eq!(login(&weir, "ops", "guess").await.err().unwrap(), "28P01");
    }
    let started = Instant::now();
    login(&weir, "ops", "ops-pw").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    // A success clears the address's record.
    let started = Instant::now();
    login(&weir, "ops", "ops-pw").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

/// With an admin password, pgwire may listen on every address (clients must log in).
#[test]
fn an_admin_password_lets_pgwire_serve_other_machines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("weir.log");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_weir"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("WEIR_")) {
        command.env_remove(key);
    }
    let mut child = command
        .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
        .args(["--pg-addr", "0.0.0.0:0", "--http-addr", "127.0.0.1:0"])
        .env("WEIR_ADMIN_PASSWORD", "s3cret")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("weir is ready") {
            assert!(!text.contains("INSECURE"), "{text}");
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "weir exited:\n{text}");
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `psql` with `conninfo` running `sql`: (success, stdout + stderr).
fn psql(conninfo: &str, password: &str, sql: &str) -> (bool, String) {
    let out = std::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-c", sql, conninfo])
        .env("PGPASSWORD", password)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_verified_certificate_and_plaintext_refused_under_require_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = common::self_signed_cert(dir.path());
    let weir = Weir::start_with(
        dir.path(),
        &[
            ("WEIR_ADMIN_PASSWORD", "tls-pw"),
            ("WEIR_TLS_CERT", cert.to_str().unwrap()),
            ("WEIR_TLS_KEY", key.to_str().unwrap()),
            ("WEIR_REQUIRE_TLS", "true"),
        ],
    );
    let port = weir.port;
    // psql verifies the certificate and the host name, then logs in with SCRAM over TLS.
    let verified = format!(
        "host=localhost port={port} user=weir dbname=weir sslmode=verify-full sslrootcert={}",
        cert.display()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out) = psql(&verified, "tls-pw", "SELECT count(*) FROM weir.users");
        if ok {
            assert_eq!(out.trim(), "1", "{out}");
            break;
        }
        assert!(Instant::now() < deadline, "{out}\n{}", weir.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    // A wrong password over TLS is still 28P01.
    let (ok, out) = psql(&verified, "nope", "SELECT 1");
    assert!(
        !ok && out.contains("password authentication failed"),
        "{out}"
    );
    // Plaintext is refused with the reason.
    let (ok, out) = psql(
        &format!("host=127.0.0.1 port={port} user=weir dbname=weir sslmode=disable"),
        "tls-pw",
        "SELECT 1",
    );
    assert!(!ok && out.contains("TLS is required"), "{out}");
    match login(&weir, "weir", "tls-pw").await {
        Err(code) => assert_eq!(code, "28000"),
        Ok(_) => panic!("a plaintext login was accepted under require_tls"),
    }
    // A server certificate the client does not trust fails verification.
    let other = tempfile::tempdir().unwrap();
    let (other_cert, _) = common::self_signed_cert(other.path());
    let (ok, out) = psql(
        &format!(
            "host=localhost port={port} user=weir dbname=weir sslmode=verify-full sslrootcert={}",
            other_cert.display()
        ),
        "tls-pw",
        "SELECT 1",
    );
    assert!(!ok && out.contains("certificate verify failed"), "{out}");

    // REST serves HTTPS from the same certificate (curl verifies it), and no plain HTTP.
    let url = format!("https://localhost:{}/health", weir.http);
    let curl = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&cert)
        .arg(&url)
        .output()
        .expect("curl");
    assert!(
        curl.status.success() && String::from_utf8_lossy(&curl.stdout).contains("ok"),
        "{}{}",
        String::from_utf8_lossy(&curl.stdout),
        String::from_utf8_lossy(&curl.stderr)
    );
    let plain = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{}/health", weir.http))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("\"ok\""));
}
