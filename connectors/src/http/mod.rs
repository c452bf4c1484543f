//! `connector = 'http'`: events pushed to Weir with `POST /ingest/{source}` (JSON lines or a
//! JSON array of events), for k6, webhooks and services without Kafka.
//!
//! An accepted request is durable before it is answered: its events are appended to the
//! source's log, `<data dir>/ingest/<source>.jsonl`, and fsynced. The source reads that log
//! like a followed file, so checkpoints record a byte offset in it and a restart — or a
//! `kill -9` — loses and repeats nothing. Malformed events become dead letters
//! (`<source>.jsonl:<line>`), as from any other source.
//!
//! The log does not grow with uptime: once every pipeline reading the source has a
//! checkpoint past a point, the bytes before it are freed (a hole punched into the file,
//! so offsets stay valid) and `<source>.start` records where the log now starts. A view
//! created later reads the source from there, as a new Kafka consumer reads from the oldest
//! retained offset.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use weir_engine::connector::source::{Source, SourceFactory, SourceSpec};
use weir_engine::error::{EngineError, Result};

use crate::file::{FileConfig, FileSource};
use crate::options::Options;

/// Factory of HTTP push sources; their logs live in `dir`.
#[derive(Debug)]
pub struct HttpConnector {
    dir: PathBuf,
    /// Open logs, one writer at a time per source.
    logs: Mutex<HashMap<String, Arc<Mutex<File>>>>,
    /// Per source, the offset the log was last freed up to.
    released: Mutex<HashMap<String, u64>>,
}

/// Bytes a log must have gained below every committed position before more is freed.
const RELEASE_STEP: u64 = 1 << 20;

impl HttpConnector {
    /// Logs go to `dir` (created when needed).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            logs: Mutex::new(HashMap::new()),
            released: Mutex::new(HashMap::new()),
        }
    }

    fn log_path(&self, source: &str) -> PathBuf {
        self.dir.join(format!("{}.jsonl", safe_name(source)))
    }

    /// Where the log starts (`{offset, line}`), once its beginning was freed.
    fn start_path(&self, source: &str) -> PathBuf {
        self.dir.join(format!("{}.start", safe_name(source)))
    }

    /// The position a new reader starts at: the log's start.
    fn start(&self, source: &str) -> Option<serde_json::Value> {
        let text = std::fs::read(self.start_path(source)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Frees the log of `source` below `offset` (which starts line `line`): records the new
    /// start, then punches a hole up to the last whole block before it.
    fn free_below(&self, source: &str, offset: u64, line: u64) -> std::io::Result<()> {
        let start = self.start_path(source);
        let temp = start.with_extension("start.tmp");
        let mut f = File::create(&temp)?;
        f.write_all(
            serde_json::json!({ "offset": offset, "line": line })
                .to_string()
                .as_bytes(),
        )?;
        f.sync_all()?;
        std::fs::rename(&temp, &start)?;
        File::open(&self.dir)?.sync_all()?;
        let log = OpenOptions::new().write(true).open(self.log_path(source))?;
        let end = offset - offset % 4096;
        if end == 0 {
            return Ok(());
        }
        use std::os::fd::AsRawFd;
        // SAFETY: fallocate on a file descriptor `log` owns; no memory is passed.
        let r = unsafe {
            libc::fallocate(
                log.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                0,
                end as libc::off_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    fn log(&self, source: &str) -> Result<Arc<Mutex<File>>> {
        let mut logs = self.logs.lock();
        if let Some(f) = logs.get(source) {
            return Ok(f.clone());
        }
        let path = self.log_path(source);
        let file = open_log(&path, false)?;
        let file = Arc::new(Mutex::new(file));
        logs.insert(source.to_string(), file.clone());
        Ok(file)
    }
}

/// A source name as a file name.
fn safe_name(source: &str) -> String {
    source
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '%'
            }
        })
        .collect()
}

/// Allocates `bytes` of disk space after `offset` without changing the file's size, so the
/// write that follows cannot run out of space halfway. File systems without `fallocate`
/// go without the guarantee.
fn reserve(file: &File, offset: u64, bytes: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: fallocate on a file descriptor this File owns; no memory is passed.
    let r = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            bytes as libc::off_t,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(()),
        _ => Err(std::io::Error::new(
            e.kind(),
            format!("{e}; nothing of this request was written"),
        )),
    }
}

fn open_log(path: &Path, truncate: bool) -> Result<File> {
    let io = |e: std::io::Error| EngineError::Source {
        source_name: path.display().to_string(),
        message: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut o = OpenOptions::new();
    // Readable too: an append checks how the log ends.
    o.create(true).read(true);
    if truncate {
        o.write(true).truncate(true);
    } else {
        o.append(true);
    }
    o.open(path).map_err(io)
}

fn check_options(options: &BTreeMap<String, String>) -> Result<()> {
    let mut o = Options::new("http", options);
    match o.optional("format").as_deref() {
        None | Some("json") => {}
        Some(other) => {
            return Err(EngineError::InvalidOption {
                option: "format".into(),
                message: format!("the http connector takes JSON events, not '{other}'"),
            })
        }
    }
    o.finish()
}

/// The events of a request body, one JSON text per event: the elements of a JSON array, or
/// the non-empty lines of JSON lines (kept as sent; a malformed line is a dead letter later).
pub fn split_events(body: &[u8]) -> Result<Vec<Vec<u8>>> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let events: Vec<serde_json::Value> =
            serde_json::from_slice(body).map_err(|e| EngineError::InvalidOption {
                option: "body".into(),
                message: format!("not a JSON array of events: {e}"),
            })?;
        return Ok(events
            .iter()
            .map(|e| serde_json::to_vec(e).unwrap_or_default())
            .collect());
    }
    Ok(body
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| l.iter().any(|b| !b.is_ascii_whitespace()))
        .map(|l| l.to_vec())
        .collect())
}

impl SourceFactory for HttpConnector {
    fn name(&self) -> &'static str {
        "http"
    }

    fn validate(&self, spec: &SourceSpec) -> Result<BTreeMap<String, String>> {
        check_options(&spec.options)?;
        // A new source starts with an empty log (one of a dropped source of the same name
        // is not replayed).
        self.logs.lock().remove(&spec.name);
        self.released.lock().remove(&spec.name);
        let _ = std::fs::remove_file(self.start_path(&spec.name));
        open_log(&self.log_path(&spec.name), true)?;
        Ok(spec.options.clone())
    }

    fn open(
        &self,
        spec: &SourceSpec,
        position: Option<&serde_json::Value>,
    ) -> Result<Box<dyn Source>> {
        check_options(&spec.options)?;
        let path = self.log_path(&spec.name);
        open_log(&path, false)?;
        let config = FileConfig {
            path,
            follow: true,
            chunk_bytes: 4 << 20,
        };
        let start = match position {
            Some(_) => None,
            None => self.start(&spec.name),
        };
        Ok(Box::new(FileSource::open_at(
            spec,
            config,
            position.or(start.as_ref()),
        )?))
    }

    fn release(&self, spec: &SourceSpec, committed: &[serde_json::Value]) {
        let positions: Option<Vec<(u64, u64)>> = committed
            .iter()
            .map(|p| Some((p.get("offset")?.as_u64()?, p.get("line")?.as_u64()?)))
            .collect();
        let Some((offset, line)) = positions.and_then(|p| p.into_iter().min()) else {
            return;
        };
        let mut released = self.released.lock();
        let done = released.get(&spec.name).copied().unwrap_or(0);
        if offset < done + RELEASE_STEP {
            return;
        }
        match self.free_below(&spec.name, offset, line) {
            Ok(()) => {
                released.insert(spec.name.clone(), offset);
            }
            Err(e) => {
                // Not freed; tried again a step later (a file system without hole
                // punching keeps the whole log).
                if e.kind() == std::io::ErrorKind::Unsupported {
                    tracing::debug!(source = %spec.name, error = %e, "the ingest log's file system cannot free its beginning");
                } else {
                    tracing::warn!(source = %spec.name, error = %e, "cannot free the ingest log below the checkpointed position");
                }
                released.insert(spec.name.clone(), offset);
            }
        }
    }

    fn is_bounded(&self, _spec: &SourceSpec) -> bool {
        false
    }

    fn ingest(&self, spec: &SourceSpec, body: &[u8]) -> Result<u64> {
        let events = split_events(body)?;
        if events.is_empty() {
            return Ok(0);
        }
        let mut text = Vec::with_capacity(body.len() + events.len() + 1);
        for e in &events {
            text.extend_from_slice(e);
            text.push(b'\n');
        }
        let log = self.log(&spec.name)?;
        let mut file = log.lock();
        let io = |e: std::io::Error| EngineError::Source {
            source_name: spec.name.clone(),
            message: format!("writing the ingest log: {e}"),
        };
        let len = file.metadata().map_err(io)?.len();
        // A write that failed earlier may have left a torn line: end it, so it is one dead
        // letter and never glued to the first event acknowledged now.
        if len > 0 {
            let mut last = [0u8; 1];
            file.read_exact_at(&mut last, len - 1).map_err(io)?;
            if last[0] != b'\n' {
                text.insert(0, b'\n');
            }
        }
        // Claim the disk space first: when the disk is full the request fails having
        // written nothing, instead of leaving part of its events behind.
        reserve(&file, len, text.len() as u64).map_err(io)?;
        file.write_all(&text).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(events.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A torn line left by a failed write (disk full) stays a line of its own: the next
    /// acknowledged event is never glued to it (hostile-test finding 5).
    #[test]
    fn an_ingest_after_a_torn_write_starts_on_a_new_line() {
        let dir = tempfile::tempdir().unwrap();
        let connector = HttpConnector::new(dir.path());
        let spec = SourceSpec {
            name: "pushed".into(),
            schema: Arc::new(datafusion::arrow::datatypes::Schema::empty()),
            options: BTreeMap::new(),
        };
        connector.validate(&spec).unwrap();
        assert_eq!(connector.ingest(&spec, b"{\"a\":1}\n").unwrap(), 1);
        let path = connector.log_path("pushed");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"a\":2, \"b\":").unwrap();
        assert_eq!(connector.ingest(&spec, b"{\"a\":3}").unwrap(), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"a\":2, \"b\":\n{\"a\":3}\n");
    }

    /// Once every pipeline is checkpointed past a point, the log's bytes before it are
    /// freed; offsets stay valid and a new reader starts there (issue 14).
    #[test]
    fn a_checkpointed_prefix_of_the_log_is_freed_and_new_readers_start_after_it() {
        use std::os::unix::fs::MetadataExt;
        use weir_engine::connector::source::Poll;
        let dir = tempfile::tempdir().unwrap();
        let connector = HttpConnector::new(dir.path());
        let spec = SourceSpec {
            name: "pushed".into(),
            schema: Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
                datafusion::arrow::datatypes::Field::new(
                    "n",
                    datafusion::arrow::datatypes::DataType::Int64,
                    true,
                ),
            ])),
            options: BTreeMap::new(),
        };
        connector.validate(&spec).unwrap();
        let events = |from: usize, to: usize| -> Vec<u8> {
            (from..to)
                .flat_map(|n| {
                    format!("{{\"n\":{n},\"pad\":\"{}\"}}\n", "x".repeat(80)).into_bytes()
                })
                .collect()
        };
        connector.ingest(&spec, &events(0, 50_000)).unwrap();
        let path = connector.log_path("pushed");
        let text = std::fs::read(&path).unwrap();
        let len = text.len() as u64;
        let starts: Vec<u64> = std::iter::once(0)
            .chain(
                text.iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .map(|(i, _)| i as u64 + 1),
            )
            .collect();
        // Two pipelines: the slower one, at event 40 000, bounds what is freed.
        let at = |n: u64| serde_json::json!({ "offset": starts[n as usize], "line": n + 1 });
        connector.release(&spec, &[at(45_000), at(40_000)]);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), len, "offsets stay valid");
        let allocated = meta.blocks() * 512;
        assert!(
            allocated < len - starts[35_000],
            "{allocated} bytes still allocated of {len}"
        );
        // Less than a step more is not worth freeing.
        connector.release(&spec, &[at(40_100)]);
        assert_eq!(connector.start("pushed"), Some(at(40_000)));
        // A pipeline with a checkpoint continues where it was; a new one at the start.
        let first = |position: Option<&serde_json::Value>| -> i64 {
            let mut source = connector.open(&spec, position).unwrap();
            loop {
                if let Poll::Batch(b) = source.next_batch().unwrap() {
                    let n = b.batch.column(0);
                    let n = n
                        .as_any()
                        .downcast_ref::<datafusion::arrow::array::Int64Array>()
                        .unwrap();
                    return n.value(0);
                }
            }
        };
        assert_eq!(first(None), 40_000);
        assert_eq!(first(Some(&at(45_000))), 45_000);
        // A new source of the same name starts empty, from its beginning.
        connector.validate(&spec).unwrap();
        assert_eq!(connector.start("pushed"), None);
    }

    #[test]
    fn bodies_split_into_events() {
        let lines = split_events(b"{\"a\":1}\n\n{\"a\":2}\r\nnot json\n").unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2], b"not json");
        let array = split_events(b" [{\"a\":1}, {\"b\":[1,2]}]").unwrap();
        assert_eq!(
            array,
            vec![b"{\"a\":1}".to_vec(), b"{\"b\":[1,2]}".to_vec()]
        );
        assert!(split_events(b"[{\"a\":1}").is_err());
    }
}
