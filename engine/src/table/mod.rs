//! Tables: rows keyed by a primary key, changed by statements, read by queries and joined by
//! views.
//!
//! A table holds its rows in one Arrow batch plus an index from the encoded primary key to
//! the row. Every change builds the next batch and swaps it in whole, so a reader — a query
//! or a view's lookup join — sees one committed version, never half a statement. With a data
//! dir each change is written to `tables/<name>.arrow` (temp file, fsync, rename) before the
//! statement returns: a table keeps every statement that completed across `kill -9`.
//!
//! A view that joins a table reads the version current when it processes a micro-batch (a
//! processing-time lookup join, like Flink's): a change applies to events processed after
//! it, and rows the view already emitted keep the values they were joined with.

pub mod scan;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch, interleave, take};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::arrow::util::display::array_value_to_string;
use parking_lot::{Mutex, RwLock};

use crate::error::{EngineError, Result};

/// `schema` with every field nullable: how a table's rows are read from outside (and how
/// DataFusion sees the table), so a missing NOT NULL value is reported by the table, with
/// PostgreSQL's error naming the column.
pub fn all_nullable(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ))
}

/// What an insert does with a row whose key the table already has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnConflict {
    /// Fail the statement (plain `INSERT`).
    Error,
    /// Skip the row (`ON CONFLICT DO NOTHING`).
    Nothing,
    /// Overwrite these columns (by index) of the existing row with the new row's
    /// (`ON CONFLICT (key) DO UPDATE SET c = EXCLUDED.c, …`).
    Update(Vec<usize>),
}

/// One committed version of a table's rows.
#[derive(Debug)]
pub struct TableRows {
    batch: RecordBatch,
    index: HashMap<Box<[u8]>, u32>,
    version: u64,
}

impl TableRows {
    /// Every row, in the table's schema.
    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// How many statements changed the table since it was opened.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }
}

/// A table.
pub struct Table {
    name: String,
    schema: SchemaRef,
    key: Vec<usize>,
    converter: RowConverter,
    file: Option<PathBuf>,
    rows: RwLock<Arc<TableRows>>,
    /// Held by the statement changing the table, so changes apply one after the other.
    writer: Mutex<()>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.name)
            .field("rows", &self.rows.read().len())
            .finish_non_exhaustive()
    }
}

impl Table {
    /// Opens table `name` with primary key columns `key` (indices into `schema`), reading
    /// its rows from `file` when that exists; `None` keeps it in memory only.
    pub fn open(
        name: &str,
        schema: SchemaRef,
        key: Vec<usize>,
        file: Option<PathBuf>,
    ) -> Result<Self> {
        if key.is_empty() || key.iter().any(|&i| i >= schema.fields().len()) {
            return Err(EngineError::Internal(format!(
                "table {name}: primary key columns {key:?} do not fit its schema"
            )));
        }
        let converter = RowConverter::new(
            key.iter()
                .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                .collect(),
        )?;
        let mut table = Self {
            name: name.to_string(),
            schema: schema.clone(),
            key,
            converter,
            file,
            rows: RwLock::new(Arc::new(TableRows {
                batch: RecordBatch::new_empty(schema),
                index: HashMap::new(),
                version: 0,
            })),
            writer: Mutex::new(()),
        };
        if let Some(path) = table.file.clone().filter(|p| p.exists()) {
            let stored = crate::checkpoint::read_batches(&path)?;
            let batch = table
                .conform(&stored)
                .map_err(|e| EngineError::Checkpoint(format!("{}: {e}", path.display())))?;
            let index = table
                .index(&batch)
                .map_err(|e| EngineError::Checkpoint(format!("{}: {e}", path.display())))?;
            table.rows = RwLock::new(Arc::new(TableRows {
                batch,
                index,
                version: 0,
            }));
        }
        Ok(table)
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its columns.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The primary key's columns (indices into [`schema`](Self::schema)).
    pub fn key_columns(&self) -> &[usize] {
        &self.key
    }

    /// The file the table is stored in, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The committed rows.
    pub fn rows(&self) -> Arc<TableRows> {
        self.rows.read().clone()
    }

    /// Approximate bytes in memory: the rows and their key index.
    pub fn state_bytes(&self) -> usize {
        let rows = self.rows();
        let keys: usize = rows.index.keys().map(|k| k.len() + 24).sum();
        rows.batch.get_array_memory_size() + keys
    }

    /// Adds rows (columns in the table's order, cast to its types); returns how many rows
    /// were inserted or updated.
    pub fn insert(&self, rows: &[RecordBatch], on_conflict: &OnConflict) -> Result<u64> {
        let _writer = self.writer.lock();
        let new = self.conform(rows)?;
        let current = self.rows();
        let keys = self.keys(&new)?;
        let mut seen: HashSet<&[u8]> = HashSet::with_capacity(keys.len());
        let mut appended: Vec<u32> = Vec::new();
        let mut merged: Vec<(u32, u32)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let i = i as u32;
            let existing = current.index.get(key).copied();
            let repeated = !seen.insert(key.as_ref());
            match (on_conflict, existing, repeated) {
                (OnConflict::Error, _, true) | (OnConflict::Error, Some(_), _) => {
                    return Err(self.duplicate(&new, i as usize))
                }
                (OnConflict::Update(_), _, true) => {
                    return Err(EngineError::CardinalityViolation(
                        "ON CONFLICT DO UPDATE command cannot affect row a second time: the rows inserted repeat a primary key".into(),
                    ))
                }
                (OnConflict::Nothing, Some(_), _) | (OnConflict::Nothing, None, true) => {}
                (OnConflict::Update(_), Some(old), false) => merged.push((old, i)),
                (_, None, false) => appended.push(i),
            }
        }
        let changed = (appended.len() + merged.len()) as u64;
        if changed == 0 {
            return Ok(0);
        }
        let mut parts = Vec::new();
        let replaced: HashSet<u32> = merged.iter().map(|(old, _)| *old).collect();
        parts.push(without(&current.batch, &replaced)?);
        parts.push(take_rows(&new, &appended)?);
        if let OnConflict::Update(columns) = on_conflict {
            let columns: HashSet<usize> = columns.iter().copied().collect();
            let mut merged_columns = Vec::with_capacity(self.schema.fields().len());
            for c in 0..self.schema.fields().len() {
                let pick: Vec<(usize, usize)> = merged
                    .iter()
                    .map(|&(old, new)| {
                        if columns.contains(&c) {
                            (1, new as usize)
                        } else {
                            (0, old as usize)
                        }
                    })
                    .collect();
                let sources: [&dyn Array; 2] = [current.batch.column(c), new.column(c)];
                merged_columns.push(interleave(&sources, &pick)?);
            }
            parts.push(RecordBatch::try_new(self.schema.clone(), merged_columns)?);
        }
        self.commit(&current, &parts)?;
        Ok(changed)
    }

    /// Replaces existing rows with new versions of them, found by primary key (an `UPDATE`
    /// that leaves the key as it is); returns how many rows changed.
    pub fn update(&self, rows: &[RecordBatch]) -> Result<u64> {
        let _writer = self.writer.lock();
        let new = self.conform(rows)?;
        let current = self.rows();
        let mut replaced = HashSet::new();
        for key in self.keys(&new)? {
            let Some(&old) = current.index.get(&key) else {
                return Err(EngineError::Internal(format!(
                    "table {}: an updated row has a primary key the table does not have",
                    self.name
                )));
            };
            if !replaced.insert(old) {
                return Err(EngineError::CardinalityViolation(
                    "UPDATE would change one row twice: the query joined it to more than one row"
                        .into(),
                ));
            }
        }
        if replaced.is_empty() {
            return Ok(0);
        }
        let count = replaced.len() as u64;
        self.commit(&current, &[without(&current.batch, &replaced)?, new])?;
        Ok(count)
    }

    /// Removes the rows whose primary keys `rows` hold (rows in the table's schema); returns
    /// how many it removed.
    pub fn delete(&self, rows: &[RecordBatch]) -> Result<u64> {
        let _writer = self.writer.lock();
        let gone = self.conform(rows)?;
        let current = self.rows();
        let removed: HashSet<u32> = self
            .keys(&gone)?
            .iter()
            .filter_map(|k| current.index.get(k).copied())
            .collect();
        if removed.is_empty() {
            return Ok(0);
        }
        let count = removed.len() as u64;
        self.commit(&current, &[without(&current.batch, &removed)?])?;
        Ok(count)
    }

    /// Replaces every row with `rows` (`TRUNCATE` with none; a reload); a repeated key fails
    /// and leaves the table as it was. Returns the number of rows.
    pub fn replace(&self, rows: &[RecordBatch]) -> Result<u64> {
        let _writer = self.writer.lock();
        let new = self.conform(rows)?;
        let keys = self.keys(&new)?;
        let mut seen = HashSet::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            if !seen.insert(key) {
                return Err(self.duplicate(&new, i));
            }
        }
        let current = self.rows();
        let count = new.num_rows() as u64;
        self.commit(&current, &[new])?;
        Ok(count)
    }

    /// Deletes the table's file (the table was dropped).
    pub fn remove_file(&self) {
        if let Some(path) = &self.file {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Stores and publishes the next version made of `parts`.
    fn commit(&self, current: &TableRows, parts: &[RecordBatch]) -> Result<()> {
        let batch = concat_batches(&self.schema, parts)?;
        let index = self.index(&batch)?;
        if let Some(path) = &self.file {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| EngineError::Checkpoint(format!("{}: {e}", dir.display())))?;
            }
            crate::checkpoint::replace_batches(path, std::slice::from_ref(&batch))?;
        }
        *self.rows.write() = Arc::new(TableRows {
            batch,
            index,
            version: current.version + 1,
        });
        Ok(())
    }

    /// `rows` as one batch of the table's schema: types cast, NOT NULL columns checked.
    fn conform(&self, rows: &[RecordBatch]) -> Result<RecordBatch> {
        let width = self.schema.fields().len();
        let mut columns: Vec<Vec<ArrayRef>> = vec![Vec::new(); width];
        for batch in rows {
            if batch.num_columns() != width {
                return Err(EngineError::Internal(format!(
                    "table {}: rows with {} columns for a table of {width}",
                    self.name,
                    batch.num_columns()
                )));
            }
            for (c, column) in batch.columns().iter().enumerate() {
                columns[c].push(column.clone());
            }
        }
        let mut out = Vec::with_capacity(width);
        for (field, parts) in self.schema.fields().iter().zip(columns) {
            let mut cast_parts = Vec::with_capacity(parts.len());
            for part in parts {
                cast_parts.push(if part.data_type() == field.data_type() {
                    part
                } else {
                    cast(&part, field.data_type())?
                });
            }
            let refs: Vec<&dyn Array> = cast_parts.iter().map(|a| a.as_ref()).collect();
            let column = if refs.is_empty() {
                datafusion::arrow::array::new_empty_array(field.data_type())
            } else {
                datafusion::arrow::compute::concat(&refs)?
            };
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(EngineError::NotNullViolation(format!(
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    field.name(),
                    self.name
                )));
            }
            out.push(column);
        }
        Ok(RecordBatch::try_new(self.schema.clone(), out)?)
    }

    /// The encoded primary key of every row of `batch`.
    fn keys(&self, batch: &RecordBatch) -> Result<Vec<Box<[u8]>>> {
        let columns: Vec<ArrayRef> = self.key.iter().map(|&i| batch.column(i).clone()).collect();
        let rows = self.converter.convert_columns(&columns)?;
        Ok(rows.iter().map(|r| Box::<[u8]>::from(r.as_ref())).collect())
    }

    /// Key → row of `batch`; a repeated key is an error.
    fn index(&self, batch: &RecordBatch) -> Result<HashMap<Box<[u8]>, u32>> {
        let mut index = HashMap::with_capacity(batch.num_rows());
        for (i, key) in self.keys(batch)?.into_iter().enumerate() {
            if index.insert(key, i as u32).is_some() {
                return Err(self.duplicate(batch, i));
            }
        }
        Ok(index)
    }

    /// PostgreSQL's message for row `row` of `batch` repeating a key.
    fn duplicate(&self, batch: &RecordBatch, row: usize) -> EngineError {
        let names: Vec<&str> = self
            .key
            .iter()
            .map(|&i| self.schema.field(i).name().as_str())
            .collect();
        let values: Vec<String> = self
            .key
            .iter()
            .map(|&i| array_value_to_string(batch.column(i), row).unwrap_or_default())
            .collect();
        EngineError::UniqueViolation(format!(
            "duplicate key value violates unique constraint \"{}_pkey\": Key ({})=({}) already exists",
            self.name,
            names.join(", "),
            values.join(", ")
        ))
    }
}

/// `batch` without the rows in `removed`.
fn without(batch: &RecordBatch, removed: &HashSet<u32>) -> Result<RecordBatch> {
    if removed.is_empty() {
        return Ok(batch.clone());
    }
    let keep: BooleanArray = (0..batch.num_rows() as u32)
        .map(|i| Some(!removed.contains(&i)))
        .collect();
    Ok(filter_record_batch(batch, &keep)?)
}

/// The rows `rows` of `batch`, in that order.
fn take_rows(batch: &RecordBatch, rows: &[u32]) -> Result<RecordBatch> {
    let indices = UInt32Array::from(rows.to_vec());
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("site", DataType::Utf8, true),
        ]))
    }

    fn rows(ids: &[i64], names: &[&str], sites: &[&str]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names.to_vec())),
                Arc::new(StringArray::from(sites.to_vec())),
            ],
        )
        .unwrap()
    }

    fn contents(table: &Table) -> Vec<(i64, String, String)> {
        let rows = table.rows();
        let b = rows.batch();
        let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let names = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let sites = b.column(2).as_any().downcast_ref::<StringArray>().unwrap();
        let mut out: Vec<_> = (0..b.num_rows())
            .map(|i| {
                (
                    ids.value(i),
                    names.value(i).to_string(),
                    sites.value(i).to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn inserts_updates_and_deletes_by_primary_key_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tables").join("devices.arrow");
        let table = Table::open("devices", schema(), vec![0], Some(file.clone())).unwrap();
        let n = table
            .insert(
                &[rows(&[1, 2], &["a", "b"], &["x", "y"])],
                &OnConflict::Error,
            )
            .unwrap();
        assert_eq!(n, 2);
        let e = table
            .insert(&[rows(&[2], &["c"], &["z"])], &OnConflict::Error)
            .unwrap_err();
        assert!(matches!(e, EngineError::UniqueViolation(_)), "{e}");
        assert!(e.to_string().contains("Key (id)=(2) already exists"), "{e}");
        assert_eq!(
            table
                .insert(
                    &[rows(&[2, 3], &["c", "d"], &["z", "w"])],
                    &OnConflict::Nothing
                )
                .unwrap(),
            1
        );
        // Upsert of `name` only: `site` keeps its value.
        assert_eq!(
            table
                .insert(
                    &[rows(&[1], &["A"], &["ignored"])],
                    &OnConflict::Update(vec![1])
                )
                .unwrap(),
            1
        );
        assert_eq!(table.update(&[rows(&[3], &["D"], &["w"])]).unwrap(), 1);
        assert_eq!(
            table
                .delete(&[rows(&[2, 9], &["", ""], &["", ""])])
                .unwrap(),
            1
        );
        let expected = vec![
            (1, "A".to_string(), "x".to_string()),
            (3, "D".to_string(), "w".to_string()),
        ];
        assert_eq!(contents(&table), expected);
        assert_eq!(table.rows().version(), 5);
        let reopened = Table::open("devices", schema(), vec![0], Some(file)).unwrap();
        assert_eq!(contents(&reopened), expected);
    }

    #[test]
    fn a_failed_statement_changes_nothing() {
        let table = Table::open("t", schema(), vec![0], None).unwrap();
        table
            .insert(&[rows(&[1], &["a"], &["x"])], &OnConflict::Error)
            .unwrap();
        // The second row repeats the first: nothing of the statement applies.
        let e = table
            .insert(
                &[rows(&[5, 5], &["b", "c"], &["y", "z"])],
                &OnConflict::Error,
            )
            .unwrap_err();
        assert!(matches!(e, EngineError::UniqueViolation(_)));
        let e = table
            .insert(
                &[rows(&[1, 1], &["b", "c"], &["y", "z"])],
                &OnConflict::Update(vec![1, 2]),
            )
            .unwrap_err();
        assert!(matches!(e, EngineError::CardinalityViolation(_)));
        let null_id = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, true),
                Field::new("name", DataType::Utf8, true),
                Field::new("site", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![None])),
                Arc::new(StringArray::from(vec!["n"])),
                Arc::new(StringArray::from(vec!["s"])),
            ],
        )
        .unwrap();
        let e = table.insert(&[null_id], &OnConflict::Error).unwrap_err();
        assert!(matches!(e, EngineError::NotNullViolation(_)), "{e}");
        assert_eq!(contents(&table), vec![(1, "a".into(), "x".into())]);
        assert_eq!(table.replace(&[]).unwrap(), 0);
        assert!(table.rows().is_empty());
    }
}
