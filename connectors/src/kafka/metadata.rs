//! Kafka metadata columns: a source may declare `_partition`, `_offset`, `_timestamp` (the
//! message timestamp) and `_key`; they are filled from the message, not its payload.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use weir_engine::error::{EngineError, Result};

use super::source::MetadataValues;

/// Names of the metadata columns.
pub const METADATA_COLUMNS: [&str; 4] = ["_partition", "_offset", "_timestamp", "_key"];

/// Which declared columns are metadata.
#[derive(Debug, Clone, Default)]
pub struct MetadataColumns {
    /// Indices into the declared schema.
    indices: Vec<usize>,
}

impl MetadataColumns {
    /// Finds and type-checks the metadata columns of a declared schema.
    pub fn of(schema: &Schema) -> Result<Self> {
        let mut indices = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            let name = f.name().as_str();
            if !METADATA_COLUMNS.contains(&name) {
                continue;
            }
            let t = f.data_type();
            let ok = match name {
                "_partition" | "_offset" => t.is_integer(),
                "_timestamp" => matches!(t, DataType::Timestamp(_, _) | DataType::Int64),
                _ => matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary),
            };
            if !ok {
                return Err(EngineError::InvalidOption {
                    option: name.into(),
                    message: format!(
                        "metadata column {name} cannot be {t}; use {}",
                        match name {
                            "_partition" => "INT",
                            "_offset" => "BIGINT",
                            "_timestamp" => "TIMESTAMPTZ",
                            _ => "TEXT or BYTEA",
                        }
                    ),
                });
            }
            indices.push(i);
        }
        Ok(Self { indices })
    }

    /// Whether any metadata column is declared.
    pub fn any(&self) -> bool {
        !self.indices.is_empty()
    }

    /// The schema payloads decode into: the declared one without metadata columns.
    pub fn payload_schema(&self, schema: &SchemaRef) -> SchemaRef {
        if self.indices.is_empty() {
            return schema.clone();
        }
        let fields: Vec<_> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.indices.contains(i))
            .map(|(_, f)| f.clone())
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// The declared batch: decoded payload columns with the metadata columns put in place.
    pub(super) fn attach(
        &self,
        schema: &SchemaRef,
        payload: &RecordBatch,
        values: &MetadataValues<'_>,
    ) -> Result<RecordBatch> {
        let mut next_payload = 0;
        let mut columns = Vec::with_capacity(schema.fields().len());
        for (i, f) in schema.fields().iter().enumerate() {
            if self.indices.contains(&i) {
                columns.push(values.column(f.name(), f.data_type())?);
            } else {
                columns.push(payload.column(next_payload).clone());
                next_payload += 1;
            }
        }
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}
