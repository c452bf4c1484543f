//! Running the real `weir` binary: start it on a free port, connect over pgwire, kill it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

/// A `weir` server process with its data dir, port and log file.
pub struct Weir {
    pub child: Child,
    pub port: u16,
    /// The REST port.
    pub http: u16,
    pub data: PathBuf,
    pub log: PathBuf,
    /// Settings (`WEIR_*` variables) beyond the defaults.
    env: Vec<(String, String)>,
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Weir {
    /// Starts `weir` on `data`, checkpointing every 200 ms, logging to `<dir>/weir.log`.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// Like [`start`](Self::start), with settings as `WEIR_*` variables.
    pub fn start_with(dir: &Path, env: &[(&str, &str)]) -> Self {
        let data = dir.join("data");
        let log = dir.join("weir.log");
        let port = free_port();
        let http = free_port();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self {
            child: Self::spawn(&data, port, http, &log, &env),
            port,
            http,
            data,
            log,
            env,
        }
    }

    fn spawn(data: &Path, port: u16, http: u16, log: &Path, env: &[(String, String)]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        // The test's own WEIR_* variables (broker address, scenario sizes) are not settings.
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("WEIR_")) {
            command.env_remove(key);
        }
        command
            .arg("--data-dir")
            .arg(data)
            .arg("--pg-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{http}"))
            .env("WEIR_CHECKPOINT_INTERVAL", "200ms")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting weir")
    }

    /// `kill -9`, then starts it again on the same data dir and port.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.child = Self::spawn(&self.data, self.port, self.http, &self.log, &self.env);
    }

    /// Stops it as an orchestrator does (SIGTERM: last checkpoints, leases released).
    pub fn stop(&mut self) {
        self.signal("TERM");
        self.child.wait().unwrap();
    }

    /// Starts it again (after [`stop`](Self::stop) or [`kill`](Self::kill)) with `env`
    /// changed.
    pub fn start_again(&mut self, env: &[(&str, &str)]) {
        for (k, v) in env {
            self.env.retain(|(key, _)| key != k);
            self.env.push((k.to_string(), v.to_string()));
        }
        self.child = Self::spawn(&self.data, self.port, self.http, &self.log, &self.env);
    }

    /// Sends `SIG<name>` (`STOP` freezes it, `CONT` lets it go on).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// `kill -9` and reap.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Connects, retrying while the server starts.
    pub async fn connect(&mut self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("weir exited with {status}:\n{}", self.log_text());
            }
            // With an admin password, as the admin (SCRAM over plaintext).
            let password = self
                .env
                .iter()
                .find(|(k, _)| k == "WEIR_ADMIN_PASSWORD")
                .map(|(_, v)| format!(" password={v}"))
                .unwrap_or_default();
            let conn = format!(
                "host=127.0.0.1 port={} user=weir dbname=weir{password}",
                self.port
            );
            if let Ok((client, connection)) = tokio_postgres::connect(&conn, NoTls).await {
                tokio::spawn(connection);
                return client;
            }
            assert!(Instant::now() < deadline, "weir did not accept connections");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET path` on the REST port: the status and the JSON body.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        super::http(([127, 0, 0, 1], self.http).into(), "GET", path, "").await
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One integer from a query (cast to BIGINT by the caller's SQL).
pub async fn int(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Polls until `sql` (one BIGINT) returns `want`, failing with the log after `timeout`.
pub async fn wait_for(weir: &Weir, client: &Client, sql: &str, want: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = int(client, sql).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql}: {got}, expected {want}\n{}",
            weir.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Rows of a `kpi_1m`-shaped view as [`super::Kpi`]s keyed by (source, window start ns).
pub async fn kpis(
    client: &Client,
    view: &str,
) -> std::collections::BTreeMap<(String, i64), super::Kpi> {
    let rows = client
        .query(
            &format!(
                "SELECT source, CAST(window_start AS BIGINT), count, avg_metric, p95_metric, \
                 error_rate FROM {view}"
            ),
            &[],
        )
        .await
        .unwrap();
    let mut out = std::collections::BTreeMap::new();
    for r in &rows {
        let key = (r.get::<_, String>(0), r.get::<_, i64>(1));
        let kpi = super::Kpi {
            count: r.get(2),
            avg_metric: r.get(3),
            p95_metric: r.get::<_, Option<f64>>(4).unwrap_or(f64::NAN),
            error_rate: r.get(5),
        };
        assert!(
            out.insert(key.clone(), kpi).is_none(),
            "{key:?} twice in {view}"
        );
    }
    out
}

/// Counts per (source, window start) of 1-minute windows sliding by 10 s.
pub fn hop_counts(events: &[super::RefEvent]) -> std::collections::BTreeMap<(String, i64), i64> {
    let slide = 10_000_000_000i64;
    let mut out = std::collections::BTreeMap::new();
    for e in events {
        let last = e.time_ns.div_euclid(slide) * slide;
        for k in 0..6 {
            *out.entry((e.source.clone(), last - k * slide)).or_default() += 1;
        }
    }
    out
}

/// Checks `kpi_1m` against DataFusion's batch query over `events` and `kpi_1m_hop`'s counts
/// against [`hop_counts`].
pub async fn assert_kpi_views_match(client: &Client, dir: &Path, events: &[super::RefEvent]) {
    let minute = 60_000_000_000i64;
    let reference = super::batch(dir, events, super::KPI_1M_BATCH_SQL).await;
    let exact = super::exact_p95(events, |t| vec![t.div_euclid(minute) * minute]);
    super::assert_equivalent(&kpis(client, "kpi_1m").await, &reference, &exact);
    let hop: std::collections::BTreeMap<(String, i64), i64> = kpis(client, "kpi_1m_hop")
        .await
        .into_iter()
        .map(|(k, v)| (k, v.count))
        .collect();
    assert_eq!(hop, hop_counts(events), "kpi_1m_hop counts");
}
