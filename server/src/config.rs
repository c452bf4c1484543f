//! Server configuration, layered: built-in defaults → TOML file → `WEIR_*` environment →
//! command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Result, ServerError};

/// Everything `weir` can be configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory holding the catalog (default `./weir-data`).
    pub data_dir: PathBuf,
    /// PostgreSQL wire protocol address (default 127.0.0.1:6875).
    pub pg_addr: SocketAddr,
    /// HTTP address for the REST API (default 127.0.0.1:8080).
    pub http_addr: SocketAddr,
    /// Create the demo source and views if missing.
    pub demo: bool,
    /// Events per second of the demo generator.
    pub demo_rate: u64,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// Time between checkpoints of a pipeline, e.g. `1s`, `250ms` (default 1s).
    pub checkpoint_interval: String,
    /// Discard checkpoints an incompatible build wrote and rebuild state from the sources.
    pub rebuild_state: bool,
    /// Open pgwire connections at most; more are refused with SQLSTATE 53300 (default 100).
    pub max_connections: usize,
    /// Memory ad-hoc queries may use together, in MiB (default 2048); past it they spill
    /// or fail with SQLSTATE 53200, and the views keep running.
    pub query_memory_mb: usize,
    /// Directories file sources may read (default: the data dir, `./import` and the
    /// system's temporary directory).
    pub file_dirs: Option<Vec<PathBuf>>,
    /// `retention` of a view created without one (e.g. `1 hour`); none by default.
    pub view_retention: Option<String>,
    /// `history` of a view that gets `view_retention` (default 7 days).
    pub view_history: Option<String>,
    /// Where views' Parquet history goes: `s3://bucket/prefix` (S3-compatible storage;
    /// credentials and endpoint from the `AWS_*` variables) or a directory; default
    /// `<data dir>/history`.
    pub history_url: Option<String>,
    /// How long dead letters and late events stay in memory (wall time) before they move
    /// to Parquet files under the history root; none: in memory (100,000 rows each at most).
    pub system_log_retention: Option<String>,
    /// How long those files are kept (default 30 days).
    pub system_log_history: Option<String>,
    /// REST bearer tokens and their scopes; none: the REST API is open.
    pub api_tokens: Vec<crate::rest::auth::TokenConfig>,
    /// With tokens: `/ready` and `/metrics` stay open (probes and scrapers) (default true).
    pub probes_public: bool,
    /// Serve other machines without credentials (pgwire without users, REST without tokens).
    pub insecure: bool,
    /// The admin user the server ensures at start when `admin_password` is set.
    pub admin_user: String,
    /// That user's password, or a `${env:NAME}` / `${file:/path}` reference to it.
    pub admin_password: Option<String>,
    /// A file holding that password (`WEIR_ADMIN_PASSWORD_FILE`, a container secret); its
    /// trailing newline is not part of it.
    pub admin_password_file: Option<PathBuf>,
    /// PEM certificate chain for pgwire TLS (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Refuse pgwire clients that do not ask for TLS (needs `tls_cert`).
    pub require_tls: bool,
    /// A SQL file run at every start, after the catalog is replayed (`CREATE … IF NOT
    /// EXISTS` statements): how every replica of a cluster gets the same definitions.
    pub init_sql: Option<PathBuf>,
    /// Run as one of several replicas that split Kafka sources by partition (`[cluster]`).
    pub cluster: Option<ClusterSettings>,
}

/// `[cluster]`: this process is one replica of several (docs/scale-out.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// How many replicas share each Kafka source's partitions.
    pub replicas: u32,
    /// This replica's ordinal, `0..replicas` (default: the number ending its name, as in
    /// a StatefulSet's `weir-2`).
    pub ordinal: Option<u32>,
    /// This replica's name, unique among the replicas (default: the host name, a pod's
    /// name in Kubernetes).
    pub replica: Option<String>,
    /// The directory every replica sees (a shared volume): partitions' checkpoints and
    /// leases.
    pub state_dir: Option<PathBuf>,
    /// Instead of `state_dir`: an S3 prefix every replica reaches (`s3://bucket/prefix`,
    /// credentials from the `AWS_*` variables) for the leases and a copy of each
    /// partition's checkpoints; views' history goes there too unless `history_url` says
    /// otherwise.
    pub state_url: Option<String>,
    /// A partition's lease not renewed for this long may be taken by another replica
    /// (default 10s).
    pub lease_timeout: String,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            replicas: 1,
            ordinal: None,
            replica: None,
            state_dir: None,
            state_url: None,
            lease_timeout: "10s".into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./weir-data"),
            pg_addr: SocketAddr::from(([127, 0, 0, 1], 6875)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            demo: false,
            demo_rate: 1000,
            log_format: "text".into(),
            checkpoint_interval: "1s".into(),
            rebuild_state: false,
            max_connections: 100,
            query_memory_mb: 2048,
            file_dirs: None,
            view_retention: None,
            view_history: None,
            history_url: None,
            system_log_retention: None,
            system_log_history: None,
            api_tokens: Vec::new(),
            probes_public: true,
            insecure: false,
            admin_user: "weir".into(),
            admin_password: None,
            admin_password_file: None,
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            init_sql: None,
            cluster: None,
        }
    }
}

impl Config {
    /// Defaults, then `file` (if any), then `WEIR_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut table = toml::Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ServerError::Config(format!("cannot read {}: {e}", path.display())))?;
            table = text
                .parse::<toml::Table>()
                .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
        }
        for (key, value) in env {
            let Some(name) = key.strip_prefix("WEIR_") else {
                continue;
            };
            // WEIR_CONFIG names the file and WEIR_LOG the log filter: not settings.
            if matches!(name, "CONFIG" | "LOG") || name.is_empty() {
                continue;
            }
            let path: Vec<String> = name.split("__").map(|p| p.to_lowercase()).collect();
            // Values are TOML when they parse as such (numbers, booleans), strings otherwise.
            let parsed = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(value.clone()));
            insert(&mut table, &path, parsed);
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ServerError::Config(e.to_string()))?;
        config.checkpoint_interval()?;
        if !matches!(config.log_format.as_str(), "text" | "json") {
            return Err(ServerError::Config(format!(
                "log_format: '{}' is not a log format; use 'text' or 'json'",
                config.log_format
            )));
        }
        if !(16..=1 << 30).contains(&config.query_memory_mb) {
            return Err(ServerError::Config(format!(
                "query_memory_mb: {} is out of range; use at least 16",
                config.query_memory_mb
            )));
        }
        for (option, value) in [
            ("retention", &config.view_retention),
            ("history", &config.view_history),
        ] {
            if let Some(v) = value {
                weir_sql::retention::check_default(option, v)
                    .map_err(|e| ServerError::Config(format!("view_{option}: {e}")))?;
            }
        }
        config.api_tokens()?;
        config.cluster()?;
        config.admin_password()?;
        config.pg_tls()?;
        config.system_log_retention()?;
        if let Some(url) = &config.history_url {
            weir_engine::history::HistoryRoot::from_url(url)
                .map_err(|e| ServerError::Config(format!("history_url: {e}")))?;
        }
        if config.view_history.is_some() && config.view_retention.is_none() {
            return Err(ServerError::Config(
                "view_history: set view_retention too (how long rows stay in memory before they move to history)".into(),
            ));
        }
        if !(1..=100_000).contains(&config.max_connections) {
            return Err(ServerError::Config(format!(
                "max_connections: {} is out of range; use 1 to 100000",
                config.max_connections
            )));
        }
        Ok(config)
    }

    /// The replica this process is (`[cluster]`), checked; `None` outside a cluster.
    pub fn cluster(&self) -> Result<Option<weir_engine::cluster::ClusterConfig>> {
        let Some(c) = &self.cluster else {
            return Ok(None);
        };
        let bad = |m: String| ServerError::Config(format!("cluster.{m}"));
        if !(1..=10_000).contains(&c.replicas) {
            return Err(bad(format!(
                "replicas: {} is out of range; use 1 to 10000",
                c.replicas
            )));
        }
        let replica = match &c.replica {
            Some(r) if !r.trim().is_empty() => r.trim().to_string(),
            Some(_) => return Err(bad("replica: empty".into())),
            None => host_name().ok_or_else(|| {
                bad("replica: no host name to default to; set cluster.replica".into())
            })?,
        };
        let ordinal = match c.ordinal {
            Some(o) => o,
            None => replica
                .rsplit_once('-')
                .and_then(|(_, n)| n.parse().ok())
                .ok_or_else(|| {
                    bad(format!(
                        "ordinal: not set, and the replica name '{replica}' does not end in -<number>"
                    ))
                })?,
        };
        if ordinal >= c.replicas {
            return Err(bad(format!(
                "ordinal: {ordinal} is not below replicas ({})",
                c.replicas
            )));
        }
        let (shared, state_dir) = match (&c.state_dir, &c.state_url) {
            (Some(dir), None) => (
                weir_engine::history::HistoryRoot::local(dir.clone()),
                Some(dir.clone()),
            ),
            (None, Some(url)) if url.starts_with("s3://") => (
                weir_engine::history::HistoryRoot::from_url(url)
                    .map_err(|e| bad(format!("state_url: {e}")))?,
                None,
            ),
            (None, Some(url)) => {
                return Err(bad(format!(
                    "state_url: '{url}' is not s3://bucket/prefix (a shared directory is state_dir)"
                )))
            }
            (Some(_), Some(_)) => {
                return Err(bad("state_dir and state_url: set one of them".into()))
            }
            (None, None) => {
                return Err(bad(
                    "state_dir: required (or state_url): where every replica shares checkpoints and leases"
                        .into(),
                ))
            }
        };
        let lease_timeout = weir_connectors::options::parse_duration(&c.lease_timeout)
            .filter(|d| *d >= std::time::Duration::from_millis(500))
            .ok_or_else(|| {
                bad(format!(
                    "lease_timeout: '{}' is not a duration of at least 500ms",
                    c.lease_timeout
                ))
            })?;
        Ok(Some(weir_engine::cluster::ClusterConfig {
            replica,
            ordinal,
            replicas: c.replicas,
            shared,
            state_dir,
            lease_timeout,
        }))
    }

    /// The statements to run at start: the demo's, then `init_sql`'s.
    pub fn startup_sql(&self) -> Result<Option<String>> {
        let mut sql = Vec::new();
        if self.demo {
            sql.push(crate::demo::statements(self.demo_rate));
        }
        if let Some(path) = &self.init_sql {
            sql.push(std::fs::read_to_string(path).map_err(|e| {
                ServerError::Config(format!("init_sql: cannot read {}: {e}", path.display()))
            })?);
        }
        Ok((!sql.is_empty()).then(|| sql.join(";\n")))
    }

    /// The REST API's tokens (references resolved); `None` when none are configured.
    pub fn api_tokens(&self) -> Result<Option<std::sync::Arc<crate::rest::auth::Tokens>>> {
        crate::rest::auth::Tokens::from_config(&self.api_tokens, self.probes_public)
            .map_err(ServerError::Config)
    }

    /// pgwire's TLS: the acceptor when `tls_cert` and `tls_key` are set, and whether
    /// plaintext clients are refused.
    pub fn pg_tls(&self) -> Result<crate::pgwire::PgTls> {
        let acceptor = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key, &[b"postgresql"])?),
            (None, None) => None,
            _ => {
                return Err(ServerError::Config(
                    "tls_cert and tls_key: set both (a PEM certificate chain and its key)".into(),
                ))
            }
        };
        if self.require_tls && acceptor.is_none() {
            return Err(ServerError::Config(
                "require_tls: set tls_cert and tls_key too".into(),
            ));
        }
        Ok(crate::pgwire::PgTls {
            acceptor,
            require: self.require_tls,
        })
    }

    /// The REST API's TLS acceptor (the same certificate as pgwire's): with `tls_cert` the
    /// REST API serves HTTPS only.
    pub fn rest_tls(&self) -> Result<Option<pgwire::tokio::TlsAcceptor>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(crate::tls::acceptor(cert, key, &[b"http/1.1"])?)),
            _ => Ok(None),
        }
    }

    /// The admin password (`admin_password`, resolved, or the first line of
    /// `admin_password_file`), if configured.
    pub fn admin_password(&self) -> Result<Option<String>> {
        let password = match (&self.admin_password, &self.admin_password_file) {
            (Some(_), Some(_)) => {
                return Err(ServerError::Config(
                    "admin_password and admin_password_file: set one of them".into(),
                ))
            }
            (Some(p), None) => weir_connectors::options::resolve_secret("admin_password", p)
                .map_err(|e| ServerError::Config(e.to_string()))?,
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    ServerError::Config(format!(
                        "admin_password_file: cannot read {}: {e}",
                        path.display()
                    ))
                })?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
            (None, None) => return Ok(None),
        };
        if password.is_empty() {
            return Err(ServerError::Config("admin_password: empty".into()));
        }
        Ok(Some(password))
    }

    /// Refuses to serve other machines without credentials unless `insecure`: pgwire on a
    /// non-loopback address without users (`pg_users`: none exist and no `admin_password`),
    /// REST there without tokens. With `insecure`, says so in the log.
    pub fn check_exposure(
        &self,
        pg: SocketAddr,
        http: Option<SocketAddr>,
        pg_users: bool,
    ) -> Result<()> {
        let mut open = Vec::new();
        if !pg.ip().is_loopback() && !pg_users {
            open.push(format!(
                "pgwire on {pg} without users (anyone who reaches the port could drop every view); set an admin password (WEIR_ADMIN_PASSWORD_FILE=/run/secrets/weir, or admin_password) so clients must log in, or bind a loopback address with --pg-addr 127.0.0.1:{}",
                pg.port()
            ));
        }
        if let Some(http) = http.filter(|a| !a.ip().is_loopback()) {
            if self.api_tokens.is_empty() {
                open.push(format!(
                    "REST on {http} without api_tokens; configure bearer tokens (docs/api.md#authentication) or bind a loopback address with --http-addr 127.0.0.1:{}",
                    http.port()
                ));
            }
        }
        if open.is_empty() {
            return Ok(());
        }
        if self.insecure {
            for o in &open {
                tracing::warn!("INSECURE: serving {o}; started with --insecure");
            }
            return Ok(());
        }
        Err(ServerError::Config(format!(
            "refusing to serve other machines without credentials: {}. To accept the risk (a trusted network only), start with --insecure (WEIR_INSECURE=true)",
            open.join("; ")
        )))
    }

    /// The options a view created without `retention` gets.
    pub fn view_defaults(&self) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        if let Some(r) = &self.view_retention {
            out.insert("retention".to_string(), r.clone());
            if let Some(h) = &self.view_history {
                out.insert("history".to_string(), h.clone());
            }
        }
        out
    }

    /// The directories file sources may read.
    pub fn file_dirs(&self) -> Vec<PathBuf> {
        self.file_dirs
            .clone()
            .unwrap_or_else(|| weir_connectors::default_file_dirs(&self.data_dir))
    }

    /// `(retention, history)` of the system logs in ns, if they have retention.
    pub fn system_log_retention(&self) -> Result<Option<(i64, i64)>> {
        let age = |option: &str, text: &str| {
            weir_sql::retention::parse_age(option, text)
                .map_err(|e| ServerError::Config(format!("system_log_{option}: {e}")))
        };
        match (&self.system_log_retention, &self.system_log_history) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(ServerError::Config(
                "system_log_history: set system_log_retention too (how long dead letters and late events stay in memory)".into(),
            )),
            (Some(r), h) => Ok(Some((
                age("retention", r)?,
                age("history", h.as_deref().unwrap_or("30 days"))?,
            ))),
        }
    }

    /// `checkpoint_interval` as a duration (at least 10 ms).
    pub fn checkpoint_interval(&self) -> Result<std::time::Duration> {
        let d = weir_connectors::options::parse_duration(&self.checkpoint_interval).ok_or_else(
            || {
                ServerError::Config(format!(
                    "checkpoint_interval: '{}' is not a duration (e.g. 1s, 250ms)",
                    self.checkpoint_interval
                ))
            },
        )?;
        if d < std::time::Duration::from_millis(10) {
            return Err(ServerError::Config(
                "checkpoint_interval: must be at least 10ms".into(),
            ));
        }
        Ok(d)
    }
}

/// The machine's host name (a pod's name in Kubernetes).
fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                insert(t, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("weir.toml");
        std::fs::write(&file, "data_dir = '/tmp/x'\ndemo_rate = 5\n").unwrap();
        let env = vec![
            ("WEIR_DEMO_RATE".to_string(), "7".to_string()),
            ("WEIR_PG_ADDR".to_string(), "127.0.0.1:7000".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        let c = Config::load(Some(&file), env).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.demo_rate, 7);
        assert_eq!(c.pg_addr.port(), 7000);
    }

    #[test]
    fn bad_values_are_refused_with_the_key_not_a_panic() {
        for (key, value) in [
            ("WEIR_LOG_FORMAT", "xml"),
            ("WEIR_MAX_CONNECTIONS", "0"),
            ("WEIR_CHECKPOINT_INTERVAL", "99999999999999999999s"),
            ("WEIR_VIEW_RETENTION", "soon"),
            ("WEIR_VIEW_HISTORY", "1 day"),
        ] {
            let env = vec![(key.to_string(), value.to_string())];
            let e = Config::load(None, env).unwrap_err().to_string();
            let name = key.trim_start_matches("WEIR_").to_lowercase();
            assert!(e.contains(&name), "{key}={value}: {e}");
        }
    }

    #[test]
    fn view_defaults_name_retention_and_history() {
        let env = vec![
            ("WEIR_VIEW_RETENTION".to_string(), "1 hour".to_string()),
            ("WEIR_VIEW_HISTORY".to_string(), "30 days".to_string()),
        ];
        let c = Config::load(None, env).unwrap();
        let d = c.view_defaults();
        assert_eq!(d["retention"], "1 hour");
        assert_eq!(d["history"], "30 days");
        assert!(Config::default().view_defaults().is_empty());
    }

    #[test]
    fn a_replica_takes_its_ordinal_from_its_name() {
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let c = Config::load(
            None,
            env(&[
                ("WEIR_CLUSTER__REPLICAS", "3"),
                ("WEIR_CLUSTER__REPLICA", "weir-2"),
                ("WEIR_CLUSTER__STATE_DIR", "/shared"),
            ]),
        )
        .unwrap();
        let cluster = c.cluster().unwrap().unwrap();
        assert_eq!((cluster.ordinal, cluster.replicas), (2, 3));
        assert_eq!(cluster.lease_timeout, std::time::Duration::from_secs(10));
        for (pairs, word) in [
            (
                vec![
                    ("WEIR_CLUSTER__REPLICAS", "2"),
                    ("WEIR_CLUSTER__REPLICA", "weir-2"),
                ],
                "ordinal",
            ),
            (
                vec![
                    ("WEIR_CLUSTER__REPLICAS", "2"),
                    ("WEIR_CLUSTER__REPLICA", "a-0"),
                ],
                "state_dir",
            ),
            (
                vec![
                    ("WEIR_CLUSTER__REPLICAS", "2"),
                    ("WEIR_CLUSTER__REPLICA", "blue"),
                    ("WEIR_CLUSTER__STATE_DIR", "/s"),
                ],
                "ordinal",
            ),
        ] {
            let e = Config::load(None, env(&pairs)).unwrap_err().to_string();
            assert!(e.contains(&format!("cluster.{word}")), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let env = vec![("WEIR_DATA_DIRR".to_string(), "x".to_string())];
        let err = Config::load(None, env).unwrap_err().to_string();
        assert!(err.contains("data_dirr"), "{err}");
    }
}
