//! The client drivers users bring, run against Weir and against the machine's PostgreSQL
//! holding the same rows: psql, psycopg 3, asyncpg, node-postgres and pgjdbc each connect,
//! run a plain query, bind parameters, execute one prepared statement six times (server-side
//! prepared: psycopg `prepare=True`, asyncpg, node-postgres named statements, pgjdbc past its
//! `prepareThreshold`), read binary results (psycopg, asyncpg, pgjdbc), get errors with their
//! SQLSTATE, use transactions (including a failed one, 25P02) and read metadata
//! (`information_schema`, pgjdbc's `DatabaseMetaData`). Each step's output must be what the
//! same step prints against PostgreSQL. Against Weir every driver logs in with SCRAM-SHA-256
//! over TLS (`sslmode=require`: no plaintext fallback), Weir started with an admin password
//! and a certificate. The scripts are in `tests/clients/`; `scripts/test.sh`
//! installs the drivers (pip, npm, Debian's libpostgresql-jdbc-java).

mod common;

use std::path::Path;
use std::process::Command;

use common::compare::SameRows;

/// Weir's admin password in this test.
const PASSWORD: &str = "client-harness-pw";

/// The driver scripts' folder.
fn scripts() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Where `scripts/test.sh` installs node-postgres.
fn node_path() -> String {
    let tools = std::env::var("WEIR_TOOLS_DIR").unwrap_or_else(|_| "/var/tmp/weir-tools".into());
    format!("{tools}/node/node_modules")
}

/// `step<TAB>output` lines of one driver's run against `port`/`db`.
fn run(client: &str, classes: &Path, port: u16, db: &str) -> Result<Vec<(String, String)>, String> {
    let port_text = port.to_string();
    let mut command = match client {
        "psql" => {
            // Errors (stderr) in line with the rows (stdout).
            let mut c = Command::new("sh");
            c.args(["-c", "exec psql \"$@\" 2>&1", "psql"])
                .args([
                    "-X",
                    "-A",
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port_text,
                    "-d",
                    db,
                ])
                .args(["-U", if db == "weir" { "weir" } else { "postgres" }])
                .arg("-f")
                .arg(scripts().join("psql_steps.sql"));
            c
        }
        "psycopg" | "asyncpg" => {
            let mut c = Command::new("python3");
            c.arg(scripts().join("py_clients.py"))
                .args([client, "127.0.0.1", &port_text, db]);
            c
        }
        "node-postgres" => {
            let mut c = Command::new("node");
            c.arg(scripts().join("node_client.js"))
                .args(["127.0.0.1", &port_text, db])
                .env("NODE_PATH", node_path());
            c
        }
        "pgjdbc" => {
            let mut c = Command::new("java");
            c.arg("-cp")
                .arg(format!(
                    "/usr/share/java/postgresql.jar:{}",
                    classes.display()
                ))
                .args(["Clients", "127.0.0.1", &port_text, db]);
            c
        }
        other => panic!("unknown client {other}"),
    };
    if db == "weir" {
        command
            .env("WEIR_CLIENT_PASSWORD", PASSWORD)
            .env("WEIR_CLIENT_SSLMODE", "require")
            .env("PGPASSWORD", PASSWORD)
            .env("PGSSLMODE", "require");
    }
    let output = command.output().map_err(|e| {
        format!("{client} could not start ({e}): run the tests with scripts/test.sh")
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let steps = if client == "psql" {
        // psql prints each step's marker (`\echo step:name`) then its rows or error.
        let mut steps: Vec<(String, String)> = Vec::new();
        for line in stdout.lines() {
            match line.strip_prefix("step:") {
                Some(name) => steps.push((name.to_string(), String::new())),
                None => {
                    if let Some(last) = steps.last_mut() {
                        // `psql:<file>:<line>: ERROR:  42P01`: the SQLSTATE.
                        last.1
                            .push_str(line.rsplit_once(": ").map_or(line, |(_, c)| c));
                        last.1.push('\n');
                    }
                }
            }
        }
        steps
    } else {
        stdout
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(s, v)| (s.to_string(), v.to_string()))
            .collect()
    };
    if client != "psql" && !output.status.success() {
        return Err(format!(
            "{client} failed after {} steps: {}",
            steps.len(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(steps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_driver_gets_postgresqls_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = common::self_signed_cert(dir.path());
    let same = SameRows::start_with(
        dir.path(),
        "clients",
        &[
            ("WEIR_ADMIN_PASSWORD", PASSWORD),
            ("WEIR_TLS_CERT", cert.to_str().unwrap()),
            ("WEIR_TLS_KEY", key.to_str().unwrap()),
        ],
    )
    .await;
    let classes = dir.path().join("classes");
    let javac = Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .arg("-cp")
        .arg("/usr/share/java/postgresql.jar")
        .arg(scripts().join("Clients.java"))
        .output()
        .expect("javac is missing: run the tests with scripts/test.sh");
    assert!(
        javac.status.success(),
        "{}",
        String::from_utf8_lossy(&javac.stderr)
    );

    let mut failures = Vec::new();
    let mut compared = 0;
    for client in ["psql", "psycopg", "asyncpg", "node-postgres", "pgjdbc"] {
        let pg = run(client, &classes, common::pg_port(), &same.database)
            .unwrap_or_else(|e| panic!("against PostgreSQL: {e}"));
        assert!(pg.len() >= 6, "{client} against PostgreSQL: {pg:?}");
        let weir = match run(client, &classes, same.weir.port, "weir") {
            Ok(steps) => steps,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        for (i, (step, want)) in pg.iter().enumerate() {
            match weir.get(i) {
                Some((s, got)) if s == step && got == want => compared += 1,
                Some((s, got)) => failures.push(format!(
                    "{client} {step}:\n  weir ({s}): {got}\n  postgresql: {want}"
                )),
                None => failures.push(format!("{client} {step}: no output from weir")),
            }
        }
    }
    common::drop_database(&same.database).await;
    assert!(
        failures.is_empty(),
        "{} differences from PostgreSQL ({compared} steps alike):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
