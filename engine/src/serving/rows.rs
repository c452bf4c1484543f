//! Emitted view rows, with a keyed index (served to queries by [`super::table::ViewTable`]).
//!
//! Closed windows are immutable, so their rows are appended once and indexed by each key
//! column (the view's non-window GROUP BY columns). A query `WHERE source = 'x'` on a view is
//! answered from the index without scanning other keys' rows.

use std::collections::HashMap;

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;

use crate::error::Result;
use crate::history::{HistoryFile, HistoryFiles, HistoryRoot};

/// Positions `(batch, row)` of the rows holding one key value.
type KeyIndex = HashMap<ScalarValue, Vec<(u32, u32)>>;

/// Rows of closed windows with per-column hash indexes: appended at the end, moved to
/// history from the front. Batch numbers count every batch ever appended.
#[derive(Debug)]
pub struct RowStore {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    /// The watermark at which each batch was emitted.
    batch_wm: Vec<i64>,
    /// Batches that left memory (the number of the first batch held).
    offset: usize,
    rows: usize,
    bytes: usize,
    /// (column, value → (batch number, row) positions).
    indexes: Vec<(usize, KeyIndex)>,
    /// Where the rows that left memory are, if anywhere.
    history: Option<HistoryFiles>,
}

impl RowStore {
    /// An empty store indexing `key_columns`.
    pub fn new(schema: SchemaRef, key_columns: Vec<usize>) -> Self {
        Self {
            schema,
            batches: Vec::new(),
            batch_wm: Vec::new(),
            offset: 0,
            rows: 0,
            bytes: 0,
            indexes: key_columns
                .into_iter()
                .map(|c| (c, HashMap::new()))
                .collect(),
            history: None,
        }
    }

    /// Appends rows emitted at watermark `wm` and indexes them.
    pub fn append(&mut self, batches: &[RecordBatch], wm: i64) -> Result<()> {
        for batch in batches.iter().filter(|b| b.num_rows() > 0) {
            let b = (self.offset + self.batches.len()) as u32;
            for (col, index) in &mut self.indexes {
                let array = batch.column(*col);
                for r in 0..batch.num_rows() {
                    let key = ScalarValue::try_from_array(array, r)?;
                    index.entry(key).or_default().push((b, r as u32));
                }
            }
            self.rows += batch.num_rows();
            self.bytes += batch.get_array_memory_size();
            self.batches.push(batch.clone());
            self.batch_wm.push(wm);
        }
        Ok(())
    }

    /// How many of the first batches were emitted at or before watermark `cutoff`.
    pub fn emitted_by(&self, cutoff: i64) -> usize {
        self.batch_wm.iter().take_while(|&&w| w <= cutoff).count()
    }

    /// The highest watermark at which a batch after the first `from` was emitted.
    pub fn max_wm_from(&self, from: usize) -> i64 {
        self.batch_wm
            .get(from.saturating_sub(self.offset)..)
            .and_then(|w| w.iter().copied().max())
            .unwrap_or(i64::MIN)
    }

    /// The first `n` batches and the lowest and highest watermark they were emitted at.
    pub fn head(&self, n: usize) -> (Vec<RecordBatch>, i64, i64) {
        let n = n.min(self.batches.len());
        let wm = &self.batch_wm[..n];
        (
            self.batches[..n].to_vec(),
            wm.iter().copied().min().unwrap_or(i64::MIN),
            wm.iter().copied().max().unwrap_or(i64::MIN),
        )
    }

    /// Drops the first `n` batches (their rows are in `files` now, or expired) and makes
    /// `files` under `root` the history. Readers see both changes at once.
    pub fn evict(&mut self, n: usize, root: HistoryRoot, files: Vec<HistoryFile>) {
        let n = n.min(self.batches.len());
        for b in self.batches.drain(..n) {
            self.rows -= b.num_rows();
            self.bytes = self.bytes.saturating_sub(b.get_array_memory_size());
        }
        self.batch_wm.drain(..n);
        self.offset += n;
        if n > 0 {
            let first = self.offset as u32;
            for (_, index) in &mut self.indexes {
                index.retain(|_, positions| {
                    positions.retain(|p| p.0 >= first);
                    !positions.is_empty()
                });
            }
        }
        self.history = Some((root, files));
    }

    /// The history files and their root, if rows have left memory.
    pub fn history(&self) -> Option<&HistoryFiles> {
        self.history.as_ref()
    }

    /// All rows.
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.batches.clone()
    }

    /// Number of batches ever appended (including those that left memory).
    pub fn batch_count(&self) -> usize {
        self.offset + self.batches.len()
    }

    /// Batches appended after the first `from` (of those ever appended).
    pub fn batches_from(&self, from: usize) -> Vec<RecordBatch> {
        self.batches
            .get(from.saturating_sub(self.offset)..)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    /// Rows whose column `col` equals `key`; all rows if `col` is not indexed.
    pub fn lookup(&self, col: usize, key: &ScalarValue) -> Result<Vec<RecordBatch>> {
        let Some((_, index)) = self.indexes.iter().find(|(c, _)| *c == col) else {
            return Ok(self.batches());
        };
        let key = match key.cast_to(self.schema.field(col).data_type()) {
            Ok(k) => k,
            Err(_) => return Ok(vec![]),
        };
        let Some(positions) = index.get(&key) else {
            return Ok(vec![]);
        };
        let mut out = Vec::new();
        let mut i = 0;
        while i < positions.len() {
            let b = positions[i].0;
            let mut rows = Vec::new();
            while i < positions.len() && positions[i].0 == b {
                rows.push(positions[i].1);
                i += 1;
            }
            let indices = UInt32Array::from(rows);
            out.push(take_record_batch(
                &self.batches[b as usize - self.offset],
                &indices,
            )?);
        }
        Ok(out)
    }

    /// Row count.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Approximate memory.
    pub fn bytes(&self) -> usize {
        self.bytes + self.index_bytes()
    }

    /// Memory of the key indexes: each table's slots (key, position list, control byte)
    /// and each key's value and position list.
    fn index_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(ScalarValue, Vec<(u32, u32)>)>() + 1;
        self.indexes
            .iter()
            .map(|(_, index)| {
                index.capacity() * slot
                    + index
                        .iter()
                        .map(|(key, positions)| {
                            key.size() - std::mem::size_of::<ScalarValue>()
                                + positions.capacity() * std::mem::size_of::<(u32, u32)>()
                        })
                        .sum::<usize>()
            })
            .sum()
    }
}
