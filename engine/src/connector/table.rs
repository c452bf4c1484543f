//! Loading a table's rows from outside: `CREATE TABLE devices (…) WITH (connector = 'file',
//! path = 'devices.csv')` or `(connector = 'postgres', url = '…', query = 'SELECT …')`.
//! The rows are read once, when the table is created (and again by `REFRESH TABLE`); after
//! that the table is Weir's, stored in the data dir like any other.

use std::collections::BTreeMap;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::Result;

/// Reads a table's rows from a connector.
#[async_trait]
pub trait TableLoader: Send + Sync {
    /// The `connector = '…'` name.
    fn name(&self) -> &'static str;

    /// Checks the options (`connector` included) at `CREATE TABLE`; returns those to keep.
    fn validate(&self, options: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>>;

    /// Every row, as batches of `schema` (columns by name; types converted).
    async fn load(
        &self,
        options: &BTreeMap<String, String>,
        schema: SchemaRef,
    ) -> Result<Vec<RecordBatch>>;
}
