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
        Ok(config)
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
    fn unknown_keys_are_rejected_by_name() {
        let env = vec![("WEIR_DATA_DIRR".to_string(), "x".to_string())];
        let err = Config::load(None, env).unwrap_err().to_string();
        assert!(err.contains("data_dirr"), "{err}");
    }
}
