//! `information_schema` with PostgreSQL type names (DataFusion's own shows Arrow names,
//! which JDBC, Grafana and ORMs do not understand).

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProvider, MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::prelude::SessionContext;

use crate::system::{Columns, RowsFn, SystemTable};
use crate::types::pg_type_names;

/// Schemas listed by `information_schema.columns` (catalog schemas are large and static).
const LISTED: &[&str] = &["public", "weir"];

struct TableRow {
    schema: String,
    name: String,
    kind: &'static str,
    /// A materialized view (listed in `information_schema.views` too).
    materialized: bool,
    definition: Option<String>,
    fields: Vec<datafusion::arrow::datatypes::FieldRef>,
}

fn relations(catalog: &Arc<dyn CatalogProvider>, with_catalog_schemas: bool) -> Vec<TableRow> {
    let mut out = Vec::new();
    let mut schemas = catalog.schema_names();
    schemas.sort();
    for schema_name in schemas {
        if !with_catalog_schemas && !LISTED.contains(&schema_name.as_str()) {
            continue;
        }
        let Some(schema) = catalog.schema(&schema_name) else {
            continue;
        };
        let mut names = schema.table_names();
        names.sort();
        for name in names {
            let Ok(Some(table)) = futures::executor::block_on(schema.table(&name)) else {
                continue;
            };
            // A source answers queries with its latest events, but is not stored.
            if table.table_type() == TableType::Temporary {
                continue;
            }
            // A materialized view stores its rows: clients (Grafana's query builder lists
            // `table_type = 'BASE TABLE'`) see a table, as PostgreSQL spells it. Weir's
            // system relations are tables too, as PostgreSQL's own catalogs are.
            let materialized = table.table_type() == TableType::View && schema_name == "public";
            let kind = match table.table_type() {
                TableType::View if !materialized && schema_name != "weir" => "VIEW",
                _ => "BASE TABLE",
            };
            out.push(TableRow {
                schema: schema_name.clone(),
                name,
                kind,
                materialized,
                definition: table.get_table_definition().map(str::to_string),
                fields: table.schema().fields().iter().cloned().collect(),
            });
        }
    }
    out
}

/// Registers `information_schema` (`schemata`, `tables`, `views`, `columns`) in catalog
/// `weir` of `ctx`.
pub fn install(ctx: &SessionContext) -> DfResult<()> {
    let catalog = ctx.catalog("weir").ok_or_else(|| {
        datafusion::error::DataFusionError::Internal("catalog weir missing".into())
    })?;
    let schema = Arc::new(MemorySchemaProvider::new());
    let weak = Arc::downgrade(&catalog);
    let upgrade = move || {
        weak.upgrade()
            .ok_or_else(|| datafusion::error::DataFusionError::Execution("catalog dropped".into()))
    };
    let tables: Vec<(&str, RowsFn)> = vec![
        ("schemata", {
            let upgrade = upgrade.clone();
            Arc::new(move || {
                let mut names = upgrade()?.schema_names();
                names.sort();
                Columns::new()
                    .text("catalog_name", names.iter().map(|_| Some("weir")))
                    .text("schema_name", names.iter().map(Some))
                    .text("schema_owner", names.iter().map(|_| Some("weir")))
                    .finish()
            })
        }),
        ("tables", {
            let upgrade = upgrade.clone();
            Arc::new(move || {
                let rows = relations(&upgrade()?, true);
                Columns::new()
                    .text("table_catalog", rows.iter().map(|_| Some("weir")))
                    .text("table_schema", rows.iter().map(|r| Some(r.schema.clone())))
                    .text("table_name", rows.iter().map(|r| Some(r.name.clone())))
                    .text("table_type", rows.iter().map(|r| Some(r.kind)))
                    .finish()
            })
        }),
        ("views", {
            let upgrade = upgrade.clone();
            Arc::new(move || {
                let rows: Vec<TableRow> = relations(&upgrade()?, false)
                    .into_iter()
                    .filter(|r| r.kind == "VIEW" || r.materialized)
                    .collect();
                Columns::new()
                    .text("table_catalog", rows.iter().map(|_| Some("weir")))
                    .text("table_schema", rows.iter().map(|r| Some(r.schema.clone())))
                    .text("table_name", rows.iter().map(|r| Some(r.name.clone())))
                    .text("view_definition", rows.iter().map(|r| r.definition.clone()))
                    .finish()
            })
        }),
        ("columns", {
            let upgrade = upgrade.clone();
            Arc::new(move || columns(&relations(&upgrade()?, false)))
        }),
    ];
    for (name, rows) in tables {
        let probe = rows()?;
        schema.register_table(
            name.to_string(),
            Arc::new(SystemTable::new(probe.schema(), rows)),
        )?;
    }
    catalog.register_schema("information_schema", schema)?;
    Ok(())
}

fn columns(rows: &[TableRow]) -> DfResult<RecordBatch> {
    let mut schema = Vec::new();
    let mut table = Vec::new();
    let mut column = Vec::new();
    let mut position = Vec::new();
    let mut nullable = Vec::new();
    let mut data_type = Vec::new();
    let mut udt = Vec::new();
    for r in rows {
        for (i, f) in r.fields.iter().enumerate() {
            let (pg, udt_name) = pg_type_names(f.data_type());
            schema.push(Some(r.schema.clone()));
            table.push(Some(r.name.clone()));
            column.push(Some(f.name().clone()));
            position.push(Some(i as i64 + 1));
            nullable.push(Some(if f.is_nullable() { "YES" } else { "NO" }));
            data_type.push(Some(pg));
            udt.push(Some(udt_name));
        }
    }
    Columns::new()
        .text("table_catalog", schema.iter().map(|_| Some("weir")))
        .text("table_schema", schema)
        .text("table_name", table)
        .text("column_name", column)
        .int("ordinal_position", position)
        .text("column_default", udt.iter().map(|_| None::<&str>))
        .text("is_nullable", nullable)
        .text("data_type", data_type)
        .text("udt_name", udt)
        .finish()
}
