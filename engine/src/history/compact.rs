//! Merging small history files, and deleting files the manifest no longer names.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::writer::{read_file, write_in};
use super::{HistoryFile, HistoryRoot};
use crate::error::Result;

/// Files of one level merged into one of the next.
pub const FANIN: usize = 10;

/// How long a file no manifest names is kept: queries that listed it may still read it.
pub const GRACE: Duration = Duration::from_secs(60);

/// The directory (view and date partition) of a history file's relative path.
fn partition(path: &str) -> &str {
    path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("")
}

/// While the newest [`FANIN`] files of `files` share a level and a date partition, merges
/// them into one file of the next level named `<name>-L<level>`, in their order.
pub fn compact(root: &HistoryRoot, name: &str, files: &mut Vec<HistoryFile>) -> Result<()> {
    while files.len() >= FANIN {
        let tail = &files[files.len() - FANIN..];
        let level = tail[0].level;
        let dir = partition(&tail[0].path).to_string();
        if !tail
            .iter()
            .all(|f| f.level == level && partition(&f.path) == dir)
        {
            return Ok(());
        }
        let mut batches = Vec::new();
        for f in tail {
            batches.extend(read_file(root, &f.path)?);
        }
        let max_wm = tail
            .iter()
            .map(|f| f.max_emitted_wm)
            .max()
            .unwrap_or(i64::MIN);
        let Some(schema) = batches.first().map(|b| b.schema()) else {
            return Ok(());
        };
        let mut merged = write_in(
            root,
            &dir,
            &format!("{name}-L{}", level + 1),
            &schema,
            &batches,
            max_wm,
        )?;
        merged.level = level + 1;
        files.truncate(files.len() - FANIN);
        files.push(merged);
    }
    Ok(())
}

/// Deletes a view's history files that its manifest no longer names, [`GRACE`] after
/// they were first found unnamed.
#[derive(Debug, Default)]
pub struct Sweeper {
    unnamed_since: BTreeMap<String, Instant>,
}

impl Sweeper {
    /// Looks at the files under `dir` (a view's history directory, relative to `root`):
    /// those `keep` does not name are deleted once unnamed for `grace`.
    pub fn sweep(&mut self, root: &HistoryRoot, dir: &str, keep: &[HistoryFile], grace: Duration) {
        let now = Instant::now();
        let mut seen = Vec::new();
        for relative in root.list(dir) {
            if keep.iter().any(|f| f.path == relative) {
                continue;
            }
            let since = *self.unnamed_since.entry(relative.clone()).or_insert(now);
            if now.duration_since(since) >= grace {
                root.delete(&relative);
            } else {
                seen.push(relative);
            }
        }
        // Forget files that are gone (deleted here or with their view).
        let prefix = format!("{dir}/");
        self.unnamed_since
            .retain(|p, _| !p.starts_with(&prefix) || seen.contains(p));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;

    use super::*;

    fn batch(from: i64, n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(from..from + n))],
        )
        .unwrap()
    }

    fn values(root: &HistoryRoot, files: &[HistoryFile]) -> Vec<i64> {
        let mut out = Vec::new();
        for f in files {
            for b in read_file(root, &f.path).unwrap() {
                let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                out.extend(a.values().iter().copied());
            }
        }
        out
    }

    #[test]
    fn ten_files_of_a_level_become_one_and_rows_keep_their_order() {
        let tmp = tempfile::tempdir().unwrap();
        let root = HistoryRoot::local(tmp.path().to_path_buf());
        let root = &root;
        let mut files = Vec::new();
        let mut sweeper = Sweeper::default();
        for i in 0..125 {
            let b = batch(i * 3, 3);
            let f = write_in(
                root,
                "v/date=2026-11-27",
                &format!("v-{i}"),
                &b.schema(),
                &[b],
                i,
            )
            .unwrap();
            files.push(f);
            compact(root, &format!("v-{i}"), &mut files).unwrap();
        }
        // 125 = 1 × 100 + 2 × 10 + 5 × 1.
        let levels: Vec<u32> = files.iter().map(|f| f.level).collect();
        assert_eq!(levels, vec![2, 1, 1, 0, 0, 0, 0, 0]);
        assert_eq!(values(root, &files), (0..375).collect::<Vec<_>>());
        assert_eq!(files.iter().map(|f| f.rows).sum::<u64>(), 375);
        assert_eq!(files[0].max_emitted_wm, 99);
        // Merged-away files go once unnamed for the grace time, the named ones stay.
        sweeper.sweep(root, "v", &files, Duration::from_secs(60));
        let count = || {
            std::fs::read_dir(tmp.path().join("v/date=2026-11-27"))
                .unwrap()
                .count()
        };
        assert_eq!(count(), 125 + 12 + 1);
        sweeper.sweep(root, "v", &files, Duration::ZERO);
        assert_eq!(count(), files.len());
        assert_eq!(values(root, &files).len(), 375);
        // Files of another day are not merged with these.
        let b = batch(1000, 1);
        for i in 0..9 {
            files.push(
                write_in(
                    root,
                    "v/date=2026-11-28",
                    &format!("w-{i}"),
                    &b.schema(),
                    std::slice::from_ref(&b),
                    200,
                )
                .unwrap(),
            );
            compact(root, "w", &mut files).unwrap();
        }
        assert_eq!(files.len(), 17);
    }
}
