//! Writing a view's rows that leave memory as one Parquet file.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::{date_partition, HistoryFile, HistoryRoot};
use crate::error::{EngineError, Result};

/// Rows per row group: small enough that statistics prune a range query.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Writes `batches` (emitted at watermarks from `min_wm` to `max_wm`) to
/// `<root>/<dir>/date=<day of min_wm>/<name>.parquet`, fsynced, and describes the file.
pub fn write_file(
    root: &HistoryRoot,
    dir: &str,
    name: &str,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    min_wm: i64,
    max_wm: i64,
) -> Result<HistoryFile> {
    let partition = format!("{dir}/{}", date_partition(min_wm));
    write_in(root, &partition, name, schema, batches, max_wm)
}

/// Writes `batches` to `<root>/<partition>/<name>.parquet`, durably, and describes the
/// file (level 0).
pub fn write_in(
    root: &HistoryRoot,
    partition: &str,
    name: &str,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    max_wm: i64,
) -> Result<HistoryFile> {
    let relative = format!("{partition}/{name}.parquet");
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let parquet = |e: datafusion::parquet::errors::ParquetError| {
        EngineError::Checkpoint(format!("writing {relative}: {e}"))
    };
    let mut writer =
        ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props)).map_err(parquet)?;
    let mut rows = 0u64;
    for b in batches {
        let b = RecordBatch::try_new(schema.clone(), b.columns().to_vec())?;
        rows += b.num_rows() as u64;
        writer.write(&b).map_err(parquet)?;
    }
    let bytes = root.write(&relative, writer.into_inner().map_err(parquet)?)?;
    Ok(HistoryFile {
        path: relative,
        rows,
        bytes,
        max_emitted_wm: max_wm,
        level: 0,
    })
}

/// Every row of history file `relative` under `root`.
pub fn read_file(root: &HistoryRoot, relative: &str) -> Result<Vec<RecordBatch>> {
    let bytes = root.read(relative)?;
    let parquet = |e: datafusion::parquet::errors::ParquetError| {
        EngineError::Checkpoint(format!("reading {relative}: {e}"))
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(parquet)?
        .build()
        .map_err(parquet)?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}
