//! Retention of `weir.dead_letters` and `weir.late_events`: rows received more than
//! `system_log_retention` ago leave memory for Parquet files under the history root
//! (`weir.dead_letters/date=YYYY-MM-DD/<bucket start>.parquet`), and the relations read
//! memory and files as one.
//!
//! Rows move by buckets of received time (the retention, between a second and an hour):
//! a bucket is written once it lies wholly before `now − retention`, then the highest
//! archived time is recorded (`<relation>/ARCHIVED`), then memory forgets the rows. Reads
//! show memory rows received at or after that time only, so a row is never in both. A
//! crash before `ARCHIVED` is written leaves a file that the next pass writes again with
//! the same name and rows. Files are deleted `system_log_history` after their bucket.
//! The time is wall time (`received_at`): these rows describe arrivals, not events.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::Mutex;
use weir_engine::history::{read_file, HistoryRoot};
use weir_engine::serving::system::{LogKind, SystemLog};

use crate::error::{Result, SqlError};

/// The relations with retention, and the engine's log behind each.
pub const RELATIONS: [(&str, LogKind); 2] = [
    ("weir.dead_letters", LogKind::DeadLetters),
    ("weir.late_events", LogKind::LateEvents),
];

const NS_PER_SEC: i64 = 1_000_000_000;

/// Where and how long archived system rows are kept.
#[derive(Debug)]
pub struct SystemArchive {
    root: HistoryRoot,
    retention_ns: i64,
    history_ns: i64,
    /// Per relation: rows received before this (ns) are in files, not memory.
    archived: Mutex<BTreeMap<String, i64>>,
}

fn marker(relation: &str) -> String {
    format!("{relation}/ARCHIVED")
}

impl SystemArchive {
    /// An archive under `root`; reads what earlier runs archived.
    pub fn new(root: HistoryRoot, retention_ns: i64, history_ns: i64) -> Self {
        let archived = RELATIONS
            .iter()
            .map(|(r, _)| {
                let through = root
                    .read(&marker(r))
                    .ok()
                    .and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse().ok())
                    .unwrap_or(i64::MIN);
                (r.to_string(), through)
            })
            .collect();
        Self {
            root,
            retention_ns,
            history_ns,
            archived: Mutex::new(archived),
        }
    }

    fn bucket_ns(&self) -> i64 {
        self.retention_ns.clamp(NS_PER_SEC, 3600 * NS_PER_SEC)
    }

    /// Rows received before this are in files.
    fn archived_through(&self, relation: &str) -> i64 {
        self.archived
            .lock()
            .get(relation)
            .copied()
            .unwrap_or(i64::MIN)
    }

    /// `batch` (a relation's rows in memory) without the rows already archived.
    fn unarchived(&self, relation: &str, batch: &RecordBatch) -> Result<RecordBatch> {
        let through = self.archived_through(relation);
        let received = received_ns(batch)?;
        let keep: BooleanArray = received.iter().map(|&t| Some(t >= through)).collect();
        Ok(filter_record_batch(batch, &keep)?)
    }

    /// The end of the last bucket wholly before `now − retention`.
    fn limit(&self, now_ns: i64) -> i64 {
        let bucket = self.bucket_ns();
        (now_ns - self.retention_ns).div_euclid(bucket) * bucket
    }

    /// Whether a bucket of `relation` is due to move at `now_ns`.
    fn due(&self, relation: &str, now_ns: i64) -> bool {
        self.limit(now_ns) > self.archived_through(relation)
    }

    /// Writes the buckets of `batch` that lie wholly before `now − retention` and are not
    /// archived yet; returns the new archived-through time when it moved.
    fn archive(&self, relation: &str, batch: &RecordBatch, now_ns: i64) -> Result<Option<i64>> {
        let bucket = self.bucket_ns();
        let limit = self.limit(now_ns);
        let through = self.archived_through(relation);
        if limit <= through {
            return Ok(None);
        }
        let received = received_ns(batch)?;
        let mut buckets: Vec<i64> = received
            .iter()
            .filter(|&&t| t >= through && t < limit)
            .map(|&t| t.div_euclid(bucket) * bucket)
            .collect();
        buckets.sort_unstable();
        buckets.dedup();
        for start in buckets {
            let mask: BooleanArray = received
                .iter()
                .map(|&t| Some(t >= start && t < start + bucket))
                .collect();
            let rows = filter_record_batch(batch, &mask)?;
            let mut parquet =
                datafusion::parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), None)
                    .map_err(|e| SqlError::Internal(e.to_string()))?;
            parquet
                .write(&rows)
                .map_err(|e| SqlError::Internal(e.to_string()))?;
            let bytes = parquet
                .into_inner()
                .map_err(|e| SqlError::Internal(e.to_string()))?;
            self.root
                .write(&format!("{relation}/{}/{start}.parquet", day(start)), bytes)?;
        }
        self.root
            .write(&marker(relation), limit.to_string().into_bytes())?;
        self.archived.lock().insert(relation.to_string(), limit);
        Ok(Some(limit))
    }

    /// The archived files of `relation` and the start of each one's bucket.
    fn files(&self, relation: &str) -> Vec<(String, i64)> {
        self.root
            .list(relation)
            .into_iter()
            .filter_map(|file| {
                let start = file
                    .rsplit('/')
                    .next()
                    .and_then(|n| n.strip_suffix(".parquet"))
                    .and_then(|n| n.parse::<i64>().ok())?;
                Some((file, start))
            })
            .collect()
    }

    /// `memory` (a relation's rows in memory) with its archived rows: each row once.
    pub fn with_archive(&self, relation: &str, memory: RecordBatch) -> Result<RecordBatch> {
        let mut batches = Vec::new();
        for (file, _) in self.files(relation) {
            for b in read_file(&self.root, &file)? {
                batches.push(RecordBatch::try_new(memory.schema(), b.columns().to_vec())?);
            }
        }
        batches.push(self.unarchived(relation, &memory)?);
        Ok(concat_batches(&memory.schema(), &batches)?)
    }

    /// One pass at `now_ns`: moves each log's due buckets (`memory` builds a log's rows as
    /// its relation shows them), makes `system` forget them, and deletes files past
    /// `history`.
    pub fn run(
        &self,
        system: &SystemLog,
        memory: impl Fn(LogKind) -> Result<RecordBatch>,
        now_ns: i64,
    ) -> Result<()> {
        let expired = now_ns - self.retention_ns - self.history_ns - self.bucket_ns();
        for (relation, kind) in RELATIONS {
            if !self.due(relation, now_ns) {
                continue;
            }
            if let Some(t) = self.archive(relation, &memory(kind)?, now_ns)? {
                system.forget_received_before(kind, t);
            }
            for (file, start) in self.files(relation) {
                if start < expired {
                    self.root.delete(&file);
                }
            }
        }
        Ok(())
    }
}

/// `date=YYYY-MM-DD` of a time (ns).
fn day(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns.div_euclid(NS_PER_SEC), 0)
        .map(|t| t.format("date=%Y-%m-%d").to_string())
        .unwrap_or_else(|| "date=unknown".into())
}

/// The `received_at` column in ns (rows without one count as received at the start).
fn received_ns(batch: &RecordBatch) -> Result<Vec<i64>> {
    let column = batch
        .column_by_name("received_at")
        .ok_or_else(|| SqlError::Internal("system relation without received_at".into()))?;
    let times = weir_engine::operator::aggregate::timestamps_ns(column)?;
    Ok((0..times.len())
        .map(|r| {
            if times.is_valid(r) {
                times.value(r)
            } else {
                i64::MIN
            }
        })
        .collect())
}
