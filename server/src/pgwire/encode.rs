//! Arrow → PostgreSQL rows, with PostgreSQL's own text format for timestamps.
//!
//! `arrow-pg` encodes values; its text form of `timestamptz` always prints six fractional
//! digits, where PostgreSQL prints `2026-11-27 10:00:00.123+00` (trailing zeros and an empty
//! fraction dropped). Text-format timestamp columns are therefore rendered here first; binary
//! columns go to `arrow-pg` untouched. Errors during execution keep their SQLSTATE.

use std::sync::Arc;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use chrono::DateTime;
use datafusion::arrow::array::{
    Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::dataframe::DataFrame;
use futures::{stream, StreamExt};
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, QueryResponse};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;
use weir_sql::SqlError;

use super::handler::user_error;
use super::limits::Limits;

/// `schema` with the column names PostgreSQL would give (`count`, not `count(*)`).
pub fn pg_named(schema: &Schema) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                f.as_ref()
                    .clone()
                    .with_name(weir_sql::pg_names::pg_column_name(f.name()))
            })
            .collect::<Vec<_>>(),
    )
}

/// Executes `df` and streams its rows in `format`; past its `limits` (`statement_timeout`,
/// a CancelRequest) the stream ends with SQLSTATE 57014 and the query's work stops.
pub async fn encode_dataframe(
    df: DataFrame,
    format: &Format,
    options: Arc<FormatOptions>,
    limits: Limits,
) -> PgWireResult<QueryResponse> {
    let schema = df.schema().as_arrow().clone();
    let named = pg_named(&schema);
    let fields = Arc::new(arrow_schema_to_pg_fields(&named, format, Some(options))?);
    let text_timestamps: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(i, f)| {
            matches!(f.data_type(), DataType::Timestamp(_, _))
                && format.format_for(*i) == FieldFormat::Text
        })
        .map(|(i, _)| i)
        .collect();
    let batches = limits
        .within(async { df.execute_stream().await.map_err(SqlError::from) })
        .await
        .map_err(user_error)?;
    // Batches until the end, the first error or the deadline; dropping the stream stops
    // the plan's tasks.
    let batches = stream::unfold(Some(batches), move |state| {
        let limits = limits.clone();
        async move {
            let mut s = state?;
            let next = limits.within(async { Ok(s.next().await) }).await;
            match next {
                Ok(None) => None,
                Ok(Some(Ok(b))) => Some((Ok(b), Some(s))),
                Ok(Some(Err(e))) => Some((Err(SqlError::from(e)), None)),
                Err(e) => Some((Err(e), None)),
            }
        }
    });
    let row_fields = fields.clone();
    let rows = batches
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match batch
                .map_err(user_error)
                .and_then(|b| render_timestamps(b, &text_timestamps))
            {
                Ok(b) => encode_recordbatch(row_fields.clone(), b),
                Err(e) => Box::new(std::iter::once(Err(e))),
            };
            stream::iter(rows)
        })
        .flatten();
    Ok(QueryResponse::new(fields, rows))
}

/// Replaces the given timestamp columns by their PostgreSQL text form.
fn render_timestamps(batch: RecordBatch, columns: &[usize]) -> PgWireResult<RecordBatch> {
    if columns.is_empty() {
        return Ok(batch);
    }
    let mut arrays = batch.columns().to_vec();
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for &i in columns {
        let with_tz = matches!(arrays[i].data_type(), DataType::Timestamp(_, Some(_)));
        let micros = cast(
            &arrays[i],
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        let micros = micros
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| PgWireError::ApiError("timestamp cast".into()))?;
        let text: StringArray = micros
            .iter()
            .map(|v| v.map(|v| pg_timestamp(v, with_tz)))
            .collect();
        arrays[i] = Arc::new(text) as ArrayRef;
        fields[i] = Field::new(fields[i].name(), DataType::Utf8, true);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| PgWireError::ApiError(Box::new(e)))
}

/// `2026-11-27 10:00:00.123+00` for microseconds since the epoch (UTC).
pub fn pg_timestamp(micros: i64, with_tz: bool) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let mut s = match DateTime::from_timestamp(secs, 0) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => return "infinity".into(),
    };
    if frac != 0 {
        let f = format!(".{frac:06}");
        s.push_str(f.trim_end_matches('0'));
    }
    if with_tz {
        s.push_str("+00");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::pg_timestamp;

    #[test]
    fn timestamps_print_like_postgresql() {
        let t = 1_795_773_600_000_000i64; // 2026-11-27 10:00:00 UTC
        assert_eq!(pg_timestamp(t, true), "2026-11-27 10:00:00+00");
        assert_eq!(
            pg_timestamp(t + 123_000, true),
            "2026-11-27 10:00:00.123+00"
        );
        assert_eq!(pg_timestamp(t + 120_000, true), "2026-11-27 10:00:00.12+00");
        assert_eq!(pg_timestamp(t + 5, false), "2026-11-27 10:00:00.000005");
    }
}
