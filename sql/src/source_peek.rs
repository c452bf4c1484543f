//! `SELECT … FROM source`: a source is a stream and is not stored, but its latest events
//! (the last [`RECENT_EVENTS`] it delivered, kept by the engine) can be looked at — to check
//! a schema, see what a connector decodes, or debug a view's input. Before any view or sink
//! reads the source, a query reads its first events from its start instead. Views are the way to
//! compute over the whole stream. Catalogs (`information_schema`, `pg_catalog`, Grafana's
//! table list) do not list sources as tables: only stored relations are.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use weir_engine::pipeline::Engine;
pub use weir_engine::serving::system::RECENT_EVENTS;

use crate::system::SystemTable;

/// How long a query over a source that no pipeline reads may read it from its start.
const PEEK_TIMEOUT: Duration = Duration::from_secs(2);

/// The table `source` answers queries with: its latest events, oldest first (or, while no
/// view or sink reads it, its first ones).
///
/// It holds the engine weakly: the query context must not keep an engine alive after its
/// database is dropped (dropping the engine is its shutdown and last checkpoint).
pub fn table(engine: &Arc<Engine>, source: &str, schema: SchemaRef) -> Arc<dyn TableProvider> {
    let engine = Arc::downgrade(engine);
    let source = source.to_string();
    let rows_schema = schema.clone();
    Arc::new(SystemTable::unlisted(
        schema,
        Arc::new(move || {
            let engine = engine.upgrade().ok_or_else(|| {
                datafusion::error::DataFusionError::Execution("Weir is shutting down".into())
            })?;
            let batches: Vec<RecordBatch> = engine
                .peek(&source, PEEK_TIMEOUT)
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
                .into_iter()
                // Decoded batches carry the declared schema; relabel any that differ only
                // in metadata or nullability.
                .map(|b| {
                    RecordBatch::try_new(rows_schema.clone(), b.columns().to_vec()).unwrap_or(b)
                })
                .collect();
            Ok(concat_batches(&rows_schema, &batches)?)
        }),
    ))
}
