//! A view as a DataFusion table: rows in memory (an indexed equality on a key column is
//! answered from the index), open windows when the view shows them, and Parquet history.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::ExecutionPlan;

use crate::history::history_exec;
use crate::pipeline::view::ViewRuntime;

/// A view as a DataFusion table.
#[derive(Debug)]
pub struct ViewTable {
    view: Arc<ViewRuntime>,
    definition: String,
}

impl ViewTable {
    /// Serves `view`; `definition` is its SQL, shown by catalogs.
    pub fn new(view: Arc<ViewRuntime>, definition: String) -> Self {
        Self { view, definition }
    }

    /// `col = literal` on an indexed column, as (column index, value).
    fn indexed_equality(&self, expr: &Expr) -> Option<(usize, ScalarValue)> {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
            return None;
        };
        if *op != Operator::Eq {
            return None;
        }
        let (col, value) = match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => {
                (c, v)
            }
            _ => return None,
        };
        let idx = self.view.schema().index_of(&col.name).ok()?;
        self.view
            .key_columns()
            .contains(&idx)
            .then(|| (idx, value.clone()))
    }
}

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        self.view.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_table_definition(&self) -> Option<&str> {
        Some(&self.definition)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Every filter reaches `scan` (an indexed equality picks rows in memory, any filter
        // prunes history files); DataFusion still applies each to the rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let lookup = filters.iter().find_map(|f| self.indexed_equality(f));
        let (batches, history) = self
            .view
            .read(lookup.as_ref().map(|(c, v)| (*c, v)), true)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let schema = self.view.schema();
        let memory: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&[batches], schema.clone(), projection.cloned())?;
        match history {
            Some((root, files)) if !files.is_empty() => {
                let cold = history_exec(state, &root, &files, &schema, projection, filters)?;
                UnionExec::try_new(vec![memory, cold])
            }
            _ => Ok(memory),
        }
    }
}
