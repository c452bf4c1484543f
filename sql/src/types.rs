//! Column types of `CREATE SOURCE`, resolved to Arrow the way DataFusion resolves them, with
//! Weir's conventions on top: `TIMESTAMPTZ` is nanoseconds in UTC.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::SessionContext;

use crate::catalog::quote_ident;
use crate::dialect::ColumnDef;
use crate::error::{Result, SqlError};

/// The Arrow schema of declared columns.
pub async fn source_schema(ctx: &SessionContext, columns: &[ColumnDef]) -> Result<SchemaRef> {
    if columns.is_empty() {
        return Err(SqlError::Syntax(
            "a source needs at least one column".into(),
        ));
    }
    let mut fields = Vec::with_capacity(columns.len());
    for c in columns {
        // One column at a time, so an error names the column it is about.
        let sql = format!(
            "CREATE TABLE weir_type_probe ({} {})",
            quote_ident(&c.name),
            c.data_type
        );
        let plan = ctx.state().create_logical_plan(&sql).await.map_err(|e| {
            SqlError::Syntax(format!(
                "column \"{}\": type {} is not supported ({})",
                c.name,
                c.data_type,
                crate::error::SqlError::from(e)
            ))
        })?;
        let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(t)) = plan else {
            return Err(SqlError::Internal("type probe did not plan a table".into()));
        };
        let field = t.input.schema().field(0).clone();
        let data_type = normalize(field.data_type());
        fields.push(Field::new(&c.name, data_type, !c.not_null));
    }
    Ok(Arc::new(Schema::new(fields)))
}

fn normalize(t: &DataType) -> DataType {
    match t {
        DataType::Timestamp(_, Some(_)) => {
            DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into()))
        }
        DataType::Timestamp(_, None) => DataType::Timestamp(TimeUnit::Nanosecond, None),
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::Struct(fields) => DataType::Struct(Fields::from(
            fields
                .iter()
                .map(|f| f.as_ref().clone().with_data_type(normalize(f.data_type())))
                .collect::<Vec<_>>(),
        )),
        DataType::List(f) => DataType::List(Arc::new(
            f.as_ref().clone().with_data_type(normalize(f.data_type())),
        )),
        other => other.clone(),
    }
}

/// PostgreSQL's name for an Arrow type, as `information_schema.columns.data_type` and
/// `udt_name` show it.
pub fn pg_type_names(t: &DataType) -> (&'static str, &'static str) {
    match t {
        DataType::Boolean => ("boolean", "bool"),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => ("smallint", "int2"),
        DataType::Int32 | DataType::UInt16 => ("integer", "int4"),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => ("bigint", "int8"),
        DataType::Float16 | DataType::Float32 => ("real", "float4"),
        DataType::Float64 => ("double precision", "float8"),
        DataType::Decimal32(_, _)
        | DataType::Decimal64(_, _)
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => ("numeric", "numeric"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ("text", "text"),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => ("bytea", "bytea"),
        DataType::Date32 | DataType::Date64 => ("date", "date"),
        DataType::Time32(_) | DataType::Time64(_) => ("time without time zone", "time"),
        DataType::Timestamp(_, Some(_)) => ("timestamp with time zone", "timestamptz"),
        DataType::Timestamp(_, None) => ("timestamp without time zone", "timestamp"),
        DataType::Interval(_) | DataType::Duration(_) => ("interval", "interval"),
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(_, _)
        | DataType::ListView(_) => ("ARRAY", "_text"),
        DataType::Struct(_) | DataType::Map(_, _) => ("json", "json"),
        _ => ("text", "text"),
    }
}
