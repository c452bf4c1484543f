//! The sink seam: what a connector implements to write rows to an external system
//! ([`SinkFactory`], [`SinkWriter`]), the options every sink shares and secret references.
//! The queue between a pipeline and a writer is `pipeline::sink_queue`.

use std::collections::BTreeMap;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{EngineError, Result};

/// Everything a connector needs to know to write a sink.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    /// The sink's name.
    pub name: String,
    /// The relation it reads (a view or a source).
    pub input: String,
    /// Whether `input` is a source (its events) rather than a view (its rows).
    pub from_source: bool,
    /// Schema of the rows it receives.
    pub schema: SchemaRef,
    /// Columns that identify a row: a view's group keys and `window_start`, a source's
    /// `event_id`. Writers upsert on them; empty means rows are appended.
    pub key: Vec<String>,
    /// A source's event-time column.
    pub event_time: Option<String>,
    /// The view updates rows in place (`EMIT ON UPDATE`, or an aggregate without windows):
    /// the same key is written again with newer values.
    pub updating: bool,
    /// Each key is written once and never changes (alert messages): after a restart a
    /// row whose key the target already holds is skipped, whatever its other columns.
    pub once_per_key: bool,
    /// `WITH (…)` options.
    pub options: BTreeMap<String, String>,
}

/// Why a write failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// The service is unavailable or slow: retried.
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help (the target does not fit, credentials are refused …).
    #[error("{0}")]
    Permanent(String),
}

/// Writes rows to one external system. Runs on the sink's own thread (a current-thread
/// runtime), so its futures need not be `Send`.
#[async_trait::async_trait(?Send)]
pub trait SinkWriter: Send {
    /// Connects (again, after a transient error). `resume` is the position the writer
    /// reported when the checkpoint the sink restarted from was taken (`Null` otherwise).
    async fn open(&mut self, resume: &serde_json::Value) -> Result<(), SinkError>;

    /// Writes rows; on `Ok` they are durable in the target.
    async fn write(&mut self, batches: &[RecordBatch]) -> Result<(), SinkError>;

    /// Where the writer stands after its last successful write (for example Kafka offsets),
    /// handed back to [`open`](Self::open) after a restart.
    fn position(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Creates writers of one connector.
pub trait SinkFactory: Send + Sync {
    /// The `connector` option value.
    fn name(&self) -> &'static str;

    /// Checks the options and returns them with defaults filled in (what the catalog keeps).
    fn validate(&self, spec: &SinkSpec) -> Result<BTreeMap<String, String>>;

    /// A writer for `spec` (not connected yet).
    fn create(&self, spec: &SinkSpec) -> Result<Box<dyn SinkWriter>>;
}

/// What a sink does when `buffer_rows` rows wait for its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// The pipeline waits for the sink: the source is read no further until the target
    /// takes rows again.
    Block,
    /// The pipeline goes on. Queued rows are in the checkpoint files in the data dir anyway;
    /// beyond the bound, memory keeps only the rows not checkpointed yet and the writer reads
    /// the others back from those files. Needs a data dir (without one, it blocks).
    Spill,
}

/// Queue settings, from the sink's options.
#[derive(Debug, Clone, Copy)]
pub struct SinkSettings {
    /// Rows held in memory for the target before `on_full` applies.
    pub buffer_rows: usize,
    pub on_full: OnFull,
    /// Most rows handed to one write.
    pub batch_rows: usize,
    /// How often rows of an updating view are re-sent while their window is open.
    pub update_interval: Duration,
}

impl Default for SinkSettings {
    fn default() -> Self {
        Self {
            buffer_rows: 1_000_000,
            on_full: OnFull::Block,
            batch_rows: 10_000,
            update_interval: Duration::from_secs(1),
        }
    }
}

/// Parses the queue options every sink has: `buffer_rows`, `on_full` (`block` | `spill`),
/// `batch_rows`, `update_interval` (milliseconds or a duration like `'500ms'`, `'2s'`).
pub fn settings_from(options: &BTreeMap<String, String>) -> Result<SinkSettings> {
    let mut s = SinkSettings::default();
    let number = |key: &str| -> Result<Option<usize>> {
        options
            .get(key)
            .map(|v| {
                v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    EngineError::InvalidOption {
                        option: key.into(),
                        message: format!("expected a positive number of rows, got '{v}'"),
                    }
                })
            })
            .transpose()
    };
    if let Some(n) = number("buffer_rows")? {
        s.buffer_rows = n;
    }
    if let Some(n) = number("batch_rows")? {
        s.batch_rows = n;
    }
    if let Some(v) = options.get("on_full") {
        s.on_full = match v.to_lowercase().as_str() {
            "block" => OnFull::Block,
            "spill" => OnFull::Spill,
            _ => {
                return Err(EngineError::InvalidOption {
                    option: "on_full".into(),
                    message: format!("expected 'block' or 'spill', got '{v}'"),
                })
            }
        };
    }
    if let Some(v) = options.get("update_interval") {
        s.update_interval = parse_millis(v).ok_or_else(|| EngineError::InvalidOption {
            option: "update_interval".into(),
            message: format!("expected a duration like '500ms' or '2s', got '{v}'"),
        })?;
    }
    Ok(s)
}

fn parse_millis(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "s" | "sec" | "second" | "seconds" => n * 1e3,
        "m" | "min" | "minute" | "minutes" => n * 60e3,
        _ => return None,
    };
    Some(Duration::from_micros((ms * 1e3) as u64))
}

/// The options every sink accepts besides its connector's own.
pub const QUEUE_OPTIONS: &[&str] = &["buffer_rows", "on_full", "batch_rows", "update_interval"];

/// `url` with the password of its user-info part replaced by `***`
/// (`postgres://u:secret@h/db` → `postgres://u:***@h/db`); other text unchanged.
pub fn mask_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_string();
    };
    format!(
        "{}{}:***{}",
        &url[..scheme_end + 3],
        &userinfo[..colon],
        &rest[at..]
    )
}

/// Resolves a secret reference: `${env:NAME}` is the environment variable `NAME`,
/// `${file:/path}` the contents of a file (trailing newline removed); anything else is the
/// value itself. References are resolved when a connector opens, so the catalog and
/// `SHOW CREATE SOURCE` hold the reference, never the secret.
pub fn resolve_secret(key: &str, value: &str) -> crate::error::Result<String> {
    let bad = |message: String| crate::error::EngineError::InvalidOption {
        option: key.into(),
        message,
    };
    let Some(inner) = value
        .trim()
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
    else {
        return Ok(value.to_string());
    };
    if let Some(name) = inner.strip_prefix("env:") {
        return std::env::var(name)
            .map_err(|_| bad(format!("environment variable {name} is not set")));
    }
    if let Some(path) = inner.strip_prefix("file:") {
        return std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| bad(format!("cannot read {path}: {e}")));
    }
    Err(bad(format!(
        "unknown reference {value}; use ${{env:NAME}} or ${{file:/path}}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            mask_url("postgres://weir:s3cret@db:5432/weir"),
            "postgres://weir:***@db:5432/weir"
        );
        assert_eq!(
            mask_url("redis://:pw@127.0.0.1/0"),
            "redis://:***@127.0.0.1/0"
        );
        assert_eq!(mask_url("redis://127.0.0.1/0"), "redis://127.0.0.1/0");
        assert_eq!(
            mask_url("postgres://u@h/db?x=a@b"),
            "postgres://u@h/db?x=a@b"
        );
        assert_eq!(mask_url("agg:{source}"), "agg:{source}");
    }

    #[test]
    fn queue_options_are_checked() {
        let mut o = BTreeMap::new();
        o.insert("buffer_rows".to_string(), "10".to_string());
        o.insert("update_interval".to_string(), "250ms".to_string());
        let s = settings_from(&o).unwrap();
        assert_eq!(s.buffer_rows, 10);
        assert_eq!(s.update_interval, Duration::from_millis(250));
        o.insert("batch_rows".to_string(), "0".to_string());
        assert!(settings_from(&o).is_err());
    }
}
