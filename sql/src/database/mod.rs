//! The database: catalog, engine and the serving query context behind one API.
//!
//! The pgwire front end (and tests) call [`Database::prepare`] and [`Database::execute`] per
//! statement. DDL goes to the catalog and the engine; queries are planned by DataFusion over
//! the views' state, the `weir.*` system relations and `pg_catalog`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use parking_lot::RwLock;
use weir_engine::checkpoint::CheckpointConfig;
use weir_engine::connector::source::{SourceRegistry, SourceSpec};
use weir_engine::pipeline::view::{EmitMode, ViewRuntime};
use weir_engine::pipeline::{Engine, WatermarkDecl};
use weir_engine::serving::table::ViewTable;

use crate::catalog::{AlertDef, Catalog, CatalogEntry, SinkDef, SourceDef, ViewDef};
use crate::dialect::{
    self, CreateAlert, CreateSource, CreateView, ObjectKind, Show, WeirStatement,
};
use crate::error::{Result, SqlError};
use crate::functions::{PlanCapture, RelationResolver, WindowFunction};
use crate::max_future::{max_future_ns, split_max_future, MAX_FUTURE};
use crate::over_order::{apply_emit_option, EMIT_OPTION};
use crate::planner::{base_config, plan_stream, plan_view, Relations, StreamRelation};
use crate::retention::{apply_retention_options, HISTORY_OPTION, RETENTION_OPTION};
use crate::session::Session;
use crate::system::Columns;

mod sinks;
pub(crate) mod subscribe;
mod system_relations;
mod tables;

pub use tables::CopyTarget;

use sinks::{alert_sink_name, alert_sinks};

/// [`DatabaseOptions::query_memory`] unless configured: 2 GiB.
pub const DEFAULT_QUERY_MEMORY: usize = 2 << 30;

/// How to open a database.
#[derive(Debug, Clone)]
pub struct DatabaseOptions {
    /// Where the catalog lives; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Connectors.
    pub registry: SourceRegistry,
    /// How long `CREATE MATERIALIZED VIEW` waits for the view to catch up with its source.
    pub backfill_timeout: std::time::Duration,
    /// Time between checkpoints (persistent databases only).
    pub checkpoint_interval: std::time::Duration,
    /// Discard checkpoints written by an incompatible build and rebuild state from the
    /// sources, instead of refusing to start their sources.
    pub rebuild_state: bool,
    /// Memory all ad-hoc queries together may use (bytes); past it sorts and joins spill to
    /// disk where DataFusion can, and a query that still needs more fails with 53200. The
    /// views' own state is not counted.
    pub query_memory: usize,
    /// Statements run once the catalog is replayed, before any pipeline starts (the
    /// demo's `CREATE … IF NOT EXISTS`); DDL in them does not wait for backfills.
    pub startup_sql: Option<String>,
    /// `retention`/`history` given to a new view that names neither (the server's
    /// `view_retention`/`view_history`); written into its definition.
    pub view_defaults: BTreeMap<String, String>,
    /// Where views' Parquet history goes: `s3://bucket/prefix` (or a directory); `None`:
    /// `<data dir>/history`.
    pub history_url: Option<String>,
    /// `(retention, history)` of `weir.dead_letters` and `weir.late_events` (ns of wall
    /// time): older rows move to Parquet files; `None`: they stay in memory (at most
    /// 100,000 rows each).
    pub system_log_retention: Option<(i64, i64)>,
    /// Run as one replica of several (needs a data dir): Kafka sources are split by
    /// partition among the replicas (see `weir_engine::cluster`).
    pub cluster: Option<weir_engine::cluster::ClusterConfig>,
}

impl DatabaseOptions {
    /// An in-memory database (no data dir) with the given connectors.
    pub fn in_memory(registry: SourceRegistry) -> Self {
        Self {
            data_dir: None,
            registry,
            backfill_timeout: std::time::Duration::from_secs(300),
            checkpoint_interval: std::time::Duration::from_secs(1),
            rebuild_state: false,
            query_memory: DEFAULT_QUERY_MEMORY,
            startup_sql: None,
            view_defaults: BTreeMap::new(),
            history_url: None,
            system_log_retention: None,
            cluster: None,
        }
    }

    /// A database persisted in `dir`.
    pub fn persistent(dir: impl Into<PathBuf>, registry: SourceRegistry) -> Self {
        Self {
            data_dir: Some(dir.into()),
            ..Self::in_memory(registry)
        }
    }
}

/// A statement ready to execute.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// Weir's own statements (DDL, SHOW, SET …).
    Statement(WeirStatement),
    /// A DataFusion query.
    Query { plan: LogicalPlan },
    /// `INSERT`, `UPDATE` or `DELETE` into a table: DataFusion's DML plan, and what an
    /// insert does with a key the table has.
    Modify {
        plan: LogicalPlan,
        conflict: weir_engine::table::OnConflict,
    },
}

/// The result of one statement.
#[derive(Debug)]
pub enum Outcome {
    /// An empty statement.
    Empty,
    /// A command and its tag (`CREATE SOURCE`, `SET` …).
    Command(String),
    /// Rows.
    Rows(DataFrame),
    /// `COPY … FROM STDIN`: the client sends the data next (see [`Database::copy_in`]).
    CopyIn(CopyTarget),
}

#[derive(Debug, Clone)]
struct Relation {
    stream: StreamRelation,
    view: Option<Arc<ViewRuntime>>,
    /// A source's event-time column.
    event_time: Option<String>,
}

/// Weir's database.
pub struct Database {
    engine: Arc<Engine>,
    ctx: SessionContext,
    parser: PostgresCompatibilityParser,
    catalog: tokio::sync::Mutex<Catalog>,
    relations: Arc<RwLock<BTreeMap<String, Relation>>>,
    backfill_timeout: std::time::Duration,
    /// Whether the database has a data dir (checkpoints, history).
    persistent: bool,
    /// Options a new view without `retention` gets.
    view_defaults: BTreeMap<String, String>,
    /// Where older dead letters and late events go.
    archive: Option<Arc<crate::system_archive::SystemArchive>>,
    /// pgwire users.
    users: crate::users::Users,
    /// Tables, by name.
    tables: RwLock<BTreeMap<String, Arc<weir_engine::table::Table>>>,
    /// The data dir, if any.
    data_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").finish_non_exhaustive()
    }
}

impl Database {
    /// Opens the database, replaying the persisted catalog.
    pub async fn open(options: DatabaseOptions) -> Result<Arc<Self>> {
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(
                datafusion::execution::memory_pool::FairSpillPool::new(options.query_memory),
            ))
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(base_config(), runtime);
        datafusion_pg_catalog::pg_catalog::setup_pg_catalog(
            &ctx,
            "weir",
            datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
        )
        .map_err(|e| SqlError::Internal(format!("pg_catalog: {e}")))?;
        crate::pg::register_functions(&ctx);
        crate::percentile::register(&ctx);
        crate::percentile_exact::register(&ctx);
        crate::ewm::register(&ctx);
        crate::bounded::register(&ctx);
        crate::checked::register(&ctx);
        let catalog = Catalog::open(options.data_dir.as_deref())?;
        // Views' history: `history_url`, else with replicas sharing an S3 prefix its
        // `history/` (a lane's files must be readable by the lane's next owner).
        let history = match (&options.history_url, &options.cluster) {
            (Some(url), _) => Some(weir_engine::history::HistoryRoot::from_url(url)?),
            (None, Some(c)) if c.state_dir.is_none() => Some(c.shared.child("history")),
            _ => None,
        };
        if let (Some(dir), Some(root)) = (&options.data_dir, history) {
            weir_engine::history::configure(&dir.join("checkpoints"), root.clone());
            if let Some(shared) = options.cluster.as_ref().and_then(|c| c.checkpoint_dir()) {
                weir_engine::history::configure(&shared, root);
            }
        }
        if options.cluster.is_some() && options.data_dir.is_none() {
            return Err(SqlError::InvalidParameter(
                "a replica of a cluster needs a data dir".into(),
            ));
        }
        let mut engine = match &options.data_dir {
            None => Engine::new(options.registry),
            Some(dir) => Engine::with_checkpoints(
                options.registry,
                CheckpointConfig {
                    dir: dir.join("checkpoints"),
                    interval: options.checkpoint_interval,
                    rebuild_incompatible: options.rebuild_state,
                },
            ),
        };
        if let Some(cluster) = options.cluster.clone() {
            engine = engine.with_cluster(cluster);
        }
        let db = Arc::new(Self {
            engine: Arc::new(engine),
            ctx,
            parser: PostgresCompatibilityParser::new(),
            catalog: tokio::sync::Mutex::new(Catalog::open(None)?),
            relations: Arc::new(RwLock::new(BTreeMap::new())),
            backfill_timeout: options.backfill_timeout,
            persistent: options.data_dir.is_some(),
            tables: RwLock::new(BTreeMap::new()),
            data_dir: options.data_dir.clone(),
            users: crate::users::Users::open(options.data_dir.as_deref())?,
            view_defaults: options.view_defaults.clone(),
            archive: match (&options.data_dir, options.system_log_retention) {
                (Some(dir), Some((retention, history))) => {
                    Some(Arc::new(crate::system_archive::SystemArchive::new(
                        weir_engine::history::root_for(&dir.join("checkpoints")),
                        retention,
                        history,
                    )))
                }
                _ => None,
            },
        });
        db.register_system_relations()?;
        crate::information_schema::install(&db.ctx)?;
        {
            let relations = db.relations.clone();
            let views: crate::pg::ViewNames = Arc::new(move || {
                relations
                    .read()
                    .iter()
                    .filter(|(_, r)| r.view.is_some())
                    .map(|(n, _)| n.clone())
                    .collect()
            });
            crate::pg::PgCatalogOverlay::install(&db.ctx, views)?;
        }
        db.register_window_functions();
        // Replay definitions in creation order.
        let entries = catalog.entries().to_vec();
        for (i, entry) in entries.iter().enumerate() {
            let replayed = match entry {
                CatalogEntry::Source(def) => db.instantiate_source(def.clone()).map(|_| ()),
                CatalogEntry::Table(def) => db.instantiate_table(def).await,
                CatalogEntry::View(def) => db.instantiate_view(def.clone()).await.map(|_| ()),
                CatalogEntry::Sink(def) => db.instantiate_sink(def.clone()).map(|_| ()),
                CatalogEntry::Alert(def) => db
                    .instantiate_alert(def.clone(), &alert_sinks(&entries[..i]))
                    .await
                    .map(|_| ()),
            };
            if let Err(e) = replayed {
                tracing::error!(object = entry.name(), error = %e, "cannot restore catalog object; it is kept in the catalog");
            }
        }
        *db.catalog.lock().await = catalog;
        // Objects to create if missing (the demo's) join the replayed ones before the
        // pipelines start, so the views of one source share one reader.
        if let Some(sql) = &options.startup_sql {
            let mut session = Session::default();
            session.set("background_ddl", "on")?;
            // One bad statement fails alone: it is logged, the others run, the server
            // starts (an unparsable text stops it: nothing in it could run).
            for stmt in dialect::split_statements(sql)? {
                if stmt.trim().is_empty() {
                    continue;
                }
                if let Err(e) = db.run(&mut session, &stmt).await {
                    let shown: String = stmt.trim().chars().take(120).collect();
                    tracing::error!(statement = %shown, error = %e, "a start-up statement failed; the others run");
                }
            }
        }
        // Restoring state reads checkpoint files: off the async threads.
        let engine = db.engine.clone();
        let _ = tokio::task::spawn_blocking(move || engine.start()).await;
        db.engine.run_cluster()?;
        if db.archive.is_some() {
            tokio::spawn(archive_loop(Arc::downgrade(&db)));
        }
        Ok(db)
    }

    /// The engine.
    /// The pgwire users.
    pub fn users(&self) -> &crate::users::Users {
        &self.users
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The serving query context.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Parses and plans one statement (no top-level `;`).
    pub async fn prepare(&self, sql: &str) -> Result<Prepared> {
        match dialect::parse_statement(sql)? {
            WeirStatement::Query(text) => self.plan_query(&text).await,
            other => Ok(Prepared::Statement(other)),
        }
    }

    /// The columns a prepared statement returns, if it returns rows.
    pub async fn describe(
        &self,
        session: &Session,
        prepared: &Prepared,
    ) -> Result<Option<SchemaRef>> {
        match prepared {
            Prepared::Query { plan } => Ok(Some(Arc::new(plan.schema().as_arrow().clone()))),
            Prepared::Statement(WeirStatement::Show(show)) => {
                let df = self.show(session, show).await?;
                Ok(Some(Arc::new(df.schema().as_arrow().clone())))
            }
            Prepared::Statement(_) | Prepared::Modify { .. } => Ok(None),
        }
    }

    /// Executes a prepared statement with parameter values.
    pub async fn execute(
        &self,
        session: &mut Session,
        prepared: &Prepared,
        params: Option<ParamValues>,
    ) -> Result<Outcome> {
        match prepared {
            Prepared::Query { plan } => {
                let plan = match params {
                    Some(p) => plan.clone().replace_params_with_values(&p)?,
                    None => plan.clone(),
                };
                Ok(Outcome::Rows(self.ctx.execute_logical_plan(plan).await?))
            }
            Prepared::Modify { plan, conflict } => {
                self.execute_modify(plan, conflict, params).await
            }
            Prepared::Statement(s) => self.execute_statement(session, s.clone()).await,
        }
    }

    /// Runs every statement of `sql` (simple-query style) and returns their outcomes; stops
    /// at the first error.
    pub async fn run(&self, session: &mut Session, sql: &str) -> Result<Vec<Outcome>> {
        let mut out = Vec::new();
        for stmt in dialect::split_statements(sql)? {
            let prepared = self.prepare(&stmt).await?;
            out.push(self.execute(session, &prepared, None).await?);
        }
        Ok(out)
    }

    /// Runs `sql` and collects the rows of its last statement.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let mut session = Session::default();
        let mut outcomes = self.run(&mut session, sql).await?;
        match outcomes.pop() {
            Some(Outcome::Rows(df)) => Ok(df.collect().await?),
            _ => Ok(vec![]),
        }
    }

    /// Plans a query, or an `INSERT`/`UPDATE`/`DELETE` into a table.
    async fn plan_query(&self, sql: &str) -> Result<Prepared> {
        let rewritten = crate::pg_compat::rewrite(sql);
        let sql = rewritten.as_deref().unwrap_or(sql);
        let mut statements = self
            .parser
            .parse(sql)
            .map_err(|e| SqlError::Syntax(format!("syntax error: {e}")))?;
        if statements.len() != 1 {
            return Err(SqlError::Syntax(format!(
                "expected one statement, found {}",
                statements.len()
            )));
        }
        let statement = statements.remove(0);
        if let Some(modify) = self.plan_modify(&statement).await? {
            return Ok(modify);
        }
        let statement = datafusion::sql::parser::Statement::Statement(Box::new(statement));
        let plan = match self.ctx.state().statement_to_plan(statement).await {
            Ok(plan) => plan,
            Err(e) => return Err(e.into()),
        };
        match &plan {
            LogicalPlan::Ddl(DdlStatement::CreateView(_)) => Err(SqlError::FeatureNotSupported(
                "CREATE VIEW is not supported; use CREATE MATERIALIZED VIEW for a continuously maintained view".into(),
            )),
            LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_) => {
                Err(SqlError::FeatureNotSupported(
                    "this statement is not supported by Weir: its relations are sources, tables (CREATE TABLE; INSERT, UPDATE, DELETE, COPY FROM STDIN) and materialized views".into(),
                ))
            }
            LogicalPlan::Statement(_) => Err(SqlError::FeatureNotSupported(
                "this statement is not supported by Weir".into(),
            )),
            _ => Ok(Prepared::Query {
                plan: crate::pg_compat::int4_literal_columns(plan),
            }),
        }
    }

    async fn execute_statement(
        &self,
        session: &mut Session,
        statement: WeirStatement,
    ) -> Result<Outcome> {
        match statement {
            WeirStatement::Empty => Ok(Outcome::Empty),
            WeirStatement::CreateSource(c) => self.create_source(c).await,
            WeirStatement::CreateView(c) => self.create_view(c, session).await,
            WeirStatement::CreateSink(c) => self.create_sink(c).await,
            WeirStatement::CreateAlert(c) => self.create_alert(c, session).await,
            WeirStatement::Drop {
                kind,
                names,
                if_exists,
                cascade,
            } => self.drop(kind, names, if_exists, cascade).await,
            WeirStatement::AlterView {
                alert,
                name,
                if_exists,
                options,
            } => self.alter_view(alert, &name, if_exists, options).await,
            WeirStatement::Show(show) => Ok(Outcome::Rows(self.show(session, &show).await?)),
            WeirStatement::Set { name, value } => {
                session.set(&name, &value)?;
                Ok(Outcome::Command("SET".into()))
            }
            WeirStatement::Reset(name) => {
                session.reset(&name);
                Ok(Outcome::Command("RESET".into()))
            }
            WeirStatement::Begin => Ok(Outcome::Command("BEGIN".into())),
            WeirStatement::Commit => Ok(Outcome::Command("COMMIT".into())),
            WeirStatement::Rollback => Ok(Outcome::Command("ROLLBACK".into())),
            WeirStatement::NoOp(tag) => Ok(Outcome::Command(tag)),
            WeirStatement::User(u) => crate::users::execute(&self.users, u),
            WeirStatement::DeclareSubscribe {
                cursor,
                view,
                options,
            } => self.declare_subscribe(session, cursor, &view, &options),
            WeirStatement::Fetch {
                cursor,
                count,
                options,
            } => self.fetch(session, &cursor, count, &options).await,
            WeirStatement::CloseCursor(name) => self.close_cursor(session, name.as_deref()),
            WeirStatement::Query(text) => {
                let prepared = self.plan_query(&text).await?;
                Box::pin(self.execute(session, &prepared, None)).await
            }
            WeirStatement::CreateTable(c) => self.create_table(c).await,
            WeirStatement::CopyFrom(c) => self.copy_target(c),
            WeirStatement::Truncate(names) => self.truncate(&names),
            WeirStatement::RefreshTable(name) => self.refresh_table(&name).await,
        }
    }

    fn exists_error(&self, name: &str) -> SqlError {
        SqlError::DuplicateObject(format!("relation \"{name}\" already exists"))
    }

    async fn create_source(&self, c: CreateSource) -> Result<Outcome> {
        let mut catalog = self.catalog.lock().await;
        if catalog.get(&c.name).is_some() {
            if c.if_not_exists {
                return Ok(Outcome::Command("CREATE SOURCE".into()));
            }
            return Err(self.exists_error(&c.name));
        }
        let schema = crate::types::source_schema(&self.ctx, &c.columns).await?;
        let Some(connector) = c.options.get("connector").cloned() else {
            return Err(SqlError::InvalidParameter(format!(
                "CREATE SOURCE needs WITH (connector = '…'); available connectors: {}",
                self.engine.registry().names().join(", ")
            )));
        };
        let factory = self.engine.registry().get(&connector)?;
        let (connector_options, max_future) = split_max_future(&c.options);
        if let Some(text) = &max_future {
            if c.watermark.is_none() {
                return Err(SqlError::InvalidParameter(format!(
                    "max_future = '{text}' guards a source's watermark; declare WATERMARK FOR <event time> AS … on source {}",
                    c.name
                )));
            }
            max_future_ns(Some(text))?;
        }
        let spec = SourceSpec {
            name: c.name.clone(),
            schema,
            options: connector_options,
        };
        let mut options = factory.validate(&spec)?;
        if let Some(text) = max_future {
            options.insert(MAX_FUTURE.to_string(), text);
        }
        let def = SourceDef {
            name: c.name,
            columns: c.columns,
            watermark: c.watermark,
            options,
        };
        self.instantiate_source(def.clone())?;
        let name = def.name.clone();
        if let Err(e) = catalog.add(CatalogEntry::Source(def)) {
            // An error means no change.
            self.engine.drop_source(&name);
            let _ = self.ctx.deregister_table(&name);
            self.relations.write().remove(&name);
            return Err(e);
        }
        Ok(Outcome::Command("CREATE SOURCE".into()))
    }

    fn instantiate_source(&self, def: SourceDef) -> Result<()> {
        let schema =
            futures::executor::block_on(crate::types::source_schema(&self.ctx, &def.columns))?;
        let watermark = match &def.watermark {
            None => None,
            Some(w) => {
                let column = schema.index_of(&w.column).map_err(|_| {
                    SqlError::UndefinedColumn(format!(
                        "WATERMARK FOR \"{}\": source {} has no such column",
                        w.column, def.name
                    ))
                })?;
                if !matches!(schema.field(column).data_type(), DataType::Timestamp(_, _)) {
                    return Err(SqlError::DatatypeMismatch(format!(
                        "WATERMARK FOR \"{}\": the event-time column must be TIMESTAMP or TIMESTAMPTZ, not {}",
                        w.column,
                        schema.field(column).data_type()
                    )));
                }
                let (_, max_future) = split_max_future(&def.options);
                Some(WatermarkDecl {
                    column,
                    delay_ns: w.delay_ns,
                    max_future_ns: max_future_ns(max_future.as_deref())?,
                })
            }
        };
        let spec = SourceSpec {
            name: def.name.clone(),
            schema: schema.clone(),
            options: split_max_future(&def.options).0,
        };
        self.engine.add_source(spec, watermark)?;
        // `SELECT … FROM source`: its latest events.
        self.ctx.register_table(
            def.name.as_str(),
            crate::source_peek::table(&self.engine, &def.name, schema.clone()),
        )?;
        self.relations.write().insert(
            def.name.clone(),
            Relation {
                stream: StreamRelation {
                    schema,
                    root_source: def.name.clone(),
                    updating: false,
                    event_time: def.watermark.as_ref().map(|w| w.column.clone()),
                },
                view: None,
                event_time: def.watermark.as_ref().map(|w| w.column.clone()),
            },
        );
        Ok(())
    }

    async fn create_view(&self, c: CreateView, session: &Session) -> Result<Outcome> {
        let mut catalog = self.catalog.lock().await;
        if catalog.get(&c.name).is_some() {
            if c.if_not_exists {
                return Ok(Outcome::Command("CREATE MATERIALIZED VIEW".into()));
            }
            return Err(self.exists_error(&c.name));
        }
        let mut options = c.options.clone();
        if !options.contains_key(RETENTION_OPTION) && !options.contains_key(HISTORY_OPTION) {
            options.extend(self.view_defaults.clone());
        }
        let def = ViewDef {
            name: c.name.clone(),
            query: c.query.clone(),
            emit: c.emit,
            options,
            input: String::new(),
            tables: Vec::new(),
            joins: Vec::new(),
        };
        let def = self.instantiate_view(def).await?;
        if let Err(e) = catalog.add(CatalogEntry::View(def.clone())) {
            self.remove_view(&def.name);
            return Err(e);
        }
        drop(catalog);
        self.wait_backfill(&def.name, session).await;
        Ok(Outcome::Command("CREATE MATERIALIZED VIEW".into()))
    }

    /// Like RisingWave, CREATE MATERIALIZED VIEW (and CREATE ALERT) returns once the new
    /// relation has caught up with the data its source already has, so the next SELECT sees
    /// all of it (unless `SET background_ddl = on`). Every second of the wait sends the
    /// session a NOTICE with the backfill's progress.
    async fn wait_backfill(&self, name: &str, session: &Session) {
        if session.is_on("background_ddl") {
            return;
        }
        let root = self
            .relations
            .read()
            .get(name)
            .map(|r| r.stream.root_source.clone());
        let Some(root) = root else {
            return;
        };
        let deadline = std::time::Instant::now() + self.backfill_timeout;
        loop {
            let engine = self.engine.clone();
            let source = root.clone();
            let started = std::time::Instant::now();
            let step = deadline
                .saturating_duration_since(started)
                .min(std::time::Duration::from_secs(1));
            let caught_up =
                tokio::task::spawn_blocking(move || engine.wait_caught_up(&source, step))
                    .await
                    .unwrap_or(false);
            if caught_up {
                return;
            }
            // Past the deadline, or the wait ended early: the source failed or went away.
            if std::time::Instant::now() >= deadline || started.elapsed() < step {
                tracing::warn!(relation = %name, "created; its source has not caught up yet (see weir.sources)");
                return;
            }
            if let Some(p) = crate::backfill::progress(&self.engine, &root) {
                session.notice(p.notice(name));
            }
        }
    }

    /// Every relation a view can read, as the planner sees it.
    fn streams(&self) -> Relations {
        Relations {
            streams: self
                .relations
                .read()
                .iter()
                .map(|(k, v)| (k.clone(), v.stream.clone()))
                .collect(),
            tables: self.table_relations(),
        }
    }

    /// Plans and starts a view; returns its definition with the input filled in.
    async fn instantiate_view(&self, mut def: ViewDef) -> Result<ViewDef> {
        let streams = self.streams();
        let mut planned = plan_view(&def.name, &def.query, def.emit, &streams).await?;
        let known = [EMIT_OPTION, RETENTION_OPTION, HISTORY_OPTION];
        if let Some(unknown) = def.options.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(SqlError::InvalidParameter(format!(
                "unknown materialized view option \"{unknown}\"; views take {EMIT_OPTION} (for OVER windows), {RETENTION_OPTION} and {HISTORY_OPTION}"
            )));
        }
        let emit = self.apply_emit(&def.options, &mut planned)?;
        let mut kept = apply_retention_options(&def.options, &mut planned.plan, self.persistent)?;
        if let Some(e) = &emit {
            kept.insert(EMIT_OPTION.to_string(), e.clone());
        }
        def.options = kept;
        planned.plan.fingerprint = format!(
            "{:?}|{}|{:?}",
            def.emit, def.query, planned.plan.output_schema
        );
        if let Some(emit) = emit {
            planned.plan.fingerprint.push_str(&format!("|emit={emit}"));
        }
        def.input = planned.input.clone();
        def.tables = planned.tables.clone();
        def.joins = planned
            .pair
            .iter()
            .flat_map(|(a, b)| [a, b])
            .filter(|s| **s != def.input)
            .cloned()
            .collect();
        let updating = planned.plan.emit == EmitMode::OnUpdate && planned.plan.aggregate.is_some();
        self.start_view(&def.name, &def.to_sql(), planned, updating)?;
        Ok(def)
    }

    /// `ALTER MATERIALIZED VIEW name SET (retention = …, history = …)`: the catalog first
    /// (an error changes nothing), then the running view, which keeps its state.
    async fn alter_view(
        &self,
        alert: bool,
        name: &str,
        if_exists: bool,
        options: BTreeMap<String, String>,
    ) -> Result<Outcome> {
        let kind = if alert {
            "alert rule"
        } else {
            "materialized view"
        };
        let statement = if alert {
            "ALTER ALERT"
        } else {
            "ALTER MATERIALIZED VIEW"
        };
        let tag = Outcome::Command(statement.into());
        let mut catalog = self.catalog.lock().await;
        let mut current = match (catalog.get(name), alert) {
            (Some(e @ CatalogEntry::View(_)), false) | (Some(e @ CatalogEntry::Alert(_)), true) => {
                e.clone()
            }
            (Some(_), _) => {
                return Err(SqlError::WrongObjectType(format!(
                    "\"{name}\" is not {}",
                    if alert {
                        "an alert rule"
                    } else {
                        "a materialized view"
                    }
                )))
            }
            (None, _) if if_exists => return Ok(tag),
            (None, _) => {
                return Err(SqlError::UndefinedObject(format!(
                    "{kind} \"{name}\" does not exist"
                )))
            }
        };
        if let Some(other) = options
            .keys()
            .find(|k| k.as_str() != RETENTION_OPTION && k.as_str() != HISTORY_OPTION)
        {
            return Err(SqlError::FeatureNotSupported(format!(
                "{statement} … SET changes {RETENTION_OPTION} and {HISTORY_OPTION}; to change \"{other}\", drop and re-create the {}",
                if alert { "alert rule" } else { "view" }
            )));
        }
        let view = self.view(name).ok_or_else(|| {
            SqlError::UndefinedObject(format!("{kind} \"{name}\" is not running"))
        })?;
        let def_options = match &mut current {
            CatalogEntry::View(v) => &mut v.options,
            CatalogEntry::Alert(a) => &mut a.options,
            _ => unreachable!("matched above"),
        };
        let mut merged = def_options.clone();
        // Turning retention off drops the history setting with it.
        let off = options
            .get(RETENTION_OPTION)
            .is_some_and(|r| r.trim().eq_ignore_ascii_case("none"));
        if off && !options.contains_key(HISTORY_OPTION) {
            merged.remove(HISTORY_OPTION);
        }
        merged.extend(options);
        let mut plan = view.plan().clone();
        let kept = apply_retention_options(&merged, &mut plan, self.persistent)?;
        def_options.retain(|k, _| k.as_str() != RETENTION_OPTION && k.as_str() != HISTORY_OPTION);
        def_options.extend(kept);
        catalog.replace(current)?;
        view.set_retention(plan.retention);
        Ok(tag)
    }

    /// Applies the `emit` option to a planned view or rule with OVER windows; returns the
    /// value the catalog keeps.
    fn apply_emit(
        &self,
        options: &BTreeMap<String, String>,
        planned: &mut crate::planner::PlannedView,
    ) -> Result<Option<String>> {
        let watermarked = self
            .relations
            .read()
            .get(&planned.root_source)
            .is_some_and(|r| r.event_time.is_some());
        apply_emit_option(
            options,
            &mut planned.plan,
            &planned.root_source,
            watermarked,
        )
    }

    /// Serves and starts a planned view (or alert rule) `name` defined by `sql`.
    fn start_view(
        &self,
        name: &str,
        sql: &str,
        planned: crate::planner::PlannedView,
        updating: bool,
    ) -> Result<()> {
        if let Some(key) = self.engine.sharding(&planned.root_source) {
            crate::scale::check_partition_local(
                name,
                &planned.root_source,
                &planned.plan,
                key.as_deref(),
            )?;
        }
        if let Some((a, b)) = &planned.pair {
            if let Some(s) = [a, b]
                .into_iter()
                .find(|s| self.engine.sharding(s).is_some())
            {
                return Err(SqlError::FeatureNotSupported(format!(
                    "view {name} cannot run on several replicas: it joins {a} and {b}, and                      each replica reads only its share of {s}'s partitions"
                )));
            }
        }
        let schema = planned.plan.output_schema.clone();
        let runtime = ViewRuntime::new(planned.plan)?;
        let table = Arc::new(ViewTable::new(runtime.clone(), sql.to_string()));
        self.ctx.register_table(name, table)?;
        let parent = (planned.pair.is_none() && planned.input != planned.root_source)
            .then_some(planned.input.as_str());
        let added = match &planned.pair {
            Some((a, b)) => self.engine.add_pair(a, b).map(|_| ()),
            None => Ok(()),
        }
        .and_then(|()| {
            self.engine
                .add_view(&planned.root_source, parent, runtime.clone())
        });
        if let Err(e) = added {
            let _ = self.ctx.deregister_table(name);
            return Err(e.into());
        }
        self.relations.write().insert(
            name.to_string(),
            Relation {
                stream: StreamRelation {
                    schema,
                    root_source: planned.root_source,
                    updating,
                    event_time: None,
                },
                view: Some(runtime),
                event_time: None,
            },
        );
        Ok(())
    }

    async fn create_alert(&self, c: CreateAlert, session: &Session) -> Result<Outcome> {
        let mut catalog = self.catalog.lock().await;
        if catalog.get(&c.name).is_some() {
            if c.if_not_exists {
                return Ok(Outcome::Command("CREATE ALERT".into()));
            }
            return Err(self.exists_error(&c.name));
        }
        let mut options = c.options;
        if !options.contains_key(RETENTION_OPTION) && !options.contains_key(HISTORY_OPTION) {
            options.extend(self.view_defaults.clone());
        }
        let def = AlertDef {
            name: c.name.clone(),
            query: c.query,
            options,
            input: String::new(),
            tables: Vec::new(),
        };
        let sinks = alert_sinks(catalog.entries());
        let def = self.instantiate_alert(def, &sinks).await?;
        if let Err(e) = catalog.add(CatalogEntry::Alert(def.clone())) {
            self.drop_alert_sinks(&def.name);
            self.remove_view(&def.name);
            return Err(e);
        }
        drop(catalog);
        self.wait_backfill(&def.name, session).await;
        Ok(Outcome::Command("CREATE ALERT".into()))
    }

    /// Plans and starts an alert rule and the `FROM weir.alerts` sinks given; returns its
    /// definition with the input and the options' defaults filled in.
    async fn instantiate_alert(&self, mut def: AlertDef, sinks: &[SinkDef]) -> Result<AlertDef> {
        let streams = self.streams();
        let mut planned = plan_stream(&def.name, &def.query, None, &streams, true).await?;
        if planned.pair.is_some() {
            return Err(SqlError::FeatureNotSupported(
                "an alert rule reads one stream: join the sources in a materialized view and define the rule over it".into(),
            ));
        }
        let emit = self.apply_emit(&def.options, &mut planned)?;
        let input = streams
            .streams
            .get(&planned.input)
            .ok_or_else(|| SqlError::Internal("alert input".into()))?;
        let (spec, mut options) = crate::alerts::alert_spec(
            &def.name,
            &def.options,
            &planned.plan,
            &input.schema,
            input.updating,
        )?;
        if let Some(emit) = emit {
            options.insert(EMIT_OPTION.to_string(), emit);
        }
        // Retention is not part of the fingerprint: ALTER changes it and keeps the state.
        let fingerprint = format!(
            "alert|{options:?}|{}|{:?}",
            def.query, planned.plan.output_schema
        );
        options.extend(apply_retention_options(
            &def.options,
            &mut planned.plan,
            self.persistent,
        )?);
        planned.plan.fingerprint = fingerprint;
        planned.plan.alert = Some(spec);
        planned.plan.output_schema = weir_engine::operator::alert::message_schema();
        planned.plan.key_columns = vec![3];
        def.input = planned.input.clone();
        def.tables = planned.tables.clone();
        def.options = options;
        self.start_view(&def.name, &def.to_sql(), planned, false)?;
        for sink in sinks {
            if let Err(e) =
                self.start_sink(sink, &alert_sink_name(&sink.name, &def.name), &def.name)
            {
                tracing::error!(sink = %sink.name, alert = %def.name, error = %e, "cannot start the sink for this alert rule");
            }
        }
        Ok(def)
    }

    /// Names of the alert rules.
    fn alert_names(&self) -> Vec<String> {
        self.relations
            .read()
            .iter()
            .filter(|(_, r)| r.view.as_ref().is_some_and(|v| v.is_alert()))
            .map(|(n, _)| n.clone())
            .collect()
    }

    async fn drop(
        &self,
        kind: ObjectKind,
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    ) -> Result<Outcome> {
        let mut catalog = self.catalog.lock().await;
        let tag = format!("DROP {}", kind.as_sql());
        for name in names {
            let entry = catalog.get(&name).cloned();
            let matches = matches!(
                (&entry, kind),
                (Some(CatalogEntry::Source(_)), ObjectKind::Source)
                    | (Some(CatalogEntry::Table(_)), ObjectKind::Table)
                    | (Some(CatalogEntry::View(_)), ObjectKind::MaterializedView)
                    | (Some(CatalogEntry::Sink(_)), ObjectKind::Sink)
                    | (Some(CatalogEntry::Alert(_)), ObjectKind::Alert)
            );
            if entry.is_none() {
                if if_exists {
                    continue;
                }
                return Err(SqlError::UndefinedObject(format!(
                    "{} \"{name}\" does not exist",
                    kind.as_sql().to_lowercase()
                )));
            }
            if !matches {
                return Err(SqlError::WrongObjectType(format!(
                    "\"{name}\" is not a {}",
                    kind.as_sql().to_lowercase()
                )));
            }
            let mut doomed = Vec::new();
            collect_dependents(&catalog, &name, &mut doomed);
            let sinks: Vec<String> = doomed
                .iter()
                .filter(|n| matches!(catalog.get(n), Some(CatalogEntry::Sink(_))))
                .cloned()
                .collect();
            let is_sink = |n: &String| sinks.contains(n);
            if !doomed.is_empty() && !cascade {
                let list: Vec<String> = doomed
                    .iter()
                    .map(|d| {
                        let what = match catalog.get(d) {
                            Some(CatalogEntry::Sink(_)) => "sink",
                            Some(CatalogEntry::Alert(_)) => "alert",
                            _ => "materialized view",
                        };
                        format!("{what} {d}")
                    })
                    .collect();
                return Err(SqlError::DependentObjects(format!(
                    "cannot drop {} {name} because other objects depend on it: {}; use DROP {} {name} CASCADE to drop them too",
                    kind.as_sql().to_lowercase(),
                    list.join(", "),
                    kind.as_sql()
                )));
            }
            // The catalog first, in one atomic write: after a crash at any instant the
            // statement has happened entirely (the restart never sees these objects) or
            // not at all; an unwritable catalog changes nothing.
            let mut gone = doomed.clone();
            gone.push(name.clone());
            catalog.remove_all(&gone)?;
            // Deepest dependants first.
            for dependent in doomed.iter().rev() {
                if is_sink(dependent) {
                    self.engine.drop_sink(dependent);
                } else {
                    self.drop_alert_sinks(dependent);
                    self.remove_view(dependent);
                }
            }
            match kind {
                ObjectKind::Source => {
                    self.engine.drop_source(&name);
                    let _ = self.ctx.deregister_table(&name);
                    self.relations.write().remove(&name);
                }
                ObjectKind::MaterializedView => self.remove_view(&name),
                ObjectKind::Table => self.remove_table(&name),
                ObjectKind::Alert => {
                    self.drop_alert_sinks(&name);
                    self.remove_view(&name);
                }
                ObjectKind::Sink => match &entry {
                    Some(CatalogEntry::Sink(k)) => self.stop_sink(&name, &k.from),
                    _ => self.engine.drop_sink(&name),
                },
            }
        }
        Ok(Outcome::Command(tag))
    }

    fn remove_view(&self, name: &str) {
        self.engine.drop_view(name);
        let _ = self.ctx.deregister_table(name);
        self.relations.write().remove(name);
    }

    async fn show(&self, session: &Session, show: &Show) -> Result<DataFrame> {
        let sql = match show {
            Show::Sources => "SELECT name, connector, status, events_in, late_events, dead_letters, watermark FROM weir.sources ORDER BY name".to_string(),
            Show::Tables => "SELECT table_schema, table_name, table_type FROM information_schema.tables WHERE table_schema IN ('public', 'weir') ORDER BY 1, 2".to_string(),
            Show::MaterializedViews => "SELECT name, emit, rows, watermark, caught_up, definition FROM weir.views ORDER BY name".to_string(),
            Show::Sinks => "SELECT name, relation, connector, status, rows_written, backlog, errors, last_error FROM weir.sinks ORDER BY name".to_string(),
            Show::Alerts => "SELECT name, severity, key, cooldown, relation, alerts, firing, repeats FROM weir.alert_rules ORDER BY name".to_string(),
            Show::Operators(name) => {
                if self.view(name).is_none() {
                    return Err(SqlError::UndefinedObject(format!(
                        "materialized view or alert \"{name}\" does not exist"
                    )));
                }
                format!(
                    "SELECT step, operator, detail FROM weir.view_operators WHERE view = '{}' ORDER BY step",
                    name.replace('\'', "''")
                )
            }
            Show::CreateSource(name)
            | Show::CreateTable(name)
            | Show::CreateView(name)
            | Show::CreateSink(name)
            | Show::CreateAlert(name) => {
                let catalog = self.catalog.lock().await;
                let sql = match (catalog.get(name), show) {
                    (Some(CatalogEntry::Source(s)), Show::CreateSource(_)) => s.to_sql(),
                    (Some(CatalogEntry::Table(t)), Show::CreateTable(_)) => t.to_sql(),
                    (Some(CatalogEntry::View(v)), Show::CreateView(_)) => v.to_sql(),
                    (Some(CatalogEntry::Sink(k)), Show::CreateSink(_)) => k.to_sql(),
                    (Some(CatalogEntry::Alert(a)), Show::CreateAlert(_)) => a.to_sql(),
                    _ => {
                        let what = match show {
                            Show::CreateSource(_) => "source",
                            Show::CreateTable(_) => "table",
                            Show::CreateSink(_) => "sink",
                            Show::CreateAlert(_) => "alert",
                            _ => "materialized view",
                        };
                        return Err(SqlError::UndefinedObject(format!(
                            "{what} \"{name}\" does not exist"
                        )));
                    }
                };
                let batch = Columns::new()
                    .text("name", [Some(name.as_str())])
                    .text("create_sql", [Some(sql)])
                    .finish()?;
                return Ok(self.ctx.read_batch(batch)?);
            }
            Show::Variable(name) => {
                let batch = session.show(name)?;
                return Ok(self.ctx.read_batch(batch)?);
            }
        };
        Ok(self.ctx.sql(&sql).await?)
    }

    fn register_window_functions(&self) {
        let relations = self.relations.clone();
        let ctx = self.ctx.clone();
        let resolver: RelationResolver = Arc::new(move |name: &str| {
            relations.read().get(name).and_then(|r| r.view.as_ref())?;
            futures::executor::block_on(ctx.table_provider(name)).ok()
        });
        let capture = Arc::new(parking_lot::Mutex::new(PlanCapture::default()));
        self.ctx.register_udtf(
            "tumble",
            Arc::new(WindowFunction::tumble(resolver.clone(), capture.clone())),
        );
        self.ctx.register_udtf(
            "hop",
            Arc::new(WindowFunction::hop(resolver.clone(), capture.clone())),
        );
        self.ctx.register_udtf(
            "cumulate",
            Arc::new(WindowFunction::cumulate(resolver, capture)),
        );
        self.ctx
            .register_udtf("session", Arc::new(crate::functions::SessionOutsideViews));
    }

    /// Names of the materialized views.
    pub fn view_names(&self) -> Vec<String> {
        self.relations
            .read()
            .iter()
            .filter(|(_, r)| r.view.is_some())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// A view's runtime, for point reads without SQL planning.
    pub fn view(&self, name: &str) -> Option<Arc<ViewRuntime>> {
        self.relations.read().get(name).and_then(|r| r.view.clone())
    }

    /// Every materialized view, by name.
    pub fn views(&self) -> Vec<(String, Arc<ViewRuntime>)> {
        self.relations
            .read()
            .iter()
            .filter_map(|(n, r)| r.view.clone().map(|v| (n.clone(), v)))
            .collect()
    }

    /// One snapshot of every source's, view's and sink's counters: what `weir.*`,
    /// `/metrics` and `/ready` report.
    pub fn counters(&self) -> weir_engine::serving::counters::Counters {
        weir_engine::serving::counters::Counters::capture(&self.engine, &self.views())
    }

    /// Stops all pipelines.
    pub fn shutdown(&self) {
        self.engine.shutdown();
    }
}

fn collect_dependents(catalog: &Catalog, name: &str, out: &mut Vec<String>) {
    for d in catalog.dependents(name) {
        if !out.contains(&d) {
            out.push(d.clone());
            collect_dependents(catalog, &d, out);
        }
    }
}

/// Archives the system logs every few seconds while the database lives.
async fn archive_loop(db: std::sync::Weak<Database>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let Some(db) = db.upgrade() else {
            return;
        };
        let result = tokio::task::spawn_blocking(move || db.archive_system_logs()).await;
        if let Ok(Err(e)) = result {
            tracing::warn!(error = %e, "cannot archive dead letters and late events; retrying");
        }
    }
}
