//! Where history files live: a local directory (`<data dir>/history`, the default) or an
//! S3-compatible bucket (`history_url = 's3://bucket/prefix'`), through the `object_store`
//! crate DataFusion reads Parquet with.
//!
//! Paths inside are relative (`kpi_1m/date=2026-12-04/kpi_1m-7.parquet`), the same in
//! manifests whatever the root. Local writes are fsynced (file and directory) before the
//! manifest names them; an object store `PUT` is durable when it returns. Calls block the
//! calling thread (the checkpoint writer, a query's planning, `/series`) on a small runtime
//! of their own, so they work from inside and outside async code alike.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use datafusion::catalog::Session;
use datafusion::execution::object_store::ObjectStoreUrl;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{EngineError, Result};

/// A history root: cheap to clone, shared by the checkpoint store and the views.
#[derive(Clone)]
pub struct HistoryRoot(Arc<Backend>);

enum Backend {
    Local(PathBuf),
    Object {
        /// As configured, for messages (`s3://bucket/prefix`).
        url: String,
        /// The store's own URL (`s3://bucket`), under which DataFusion finds it.
        store_url: ObjectStoreUrl,
        store: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
    },
}

impl std::fmt::Debug for HistoryRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HistoryRoot({})", self.describe())
    }
}

/// Runs object store calls for blocking callers; never dropped.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("weir-object-store")
        .enable_all()
        .build()
        .expect("object store runtime")
});

/// Runs `future` to completion on [`RUNTIME`], blocking this thread.
fn block<T: Send + 'static>(future: impl std::future::Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    RUNTIME.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv().expect("the object store runtime stopped")
}

/// History roots configured per checkpoint directory ([`configure`]).
static CONFIGURED: LazyLock<Mutex<HashMap<PathBuf, HistoryRoot>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Makes `root` the history root of the engine checkpointing under `checkpoints`.
pub fn configure(checkpoints: &Path, root: HistoryRoot) {
    CONFIGURED
        .lock()
        .expect("history roots")
        .insert(checkpoints.to_path_buf(), root);
}

/// The history root of the engine checkpointing under `checkpoints`: the configured one,
/// else `history` beside it (`<data dir>/checkpoints` → `<data dir>/history`).
pub fn root_for(checkpoints: &Path) -> HistoryRoot {
    if let Some(root) = CONFIGURED.lock().expect("history roots").get(checkpoints) {
        return root.clone();
    }
    let dir = checkpoints
        .parent()
        .map(|p| p.join("history"))
        .unwrap_or_else(|| checkpoints.join("history"));
    HistoryRoot::local(dir)
}

/// `part` with its `%XX` escapes decoded.
fn percent_decoded(part: &str) -> String {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| part.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn failed(what: &str, path: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Checkpoint(format!("{what} history file {path}: {e}"))
}

impl HistoryRoot {
    /// Files under a local directory.
    pub fn local(dir: PathBuf) -> Self {
        Self(Arc::new(Backend::Local(dir)))
    }

    /// A root from a URL: `s3://bucket[/prefix]` (credentials, region and endpoint from the
    /// usual `AWS_*` variables: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT` for an S3-compatible server, `AWS_ALLOW_HTTP=true` for plain HTTP),
    /// `file:///dir` or a plain path.
    pub fn from_url(url: &str) -> Result<Self> {
        let invalid = |message: String| EngineError::InvalidOption {
            option: "history_url".into(),
            message,
        };
        if let Some(path) = url.strip_prefix("file://") {
            return Ok(Self::local(PathBuf::from(path)));
        }
        if !url.contains("://") {
            return Ok(Self::local(PathBuf::from(url)));
        }
        let parsed = url::Url::parse(url).map_err(|e| invalid(format!("'{url}': {e}")))?;
        if parsed.scheme() != "s3" {
            return Err(invalid(format!(
                "'{url}': history goes to a local directory or to S3-compatible storage (s3://bucket/prefix)"
            )));
        }
        let bucket = parsed
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| invalid(format!("'{url}' names no bucket")))?
            .to_string();
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .build()
            .map_err(|e| invalid(format!("'{url}': {e}")))?;
        let store_url = ObjectStoreUrl::parse(format!("s3://{bucket}"))
            .map_err(|e| invalid(format!("'{url}': {e}")))?;
        Ok(Self(Arc::new(Backend::Object {
            url: url.to_string(),
            store_url,
            store: Arc::new(store),
            prefix: ObjectPath::from(parsed.path().trim_matches('/')),
        })))
    }

    /// The root for messages: a directory or a URL.
    pub fn describe(&self) -> String {
        match self.0.as_ref() {
            Backend::Local(dir) => dir.display().to_string(),
            Backend::Object { url, .. } => url.clone(),
        }
    }

    /// The local directory, for a root on local disk.
    pub fn local_dir(&self) -> Option<&Path> {
        match self.0.as_ref() {
            Backend::Local(dir) => Some(dir),
            Backend::Object { .. } => None,
        }
    }

    fn object_path(prefix: &ObjectPath, relative: &str) -> ObjectPath {
        let mut path = prefix.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        path
    }

    /// Stores `bytes` at `relative`, durably; returns its size.
    pub fn write(&self, relative: &str, bytes: Vec<u8>) -> Result<u64> {
        let size = bytes.len() as u64;
        match self.0.as_ref() {
            Backend::Local(dir) => {
                // Written under a hidden name and renamed: a reader globbing `*.parquet`
                // never sees half a file.
                let path = dir.join(relative);
                let io = |e: std::io::Error| failed("writing", &path.display().to_string(), e);
                let parent = path.parent().unwrap_or(dir);
                std::fs::create_dir_all(parent).map_err(io)?;
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                let temp = parent.join(format!(".{}.tmp", name.unwrap_or_default()));
                let mut file = File::create(&temp).map_err(io)?;
                file.write_all(&bytes).map_err(io)?;
                file.sync_all().map_err(io)?;
                std::fs::rename(&temp, &path).map_err(io)?;
                if let Ok(d) = File::open(parent) {
                    let _ = d.sync_all();
                }
            }
            Backend::Object { store, prefix, .. } => {
                let (store, path) = (store.clone(), Self::object_path(prefix, relative));
                block(async move { store.put(&path, bytes.into()).await })
                    .map_err(|e| failed("writing", relative, e))?;
            }
        }
        Ok(size)
    }

    /// Stores `bytes` at `relative` unless something is there already: `Ok(false)` then.
    /// Of two callers racing for one name exactly one gets `true` (`O_EXCL` locally, a
    /// conditional put — `If-None-Match: *` — on S3).
    pub fn create(&self, relative: &str, bytes: Vec<u8>) -> Result<bool> {
        match self.0.as_ref() {
            Backend::Local(dir) => {
                let path = dir.join(relative);
                let io = |e: std::io::Error| failed("creating", &path.display().to_string(), e);
                std::fs::create_dir_all(path.parent().unwrap_or(dir)).map_err(io)?;
                let mut file = match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
                    Err(e) => return Err(io(e)),
                };
                file.write_all(&bytes).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(true)
            }
            Backend::Object { store, prefix, .. } => {
                let (store, path) = (store.clone(), Self::object_path(prefix, relative));
                let put = block(async move {
                    let options = object_store::PutOptions::from(object_store::PutMode::Create);
                    store.put_opts(&path, bytes.into(), options).await
                });
                match put {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::AlreadyExists { .. })
                    | Err(object_store::Error::Precondition { .. }) => Ok(false),
                    Err(e) => Err(failed("creating", relative, e)),
                }
            }
        }
    }

    /// The root of directory `dir` under this one.
    pub fn child(&self, dir: &str) -> HistoryRoot {
        match self.0.as_ref() {
            Backend::Local(root) => Self::local(root.join(dir)),
            Backend::Object {
                url,
                store_url,
                store,
                prefix,
            } => Self(Arc::new(Backend::Object {
                url: format!("{}/{dir}", url.trim_end_matches('/')),
                store_url: store_url.clone(),
                store: store.clone(),
                prefix: Self::object_path(prefix, dir),
            })),
        }
    }

    /// The bytes stored at `relative`.
    pub fn read(&self, relative: &str) -> Result<Bytes> {
        match self.0.as_ref() {
            Backend::Local(dir) => {
                let path = dir.join(relative);
                std::fs::read(&path)
                    .map(Bytes::from)
                    .map_err(|e| failed("reading", &path.display().to_string(), e))
            }
            Backend::Object { store, prefix, .. } => {
                let (store, path) = (store.clone(), Self::object_path(prefix, relative));
                block(async move { store.get(&path).await?.bytes().await })
                    .map_err(|e| failed("reading", relative, e))
            }
        }
    }

    /// Deletes `relative` (gone already is fine).
    pub fn delete(&self, relative: &str) {
        match self.0.as_ref() {
            Backend::Local(dir) => {
                let _ = std::fs::remove_file(dir.join(relative));
            }
            Backend::Object { store, prefix, .. } => {
                let (store, path) = (store.clone(), Self::object_path(prefix, relative));
                let _ = block(async move { store.delete(&path).await });
            }
        }
    }

    /// The files under directory `dir` (relative paths, recursively); local directories
    /// left empty are removed.
    pub fn list(&self, dir: &str) -> Vec<String> {
        match self.0.as_ref() {
            Backend::Local(root) => {
                let mut out = Vec::new();
                walk(root, &root.join(dir), &mut out);
                out
            }
            Backend::Object { store, prefix, .. } => {
                let (store, base) = (store.clone(), Self::object_path(prefix, dir));
                let prefix = prefix.clone();
                block(async move {
                    let mut out = Vec::new();
                    let mut listing = store.list(Some(&base));
                    while let Some(Ok(meta)) = listing.next().await {
                        // Parts come back percent-encoded (`%` itself as `%25`): decoded,
                        // a listed path is the one that was written.
                        let relative: Vec<String> = meta
                            .location
                            .prefix_match(&prefix)
                            .map(|parts| parts.map(|p| percent_decoded(p.as_ref())).collect())
                            .unwrap_or_default();
                        if !relative.is_empty() {
                            out.push(relative.join("/"));
                        }
                    }
                    out
                })
            }
        }
    }

    /// Deletes everything under directory `dir`.
    pub fn remove_dir(&self, dir: &str) {
        match self.0.as_ref() {
            Backend::Local(root) => {
                let _ = std::fs::remove_dir_all(root.join(dir));
            }
            Backend::Object { .. } => {
                for file in self.list(dir) {
                    self.delete(&file);
                }
            }
        }
    }

    /// Where DataFusion reads `relative` from: the store's URL (registered with the
    /// session's runtime when it is not local) and the file's path in that store.
    pub fn scan_location(&self, session: &dyn Session) -> (ObjectStoreUrl, ScanPaths) {
        match self.0.as_ref() {
            Backend::Local(dir) => (
                ObjectStoreUrl::local_filesystem(),
                ScanPaths::Local(dir.clone()),
            ),
            Backend::Object {
                store_url,
                store,
                prefix,
                ..
            } => {
                let url: &url::Url = store_url.as_ref();
                session
                    .runtime_env()
                    .register_object_store(url, store.clone());
                (store_url.clone(), ScanPaths::Object(prefix.clone()))
            }
        }
    }
}

/// Turns relative history paths into the paths DataFusion's scan names files by.
pub enum ScanPaths {
    Local(PathBuf),
    Object(ObjectPath),
}

impl ScanPaths {
    /// The scan path of `relative`.
    pub fn of(&self, relative: &str) -> String {
        match self {
            ScanPaths::Local(dir) => dir.join(relative).to_string_lossy().into_owned(),
            ScanPaths::Object(prefix) => HistoryRoot::object_path(prefix, relative).to_string(),
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let path = e.path();
        if path.is_dir() {
            walk(root, &path, out);
            // Only an empty directory goes.
            let _ = std::fs::remove_dir(&path);
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push(relative.to_string_lossy().into_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_parts_are_decoded() {
        assert_eq!(percent_decoded("kpi%2540p3"), "kpi%40p3");
        assert_eq!(percent_decoded("a%2"), "a%2");
        assert_eq!(percent_decoded("plain"), "plain");
    }

    #[test]
    fn urls_name_a_local_directory_or_a_bucket() {
        assert_eq!(
            HistoryRoot::from_url("/var/weir/history")
                .unwrap()
                .local_dir()
                .unwrap(),
            Path::new("/var/weir/history")
        );
        assert!(HistoryRoot::from_url("file:///tmp/h")
            .unwrap()
            .local_dir()
            .is_some());
        assert!(HistoryRoot::from_url("gs://bucket/x").is_err());
        assert!(HistoryRoot::from_url("s3:///x").is_err());
        let s3 = HistoryRoot::from_url("s3://bucket/weir/history").unwrap();
        assert_eq!(s3.describe(), "s3://bucket/weir/history");
        assert!(s3.local_dir().is_none());
    }

    #[test]
    fn a_local_root_writes_reads_lists_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let root = HistoryRoot::local(dir.path().to_path_buf());
        assert_eq!(
            root.write("v/date=x/a.parquet", b"abc".to_vec()).unwrap(),
            3
        );
        root.write("v/date=y/b.parquet", b"de".to_vec()).unwrap();
        assert_eq!(root.read("v/date=x/a.parquet").unwrap().as_ref(), b"abc");
        let mut files = root.list("v");
        files.sort();
        assert_eq!(files, vec!["v/date=x/a.parquet", "v/date=y/b.parquet"]);
        root.delete("v/date=x/a.parquet");
        assert_eq!(root.list("v"), vec!["v/date=y/b.parquet"]);
        assert!(
            !dir.path().join("v/date=x").exists(),
            "empty directories go"
        );
        root.remove_dir("v");
        assert!(root.list("v").is_empty());
    }
}
