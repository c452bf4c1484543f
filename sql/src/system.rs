//! The `weir.*` system relations: the same facts as `/metrics` and the REST API, as tables.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

/// Produces a system relation's rows at scan time.
pub type RowsFn = Arc<dyn Fn() -> DfResult<RecordBatch> + Send + Sync>;

/// A table whose rows are computed when it is scanned.
pub struct SystemTable {
    schema: SchemaRef,
    rows: RowsFn,
    kind: TableType,
}

impl std::fmt::Debug for SystemTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemTable")
            .field("schema", &self.schema)
            .finish()
    }
}

impl SystemTable {
    /// A table of `schema` filled by `rows`.
    pub fn new(schema: SchemaRef, rows: RowsFn) -> Self {
        Self {
            schema,
            rows,
            kind: TableType::View,
        }
    }

    /// A table computed at scan time that catalogs do not list (`TableType::Temporary`):
    /// a source's latest events.
    pub fn unlisted(schema: SchemaRef, rows: RowsFn) -> Self {
        Self {
            schema,
            rows,
            kind: TableType::Temporary,
        }
    }
}

#[async_trait]
impl TableProvider for SystemTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        self.kind
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = (self.rows)()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

/// Column builder helpers for system relations.
pub struct Columns {
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

impl Columns {
    /// No columns yet.
    pub fn new() -> Self {
        Self {
            fields: vec![],
            arrays: vec![],
        }
    }

    /// A text column.
    pub fn text<S: AsRef<str>>(
        mut self,
        name: &str,
        values: impl IntoIterator<Item = Option<S>>,
    ) -> Self {
        let a: StringArray = values.into_iter().collect();
        self.fields.push(Field::new(name, DataType::Utf8, true));
        self.arrays.push(Arc::new(a));
        self
    }

    /// A bigint column.
    pub fn int(mut self, name: &str, values: impl IntoIterator<Item = Option<i64>>) -> Self {
        let a: Int64Array = values.into_iter().collect();
        self.fields.push(Field::new(name, DataType::Int64, true));
        self.arrays.push(Arc::new(a));
        self
    }

    /// A double precision column.
    pub fn float(mut self, name: &str, values: impl IntoIterator<Item = Option<f64>>) -> Self {
        let a: Float64Array = values.into_iter().collect();
        self.fields.push(Field::new(name, DataType::Float64, true));
        self.arrays.push(Arc::new(a));
        self
    }

    /// A boolean column.
    pub fn bool(mut self, name: &str, values: impl IntoIterator<Item = Option<bool>>) -> Self {
        let a: BooleanArray = values.into_iter().collect();
        self.fields.push(Field::new(name, DataType::Boolean, true));
        self.arrays.push(Arc::new(a));
        self
    }

    /// A timestamptz column from nanoseconds (`i64::MIN`/`MAX` shown as NULL / far future).
    pub fn time_ns(mut self, name: &str, values: impl IntoIterator<Item = Option<i64>>) -> Self {
        let a: TimestampMicrosecondArray = values
            .into_iter()
            .map(|v| {
                v.filter(|t| *t != i64::MIN).map(|t| {
                    if t == i64::MAX {
                        253_402_300_799_000_000
                    } else {
                        t / 1000
                    }
                })
            })
            .collect();
        let a = a.with_timezone("+00:00");
        self.fields.push(Field::new(
            name,
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            true,
        ));
        self.arrays.push(Arc::new(a));
        self
    }

    /// A timestamptz column from wall-clock times.
    pub fn time(self, name: &str, values: impl IntoIterator<Item = Option<DateTime<Utc>>>) -> Self {
        self.time_ns(
            name,
            values
                .into_iter()
                .map(|v| v.and_then(|t| t.timestamp_nanos_opt())),
        )
    }

    /// The schema so far.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.fields.clone()))
    }

    /// The batch.
    pub fn finish(self) -> DfResult<RecordBatch> {
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(self.fields)),
            self.arrays,
        )?)
    }
}

impl Default for Columns {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads an atomic counter as i64.
pub fn count(c: &std::sync::atomic::AtomicU64) -> Option<i64> {
    Some(c.load(Ordering::Relaxed) as i64)
}
