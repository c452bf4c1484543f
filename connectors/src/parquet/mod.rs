//! `connector = 'parquet'`: a sink writing rows as Parquet files in a directory, partitioned
//! by event time — a raw event archive that DuckDB, pandas or Spark read as it is.
//!
//! ```text
//! <path>/date=2026-12-04/hour=13/part-000000000042-0.parquet
//! ```
//!
//! Each write of the sink's queue becomes one file per hour it holds, written to a hidden
//! temporary name, fsynced and renamed, so a reader never sees half a file. Files are
//! numbered by write; the number of files written is the writer's position, kept in the
//! pipeline's checkpoint. After a crash the writer deletes the files numbered at or after
//! the checkpoint's position — their rows come again from the queue and the source's
//! replay — so every row is in exactly one file once the sink has caught up.
//!
//! Options: `path` (a relative path lies under the data dir; an absolute one must lie
//! under the directories file sources may read; `s3://bucket/prefix` writes to
//! S3-compatible storage with the `AWS_*` variables, as `history_url` does), `time` (the column to partition by:
//! default the source's event-time column, or `window_start`; `'none'` for no
//! partitions). The sink writes at most `batch_rows` rows per file (default 100,000).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use weir_engine::connector::sink::{SinkError, SinkFactory, SinkSpec, SinkWriter};
use weir_engine::error::{EngineError, Result};
use weir_engine::history::HistoryRoot;

use crate::options::Options;

/// Rows per write (so per file) unless `batch_rows` says otherwise.
const DEFAULT_BATCH_ROWS: &str = "100000";
const NS_PER_HOUR: i64 = 3_600_000_000_000;

/// Factory of Parquet sinks writing under the data dir or the allowed directories.
#[derive(Debug)]
pub struct ParquetSinkConnector {
    data_dir: PathBuf,
    dirs: Vec<PathBuf>,
}

impl ParquetSinkConnector {
    /// Relative paths go under `data_dir`; absolute ones must lie under one of `dirs`.
    pub fn new(data_dir: PathBuf, dirs: Vec<PathBuf>) -> Self {
        Self { data_dir, dirs }
    }

    /// The directory named by `path`, checked: no `..`, under an allowed directory once
    /// its existing part is resolved (symbolic links included).
    fn directory(&self, path: &str) -> Result<PathBuf> {
        let refused = |why: String| EngineError::InvalidOption {
            option: "path".into(),
            message: why,
        };
        let given = Path::new(path);
        if given.components().any(|c| c == Component::ParentDir) {
            return Err(refused(format!("path '{path}' must not contain '..'")));
        }
        let full = if given.is_absolute() {
            given.to_path_buf()
        } else {
            self.data_dir.join(given)
        };
        // Resolve the part that exists; the rest is created below it.
        let mut existing = full.as_path();
        let mut rest = Vec::new();
        while !existing.exists() {
            let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
                break;
            };
            rest.push(name.to_os_string());
            existing = parent;
        }
        let mut resolved = existing
            .canonicalize()
            .map_err(|e| refused(format!("{}: {e}", existing.display())))?;
        for name in rest.iter().rev() {
            resolved.push(name);
        }
        let mut allowed: Vec<PathBuf> = self.dirs.clone();
        allowed.push(self.data_dir.clone());
        let (inside, listed) = crate::inside_dirs(&resolved, &allowed);
        if !inside {
            return Err(refused(format!(
                "{} is outside the directories Weir may write ({listed}); use a path relative to the data dir, or add the directory to the server's file_dirs setting",
                full.display(),
            )));
        }
        Ok(resolved)
    }

    /// Where the files go: a bucket for an `s3://` URL, else a checked local directory.
    fn root(&self, path: &str) -> Result<HistoryRoot> {
        if path.contains("://") {
            return HistoryRoot::from_url(path).map_err(|e| EngineError::InvalidOption {
                option: "path".into(),
                message: e.to_string(),
            });
        }
        Ok(HistoryRoot::local(self.directory(path)?))
    }

    fn config(&self, spec: &SinkSpec) -> Result<(HistoryRoot, Option<usize>)> {
        let mut o = Options::new("parquet", &spec.options);
        let path = o.required("path")?;
        let time = o.optional("time");
        // Queue settings are the engine's.
        for key in ["batch_rows", "buffer_rows", "on_full", "update_interval"] {
            o.optional(key);
        }
        o.finish()?;
        let root = self.root(&path)?;
        let schema = &spec.schema;
        let is_time = |i: usize| matches!(schema.field(i).data_type(), DataType::Timestamp(_, _));
        let column = match time.as_deref().map(str::trim) {
            Some(t) if t.eq_ignore_ascii_case("none") => None,
            Some(t) => {
                let i = schema.index_of(t).map_err(|_| EngineError::InvalidOption {
                    option: "time".into(),
                    message: format!("\"{t}\" is not a column of {}", spec.input),
                })?;
                if !is_time(i) {
                    return Err(EngineError::InvalidOption {
                        option: "time".into(),
                        message: format!("\"{t}\" is not a timestamp column"),
                    });
                }
                Some(i)
            }
            None => spec
                .event_time
                .as_deref()
                .or(Some("window_start"))
                .and_then(|c| schema.index_of(c).ok())
                .filter(|i| is_time(*i)),
        };
        Ok((root, column))
    }
}

impl SinkFactory for ParquetSinkConnector {
    fn name(&self) -> &'static str {
        "parquet"
    }

    fn validate(&self, spec: &SinkSpec) -> Result<BTreeMap<String, String>> {
        let (root, column) = self.config(spec)?;
        if let Some(dir) = root.local_dir() {
            std::fs::create_dir_all(dir).map_err(|e| EngineError::InvalidOption {
                option: "path".into(),
                message: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let mut options = spec.options.clone();
        options
            .entry("batch_rows".into())
            .or_insert_with(|| DEFAULT_BATCH_ROWS.into());
        options.entry("time".into()).or_insert_with(|| {
            column
                .map(|i| spec.schema.field(i).name().clone())
                .unwrap_or_else(|| "none".into())
        });
        Ok(options)
    }

    fn create(&self, spec: &SinkSpec) -> Result<Box<dyn SinkWriter>> {
        let (root, time_column) = self.config(spec)?;
        Ok(Box::new(ParquetWriter {
            root,
            schema: spec.schema.clone(),
            time_column,
            next: 0,
        }))
    }
}

struct ParquetWriter {
    root: HistoryRoot,
    schema: SchemaRef,
    time_column: Option<usize>,
    /// Number of the next write (files are `part-<number>-<i>.parquet`).
    next: u64,
}

/// The write number of a file the sink wrote, from its name.
fn write_number(name: &str) -> Option<u64> {
    name.strip_prefix("part-")?.split('-').next()?.parse().ok()
}

/// Deletes the files of write `from` and later (and temporary files) under `root`.
fn delete_from(root: &HistoryRoot, from: u64) {
    for relative in root.list("") {
        let name = relative.rsplit('/').next().unwrap_or_default();
        let stale = (name.starts_with('.') && name.ends_with(".tmp"))
            || (name.ends_with(".parquet") && write_number(name).is_some_and(|n| n >= from));
        if stale {
            root.delete(&relative);
        }
    }
}

/// `date=YYYY-MM-DD/hour=HH` of an hour number (hours since the epoch).
fn partition(hour: i64) -> String {
    chrono::DateTime::from_timestamp(hour * 3600, 0)
        .map(|t| t.format("date=%Y-%m-%d/hour=%H").to_string())
        .unwrap_or_else(|| "date=unknown".into())
}

impl ParquetWriter {
    /// Rows by hour of their time column (`None`: no time, or no partitioning).
    fn by_hour(&self, batch: &RecordBatch) -> Result<BTreeMap<Option<i64>, RecordBatch>> {
        let mut out = BTreeMap::new();
        let Some(column) = self.time_column else {
            out.insert(None, batch.clone());
            return Ok(out);
        };
        let times = weir_engine::operator::aggregate::timestamps_ns(batch.column(column))?;
        let hours: Vec<Option<i64>> = (0..times.len())
            .map(|r| {
                times
                    .is_valid(r)
                    .then(|| times.value(r).div_euclid(NS_PER_HOUR))
            })
            .collect();
        let mut distinct = hours.clone();
        distinct.sort();
        distinct.dedup();
        for hour in distinct {
            let mask = BooleanArray::from(hours.iter().map(|h| *h == hour).collect::<Vec<_>>());
            out.insert(hour, filter_record_batch(batch, &mask)?);
        }
        Ok(out)
    }

    /// Writes `batch` as Parquet to `relative` (durable, never seen half-written).
    fn write_file(&self, relative: &str, batch: &RecordBatch) -> Result<()> {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let parquet = |e: datafusion::parquet::errors::ParquetError| {
            EngineError::Internal(format!("writing {relative}: {e}"))
        };
        let mut writer =
            ArrowWriter::try_new(Vec::new(), self.schema.clone(), Some(props)).map_err(parquet)?;
        writer.write(batch).map_err(parquet)?;
        let bytes = writer.into_inner().map_err(parquet)?;
        self.root.write(relative, bytes).map(|_| ())
    }
}

#[async_trait::async_trait(?Send)]
impl SinkWriter for ParquetWriter {
    async fn open(&mut self, resume: &serde_json::Value) -> Result<(), SinkError> {
        self.next = resume.get("files").and_then(|n| n.as_u64()).unwrap_or(0);
        // Files written after the checkpoint hold rows that come again.
        delete_from(&self.root, self.next);
        Ok(())
    }

    async fn write(&mut self, batches: &[RecordBatch]) -> Result<(), SinkError> {
        let batches: Vec<RecordBatch> = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| RecordBatch::try_new(self.schema.clone(), b.columns().to_vec()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| SinkError::Permanent(e.to_string()))?;
        if batches.is_empty() {
            return Ok(());
        }
        let all = concat_batches(&self.schema, &batches)
            .map_err(|e| SinkError::Permanent(e.to_string()))?;
        let parts = self
            .by_hour(&all)
            .map_err(|e| SinkError::Permanent(e.to_string()))?;
        for (i, (hour, rows)) in parts.iter().enumerate() {
            let name = format!("part-{:012}-{i}.parquet", self.next);
            let relative = match (self.time_column, hour) {
                (None, _) => name,
                (Some(_), Some(h)) => format!("{}/{name}", partition(*h)),
                (Some(_), None) => format!("date=none/{name}"),
            };
            // A full disk, a lost mount or an unreachable bucket: retried with the same name.
            self.write_file(&relative, rows)
                .map_err(|e| SinkError::Transient(format!("{}: {e}", self.root.describe())))?;
        }
        self.next += 1;
        Ok(())
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({ "files": self.next })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use datafusion::arrow::array::{Int64Array, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::fs::File;

    fn spec(dir: &Path) -> SinkSpec {
        SinkSpec {
            name: "raw".into(),
            input: "events".into(),
            from_source: true,
            schema: Arc::new(Schema::new(vec![
                Field::new("n", DataType::Int64, false),
                Field::new(
                    "ts",
                    DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
                    true,
                ),
            ])),
            key: vec![],
            event_time: Some("ts".into()),
            updating: false,
            once_per_key: false,
            options: BTreeMap::from([("path".to_string(), dir.display().to_string())]),
        }
    }

    fn rows(spec: &SinkSpec, from: i64, to: i64) -> RecordBatch {
        let ns = |n: i64| n * 20 * 60 * 1_000_000_000; // every 20 minutes
        RecordBatch::try_new(
            spec.schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(from..to)),
                Arc::new(
                    TimestampNanosecondArray::from_iter_values((from..to).map(ns))
                        .with_timezone("+00:00"),
                ),
            ],
        )
        .unwrap()
    }

    fn read_all(dir: &Path) -> Vec<i64> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "parquet") {
                    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&p).unwrap())
                        .unwrap()
                        .build()
                        .unwrap();
                    for b in reader {
                        let b = b.unwrap();
                        let n = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                        out.extend(n.values().iter().copied());
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// Files are partitioned by hour; after a crash, the files written after the
    /// checkpoint are deleted and their rows written again: each row once.
    #[tokio::test]
    async fn rows_land_once_in_hourly_files_across_a_replay() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("archive");
        let connector =
            ParquetSinkConnector::new(root.path().to_path_buf(), vec![root.path().into()]);
        let spec = spec(&dir);
        let options = connector.validate(&spec).unwrap();
        assert_eq!(options["time"], "ts");
        let mut writer = connector.create(&spec).unwrap();
        writer.open(&serde_json::Value::Null).await.unwrap();
        writer.write(&[rows(&spec, 0, 6)]).await.unwrap();
        let checkpoint = writer.position();
        writer.write(&[rows(&spec, 6, 9)]).await.unwrap();
        assert!(dir.join("date=1970-01-01/hour=01").is_dir());
        assert_eq!(read_all(&dir), (0..9).collect::<Vec<_>>());
        // Restarted from the checkpoint taken after the first write: rows 6.. come again.
        let mut again = connector.create(&spec).unwrap();
        again.open(&checkpoint).await.unwrap();
        assert_eq!(read_all(&dir), (0..6).collect::<Vec<_>>());
        again.write(&[rows(&spec, 6, 12)]).await.unwrap();
        assert_eq!(read_all(&dir), (0..12).collect::<Vec<_>>());
    }

    #[test]
    fn paths_outside_the_allowed_directories_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let connector = ParquetSinkConnector::new(root.path().join("data"), vec![]);
        std::fs::create_dir_all(root.path().join("data")).unwrap();
        let mut s = spec(Path::new("/etc/weir-archive"));
        assert!(connector.validate(&s).is_err());
        s.options.insert("path".into(), "../escape".into());
        assert!(connector.validate(&s).is_err());
        s.options.insert("path".into(), "archive/raw".into());
        connector.validate(&s).unwrap();
        assert!(root.path().join("data/archive/raw").is_dir());
        s.options.insert("time".into(), "n".into());
        assert!(connector.validate(&s).is_err());
    }
}
