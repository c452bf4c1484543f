//! Simple and extended query handlers over a [`Database`].

use std::sync::Arc;

use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, into_pg_type};
use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use futures::Sink;
use parking_lot::Mutex;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type, METADATA_USER};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::types::format::FormatOptions;
use weir_sql::dialect::{split_statements, WeirStatement};
use weir_sql::{Database, Outcome, Prepared, Session, SqlError};

use super::limits::{CancelRegistry, Limits};
use crate::metrics::ServerMetrics;

/// A prepared statement as the extended protocol keeps it.
#[derive(Debug, Clone)]
pub struct PgStatement {
    prepared: Option<Prepared>,
    schema: Option<SchemaRef>,
    params: Vec<Option<DataType>>,
}

/// The handlers of one client connection.
pub struct ConnectionHandlers {
    inner: Arc<Handler>,
    /// Every connection's cancel counter, by the pid and secret key it was given.
    connections: Arc<CancelRegistry>,
    /// Failed logins by client address (shared by all connections).
    failures: Arc<super::auth::LoginFailures>,
    /// Refuse clients that do not use TLS.
    require_tls: bool,
}

impl ConnectionHandlers {
    /// Handlers for a new connection to `db`, counting statements in `metrics`; the
    /// connection registers in `connections` so CancelRequests find it.
    pub fn new(
        db: Arc<Database>,
        metrics: ServerMetrics,
        connections: Arc<CancelRegistry>,
        failures: Arc<super::auth::LoginFailures>,
        require_tls: bool,
    ) -> Self {
        Self {
            connections,
            failures,
            require_tls,
            inner: {
                let session = Arc::new(Mutex::new(Session::default()));
                Arc::new(Handler {
                    parser: Arc::new(StatementParser {
                        db: db.clone(),
                        session: session.clone(),
                    }),
                    db,
                    session,
                    metrics,
                    copy: Mutex::new(None),
                })
            },
        }
    }
}

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.inner.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.inner.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(super::auth::Startup::new(
            self.inner.db.clone(),
            TrustStartup {
                connections: self.connections.clone(),
            },
            self.failures.clone(),
            self.require_tls,
        ))
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.connections.clone()
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        self.inner.clone()
    }
}

/// Trust authentication (the default on loopback, like PostgreSQL's `trust`); registers
/// the connection for CancelRequests.
pub(super) struct TrustStartup {
    connections: Arc<CancelRegistry>,
}

impl TrustStartup {
    /// Registers an authenticated connection for CancelRequests.
    pub(super) fn register<C: ClientInfo>(&self, client: &C) {
        self.connections.register(client);
    }
}

#[async_trait]
impl NoopStartupHandler for TrustStartup {
    async fn post_startup<C>(
        &self,
        client: &mut C,
        _message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.connections.register(client);
        Ok(())
    }
}

pub(super) struct Handler {
    pub(super) db: Arc<Database>,
    session: Arc<Mutex<Session>>,
    parser: Arc<StatementParser>,
    metrics: ServerMetrics,
    /// The `COPY … FROM STDIN` in progress, collecting the client's data.
    pub(super) copy: Mutex<Option<super::copy::CopyIn>>,
}

/// A bounded label for a statement: `query`, `create`, `drop`, `show`, `set`,
/// `transaction` or `other`.
pub fn statement_kind(p: &Prepared) -> &'static str {
    match p {
        Prepared::Query { .. } => "query",
        Prepared::Modify { .. } => "modify",
        Prepared::Statement(s) => match s {
            WeirStatement::Query(_) => "query",
            WeirStatement::CreateSource(_)
            | WeirStatement::CreateView(_)
            | WeirStatement::CreateSink(_)
            | WeirStatement::CreateAlert(_)
            | WeirStatement::CreateTable(_) => "create",
            WeirStatement::CopyFrom(_) | WeirStatement::Truncate(_) => "modify",
            WeirStatement::Drop { .. } => "drop",
            WeirStatement::Show(_) => "show",
            WeirStatement::Set { .. } | WeirStatement::Reset(_) => "set",
            WeirStatement::Begin | WeirStatement::Commit | WeirStatement::Rollback => "transaction",
            _ => "other",
        },
    }
}

/// Parses and describes statements for the extended protocol.
pub(super) struct StatementParser {
    db: Arc<Database>,
    session: Arc<Mutex<Session>>,
}

/// A statement's error as pgwire reports it.
pub(super) fn user_error(e: SqlError) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        e.sqlstate().to_string(),
        e.to_string(),
    )))
}

fn error_response(e: SqlError) -> Response {
    Response::Error(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        e.sqlstate().to_string(),
        e.to_string(),
    )))
}

impl Handler {
    async fn outcome_to_response(
        &self,
        outcome: Outcome,
        format: &Format,
        options: Arc<FormatOptions>,
        limits: Limits,
    ) -> PgWireResult<Response> {
        Ok(match outcome {
            Outcome::Empty => Response::EmptyQuery,
            Outcome::Command(tag) => match tag.as_str() {
                "BEGIN" => Response::TransactionStart(Tag::new("BEGIN")),
                "COMMIT" | "ROLLBACK" => Response::TransactionEnd(Tag::new(&tag)),
                _ => Response::Execution(Tag::new(&tag)),
            },
            Outcome::Rows(df) => {
                Response::Query(super::encode::encode_dataframe(df, format, options, limits).await?)
            }
            Outcome::CopyIn(target) => {
                let width = target.width();
                *self.copy.lock() = Some(super::copy::CopyIn::new(target));
                Response::CopyIn(pgwire::api::results::CopyResponse::new(
                    0,
                    width,
                    futures::stream::empty::<PgWireResult<pgwire::messages::copy::CopyData>>(),
                ))
            }
        })
    }

    /// Runs one statement under `limits` for `user`; in a `failed` transaction only its end
    /// runs. Its NOTICE messages go to `notices`.
    async fn run_one(
        &self,
        sql: &str,
        limits: &Limits,
        failed: bool,
        user: Option<&str>,
        notices: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> Result<Outcome, SqlError> {
        let started = std::time::Instant::now();
        let mut session = self.session.lock().clone();
        if let Some(to) = notices {
            session.send_notices(to);
        }
        let prepared = match limits.within(self.db.prepare(sql)).await {
            Ok(p) => p,
            Err(e) => {
                self.metrics
                    .observe_statement("invalid", false, started.elapsed());
                return Err(e);
            }
        };
        if let Err(e) = super::auth::authorize(&self.db, user, &prepared) {
            self.metrics
                .observe_statement(statement_kind(&prepared), false, started.elapsed());
            return Err(e);
        }
        if let Some(refused) = super::transaction::in_failed(failed, &prepared) {
            self.metrics.observe_statement(
                statement_kind(&prepared),
                refused.is_ok(),
                started.elapsed(),
            );
            return refused;
        }
        let outcome = limits
            .within(self.db.execute(&mut session, &prepared, None))
            .await;
        self.metrics.observe_statement(
            statement_kind(&prepared),
            outcome.is_ok(),
            started.elapsed(),
        );
        if matches!(
            prepared,
            Prepared::Statement(WeirStatement::Set { .. } | WeirStatement::Reset(_))
        ) {
            *self.session.lock() = session;
        }
        outcome
    }
}

/// Sends one NOTICE (SQLSTATE 00000) to the client.
async fn send_notice<C>(client: &mut C, message: String) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    use futures::SinkExt;
    let info = ErrorInfo::new("NOTICE".into(), "00000".into(), message);
    client
        .send(PgWireBackendMessage::NoticeResponse(info.into()))
        .await?;
    Ok(())
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let started = std::time::Instant::now();
        let statements = split_statements(query).map_err(user_error)?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let mut responses = Vec::with_capacity(statements.len());
        let mut status = client.transaction_status();
        for sql in statements {
            let session = self.session.lock().clone();
            let limits = Limits::start(client, &session);
            let failed = status == TransactionStatus::Error;
            let user = client.metadata().get(METADATA_USER).cloned();
            let (to_client, mut notices) = tokio::sync::mpsc::unbounded_channel();
            let result = {
                let run = self.run_one(&sql, &limits, failed, user.as_deref(), Some(to_client));
                tokio::pin!(run);
                // NOTICEs (a backfill's progress) reach the client while the statement runs.
                loop {
                    tokio::select! {
                        result = &mut run => break result,
                        Some(message) = notices.recv() => send_notice(client, message).await?,
                    }
                }
            };
            while let Ok(message) = notices.try_recv() {
                send_notice(client, message).await?;
            }
            match result {
                Ok(outcome) => {
                    status = super::transaction::after(status, &outcome);
                    responses.push(
                        self.outcome_to_response(
                            outcome,
                            &Format::UnifiedText,
                            options.clone(),
                            limits,
                        )
                        .await?,
                    )
                }
                Err(e) => {
                    tracing::debug!(sqlstate = e.sqlstate(), error = %e, "statement failed");
                    // PostgreSQL stops a multi-statement query at its first error.
                    responses.push(error_response(e));
                    break;
                }
            }
        }
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            "simple query"
        );
        Ok(responses)
    }
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = split_statements(sql).map_err(user_error)?;
        statements.retain(|s| !s.trim().is_empty());
        if statements.len() > 1 {
            return Err(user_error(SqlError::Syntax(
                "cannot insert multiple commands into a prepared statement".into(),
            )));
        }
        let Some(sql) = statements.pop() else {
            return Ok(None);
        };
        let prepared = self.db.prepare(&sql).await.map_err(user_error)?;
        let session = self.session.lock().clone();
        let schema = self
            .db
            .describe(&session, &prepared)
            .await
            .map_err(user_error)?;
        let params = match &prepared {
            Prepared::Query { plan } | Prepared::Modify { plan, .. } => {
                let types = plan
                    .get_parameter_types()
                    .map_err(|e| user_error(e.into()))?;
                let mut ordered: Vec<(usize, Option<DataType>)> = types
                    .into_iter()
                    .filter_map(|(k, v)| {
                        k.trim_start_matches('$')
                            .parse::<usize>()
                            .ok()
                            .map(|i| (i, v))
                    })
                    .collect();
                ordered.sort_by_key(|(i, _)| *i);
                let n = ordered.last().map(|(i, _)| *i).unwrap_or(0);
                let mut params = vec![None; n];
                for (i, t) in ordered {
                    params[i - 1] = t;
                }
                params
            }
            Prepared::Statement(_) => vec![],
        };
        Ok(Some(PgStatement {
            prepared: Some(prepared),
            schema,
            params,
        }))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        stmt.params
            .iter()
            .map(|t| match t {
                Some(t) => into_pg_type(t),
                None => Ok(Type::UNKNOWN),
            })
            .collect()
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.schema {
            Some(schema) => arrow_schema_to_pg_fields(
                &super::encode::pg_named(schema),
                column_format.unwrap_or(&Format::UnifiedText),
                None,
            ),
            None => Ok(vec![]),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = PgStatement;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let started = std::time::Instant::now();
        let stmt = &portal.statement.statement;
        let Some(prepared) = &stmt.prepared else {
            return Ok(Response::EmptyQuery);
        };
        let params = if stmt.params.is_empty() {
            None
        } else {
            let types: Vec<Option<&DataType>> = stmt.params.iter().map(|t| t.as_ref()).collect();
            Some(deserialize_parameters(portal, &types)?)
        };
        let mut session = self.session.lock().clone();
        let limits = Limits::start(client, &session);
        let failed = client.transaction_status() == TransactionStatus::Error;
        let user = client.metadata().get(METADATA_USER).cloned();
        let outcome = match super::auth::authorize(&self.db, user.as_deref(), prepared)
            .err()
            .map(Err)
            .or_else(|| super::transaction::in_failed(failed, prepared))
        {
            Some(refused) => refused,
            None => {
                limits
                    .within(self.db.execute(&mut session, prepared, params))
                    .await
            }
        };
        if matches!(
            prepared,
            Prepared::Statement(WeirStatement::Set { .. } | WeirStatement::Reset(_))
        ) {
            *self.session.lock() = session;
        }
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let kind = statement_kind(prepared);
        let response = match outcome {
            Ok(o) => {
                let r = self
                    .outcome_to_response(o, &portal.result_column_format, options, limits)
                    .await;
                self.metrics
                    .observe_statement(kind, r.is_ok(), started.elapsed());
                r?
            }
            Err(e) => {
                self.metrics
                    .observe_statement(kind, false, started.elapsed());
                return Err(user_error(e));
            }
        };
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            "extended query"
        );
        Ok(response)
    }
}
