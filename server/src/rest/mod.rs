//! The REST API on `--http-addr` (axum): hot-aggregate point reads (`/kpi`), time series
//! (`/series`), alerts (`/alerts`), health and readiness, and SQL over HTTP (`/sql`).
//!
//! Point reads never plan SQL: they resolve the view, look the key up in the view's index
//! (closed windows) and scan its cached snapshot of open windows. Bad parameters are 400s
//! with a JSON body naming the parameter; an unknown view or key is a 404.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use datafusion::arrow::array::{Array, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{and, filter_record_batch};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use serde_json::{json, Map, Value};
use weir_engine::aggregate::timestamps_ns;
use weir_engine::view::ViewRuntime;
use weir_engine::window::WindowKind;
use weir_sql::{Database, Outcome, Session};

use crate::metrics::ServerMetrics;

pub mod auth;
mod openapi;
mod origin;

/// Most rows one `/series` page returns.
const MAX_LIMIT: usize = 10_000;

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
    let mut reasons = Vec::new();
    for s in db.engine().sources() {
        let status = s.stats.status.lock().clone();
        if status.starts_with("error") || status.starts_with("disconnected") {
            reasons.push(json!({ "source": s.name, "status": status }));
        }
        // A crash now would lose the work since the last checkpoint that was written.
        for p in db.engine().pipeline_stats(&s.name) {
            if let Some(e) = p.checkpoint_error.lock().clone() {
                reasons.push(
                    json!({ "source": s.name, "status": format!("checkpoints failing: {e}") }),
                );
            }
        }
    }
    for (name, view) in db.views() {
        if !view.stats.caught_up.load(Ordering::Acquire) {
            reasons.push(json!({ "view": name, "status": "catching up with its source" }));
        }
    }
    for (_, sink) in db.engine().sinks() {
        if !sink.is_healthy() {
            reasons.push(json!({
                "sink": sink.name(),
                "status": sink.stats.status(),
                "backlog": sink.backlog(),
            }));
        }
    }
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

/// `GET /kpi?source=web&window=1m`: the most recent window the view shows for the key.
async fn kpi(
    State(db): State<Arc<Database>>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    let (name, view) = resolve_view(&db, &params)?;
    let closed = flag(&params, "closed")?;
    let filters = key_filters(&view, &params, &["view", "window", "closed"])?;
    let rows = read(&view, &filters, !closed)?;
    let ws = window_start_column(&view, &name)?;
    let mut best: Option<(i64, &RecordBatch, usize)> = None;
    for b in &rows {
        let starts = timestamps_ns(b.column(ws)).map_err(ApiError::internal)?;
        for i in 0..b.num_rows() {
            if starts.is_valid(i) && best.is_none_or(|(t, _, _)| starts.value(i) > t) {
                best = Some((starts.value(i), b, i));
            }
        }
    }
    let Some((_, batch, row)) = best else {
        return Err(ApiError::not_found(format!(
            "no window in {name} for {}",
            describe(&filters)
        )));
    };
    let mut object = row_objects(&batch.slice(row, 1))?.pop().unwrap_or_default();
    object.insert("view".into(), json!(name));
    if let Some(kind) = view.window() {
        object.insert("window".into(), json!(window_label(kind.size())));
    }
    Ok(Json(Value::Object(object)))
}

/// `GET /series?source=web&from=…&to=…`: windows in `[from, to)` by window start, in pages.
async fn series(
    State(db): State<Arc<Database>>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    let (name, view) = resolve_view(&db, &params)?;
    let from = params
        .get("from")
        .map(|v| parse_time("from", v))
        .transpose()?
        .unwrap_or(i64::MIN);
    let to = params
        .get("to")
        .map(|v| parse_time("to", v))
        .transpose()?
        .unwrap_or(i64::MAX);
    if to <= from {
        return Err(ApiError::bad(
            "to",
            "to must be after from: windows are those with from <= window_start < to",
        ));
    }
    let limit = parse_limit(&params)?;
    let cursor = params.get("cursor").map(|c| parse_cursor(c)).transpose()?;
    let closed = flag(&params, "closed")?;
    let filters = key_filters(
        &view,
        &params,
        &["view", "window", "from", "to", "limit", "cursor", "closed"],
    )?;
    let ws = window_start_column(&view, &name)?;
    let mut rows: Vec<(i64, String, Map<String, Value>)> = Vec::new();
    let (memory, history) = read_all(&view, &filters, !closed)?;
    // History files whose newest row was emitted before `from` hold no window starting at
    // or after it (a window is emitted after its end).
    let cold = match history {
        Some((root, files)) => {
            let files: Vec<_> = files
                .into_iter()
                .filter(|f| f.max_emitted_wm >= from)
                .collect();
            let filters = filters.clone();
            tokio::task::spawn_blocking(move || -> Result<Vec<RecordBatch>, ApiError> {
                let mut out = Vec::new();
                for f in &files {
                    let batches = weir_engine::history::read_file(&root, &f.path)
                        .map_err(ApiError::internal)?;
                    out.extend(keep_matching(batches, &filters)?);
                }
                Ok(out)
            })
            .await
            .map_err(ApiError::internal)??
        }
        None => Vec::new(),
    };
    for b in cold.into_iter().chain(memory) {
        let starts = timestamps_ns(b.column(ws)).map_err(ApiError::internal)?;
        for (i, object) in row_objects(&b)?.into_iter().enumerate() {
            let t = starts.value(i);
            if starts.is_valid(i) && t >= from && t < to {
                let order = Value::Object(object.clone()).to_string();
                rows.push((t, order, object));
            }
        }
    }
    rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let start = match cursor {
        None => 0,
        Some((t, skip)) => rows.partition_point(|r| r.0 < t) + skip,
    };
    let start = start.min(rows.len());
    let end = (start + limit).min(rows.len());
    let page = &rows[start..end];
    // The cursor names the last window start returned and how many rows with that start
    // have been returned, so a page boundary inside one window start resumes exactly.
    let next = (end < rows.len()).then(|| {
        let t = rows[end - 1].0;
        format!("{t}.{}", end - rows.partition_point(|r| r.0 < t))
    });
    Ok(Json(json!({
        "view": name,
        "rows": page.iter().map(|r| Value::Object(r.2.clone())).collect::<Vec<_>>(),
        "next_cursor": next,
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
    for key in params.keys() {
        if !matches!(key.as_str(), "since" | "name" | "severity" | "limit") {
            return Err(ApiError::bad(key, format!("unknown parameter '{key}'")));
        }
    }
    let since = params
        .get("since")
        .map(|v| parse_time("since", v))
        .transpose()?
        .unwrap_or(i64::MIN);
    let limit = parse_limit(&params)?;
    if let Some(name) = params.get("name") {
        if db.view(name).is_none_or(|v| !v.is_alert()) {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                body: json!({ "error": format!("no alert rule named '{name}'"), "parameter": "name" }),
            });
        }
    }
    let mut rows: Vec<_> = db
        .alert_records()
        .into_iter()
        .filter(|(spec, r)| {
            r.event_time >= since
                && params.get("name").is_none_or(|n| n == &spec.name)
                && params
                    .get("severity")
                    .is_none_or(|s| s.eq_ignore_ascii_case(&spec.severity))
        })
        .collect();
    rows.sort_by(|a, b| (a.1.event_time, &a.1.alert_id).cmp(&(b.1.event_time, &b.1.alert_id)));
    let skip = rows.len().saturating_sub(limit);
    let time = |ns: i64| {
        chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(ns)
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    let out: Vec<Value> = rows[skip..]
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

/// The view named by `view=`, or the view whose window is `window=` (a tumbling window is
/// preferred over a hopping one, then the first by name).
fn resolve_view(
    db: &Database,
    params: &BTreeMap<String, String>,
) -> Result<(String, Arc<ViewRuntime>), ApiError> {
    if let Some(name) = params.get("view") {
        let view = db.view(name).ok_or_else(|| {
            ApiError::not_found(format!("materialized view \"{name}\" does not exist"))
        })?;
        if let Some(w) = params.get("window") {
            let size = parse_window(w)?;
            if view.window().map(|k| k.size()) != Some(size) {
                return Err(ApiError::bad(
                    "window",
                    format!("view {name} does not have {w} windows"),
                ));
            }
        }
        return Ok((name.clone(), view));
    }
    let Some(w) = params.get("window") else {
        return Err(ApiError::bad(
            "window",
            "name a window (window=1m) or a view (view=kpi_1m)",
        ));
    };
    let size = parse_window(w)?;
    let mut candidates: Vec<(bool, String, Arc<ViewRuntime>)> = db
        .views()
        .into_iter()
        // An alert rule that aggregates has windows too, but its rows are alerts.
        .filter(|(_, v)| !v.is_alert())
        .filter_map(|(n, v)| {
            let kind = v.window()?;
            (kind.size() == size).then_some((matches!(kind, WindowKind::Hop { .. }), n, v))
        })
        .collect();
    candidates.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    candidates
        .into_iter()
        .next()
        .map(|(_, n, v)| (n, v))
        .ok_or_else(|| ApiError::not_found(format!("no materialized view has {w} windows")))
}

fn parse_window(w: &str) -> Result<i64, ApiError> {
    weir_connectors::options::parse_duration(w)
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .filter(|ns| *ns > 0)
        .ok_or_else(|| {
            ApiError::bad(
                "window",
                format!("'{w}' is not a duration such as 1m or 10s"),
            )
        })
}

/// `60_000_000_000` → `1m`.
fn window_label(ns: i64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        _ if ns % 1_000_000_000 != 0 => format!("{}ms", ns / 1_000_000),
        _ if s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ if s % 3_600 == 0 => format!("{}h", s / 3_600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// RFC 3339 or epoch milliseconds, as nanoseconds.
fn parse_time(parameter: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = v.parse::<i64>() {
        return ms
            .checked_mul(1_000_000)
            .ok_or_else(|| ApiError::bad(parameter, "out of range"));
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| {
            ApiError::bad(
                parameter,
                format!("'{v}' is not an RFC 3339 time or epoch milliseconds"),
            )
        })
}

/// `limit=`: 1 to [`MAX_LIMIT`], default 1000.
fn parse_limit(params: &BTreeMap<String, String>) -> Result<usize, ApiError> {
    match params.get("limit") {
        None => Ok(1_000),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::bad(
                "limit",
                format!("limit must be a number from 1 to {MAX_LIMIT}"),
            )),
        },
    }
}

fn parse_cursor(c: &str) -> Result<(i64, usize), ApiError> {
    let (t, n) = c
        .split_once('.')
        .ok_or_else(|| ApiError::bad("cursor", "not a cursor from next_cursor"))?;
    match (t.parse(), n.parse()) {
        (Ok(t), Ok(n)) => Ok((t, n)),
        _ => Err(ApiError::bad("cursor", "not a cursor from next_cursor")),
    }
}

fn flag(params: &BTreeMap<String, String>, name: &str) -> Result<bool, ApiError> {
    match params.get(name).map(|v| v.to_lowercase()) {
        None => Ok(false),
        Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Ok(false),
        Some(v) => Err(ApiError::bad(name, format!("'{v}' is not true or false"))),
    }
}

/// Every parameter that is not one of `reserved` must be a column of the view; its value,
/// cast to the column's type, filters the rows.
fn key_filters(
    view: &ViewRuntime,
    params: &BTreeMap<String, String>,
    reserved: &[&str],
) -> Result<Vec<(usize, String, ScalarValue)>, ApiError> {
    let schema = view.schema();
    let mut out = Vec::new();
    for (k, v) in params {
        if reserved.contains(&k.as_str()) {
            continue;
        }
        let Ok(col) = schema.index_of(k) else {
            return Err(ApiError::bad(
                k,
                format!(
                    "unknown parameter '{k}': filter on a column of {} ({})",
                    view.name(),
                    schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        let data_type = schema.field(col).data_type();
        let value = match data_type {
            DataType::Timestamp(_, _) => {
                ScalarValue::TimestampNanosecond(Some(parse_time(k, v)?), None).cast_to(data_type)
            }
            _ => ScalarValue::try_from_string(v.clone(), data_type),
        }
        .map_err(|_| ApiError::bad(k, format!("'{v}' is not a valid {data_type} for {k}")))?;
        out.push((col, k.clone(), value));
    }
    Ok(out)
}

fn describe(filters: &[(usize, String, ScalarValue)]) -> String {
    if filters.is_empty() {
        return "any key".into();
    }
    filters
        .iter()
        .map(|(_, k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The view's rows matching every filter, looked up through the index of the first
/// indexed filter column.
fn read(
    view: &ViewRuntime,
    filters: &[(usize, String, ScalarValue)],
    include_open: bool,
) -> Result<Vec<RecordBatch>, ApiError> {
    read_all(view, filters, include_open).map(|(rows, _)| rows)
}

/// Like [`read`], with the view's history files (read at the same instant: each row is in
/// memory or in a file, never both).
fn read_all(
    view: &ViewRuntime,
    filters: &[(usize, String, ScalarValue)],
    include_open: bool,
) -> Result<(Vec<RecordBatch>, Option<weir_engine::history::HistoryFiles>), ApiError> {
    let lookup = filters
        .iter()
        .find(|(c, _, _)| view.key_columns().contains(c))
        .map(|(c, _, v)| (*c, v));
    let (batches, history) = view
        .read(lookup, include_open)
        .map_err(ApiError::internal)?;
    Ok((keep_matching(batches, filters)?, history))
}

/// The rows of `batches` whose columns equal every filter's value.
fn keep_matching(
    batches: Vec<RecordBatch>,
    filters: &[(usize, String, ScalarValue)],
) -> Result<Vec<RecordBatch>, ApiError> {
    batches
        .into_iter()
        .map(|b| {
            let mut mask: Option<BooleanArray> = None;
            for (col, _, value) in filters {
                let scalar = value.to_scalar().map_err(ApiError::internal)?;
                let eq = datafusion::arrow::compute::kernels::cmp::eq(b.column(*col), &scalar)
                    .map_err(ApiError::internal)?;
                mask = Some(match mask {
                    None => eq,
                    Some(m) => and(&m, &eq).map_err(ApiError::internal)?,
                });
            }
            match mask {
                None => Ok(b),
                Some(m) => filter_record_batch(&b, &m).map_err(ApiError::internal),
            }
        })
        .collect()
}

fn window_start_column(view: &ViewRuntime, name: &str) -> Result<usize, ApiError> {
    view.schema().index_of("window_start").map_err(|_| {
        ApiError::bad(
            "view",
            format!("view {name} has no window_start column to order windows by"),
        )
    })
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
