//! The checkpoint directory of one pipeline: writing an epoch atomically, reading the last
//! complete one back.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::arrow::record_batch::RecordBatch;

use super::*;
use crate::error::{EngineError, Result};
use crate::paths::file_name;
use crate::serving::system::SYSTEM_LOG_CAPACITY;

/// The checkpoint directory of one pipeline.
#[derive(Debug)]
pub struct CheckpointStore {
    dir: PathBuf,
    source: String,
    pipeline: u64,
    last: Option<Manifest>,
    /// Size of each file the last manifest names.
    sizes: BTreeMap<String, u64>,
    /// Records in each log file the last manifest names.
    log_rows: BTreeMap<String, usize>,
    /// Where views' history files go (`<data dir>/history`).
    history_root: HistoryRoot,
    /// Deletes history files the manifest no longer names.
    sweeper: crate::history::Sweeper,
    /// A partition lane's lease: no manifest is written once it is lost.
    fence: Option<crate::cluster::Fence>,
    /// Where each checkpoint is copied (a lane whose replicas share an S3 prefix), and
    /// the files copied there so far.
    mirror: Option<(HistoryRoot, BTreeSet<String>)>,
}

impl CheckpointStore {
    /// The directory of pipeline `pipeline` of `source` under `root`.
    pub fn pipeline_dir(root: &Path, source: &str, pipeline: u64) -> PathBuf {
        root.join(file_name(source)).join(format!("p{pipeline}"))
    }

    /// The ids of the pipelines that have a directory under `root` for `source`.
    pub fn pipelines(root: &Path, source: &str) -> Vec<u64> {
        let Ok(entries) = std::fs::read_dir(root.join(file_name(source))) else {
            return Vec::new();
        };
        let mut ids: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_prefix('p')?.parse().ok())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Whether any pipeline of any source under `root` has a complete checkpoint.
    pub fn any_checkpoint(root: &Path) -> bool {
        let Ok(sources) = std::fs::read_dir(root) else {
            return false;
        };
        sources.filter_map(|s| s.ok()).any(|s| {
            std::fs::read_dir(s.path()).is_ok_and(|pipelines| {
                pipelines
                    .filter_map(|p| p.ok())
                    .any(|p| p.path().join(MANIFEST).is_file())
            })
        })
    }

    /// Makes lane `lane`'s checkpoints under lease `epoch` start from the newest earlier
    /// owner's (the directory of the highest earlier epoch holding a checkpoint), copied
    /// whole and renamed into place, unless that epoch has its directory already; then
    /// forgets the directories of epochs two or more behind. The previous owner's is kept:
    /// if it is still running it writes there, never here.
    pub fn adopt(root: &Path, lane: &str, epoch: u64) -> Result<()> {
        let name = |e: u64| file_name(&crate::cluster::lane_store_name(lane, e));
        let mine = root.join(name(epoch));
        let prefix = file_name(&crate::cluster::lane_store_prefix(lane));
        let mut earlier: Vec<(u64, PathBuf)> = std::fs::read_dir(root)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let n = e.file_name().into_string().ok()?;
                        let k: u64 = n.strip_prefix(&prefix)?.parse().ok()?;
                        (k < epoch).then(|| (k, e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        earlier.sort();
        if !mine.exists() {
            let newest = earlier.iter().rev().find(|(_, dir)| {
                std::fs::read_dir(dir).is_ok_and(|pipelines| {
                    pipelines
                        .filter_map(|p| p.ok())
                        .any(|p| p.path().join(MANIFEST).is_file())
                })
            });
            if let Some((_, from)) = newest {
                let tmp = root.join(format!(".{}.tmp", name(epoch)));
                let _ = std::fs::remove_dir_all(&tmp);
                copy_tree(from, &tmp).map_err(|e| io_error(from, e))?;
                std::fs::rename(&tmp, &mine).map_err(|e| io_error(&mine, e))?;
            }
        }
        for (k, dir) in earlier {
            if k + 1 < epoch {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        Ok(())
    }

    /// Like [`adopt`](Self::adopt) for lanes whose replicas share an S3 prefix: the newest
    /// earlier owner's checkpoint is downloaded from `remote` (`checkpoints/<store
    /// name>/…`, as [`set_mirror`](Self::set_mirror) copies it) into `root` in the data
    /// dir; then this lane's copies two or more epochs behind go, there and here.
    pub fn adopt_mirrored(remote: &HistoryRoot, root: &Path, lane: &str, epoch: u64) -> Result<()> {
        let name = |e: u64| file_name(&crate::cluster::lane_store_name(lane, e));
        let prefix = file_name(&crate::cluster::lane_store_prefix(lane));
        let mut earlier: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for f in remote.list("checkpoints") {
            let mut parts = f.splitn(3, '/');
            let (Some("checkpoints"), Some(store), Some(_)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if let Some(k) = store
                .strip_prefix(&prefix)
                .and_then(|k| k.parse::<u64>().ok())
            {
                if k < epoch {
                    earlier.entry(k).or_default().push(f.clone());
                }
            }
        }
        let mine = root.join(name(epoch));
        let newest = earlier
            .iter()
            .rev()
            .find(|(_, files)| files.iter().any(|f| f.ends_with(MANIFEST)));
        if let (false, Some((k, files))) = (mine.exists(), newest) {
            let tmp = root.join(format!(".{}.tmp", name(epoch)));
            let _ = std::fs::remove_dir_all(&tmp);
            let from = format!("checkpoints/{}/", name(*k));
            for f in files {
                let path = tmp.join(f.strip_prefix(&from).unwrap_or(f));
                let io = |e: std::io::Error| io_error(&path, e);
                std::fs::create_dir_all(path.parent().unwrap_or(&tmp)).map_err(io)?;
                std::fs::write(&path, remote.read(f)?).map_err(io)?;
                File::open(&path).and_then(|f| f.sync_all()).map_err(io)?;
            }
            std::fs::rename(&tmp, &mine).map_err(|e| io_error(&mine, e))?;
        }
        for (k, files) in &earlier {
            if k + 1 < epoch {
                for f in files {
                    remote.delete(f);
                }
            }
            let _ = std::fs::remove_dir_all(root.join(name(*k)));
        }
        Ok(())
    }

    /// Removes everything stored for `source`.
    pub fn remove_source(root: &Path, source: &str) {
        let _ = std::fs::remove_dir_all(root.join(file_name(source)));
    }

    /// A store for a pipeline with no checkpoint yet (its directory is created on first
    /// write).
    pub fn new(root: &Path, source: &str, pipeline: u64) -> Self {
        Self {
            dir: Self::pipeline_dir(root, source, pipeline),
            source: source.to_string(),
            pipeline,
            last: None,
            sizes: BTreeMap::new(),
            log_rows: BTreeMap::new(),
            history_root: crate::history::root_for(root),
            sweeper: Default::default(),
            fence: None,
            mirror: None,
        }
    }

    /// Copies every checkpoint to `root` (`checkpoints/<store name>/p<id>/`, files first,
    /// the manifest last), where the next owner of a lane finds it.
    pub fn set_mirror(&mut self, root: HistoryRoot) {
        self.mirror = Some((root, BTreeSet::new()));
    }

    /// Copies the checkpoint just written to the mirror; files the manifest no longer
    /// names go after it. A copy that fails is logged and made good by the next one.
    fn push_mirror(&mut self, keep: &BTreeSet<String>) {
        let Some((root, copied)) = self.mirror.as_mut() else {
            return;
        };
        let dir = format!("checkpoints/{}/p{}", file_name(&self.source), self.pipeline);
        let fence = self.fence.as_ref();
        let pushed = (|| -> Result<()> {
            for f in keep.iter().chain(std::iter::once(&COMMITTED.to_string())) {
                if copied.contains(f) {
                    continue;
                }
                let path = self.dir.join(f);
                let bytes = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
                root.write(&format!("{dir}/{f}"), bytes)?;
                copied.insert(f.clone());
            }
            if let Some(fence) = fence.filter(|f| !f.is_current()) {
                return Err(EngineError::Checkpoint(fence.reason()));
            }
            let path = self.dir.join(MANIFEST);
            let manifest = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
            root.write(&format!("{dir}/{MANIFEST}"), manifest)?;
            Ok(())
        })();
        match pushed {
            Ok(()) => {
                let gone: Vec<String> = copied
                    .iter()
                    .filter(|f| !keep.contains(*f) && f.as_str() != COMMITTED)
                    .cloned()
                    .collect();
                for f in gone {
                    root.delete(&format!("{dir}/{f}"));
                    copied.remove(&f);
                }
            }
            Err(e) => {
                tracing::warn!(dir = %dir, error = %e, "checkpoint not copied to the shared store yet")
            }
        }
    }

    /// Writes only while `fence` holds: a replica that lost a partition's lease never
    /// replaces the checkpoint its successor restores from or writes.
    pub fn set_fence(&mut self, fence: crate::cluster::Fence) {
        self.fence = Some(fence);
    }

    /// The pipeline's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Deletes the pipeline's directory.
    pub fn remove(&self) {
        // The marker, then the manifest: a crash halfway leaves a directory without a
        // checkpoint (ignored and removed at the next start), never a manifest naming
        // deleted files.
        let _ = std::fs::remove_file(self.dir.join(COMMITTED));
        let _ = std::fs::remove_file(self.dir.join(MANIFEST));
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Reads the last complete checkpoint, if there is one. A checkpoint written by an
    /// incompatible build is an error naming both formats; it is never guessed at.
    pub fn load(&mut self) -> Result<Option<Restored>> {
        let path = self.dir.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.dir.join(COMMITTED).exists() {
                    return Err(EngineError::Checkpoint(format!(
                        "{} is missing, though this pipeline completed checkpoints: its state \
                         cannot be trusted. Restore the file, or start with --rebuild-state \
                         to rebuild state from the sources",
                        path.display()
                    )));
                }
                return Ok(None);
            }
            Err(e) => return Err(io_error(&path, e)),
        };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            EngineError::Checkpoint(format!("{} is not a Weir manifest: {e}", path.display()))
        })?;
        let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("?");
        let legacy = format == LEGACY_STATE_FORMAT;
        if format != STATE_FORMAT && !legacy {
            return Err(EngineError::Checkpoint(format!(
                "checkpoint {} was written by an incompatible build (state format '{format}'; \
                 this build reads '{STATE_FORMAT}')",
                self.dir.display()
            )));
        }
        let manifest: Manifest = serde_json::from_value(value).map_err(|e| {
            EngineError::Checkpoint(format!("{}: unreadable manifest: {e}", path.display()))
        })?;
        let mut views = BTreeMap::new();
        for v in &manifest.views {
            let mut rows = Vec::new();
            let mut row_wms = Vec::new();
            let mut skip = v.skip_rows as usize;
            for s in &v.segments {
                for b in read_batches(&self.dir.join(&s.file))? {
                    let n = b.num_rows();
                    if skip >= n {
                        skip -= n;
                        continue;
                    }
                    rows.push(b.slice(skip, n - skip));
                    row_wms.push(s.emitted_wm);
                    skip = 0;
                }
            }
            let one_batch = |f: &String| -> Result<RecordBatch> {
                let batches = read_batches(&self.dir.join(f))?;
                match batches.len() {
                    1 => Ok(batches.into_iter().next().expect("one")),
                    _ => concat_or_empty(&batches, f),
                }
            };
            let operators = v
                .operators
                .iter()
                .map(|files| files.iter().map(one_batch).collect::<Result<Vec<_>>>())
                .collect::<Result<Vec<_>>>()?;
            let legacy = match legacy {
                false => None,
                true => Some(LegacyState {
                    buckets: match &v.state {
                        Some(f) => read_batches(&self.dir.join(f))?,
                        None => Vec::new(),
                    },
                    closed_before: v.closed_before,
                    extra: v.extra.iter().map(one_batch).collect::<Result<Vec<_>>>()?,
                }),
            };
            views.insert(
                v.name.clone(),
                RestoredView {
                    meta: v.clone(),
                    operators,
                    legacy,
                    rows,
                    row_wms,
                    history_root: self.history_root.clone(),
                },
            );
        }
        let mut sinks = BTreeMap::new();
        for k in &manifest.sinks {
            let mut rows = Vec::new();
            for s in &k.segments {
                for b in read_batches(&self.dir.join(&s.file))? {
                    rows.push(b);
                }
                // The first segment may start before the acknowledged rows.
                let skip = k.acked.saturating_sub(s.start) as usize;
                if skip > 0 {
                    rows = skip_rows(rows, skip);
                }
            }
            sinks.insert(
                k.name.clone(),
                crate::checkpoint::RestoredSink {
                    fingerprint: k.fingerprint.clone(),
                    pushed: k.pushed,
                    acked: k.acked,
                    position: k.position.clone(),
                    rows,
                },
            );
        }
        let mut log = Vec::new();
        self.log_rows.clear();
        for f in &manifest.logs {
            let before = log.len();
            let path = self.dir.join(f);
            let file = File::open(&path).map_err(|e| io_error(&path, e))?;
            for line in BufReader::new(file).lines() {
                let line = line.map_err(|e| io_error(&path, e))?;
                if line.is_empty() {
                    continue;
                }
                log.push(
                    serde_json::from_str(&line)
                        .map_err(|e| EngineError::Checkpoint(format!("{}: {e}", path.display())))?,
                );
            }
            self.log_rows.insert(f.clone(), log.len() - before);
        }
        self.sizes = referenced(&manifest)
            .into_iter()
            .map(|f| {
                let size = std::fs::metadata(self.dir.join(&f))
                    .map(|m| m.len())
                    .unwrap_or(0);
                (f, size)
            })
            .collect();
        self.last = Some(manifest.clone());
        Ok(Some(Restored {
            manifest,
            views,
            sinks,
            log,
        }))
    }

    /// Writes `snapshot` as the next epoch and makes it the last complete one.
    pub fn write(&mut self, snapshot: Snapshot) -> Result<WriteReport> {
        if let Some(fence) = self.fence.as_ref().filter(|f| !f.is_current()) {
            return Err(EngineError::Checkpoint(fence.reason()));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| io_error(&self.dir, e))?;
        let mut epoch = self.last.as_ref().map(|m| m.epoch + 1).unwrap_or(1);
        if let Some(fence) = &self.fence {
            // A lane's checkpoint epochs carry its lease epoch in the high 32 bits, so a
            // stale owner's files (cut short by its fence) never share a name with its
            // successor's.
            epoch = epoch.max((fence.epoch() << 32) | 1);
        }
        let mut bytes = 0u64;
        let mut views = Vec::with_capacity(snapshot.views.len());
        let mut moved_views = Vec::new();
        for v in snapshot.views {
            let stem = file_name(&v.name);
            let mut operators = Vec::with_capacity(v.operators.len());
            for (o, state) in v.operators.iter().enumerate() {
                let mut files = Vec::with_capacity(state.len());
                for (i, b) in state.iter().enumerate() {
                    let f = format!("state-{stem}-{epoch}-{o}-{i}.arrow");
                    let n = write_batches(&self.dir.join(&f), std::slice::from_ref(b))?;
                    bytes += n;
                    self.sizes.insert(f.clone(), n);
                    files.push(f);
                }
                operators.push(files);
            }
            // Segments and history carry over only into the same definition.
            let previous = self
                .last
                .as_ref()
                .and_then(|m| m.views.iter().find(|p| p.name == v.name))
                .filter(|p| p.fingerprint == v.fingerprint);
            let mut segments: Vec<Segment> =
                previous.map(|p| p.segments.clone()).unwrap_or_default();
            let mut skip_rows = previous.map(|p| p.skip_rows).unwrap_or(0);
            let mut history = previous.map(|p| p.history.clone()).unwrap_or_default();
            let rows: usize = v.new_rows.iter().map(|b| b.num_rows()).sum();
            if rows > 0 {
                let f = format!("rows-{stem}-{epoch}.arrow");
                let n = write_batches(&self.dir.join(&f), &v.new_rows)?;
                bytes += n;
                self.sizes.insert(f.clone(), n);
                segments.push(Segment {
                    file: f,
                    rows: rows as u64,
                    emitted_wm: v.new_rows_wm,
                });
            }
            if let Some(moved) = &v.history {
                history = moved.kept.clone();
                let evicted: usize = moved.evicted.iter().map(|b| b.num_rows()).sum();
                if moved.write && evicted > 0 {
                    let name = format!("{stem}-{}-{epoch}", self.pipeline);
                    let file = crate::history::write_file(
                        &self.history_root,
                        &stem,
                        &name,
                        &moved.evicted[0].schema(),
                        &moved.evicted,
                        moved.min_wm,
                        moved.max_wm,
                    )?;
                    bytes += file.bytes;
                    history.push(file);
                    // A merge that fails (an unreadable file) leaves the files as they
                    // are; the checkpoint goes on.
                    if let Err(e) = crate::history::compact(&self.history_root, &name, &mut history)
                    {
                        tracing::warn!(view = %v.name, error = %e, "history files not merged");
                    }
                }
                // Segments whose rows all left memory go.
                skip_rows += evicted as u64;
                while segments.first().is_some_and(|s| s.rows <= skip_rows) {
                    skip_rows -= segments.remove(0).rows;
                }
                moved_views.push((v.name.clone(), moved.evicted.len(), history.clone()));
            }
            views.push(ViewManifest {
                name: v.name,
                fingerprint: v.fingerprint,
                rows_in: v.rows_in,
                dropped_rows: v.dropped_rows,
                operators,
                closed_before: i64::MIN,
                state: None,
                extra: Vec::new(),
                segments,
                skip_rows,
                history,
                clock: v.clock,
            });
        }
        let mut sinks = Vec::with_capacity(snapshot.sinks.len());
        for k in snapshot.sinks {
            // Earlier segments carry over while they hold rows not acknowledged.
            let mut segments: Vec<SinkSegment> = self
                .last
                .as_ref()
                .and_then(|m| m.sinks.iter().find(|p| p.name == k.name))
                .filter(|p| p.fingerprint == k.fingerprint)
                .map(|p| p.segments.clone())
                .unwrap_or_default();
            segments.retain(|s| s.start + s.rows > k.acked);
            let rows: usize = k.new_rows.iter().map(|b| b.num_rows()).sum();
            if rows > 0 {
                let f = format!("sink-{}-{epoch}.arrow", file_name(&k.name));
                let n = write_batches(&self.dir.join(&f), &k.new_rows)?;
                bytes += n;
                self.sizes.insert(f.clone(), n);
                segments.push(SinkSegment {
                    file: f,
                    start: k.new_start,
                    rows: rows as u64,
                });
            }
            sinks.push(SinkManifest {
                name: k.name,
                fingerprint: k.fingerprint,
                pushed: k.pushed,
                acked: k.acked,
                position: k.position,
                segments,
            });
        }
        let mut logs = self
            .last
            .as_ref()
            .map(|m| m.logs.clone())
            .unwrap_or_default();
        if !snapshot.new_log.is_empty() {
            let f = format!("log-{epoch}.jsonl");
            let mut text = Vec::new();
            for r in &snapshot.new_log {
                serde_json::to_writer(&mut text, r)
                    .map_err(|e| EngineError::Internal(format!("encoding log record: {e}")))?;
                text.push(b'\n');
            }
            write_synced(&self.dir.join(&f), &text)?;
            bytes += text.len() as u64;
            self.sizes.insert(f.clone(), text.len() as u64);
            self.log_rows.insert(f.clone(), snapshot.new_log.len());
            logs.push(f);
        }
        // The oldest files go once the newer ones hold as many records as are kept.
        loop {
            let newer: usize = logs
                .iter()
                .skip(1)
                .map(|f| self.log_rows.get(f).copied().unwrap_or(0))
                .sum();
            if logs.len() < 2 || newer < SYSTEM_LOG_CAPACITY {
                break;
            }
            self.log_rows.remove(&logs.remove(0));
        }
        let manifest = Manifest {
            format: STATE_FORMAT.to_string(),
            source: self.source.clone(),
            pipeline: self.pipeline,
            epoch,
            written_at_ms: chrono::Utc::now().timestamp_millis(),
            position: snapshot.position,
            tracker: snapshot.tracker,
            counters: snapshot.counters,
            views,
            logs,
            sinks,
        };
        let text = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| EngineError::Internal(format!("encoding manifest: {e}")))?;
        if let Some(fence) = self.fence.as_ref().filter(|f| !f.is_current()) {
            return Err(EngineError::Checkpoint(fence.reason()));
        }
        write_atomic(&self.dir.join(MANIFEST), &text)?;
        bytes += text.len() as u64;
        if self.last.is_none() && !self.dir.join(COMMITTED).exists() {
            write_synced(&self.dir.join(COMMITTED), b"")?;
        }
        let keep = referenced(&manifest);
        self.sizes.retain(|f, _| keep.contains(f));
        // History files the manifest no longer names (expired, merged, or written by an
        // epoch cut short) go a grace time after it is in place. Only the pipeline that
        // holds a view moves its rows, so only it deletes its files.
        for (name, _, files) in &moved_views {
            let dir = file_name(name);
            self.sweeper
                .sweep(&self.history_root, &dir, files, crate::history::GRACE);
        }
        self.last = Some(manifest);
        self.collect_garbage(&keep);
        self.push_mirror(&keep);
        let sink_files = self
            .last
            .as_ref()
            .map(|m| {
                m.sinks
                    .iter()
                    .map(|k| {
                        let files = k
                            .segments
                            .iter()
                            .map(|s| crate::checkpoint::DiskSegment {
                                path: self.dir.join(&s.file),
                                start: s.start,
                                rows: s.rows,
                            })
                            .collect();
                        (k.name.clone(), files)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(WriteReport {
            epoch,
            bytes,
            total_bytes: self.sizes.values().sum::<u64>() + text.len() as u64,
            sink_files,
            history: moved_views,
            history_root: self.history_root.clone(),
        })
    }

    /// Deletes files the last manifest does not name.
    fn collect_garbage(&self, keep: &BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if name != MANIFEST && name != COMMITTED && !keep.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

fn referenced(m: &Manifest) -> BTreeSet<String> {
    let mut files: BTreeSet<String> = m.logs.iter().cloned().collect();
    for v in &m.views {
        files.extend(v.operators.iter().flatten().cloned());
        files.extend(v.segments.iter().map(|s| s.file.clone()));
    }
    for k in &m.sinks {
        files.extend(k.segments.iter().map(|s| s.file.clone()));
    }
    files
}

/// The batches of one state file as one batch (an empty file: an error naming it).
fn concat_or_empty(batches: &[RecordBatch], file: &str) -> Result<RecordBatch> {
    let first = batches
        .first()
        .ok_or_else(|| EngineError::Checkpoint(format!("{file} holds no batch")))?;
    Ok(datafusion::arrow::compute::concat_batches(
        &first.schema(),
        batches,
    )?)
}

/// `rows` without their first `skip` rows.
fn skip_rows(mut rows: Vec<RecordBatch>, mut skip: usize) -> Vec<RecordBatch> {
    let mut out = Vec::with_capacity(rows.len());
    for b in rows.drain(..) {
        if skip >= b.num_rows() {
            skip -= b.num_rows();
            continue;
        }
        out.push(b.slice(skip, b.num_rows() - skip));
        skip = 0;
    }
    out
}

fn io_error(path: &Path, e: std::io::Error) -> EngineError {
    EngineError::Checkpoint(format!("{}: {e}", path.display()))
}

/// Writes `bytes` to `path` and fsyncs it.
/// Copies directory `from` to `to` (created), files fsynced.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            File::open(&target)?.sync_all()?;
        }
    }
    File::open(to)?.sync_all()
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| io_error(path, e))?;
    f.write_all(bytes).map_err(|e| io_error(path, e))?;
    f.sync_all().map_err(|e| io_error(path, e))
}

/// Replaces `path` atomically: temp file, fsync, rename, fsync of the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    write_synced(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(dir, e))?;
    }
    Ok(())
}

/// Replaces `path` atomically with `batches` as one Arrow IPC file (temp file, fsync,
/// rename, fsync of the directory); returns its size.
pub(crate) fn replace_batches(path: &Path, batches: &[RecordBatch]) -> Result<u64> {
    let tmp = path.with_extension("tmp");
    let size = write_batches(&tmp, batches)?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(dir, e))?;
    }
    Ok(size)
}

/// Writes batches as one Arrow IPC file (fsynced) and returns its size. Fields are written
/// nullable so batches that differ only in declared nullability share one schema.
fn write_batches(path: &Path, batches: &[RecordBatch]) -> Result<u64> {
    let first = batches
        .first()
        .ok_or_else(|| EngineError::Internal("writing an empty checkpoint file".into()))?;
    let schema: SchemaRef = Arc::new(Schema::new(
        first
            .schema()
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let file = File::create(path).map_err(|e| io_error(path, e))?;
    let mut writer = FileWriter::try_new(BufWriter::new(file), &schema)?;
    for b in batches {
        let b = RecordBatch::try_new(schema.clone(), b.columns().to_vec())?;
        writer.write(&b)?;
    }
    writer.finish()?;
    let file = writer
        .into_inner()?
        .into_inner()
        .map_err(|e| io_error(path, e.into_error()))?;
    file.sync_all().map_err(|e| io_error(path, e))?;
    Ok(file.metadata().map(|m| m.len()).unwrap_or(0))
}

/// Reads a checkpoint file, validating every array: a damaged file is an error naming it,
/// never a panic while decoding or later while reading the restored state.
pub(crate) fn read_batches(path: &Path) -> Result<Vec<RecordBatch>> {
    let damaged = |e: String| EngineError::Checkpoint(format!("{}: {e}", path.display()));
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let reader = FileReader::try_new(BufReader::new(file), None)?;
        let mut batches = Vec::new();
        for b in reader {
            let b = b?;
            for c in b.columns() {
                c.to_data().validate_full()?;
            }
            batches.push(b);
        }
        Ok::<_, datafusion::arrow::error::ArrowError>(batches)
    }));
    match read {
        Ok(Ok(batches)) => Ok(batches),
        Ok(Err(e)) => Err(damaged(e.to_string())),
        Err(_) => Err(damaged("the file is damaged (it cannot be decoded)".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};

    fn rows(keys: &[&str], counts: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            ("k", Arc::new(StringArray::from(keys.to_vec())) as ArrayRef),
            ("n", Arc::new(Int64Array::from(counts.to_vec())) as ArrayRef),
        ])
        .unwrap()
    }

    /// Damaged checkpoint files (4 bytes overwritten anywhere) are errors naming the file,
    /// never a panic (hostile-test finding 9).
    #[test]
    fn damaged_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.arrow");
        let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
        let counts: Vec<i64> = (0..200).collect();
        write_batches(&path, &[rows(&refs, &counts)]).unwrap();
        let good = std::fs::read(&path).unwrap();
        let mut seed = 7u64;
        let mut errors = 0;
        for _ in 0..300 {
            let mut bytes = good.clone();
            for _ in 0..4 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let at = (seed >> 33) as usize % bytes.len();
                bytes[at] = (seed >> 13) as u8;
            }
            std::fs::write(&path, &bytes).unwrap();
            match read_batches(&path) {
                Ok(_) => {}
                Err(e) => {
                    assert!(e.to_string().contains("state.arrow"), "{e}");
                    errors += 1;
                }
            }
        }
        assert!(errors > 0);
    }

    fn snapshot(position: i64, state: Vec<RecordBatch>, new_rows: Vec<RecordBatch>) -> Snapshot {
        Snapshot {
            position: serde_json::json!({ "next": position }),
            tracker: WatermarkTracker::new(0),
            counters: SourceCounters {
                events_in: position as u64,
                ..Default::default()
            },
            sinks: vec![],
            views: vec![ViewSnapshot {
                name: "v 1".into(),
                fingerprint: "f".into(),
                rows_in: 1,
                dropped_rows: 0,
                operators: vec![Vec::new(), state],
                new_rows,
                new_rows_wm: position,
                clock: position,
                history: None,
            }],
            new_log: vec![LogRecord::DeadLetter {
                location: format!("s#{position}"),
                raw: "{".into(),
                error: "bad".into(),
                received_at_ms: 1,
                source: None,
            }],
        }
    }

    #[test]
    fn epochs_accumulate_segments_and_replace_state() {
        let root = tempfile::tempdir().unwrap();
        let mut store = CheckpointStore::new(root.path(), "src", 0);
        store
            .write(snapshot(
                10,
                vec![rows(&["a"], &[1])],
                vec![rows(&["x"], &[5])],
            ))
            .unwrap();
        let report = store
            .write(snapshot(
                20,
                vec![rows(&["b"], &[2])],
                vec![rows(&["y", "z"], &[6, 7])],
            ))
            .unwrap();
        assert_eq!(report.epoch, 2);

        let mut again = CheckpointStore::new(root.path(), "src", 0);
        let restored = again.load().unwrap().unwrap();
        assert_eq!(restored.manifest.epoch, 2);
        assert_eq!(restored.manifest.position["next"], 20);
        let v = &restored.views["v 1"];
        assert_eq!(v.operators.len(), 2);
        assert!(v.operators[0].is_empty());
        assert_eq!(v.operators[1].len(), 1);
        assert_eq!(v.operators[1][0].columns(), rows(&["b"], &[2]).columns());
        assert_eq!(v.rows.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        assert_eq!(restored.log.len(), 2);
        // The first epoch's state file is gone; its row segment is still named.
        let files: BTreeSet<String> = std::fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!files.contains("state-v%201-1-1-0.arrow"), "{files:?}");
        assert!(files.contains("state-v%201-2-1-0.arrow"), "{files:?}");
        assert!(files.contains("rows-v%201-1.arrow"), "{files:?}");
        assert_eq!(CheckpointStore::pipelines(root.path(), "src"), vec![0]);
    }

    /// A checkpoint of the format before state was stored per operator is read, its state
    /// handed over as it was (the view maps it to its operators); the next epoch is written
    /// in the new format and the old files go.
    #[test]
    fn a_legacy_checkpoint_is_read_and_rewritten() {
        let root = tempfile::tempdir().unwrap();
        let dir = CheckpointStore::pipeline_dir(root.path(), "src", 0);
        std::fs::create_dir_all(&dir).unwrap();
        write_batches(&dir.join("state-v-1.arrow"), &[rows(&["a"], &[1])]).unwrap();
        write_batches(&dir.join("extra-v-1-0.arrow"), &[rows(&["b"], &[2])]).unwrap();
        write_batches(&dir.join("rows-v-1.arrow"), &[rows(&["x"], &[5])]).unwrap();
        let manifest = serde_json::json!({
            "format": LEGACY_STATE_FORMAT,
            "source": "src", "pipeline": 0, "epoch": 1, "written_at_ms": 0,
            "position": { "next": 10 },
            "tracker": WatermarkTracker::new(0),
            "counters": SourceCounters::default(),
            "views": [{
                "name": "v", "fingerprint": "f", "rows_in": 1, "dropped_rows": 3,
                "closed_before": 7, "state": "state-v-1.arrow", "extra": ["extra-v-1-0.arrow"],
                "segments": [{ "file": "rows-v-1.arrow", "rows": 1, "emitted_wm": 10 }]
            }],
            "logs": []
        });
        std::fs::write(dir.join(MANIFEST), manifest.to_string()).unwrap();
        let mut store = CheckpointStore::new(root.path(), "src", 0);
        let restored = store.load().unwrap().unwrap();
        let v = &restored.views["v"];
        assert!(v.operators.is_empty());
        let legacy = v.legacy.as_ref().expect("legacy state");
        assert_eq!(legacy.closed_before, 7);
        assert_eq!(legacy.buckets[0].columns(), rows(&["a"], &[1]).columns());
        assert_eq!(legacy.extra[0].columns(), rows(&["b"], &[2]).columns());
        assert_eq!(v.rows.len(), 1);

        let mut next = snapshot(11, vec![rows(&["c"], &[3])], vec![]);
        next.views[0].name = "v".into();
        store.write(next).unwrap();
        let text = std::fs::read_to_string(dir.join(MANIFEST)).unwrap();
        assert!(text.contains(STATE_FORMAT), "{text}");
        assert!(!dir.join("state-v-1.arrow").exists());
        assert!(dir.join("rows-v-1.arrow").exists(), "segments carry over");
        let again = CheckpointStore::new(root.path(), "src", 0)
            .load()
            .unwrap()
            .unwrap();
        assert!(again.views["v"].legacy.is_none());
        assert_eq!(again.views["v"].rows.len(), 1);
    }

    #[test]
    fn an_incomplete_epoch_is_invisible_and_collected() {
        let root = tempfile::tempdir().unwrap();
        let mut store = CheckpointStore::new(root.path(), "src", 3);
        store.write(snapshot(10, vec![], vec![])).unwrap();
        // A crash after writing data files but before the manifest.
        std::fs::write(store.dir().join("state-v%201-2.arrow"), b"partial").unwrap();
        std::fs::write(store.dir().join("MANIFEST.tmp"), b"{").unwrap();
        let mut again = CheckpointStore::new(root.path(), "src", 3);
        let restored = again.load().unwrap().unwrap();
        assert_eq!(restored.manifest.epoch, 1);
        again.write(snapshot(11, vec![], vec![])).unwrap();
        assert!(!store.dir().join("state-v%201-2.arrow").exists());
        assert!(!store.dir().join("MANIFEST.tmp").exists());
    }

    #[test]
    fn a_lost_manifest_is_an_error_and_a_cut_first_checkpoint_is_not() {
        let root = tempfile::tempdir().unwrap();
        // The first checkpoint cut short: data files, no manifest, no marker.
        let cut = CheckpointStore::new(root.path(), "src", 1);
        std::fs::create_dir_all(cut.dir()).unwrap();
        std::fs::write(cut.dir().join("state-v%201-1.arrow"), b"partial").unwrap();
        assert!(CheckpointStore::new(root.path(), "src", 1)
            .load()
            .unwrap()
            .is_none());
        // A completed checkpoint whose manifest was deleted.
        let mut store = CheckpointStore::new(root.path(), "src", 2);
        store.write(snapshot(10, vec![], vec![])).unwrap();
        std::fs::remove_file(store.dir().join(MANIFEST)).unwrap();
        let e = CheckpointStore::new(root.path(), "src", 2)
            .load()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("MANIFEST.json is missing") && e.contains("--rebuild-state"),
            "{e}"
        );
        // Removing a pipeline leaves nothing that looks like a lost manifest.
        store.remove();
        assert!(CheckpointStore::new(root.path(), "src", 2)
            .load()
            .unwrap()
            .is_none());
    }

    #[test]
    fn the_log_keeps_as_many_records_as_the_relation_and_no_more_files() {
        let root = tempfile::tempdir().unwrap();
        let mut store = CheckpointStore::new(root.path(), "src", 0);
        let per_epoch = SYSTEM_LOG_CAPACITY / 2 + 1;
        for epoch in 0..4 {
            let mut s = snapshot(epoch, vec![], vec![]);
            s.new_log = vec![s.new_log[0].clone(); per_epoch];
            store.write(s).unwrap();
        }
        let logs: Vec<_> = std::fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.starts_with("log-"))
            .collect();
        assert_eq!(logs.len(), 2, "{logs:?}");
        let restored = CheckpointStore::new(root.path(), "src", 0)
            .load()
            .unwrap()
            .unwrap();
        assert_eq!(restored.manifest.logs, vec!["log-3.jsonl", "log-4.jsonl"]);
        assert_eq!(restored.log.len(), 2 * per_epoch);
    }

    #[test]
    fn another_format_is_refused_by_name() {
        let root = tempfile::tempdir().unwrap();
        let mut store = CheckpointStore::new(root.path(), "src", 0);
        store.write(snapshot(1, vec![], vec![])).unwrap();
        let path = store.dir().join(MANIFEST);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace(STATE_FORMAT, "weir-state/0");
        std::fs::write(&path, text).unwrap();
        let err = CheckpointStore::new(root.path(), "src", 0)
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.contains("incompatible build"), "{err}");
        assert!(err.contains("weir-state/0"), "{err}");
    }
}
