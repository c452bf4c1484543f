//! Reading history files as part of a view's table.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, Result};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::{HistoryFile, HistoryRoot};

/// A scan of `files` (under `root`) with the view's `schema`: `filters` prune files and row
/// groups by their statistics (the caller still applies them to the rows).
pub fn history_exec(
    session: &dyn Session,
    root: &HistoryRoot,
    files: &[HistoryFile],
    schema: &SchemaRef,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
) -> Result<Arc<dyn ExecutionPlan>> {
    let mut source = ParquetSource::new(schema.clone());
    // Filters name the view's columns qualified by the view; the files' schema has no
    // qualifier.
    let unqualified = filters.iter().map(|f| {
        f.clone()
            .transform(|e| match e {
                Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
                    c.name,
                )))),
                other => Ok(Transformed::no(other)),
            })
            .map(|t| t.data)
    });
    let unqualified: Vec<Expr> = unqualified.collect::<Result<_>>()?;
    if let Some(predicate) = conjunction(unqualified) {
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        // A filter the scan cannot evaluate only costs pruning, never rows.
        if let Ok(physical) = session.create_physical_expr(predicate, &df_schema) {
            source = source.with_predicate(physical);
        }
    }
    let (store_url, paths) = root.scan_location(session);
    let group: Vec<PartitionedFile> = files
        .iter()
        .map(|f| PartitionedFile::new(paths.of(&f.path), f.bytes))
        .collect();
    let config = FileScanConfigBuilder::new(store_url, Arc::new(source))
        .with_file_group(FileGroup::new(group))
        .with_projection_indices(projection.cloned())?
        .build();
    Ok(DataSourceExec::from_data_source(config))
}
