//! Retention and Parquet history: recent rows of a view in memory, older rows in Parquet
//! files, one relation over both.
//!
//! A view with `retention` keeps each emitted row in memory until the watermark is
//! `retention` past the watermark at which the row was emitted (its window closed). Then,
//! at the next checkpoint, its rows move to a Parquet file under `<data dir>/history/<view>/`
//! and leave memory. The move is part of the checkpoint protocol: the Parquet file is
//! written and fsynced with the epoch's other files, the manifest names it (and how many of
//! the view's emitted rows memory no longer holds), and only after the manifest is in place
//! does memory drop the rows and queries start reading the file — under one lock, so a
//! query sees every row exactly once. A crash before the manifest leaves a file no manifest
//! names, overwritten or deleted by the view's next move; a crash after it restores memory
//! without those rows.
//!
//! Files whose newest row was emitted more than `retention + history` before the current
//! watermark are dropped from the manifest and deleted. `history = '0'` drops rows that
//! leave memory instead of writing them. Small files are merged ([`compact`]): ten files of
//! one level and day become one of the next level, so a day holds a few dozen files and a
//! row is rewritten about log₁₀(rows) times. A file the manifest no longer names is deleted
//! a minute later ([`Sweeper`]), so a query that took the old list can still read it.
//!
//! The files live under a [`HistoryRoot`]: `<data dir>/history` by default, or an
//! S3-compatible bucket (`history_url`).
//!
//! Time is event time (the watermark), so a replay decides the same moves. The end of a
//! bounded input (watermark at its maximum) does not age anything.

mod compact;
mod store;
mod table;
mod writer;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use compact::{compact, Sweeper, GRACE};
pub use store::{configure, root_for, HistoryRoot};
pub use table::history_exec;
pub use writer::{read_file, write_file};

/// How long a view keeps rows in memory and in history (event time, ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Time after a row is emitted that it stays in memory.
    pub memory_ns: i64,
    /// Time after a row leaves memory that its history file is kept (0: no history).
    pub history_ns: i64,
}

impl Retention {
    /// The emission watermark at or below which rows leave memory, at watermark `clock`.
    pub fn memory_cutoff(&self, clock: i64) -> i64 {
        clock.saturating_sub(self.memory_ns)
    }

    /// The emission watermark at or below which history files are deleted.
    pub fn history_cutoff(&self, clock: i64) -> i64 {
        clock
            .saturating_sub(self.memory_ns)
            .saturating_sub(self.history_ns)
    }
}

/// One Parquet file of a view's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryFile {
    /// Path relative to the history root (`<data dir>/history`, or `history_url`).
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    /// The watermark at which its newest row was emitted.
    pub max_emitted_wm: i64,
    /// 0 for a file written by a move; n + 1 for a file merged from files of level n.
    #[serde(default)]
    pub level: u32,
}

/// A view's history: the root its files are under, and the files, oldest first.
pub type HistoryFiles = (HistoryRoot, Vec<HistoryFile>);

/// Deletes the history of view `name` (checkpoints under `checkpoints`).
pub fn remove_view(checkpoints: &Path, name: &str) {
    root_for(checkpoints).remove_dir(&crate::paths::file_name(name));
}

/// A date partition name for a watermark: `date=YYYY-MM-DD`.
fn date_partition(wm: i64) -> String {
    let secs = wm.div_euclid(1_000_000_000);
    let day = chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "unknown".into());
    format!("date={day}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_are_event_time_and_saturate() {
        let r = Retention {
            memory_ns: 60,
            history_ns: 600,
        };
        assert_eq!(r.memory_cutoff(1000), 940);
        assert_eq!(r.history_cutoff(1000), 340);
        assert_eq!(r.memory_cutoff(i64::MIN), i64::MIN);
        assert_eq!(date_partition(0), "date=1970-01-01");
        assert_eq!(date_partition(1_796_000_000_000_000_000), "date=2026-11-30");
    }
}
