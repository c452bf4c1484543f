//! The REST API on `--http-addr` (axum): hot-aggregate point reads (`/kpi`), time series
//! (`/series`), alerts (`/alerts`), health and readiness, and SQL over HTTP (`/sql`).
//!
//! What a read means — which view answers, what the parameters say, which rows and in what
//! order — is [`weir_sql::serving`]; this module wires HTTP to it and encodes the answers as
//! JSON. Bad parameters are 400s with a JSON body naming the parameter; an unknown view or
//! key is a 404.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use datafusion::arrow::array::RecordBatch;
use serde_json::{json, Map, Value};
use weir_sql::serving::{self, NotReady, ServingError};
use weir_sql::{Database, Outcome, Session};

use crate::metrics::ServerMetrics;

pub mod auth;
mod openapi;
mod origin;

/// The API's routes over `db`, with metrics of their own.
pub fn router(db: Arc<Database>) -> Router {
    router_with(db, ServerMetrics::default())
}

/// The API's routes over `db`; `/metrics` includes `metrics` (shared with pgwire).
pub fn router_with(db: Arc<Database>, metrics: ServerMetrics) -> Router {
    router_secured(db, metrics, None)
}

/// Like [`router_with`]; with `tokens`, routes need a bearer token of the right scope.
pub fn router_secured(
    db: Arc<Database>,
    metrics: ServerMetrics,
    tokens: Option<Arc<auth::Tokens>>,
) -> Router {
    let scrape = {
        let metrics = metrics.clone();
        move |State(db): State<Arc<Database>>| async move {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                crate::metrics::render(&db, &metrics),
            )
        }
    };
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/kpi", get(kpi))
        .route("/series", get(series))
        .route("/alerts", get(alerts))
        .route("/subscribe", get(subscribe))
        .route("/sql", post(sql))
        .route("/ingest/{source}", post(ingest))
        .route("/metrics", get(scrape))
        .route("/openapi.json", get(|| async { Json(openapi::spec()) }))
        .route(
            "/docs",
            get(|| async { axum::response::Html(include_str!("docs.html")) }),
        )
        .route_layer(axum::middleware::from_fn(origin::same_origin_writes))
        .route_layer(axum::middleware::from_fn_with_state(tokens, auth::require))
        .route_layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::track,
        ))
        .with_state(db)
}

/// An error response: status and a JSON body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn bad(parameter: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "error": message.into(), "parameter": parameter }),
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            body: json!({ "error": message.into() }),
        }
    }

    fn internal(message: impl std::fmt::Display) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: json!({ "error": message.to_string() }),
        }
    }
}

/// A refused read: 404, 400 or 500 with the same body as the errors above.
impl From<ServingError> for ApiError {
    fn from(e: ServingError) -> Self {
        let status = match &e {
            ServingError::NotFound { .. } => StatusCode::NOT_FOUND,
            ServingError::BadParameter { .. } => StatusCode::BAD_REQUEST,
            ServingError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = match e.parameter() {
            Some(parameter) => json!({ "error": e.to_string(), "parameter": parameter }),
            None => json!({ "error": e.to_string() }),
        };
        Self { status, body }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

type Params = Query<BTreeMap<String, String>>;

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 when every source is reachable and every view has caught up; 503 with the reasons
/// otherwise.
async fn ready(State(db): State<Arc<Database>>) -> Response {
    let reasons: Vec<Value> = serving::not_ready(&db).iter().map(reason_json).collect();
    if reasons.is_empty() {
        (StatusCode::OK, Json(json!({ "ready": true }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reasons": reasons })),
        )
            .into_response()
    }
}

/// One `/ready` reason: what is not ready (`source`, `view` or `sink`) and its status.
fn reason_json(reason: &NotReady) -> Value {
    let status = reason.status();
    match reason {
        NotReady::Source { source, .. } | NotReady::CheckpointsFailing { source, .. } => {
            json!({ "source": source, "status": status })
        }
        NotReady::CatchingUp { view } => json!({ "view": view, "status": status }),
        NotReady::Sink { sink, backlog, .. } => {
            json!({ "sink": sink, "status": status, "backlog": backlog })
        }
    }
}

/// `GET /subscribe?view=kpi_1m[&source=web][&snapshot=true][&limit=n]`: the view's rows as
/// server-sent events — with `snapshot=true` first the rows it holds now (`event: snapshot`),
/// then every row it emits (`event: row`), each a JSON object like `/kpi`'s; with `limit`,
/// the stream ends after `n` of them. A client that
/// falls more than `SUBSCRIBER_BACKLOG` batches behind gets `event: lagged` and the stream
/// ends; one whose view is dropped gets `event: end`.
async fn subscribe(
    State(db): State<Arc<Database>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;

    let subscription = serving::subscribe(&db, &params)?;
    let events = |kind: &'static str, batches: &[RecordBatch]| -> Result<Vec<Event>, ApiError> {
        let mut out = Vec::new();
        for b in batches {
            for object in row_objects(b)? {
                out.push(
                    Event::default()
                        .event(kind)
                        .data(Value::Object(object).to_string()),
                );
            }
        }
        Ok(out)
    };
    let pending: std::collections::VecDeque<Event> =
        events("snapshot", &subscription.snapshot)?.into();
    // Rows still to send (`limit=`).
    let left = subscription.limit.unwrap_or(usize::MAX);
    let state = (subscription, pending, false, left);
    let stream = futures::stream::unfold(
        state,
        move |(mut sub, mut pending, mut done, left)| async move {
            loop {
                if left == 0 {
                    return None;
                }
                if let Some(event) = pending.pop_front() {
                    return Some((
                        Ok::<_, std::convert::Infallible>(event),
                        (sub, pending, done, left - 1),
                    ));
                }
                if done {
                    return None;
                }
                match sub.changes.recv().await {
                    Ok(emitted) => match sub.matching(&emitted).map_err(ApiError::from) {
                        Ok(rows) => match events("row", &rows) {
                            Ok(rows) => pending.extend(rows),
                            Err(e) => {
                                pending.push_back(
                                    Event::default().event("error").data(e.body.to_string()),
                                );
                                done = true;
                            }
                        },
                        Err(e) => {
                            pending.push_back(
                                Event::default().event("error").data(e.body.to_string()),
                            );
                            done = true;
                        }
                    },
                    Err(RecvError::Lagged(skipped)) => {
                        pending.push_back(Event::default().event("lagged").data(format!(
                        "{skipped} batches of rows were skipped because this client read too slowly; subscribe again (with snapshot=true) to catch up"
                    )));
                        done = true;
                    }
                    Err(RecvError::Closed) => {
                        pending.push_back(
                            Event::default()
                                .event("end")
                                .data(format!("materialized view \"{}\" was dropped", sub.view)),
                        );
                        done = true;
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `GET /kpi?source=web&window=1m`: the most recent window the view shows for the key.
async fn kpi(
    State(db): State<Arc<Database>>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    let kpi = serving::kpi(&db, &params)?;
    let mut object = row_objects(&kpi.row)?.pop().unwrap_or_default();
    object.insert("view".into(), json!(kpi.view));
    if let Some(kind) = kpi.window {
        object.insert("window".into(), json!(serving::window_label(kind.size())));
    }
    if let Some(partitions) = kpi.partitions {
        // One of several replicas: it answers for the partitions it reads.
        object.insert("partitions".into(), json!(partitions));
    }
    Ok(Json(Value::Object(object)))
}

/// `GET /series?source=web&from=…&to=…`: windows in `[from, to)` by window start, in pages.
async fn series(
    State(db): State<Arc<Database>>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    let query = serving::SeriesQuery::parse(&db, &params)?;
    let (memory, history) = query.read_memory()?;
    // History files are read on a blocking thread.
    let cold = match history {
        Some(history) => {
            let (from, filters) = (query.from, query.filters.clone());
            tokio::task::spawn_blocking(move || serving::read_history(history, from, &filters))
                .await
                .map_err(ApiError::internal)??
        }
        None => Vec::new(),
    };
    // Rows of one window start are ordered by their JSON text, so pages are stable.
    let page = query.page(
        cold.into_iter().chain(memory),
        row_objects,
        |object: &Map<String, Value>| Value::Object(object.clone()).to_string(),
    )?;
    Ok(Json(json!({
        "view": query.name,
        "rows": page.rows.into_iter().map(Value::Object).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor.map(|c| c.to_string()),
    })))
}

/// 403 (SQLSTATE 42501) unless every statement of `text` only reads.
fn check_reads_only(text: &str) -> Result<(), ApiError> {
    let statements = weir_sql::dialect::split_statements(text).map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        body: json!({ "error": e.to_string(), "sqlstate": e.sqlstate() }),
    })?;
    for s in statements {
        let writes = match weir_sql::dialect::parse_statement(&s) {
            Ok(statement) => !statement.reads_only(),
            // Not parsed here: the database answers the syntax error.
            Err(_) => false,
        };
        if writes {
            return Err(ApiError {
                status: StatusCode::FORBIDDEN,
                body: json!({
                    "error": format!("permission denied: this token may only read (scope read); `{}` needs an admin token", s.trim()),
                    "sqlstate": "42501",
                }),
            });
        }
    }
    Ok(())
}

/// `GET /alerts?since=…[&name=…&severity=…&limit=…]`: alerts whose event time is at or
/// after `since`, oldest first (the newest `limit`, default 1000), as
/// `[{alert_id, name, severity, key, status, event_time, detected_at, resolved_at, repeats,
/// last_event_time, payload}]`.
async fn alerts(
    State(db): State<Arc<Database>>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    let time = |ns: i64| {
        chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(ns)
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    let out: Vec<Value> = serving::alerts(&db, &params)?
        .iter()
        .map(|(spec, r)| {
            json!({
                "alert_id": r.alert_id,
                "name": spec.name,
                "severity": spec.severity,
                "key": r.key,
                "status": if r.resolved_at.is_some() { "resolved" } else { "firing" },
                "event_time": time(r.event_time),
                "detected_at": time(r.detected_at),
                "resolved_at": r.resolved_at.map(time),
                "repeats": r.repeats,
                "last_event_time": time(r.last_event_time),
                "payload": serde_json::from_str::<Value>(&r.payload).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(Value::Array(out)))
}

/// `POST /sql`: one or more statements (the body, or `{"sql": "…"}`); the last statement's
/// rows as JSON objects, or its command tag. Errors carry the SQLSTATE.
async fn sql(
    State(db): State<Arc<Database>>,
    granted: Option<axum::Extension<auth::Granted>>,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let text = match serde_json::from_str::<Value>(&body) {
        Ok(Value::Object(o)) => match o.get("sql") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(ApiError::bad("sql", "expected {\"sql\": \"<statements>\"}")),
        },
        _ => body,
    };
    // A token without `admin` runs only statements that read.
    if let Some(axum::Extension(granted)) = &granted {
        if !granted.allows(auth::Scope::Admin) {
            check_reads_only(&text)?;
        }
    }
    let mut session = Session::default();
    let outcomes = db.run(&mut session, &text).await.map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        body: json!({ "error": e.to_string(), "sqlstate": e.sqlstate() }),
    })?;
    match outcomes.into_iter().last() {
        None | Some(Outcome::Empty) => Ok(Json(json!({ "command": "" }))),
        Some(Outcome::Command(tag)) => Ok(Json(json!({ "command": tag }))),
        Some(Outcome::CopyIn(_)) => Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({
                "error": "COPY … FROM STDIN needs the PostgreSQL protocol (psql's \\copy); over HTTP, add rows with INSERT",
                "sqlstate": "0A000",
            }),
        }),
        Some(Outcome::Rows(df)) => {
            let columns: Vec<String> = df
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            let batches = df.collect().await.map_err(|e| {
                let e = weir_sql::SqlError::from(e);
                ApiError {
                    status: StatusCode::BAD_REQUEST,
                    body: json!({ "error": e.to_string(), "sqlstate": e.sqlstate() }),
                }
            })?;
            let mut rows = Vec::new();
            for b in &batches {
                rows.extend(row_objects(b)?.into_iter().map(Value::Object));
            }
            Ok(Json(json!({ "columns": columns, "rows": rows })))
        }
    }
}

/// The largest request body the API reads (axum's default limit, stated).
pub const MAX_BODY_BYTES: usize = 2 << 20;

/// A body that could not be read (too large, not UTF-8 …) as a JSON error with its status.
fn body_error(rejection: impl IntoResponse + std::fmt::Display) -> ApiError {
    let message = rejection.to_string();
    let status = rejection.into_response().status();
    let error = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("the request body is larger than {MAX_BODY_BYTES} bytes; send it in parts")
    } else {
        message
    };
    ApiError {
        status,
        body: json!({ "error": error, "parameter": "body" }),
    }
}

/// `POST /ingest/{source}`: JSON lines or a JSON array of events for a source declared with
/// `connector = 'http'`. Answered once the events are durable (fsynced to the source's log).
async fn ingest(
    State(db): State<Arc<Database>>,
    axum::extract::Path(source): axum::extract::Path<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let info = db
        .engine()
        .sources()
        .into_iter()
        .find(|s| s.name == source)
        .ok_or_else(|| ApiError::not_found(format!("source \"{source}\" does not exist")))?;
    if info.connector != "http" {
        return Err(ApiError::bad(
            "source",
            format!(
                "source {source} reads from its '{}' connector; POST /ingest takes events for sources with connector = 'http'",
                info.connector
            ),
        ));
    }
    let factory = db
        .engine()
        .registry()
        .get(&info.connector)
        .map_err(ApiError::internal)?;
    let spec = info.spec.clone();
    let accepted = tokio::task::spawn_blocking(move || factory.ingest(&spec, &body))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e {
            weir_engine::EngineError::InvalidOption { message, .. } => {
                ApiError::bad("body", message)
            }
            other => ApiError::internal(other),
        })?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": accepted }))).into_response())
}

/// Rows as JSON objects (timestamps as RFC 3339 text).
fn row_objects(batch: &RecordBatch) -> Result<Vec<Map<String, Value>>, ApiError> {
    let mut writer = datafusion::arrow::json::ArrayWriter::new(Vec::new());
    writer.write(batch).map_err(ApiError::internal)?;
    writer.finish().map_err(ApiError::internal)?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Map<String, Value>> =
        serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
    // Arrow's JSON writer leaves out nulls; a client expects every column.
    Ok(rows
        .into_iter()
        .map(|mut r| {
            for f in batch.schema().fields() {
                r.entry(f.name().clone()).or_insert(Value::Null);
            }
            r
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::FromRequest;

    /// A body over the limit is a JSON 413 that names the limit (not axum's text/plain).
    #[tokio::test]
    async fn an_oversized_body_is_a_json_413_naming_the_limit() {
        let request = axum::http::Request::builder()
            .method("POST")
            .uri("/ingest/pushed")
            .body(axum::body::Body::from(vec![b'x'; MAX_BODY_BYTES + 1]))
            .unwrap();
        let rejection = axum::body::Bytes::from_request(request, &())
            .await
            .unwrap_err();
        let e = body_error(rejection);
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(e.body["parameter"], "body");
        assert!(
            e.body["error"].as_str().unwrap().contains("2097152 bytes"),
            "{}",
            e.body
        );
    }
}
