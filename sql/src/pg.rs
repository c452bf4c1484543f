//! PostgreSQL functions clients call that DataFusion and `datafusion-pg-catalog` lack.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::cast::as_string_array;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{create_udf, ColumnarValue, Expr, Volatility};
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::SessionContext;

use crate::session::{default_setting, SERVER_VERSION};

/// Registers `current_setting(name)`, `version()`, `quote_literal(text)` and
/// `time_bucket(width, ts)`.
pub fn register_functions(ctx: &SessionContext) {
    let current_setting = create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = as_string_array(&arrays[0])?;
            let out: StringArray = names
                .iter()
                .map(|n| n.and_then(default_setting).map(str::to_string))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
        }),
    );
    ctx.register_udf(current_setting);
    let version = create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(datafusion::common::ScalarValue::Utf8(Some(format!(
                "PostgreSQL {SERVER_VERSION} (Weir {}) on x86_64-pc-linux-gnu, a streaming SQL database",
                env!("CARGO_PKG_VERSION")
            )))))
        }),
    );
    ctx.register_udf(version);
    // `quote_literal(text)`: the text as a SQL string literal (Grafana's legacy query
    // builder lists a column's values with it).
    let quote_literal = create_udf(
        "quote_literal",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let text = cast(&arrays[0], &DataType::Utf8)?;
            let out: StringArray = as_string_array(&text)?
                .iter()
                .map(|t| t.map(quote_literal))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
        }),
    );
    ctx.register_udf(quote_literal);
    // TimescaleDB's `time_bucket(width, ts)` (Grafana's TimescaleDB macros) is DataFusion's
    // `date_bin(width, ts)`: buckets aligned to the Unix epoch.
    if let Ok(date_bin) = ctx.udf("date_bin") {
        ctx.register_udf(date_bin.as_ref().clone().with_aliases(["time_bucket"]));
    }
}

/// PostgreSQL's `quote_literal`: quotes doubled, and a backslash makes it an `E'…'` string
/// with backslashes doubled.
fn quote_literal(text: &str) -> String {
    let quoted = text.replace('\'', "''");
    if text.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// Names of the materialized views, for catalog emulation.
pub type ViewNames = Arc<dyn Fn() -> std::collections::HashSet<String> + Send + Sync>;

/// `pg_catalog` as `datafusion-pg-catalog` serves it, except that `pg_class` reports Weir's
/// materialized views with relkind `m` (so psql's `\dm` and `\d view` describe them).
#[derive(Clone)]
pub struct PgCatalogOverlay {
    inner: Arc<dyn SchemaProvider>,
    views: ViewNames,
}

impl std::fmt::Debug for PgCatalogOverlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgCatalogOverlay")
    }
}

impl PgCatalogOverlay {
    /// Wraps the `pg_catalog` schema of catalog `weir` in `ctx`.
    pub fn install(ctx: &SessionContext, views: ViewNames) -> datafusion::error::Result<()> {
        let catalog = ctx
            .catalog("weir")
            .ok_or_else(|| DataFusionError::Internal("catalog weir missing".into()))?;
        let inner = catalog
            .schema("pg_catalog")
            .ok_or_else(|| DataFusionError::Internal("pg_catalog missing".into()))?;
        catalog.register_schema("pg_catalog", Arc::new(Self { inner, views }))?;
        Ok(())
    }
}

#[async_trait]
impl SchemaProvider for PgCatalogOverlay {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        let table = self.inner.table(name).await?;
        match (name, table) {
            ("pg_class", Some(t)) => Ok(Some(Arc::new(PgClass {
                inner: t,
                views: self.views.clone(),
            }))),
            (_, t) => Ok(t),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

#[derive(Clone)]
struct PgClass {
    inner: Arc<dyn TableProvider>,
    views: ViewNames,
}

impl std::fmt::Debug for PgClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgClass")
    }
}

#[async_trait]
impl TableProvider for PgClass {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let plan = self.inner.scan(state, None, &[], None).await?;
        let batches = collect(plan, state.task_ctx()).await?;
        let schema = self.inner.schema();
        let (Ok(name_idx), Ok(kind_idx)) = (schema.index_of("relname"), schema.index_of("relkind"))
        else {
            return Ok(MemorySourceConfig::try_new_exec(
                &[batches],
                schema,
                projection.cloned(),
            )?);
        };
        let views = (self.views)();
        let patched = batches
            .into_iter()
            .map(|b| {
                let names = cast(b.column(name_idx), &DataType::Utf8)?;
                let names = as_string_array(&names)?;
                let kinds = cast(b.column(kind_idx), &DataType::Utf8)?;
                let kinds = as_string_array(&kinds)?;
                let new_kinds: StringArray = names
                    .iter()
                    .zip(kinds.iter())
                    .map(|(n, k)| match (n, k) {
                        (Some(n), Some("v")) if views.contains(n) => Some("m"),
                        (_, k) => k,
                    })
                    .collect();
                let new_kinds = cast(
                    &(Arc::new(new_kinds) as ArrayRef),
                    b.column(kind_idx).data_type(),
                )?;
                let mut columns = b.columns().to_vec();
                columns[kind_idx] = new_kinds;
                Ok(RecordBatch::try_new(b.schema(), columns)?)
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[patched],
            schema,
            projection.cloned(),
        )?)
    }
}
