//! Tables: `CREATE TABLE`, `DROP TABLE`, `TRUNCATE`, `REFRESH TABLE`, `INSERT`, `UPDATE`,
//! `DELETE` and `COPY … FROM STDIN`.
//!
//! A table's rows live in the engine ([`weir_engine::table::Table`]); its definition in the
//! catalog. `INSERT`/`UPDATE`/`DELETE` are planned by DataFusion like any statement: the plan
//! under the DML node computes the rows to add, the new versions of the rows to change, or
//! the rows to remove, and the table applies them by primary key in one step.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::ParamValues;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, WriteOp};
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, ConflictTarget, Expr as SqlExpr, Ident, ObjectName, OnConflictAction,
    OnInsert, Statement,
};
use weir_engine::table::scan::TableRelation;
use weir_engine::table::{OnConflict, Table};

use crate::catalog::{CatalogEntry, TableDef};
use crate::copy::CopyFormat;
use crate::dialect::{CopyFrom, CreateTable};
use crate::error::{Result, SqlError};

use super::{Database, Outcome, Prepared};

/// Where the data of a `COPY … FROM STDIN` goes. The protocol layer collects the data the
/// client sends and hands it to [`Database::copy_in`].
#[derive(Debug, Clone)]
pub struct CopyTarget {
    table: Arc<Table>,
    /// The table's columns the data holds, in order.
    columns: Vec<usize>,
    format: CopyFormat,
}

impl CopyTarget {
    /// How many columns each row of the data has.
    pub fn width(&self) -> usize {
        self.columns.len()
    }
}

impl Database {
    /// Where table `name`'s rows are stored.
    fn table_file(&self, name: &str) -> Option<PathBuf> {
        self.data_dir
            .as_ref()
            .map(|d| d.join("tables").join(format!("{name}.arrow")))
    }

    /// The table called `name`, or the error a statement changing it gets.
    fn table(&self, name: &str) -> Result<Arc<Table>> {
        if let Some(t) = self.tables.read().get(name) {
            return Ok(t.clone());
        }
        if self.relations.read().contains_key(name) {
            return Err(SqlError::WrongObjectType(format!(
                "\"{name}\" is not a table: sources take events from their connector (POST /ingest/{name} for an http source) and materialized views are computed; INSERT, UPDATE, DELETE and COPY change tables (CREATE TABLE)"
            )));
        }
        Err(SqlError::UndefinedObject(format!(
            "table \"{name}\" does not exist"
        )))
    }

    /// Every table as a relation, for planning views.
    pub(super) fn table_relations(&self) -> BTreeMap<String, Arc<dyn TableProvider>> {
        self.tables
            .read()
            .iter()
            .map(|(n, t)| (n.clone(), TableRelation::provider(t.clone())))
            .collect()
    }

    /// `weir.tables`: name, primary_key, rows, state_bytes, changes (statements that
    /// changed it since the server started), connector.
    pub(super) fn tables_batch(
        &self,
    ) -> datafusion::error::Result<datafusion::arrow::record_batch::RecordBatch> {
        let tables: Vec<Arc<Table>> = self.tables.read().values().cloned().collect();
        let key = |t: &Table| {
            let schema = t.schema();
            t.key_columns()
                .iter()
                .map(|&k| schema.field(k).name().clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let catalog = self.catalog.try_lock().ok();
        let connector = |name: &str| match catalog.as_ref().and_then(|c| c.get(name).cloned()) {
            Some(CatalogEntry::Table(def)) => def.options.get("connector").cloned(),
            _ => None,
        };
        crate::system::Columns::new()
            .text("name", tables.iter().map(|t| Some(t.name().to_string())))
            .text("primary_key", tables.iter().map(|t| Some(key(t))))
            .int("rows", tables.iter().map(|t| Some(t.rows().len() as i64)))
            .int(
                "state_bytes",
                tables.iter().map(|t| Some(t.state_bytes() as i64)),
            )
            .int(
                "changes",
                tables.iter().map(|t| Some(t.rows().version() as i64)),
            )
            .text("connector", tables.iter().map(|t| connector(t.name())))
            .finish()
    }

    pub(super) async fn create_table(&self, c: CreateTable) -> Result<Outcome> {
        let taken = |catalog: &crate::catalog::Catalog| -> Option<Result<Outcome>> {
            catalog.get(&c.name)?;
            Some(if c.if_not_exists {
                Ok(Outcome::Command("CREATE TABLE".into()))
            } else {
                Err(self.exists_error(&c.name))
            })
        };
        if let Some(done) = taken(&*self.catalog.lock().await) {
            return done;
        }
        if c.primary_key.is_empty() {
            return Err(SqlError::FeatureNotSupported(format!(
                "a table needs a PRIMARY KEY: its rows are changed and joined by it, e.g. CREATE TABLE {} (id TEXT PRIMARY KEY, …)",
                c.name
            )));
        }
        let mut seen = HashSet::new();
        for column in &c.columns {
            if !seen.insert(column.name.as_str()) {
                return Err(SqlError::DuplicateColumn(format!(
                    "column \"{}\" specified more than once",
                    column.name
                )));
            }
        }
        for key in &c.primary_key {
            if !seen.contains(key.as_str()) {
                return Err(SqlError::UndefinedColumn(format!(
                    "column \"{key}\" named in key does not exist"
                )));
            }
        }
        let options = match c.options.get("connector") {
            None if c.options.is_empty() => c.options.clone(),
            None => {
                return Err(SqlError::InvalidParameter(
                    "CREATE TABLE … WITH (…) loads the table's rows: give connector = 'file' (path = '…') or connector = 'postgres' (url = '…', query = '…')".into(),
                ))
            }
            Some(connector) => self
                .engine
                .registry()
                .loader(connector)?
                .validate(&c.options)?,
        };
        let def = TableDef {
            name: c.name.clone(),
            columns: c.columns.clone(),
            primary_key: c.primary_key.clone(),
            options,
        };
        // Rows from outside are read before the catalog is locked: other statements do not
        // wait for a slow file or server. The name is checked again after.
        let rows = if def.options.is_empty() {
            None
        } else {
            let (schema, _) = self.table_schema(&def).await?;
            Some(self.read_rows(&def, schema).await?)
        };
        let mut catalog = self.catalog.lock().await;
        if let Some(done) = taken(&catalog) {
            return done;
        }
        // A file without a catalog entry is left from a CREATE that did not finish.
        if let Some(stale) = self.table_file(&def.name) {
            let _ = std::fs::remove_file(stale);
        }
        let table = self.open_table(&def).await?;
        if let Some(rows) = rows {
            if let Err(e) = table.replace(&rows) {
                table.remove_file();
                return Err(e.into());
            }
        }
        self.register_table(&table)?;
        if let Err(e) = catalog.add(CatalogEntry::Table(def)) {
            self.remove_table(&c.name);
            return Err(e);
        }
        Ok(Outcome::Command("CREATE TABLE".into()))
    }

    /// Opens a table of the catalog at start-up. A table whose rows were loaded from a
    /// connector and never stored (a crash right after CREATE) loads them again.
    pub(super) async fn instantiate_table(&self, def: &TableDef) -> Result<()> {
        let table = self.open_table(def).await?;
        let stored = table.file().is_some_and(|f| f.exists());
        self.register_table(&table)?;
        if !stored && !def.options.is_empty() {
            self.load_table(def, &table).await?;
        }
        Ok(())
    }

    async fn open_table(&self, def: &TableDef) -> Result<Arc<Table>> {
        let (schema, key) = self.table_schema(def).await?;
        Ok(Arc::new(Table::open(
            &def.name,
            schema,
            key,
            self.table_file(&def.name),
        )?))
    }

    /// The table's columns (its primary key NOT NULL) and the primary key's indices.
    async fn table_schema(&self, def: &TableDef) -> Result<(SchemaRef, Vec<usize>)> {
        let schema = crate::types::source_schema(&self.ctx, &def.columns).await?;
        let key: Vec<usize> = def
            .primary_key
            .iter()
            .map(|k| {
                schema.index_of(k).map_err(|_| {
                    SqlError::UndefinedColumn(format!("column \"{k}\" does not exist"))
                })
            })
            .collect::<Result<_>>()?;
        // A primary key is NOT NULL, as in PostgreSQL.
        let fields: Vec<_> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let f = f.as_ref().clone();
                if key.contains(&i) {
                    f.with_nullable(false)
                } else {
                    f
                }
            })
            .collect();
        Ok((
            Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
            key,
        ))
    }

    fn register_table(&self, table: &Arc<Table>) -> Result<()> {
        self.ctx
            .register_table(table.name(), TableRelation::provider(table.clone()))?;
        self.tables
            .write()
            .insert(table.name().to_string(), table.clone());
        Ok(())
    }

    /// Forgets table `name` and deletes its rows.
    pub(super) fn remove_table(&self, name: &str) {
        let _ = self.ctx.deregister_table(name);
        if let Some(table) = self.tables.write().remove(name) {
            table.remove_file();
        }
    }

    /// Replaces the rows of `table` with those its connector reads.
    async fn load_table(&self, def: &TableDef, table: &Table) -> Result<u64> {
        let rows = self.read_rows(def, table.schema()).await?;
        Ok(table.replace(&rows)?)
    }

    /// The rows table `def`'s connector reads, as batches of `schema`.
    async fn read_rows(
        &self,
        def: &TableDef,
        schema: SchemaRef,
    ) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>> {
        let Some(connector) = def.options.get("connector") else {
            return Err(SqlError::FeatureNotSupported(format!(
                "table {} was not created from a connector (CREATE TABLE … WITH (connector = …)); change its rows with INSERT, UPDATE, DELETE or COPY",
                def.name
            )));
        };
        let loader = self.engine.registry().loader(connector)?;
        Ok(loader.load(&def.options, schema).await?)
    }

    /// `REFRESH TABLE name`: reads the table's rows from its connector again.
    pub(super) async fn refresh_table(&self, name: &str) -> Result<Outcome> {
        let table = self.table(name)?;
        let def = match self.catalog.lock().await.get(name) {
            Some(CatalogEntry::Table(def)) => def.clone(),
            _ => {
                return Err(SqlError::UndefinedObject(format!(
                    "table \"{name}\" does not exist"
                )))
            }
        };
        let n = self.load_table(&def, &table).await?;
        Ok(Outcome::Command(format!("REFRESH TABLE {n}")))
    }

    /// `TRUNCATE name, …`: every named table first, so an unknown name changes nothing.
    pub(super) fn truncate(&self, names: &[String]) -> Result<Outcome> {
        let tables: Vec<Arc<Table>> = names.iter().map(|n| self.table(n)).collect::<Result<_>>()?;
        for table in tables {
            table.replace(&[])?;
        }
        Ok(Outcome::Command("TRUNCATE TABLE".into()))
    }

    /// Plans `INSERT`, `UPDATE` or `DELETE` into a table; `None` when `statement` is none of
    /// them.
    pub(super) async fn plan_modify(&self, statement: &Statement) -> Result<Option<Prepared>> {
        let mut statement = statement.clone();
        let unsupported = |what: &str| -> Result<Option<Prepared>> {
            Err(SqlError::FeatureNotSupported(format!(
                "{what} is not supported on Weir tables"
            )))
        };
        // Checked once DataFusion has planned the statement and resolved its table.
        let mut on = None;
        let mut assigned: Vec<String> = Vec::new();
        match &mut statement {
            Statement::Insert(insert) => {
                if insert.returning.is_some() {
                    return unsupported("INSERT … RETURNING");
                }
                on = insert.on.take();
            }
            Statement::Update(update) => {
                if update.returning.is_some() {
                    return unsupported("UPDATE … RETURNING");
                }
                for a in &update.assignments {
                    match &a.target {
                        AssignmentTarget::ColumnName(n) => assigned.push(last_name(n)),
                        AssignmentTarget::Tuple(ns) => assigned.extend(ns.iter().map(last_name)),
                    }
                }
            }
            Statement::Delete(delete) => {
                if delete.returning.is_some() {
                    return unsupported("DELETE … RETURNING");
                }
            }
            _ => return Ok(None),
        }
        let statement = datafusion::sql::parser::Statement::Statement(Box::new(statement));
        let plan = self.ctx.state().statement_to_plan(statement).await?;
        let LogicalPlan::Dml(dml) = &plan else {
            return Err(SqlError::Internal(
                "a DML statement planned to something else".into(),
            ));
        };
        let name = dml.table_name.table().to_string();
        let table = self.table(&name)?;
        let schema = table.schema();
        for column in &assigned {
            if table
                .key_columns()
                .iter()
                .any(|&k| schema.field(k).name() == column)
            {
                return Err(SqlError::FeatureNotSupported(format!(
                    "UPDATE of primary key column \"{column}\" of table {name}: DELETE the row and INSERT it with the new key"
                )));
            }
        }
        let conflict = match on {
            Some(on) => self.on_conflict(&name, on)?,
            None => OnConflict::Error,
        };
        Ok(Some(Prepared::Modify { plan, conflict }))
    }

    /// What `ON CONFLICT …` of an INSERT into `table` does.
    fn on_conflict(&self, table: &str, on: OnInsert) -> Result<OnConflict> {
        let OnInsert::OnConflict(on) = on else {
            return Err(SqlError::FeatureNotSupported(
                "ON DUPLICATE KEY UPDATE is MySQL's; use ON CONFLICT (key) DO UPDATE SET col = EXCLUDED.col".into(),
            ));
        };
        let t = self.table(table)?;
        let schema = t.schema();
        let key: Vec<&str> = t
            .key_columns()
            .iter()
            .map(|&k| schema.field(k).name().as_str())
            .collect();
        match &on.conflict_target {
            None => {}
            Some(ConflictTarget::Columns(columns)) => {
                let named: HashSet<String> = columns.iter().map(ident_name).collect();
                let keyed: HashSet<String> = key.iter().map(|k| k.to_string()).collect();
                if named != keyed {
                    return Err(SqlError::FeatureNotSupported(format!(
                        "there is no unique constraint matching the ON CONFLICT specification: table {table}'s primary key is ({})",
                        key.join(", ")
                    )));
                }
            }
            Some(ConflictTarget::OnConstraint(name))
                if last_name(name) != format!("{table}_pkey") =>
            {
                return Err(SqlError::UndefinedObject(format!(
                    "constraint \"{name}\" for table \"{table}\" does not exist (its primary key is {table}_pkey)"
                )));
            }
            Some(ConflictTarget::OnConstraint(_)) => {}
        }
        match on.action {
            OnConflictAction::DoNothing => Ok(OnConflict::Nothing),
            OnConflictAction::DoUpdate(update) => {
                if update.selection.is_some() {
                    return Err(SqlError::FeatureNotSupported(
                        "ON CONFLICT … DO UPDATE … WHERE is not supported; DO UPDATE SET col = EXCLUDED.col, … updates every conflicting row".into(),
                    ));
                }
                let mut columns = Vec::new();
                for a in &update.assignments {
                    let AssignmentTarget::ColumnName(target) = &a.target else {
                        return Err(SqlError::FeatureNotSupported(
                            "ON CONFLICT DO UPDATE SET (a, b) = … is not supported; write SET a = EXCLUDED.a, b = EXCLUDED.b".into(),
                        ));
                    };
                    let target = last_name(target);
                    let from_excluded = match &a.value {
                        SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => {
                            parts[0].value.eq_ignore_ascii_case("excluded")
                                && ident_name(&parts[1]) == target
                        }
                        _ => false,
                    };
                    if !from_excluded {
                        return Err(SqlError::FeatureNotSupported(format!(
                            "ON CONFLICT DO UPDATE sets a column from the row that was proposed: SET {target} = EXCLUDED.{target} (other expressions are not supported)"
                        )));
                    }
                    let index = schema.index_of(&target).map_err(|_| {
                        SqlError::UndefinedColumn(format!(
                            "column \"{target}\" of relation \"{table}\" does not exist"
                        ))
                    })?;
                    if t.key_columns().contains(&index) {
                        return Err(SqlError::FeatureNotSupported(format!(
                            "ON CONFLICT DO UPDATE cannot set primary key column \"{target}\""
                        )));
                    }
                    columns.push(index);
                }
                Ok(OnConflict::Update(columns))
            }
        }
    }

    /// Runs a planned `INSERT`/`UPDATE`/`DELETE`.
    pub(super) async fn execute_modify(
        &self,
        plan: &LogicalPlan,
        conflict: &OnConflict,
        params: Option<ParamValues>,
    ) -> Result<Outcome> {
        let plan = match params {
            Some(p) => plan.clone().replace_params_with_values(&p)?,
            None => plan.clone(),
        };
        let LogicalPlan::Dml(DmlStatement {
            table_name,
            op,
            input,
            ..
        }) = &plan
        else {
            return Err(SqlError::Internal("not a DML plan".into()));
        };
        let table = self.table(table_name.table())?;
        let rows = self
            .ctx
            .execute_logical_plan(input.as_ref().clone())
            .await?
            .collect()
            .await?;
        let tag = match op {
            WriteOp::Insert(_) => format!("INSERT 0 {}", table.insert(&rows, conflict)?),
            WriteOp::Update => format!("UPDATE {}", table.update(&rows)?),
            WriteOp::Delete => format!("DELETE {}", table.delete(&rows)?),
            other => {
                return Err(SqlError::FeatureNotSupported(format!(
                    "{other} is not supported on tables"
                )))
            }
        };
        Ok(Outcome::Command(tag))
    }

    /// `COPY table FROM STDIN`: checks the table, columns and options, and says where the
    /// data will go.
    pub(super) fn copy_target(&self, c: CopyFrom) -> Result<Outcome> {
        let table = self.table(&c.table)?;
        let schema = table.schema();
        let columns = if c.columns.is_empty() {
            (0..schema.fields().len()).collect()
        } else {
            let mut seen = HashSet::new();
            c.columns
                .iter()
                .map(|n| {
                    if !seen.insert(n) {
                        return Err(SqlError::DuplicateColumn(format!(
                            "column \"{n}\" specified more than once"
                        )));
                    }
                    schema.index_of(n).map_err(|_| {
                        SqlError::UndefinedColumn(format!(
                            "column \"{n}\" of relation \"{}\" does not exist",
                            c.table
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
        Ok(Outcome::CopyIn(CopyTarget {
            table,
            columns,
            format: CopyFormat::from_options(&c.options)?,
        }))
    }

    /// Inserts the rows of a COPY's `data` (all of them or, on any error, none); returns
    /// how many.
    pub fn copy_in(&self, target: &CopyTarget, data: &[u8]) -> Result<u64> {
        let table = &target.table;
        let schema = table.schema();
        let read = crate::copy::columns_of(&schema, &target.columns);
        let values = target.format.read(data, &read, table.name())?;
        let rows = values.first().map(|c| c.len()).unwrap_or(0);
        let mut columns = Vec::with_capacity(schema.fields().len());
        for (i, field) in schema.fields().iter().enumerate() {
            columns.push(match target.columns.iter().position(|&c| c == i) {
                Some(p) => values[p].clone(),
                None => datafusion::arrow::array::new_null_array(field.data_type(), rows),
            });
        }
        let nullable = weir_engine::table::all_nullable(&schema);
        let batch = datafusion::arrow::record_batch::RecordBatch::try_new_with_options(
            nullable,
            columns,
            &datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        Ok(table.insert(&[batch], &OnConflict::Error)?)
    }
}

/// An identifier as PostgreSQL resolves it: quoted as written, otherwise lower-cased.
fn ident_name(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// The last part of a possibly qualified name (`public.devices` → `devices`).
fn last_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .map(ident_name)
        .unwrap_or_else(|| name.to_string())
}
