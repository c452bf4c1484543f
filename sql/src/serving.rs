//! The read side of the REST API as plain functions over the [`Database`]: which view answers
//! a request, what its parameters mean, which rows it returns (`/kpi`, `/series`, `/alerts`,
//! `/subscribe`) and why the database is not ready (`/ready`).
//!
//! Parameters arrive as the query string's name → value map ([`Params`]) and leave as typed
//! values; rows stay Arrow batches and alerts engine records. The HTTP server routes requests
//! here and encodes the answers as JSON; a [`ServingError`] says whether the request named
//! something unknown, sent a bad parameter, or hit a bug. Nothing here plans SQL: a point
//! read looks the key up in the view's index (closed windows) and scans its cached snapshot
//! of open windows.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch};
use datafusion::arrow::compute::kernels::cmp;
use datafusion::arrow::compute::{and, filter_record_batch};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use weir_engine::connector::parse_duration;
use weir_engine::history::{read_file, HistoryFiles};
use weir_engine::operator::aggregate::timestamps_ns;
use weir_engine::operator::alert::{AlertRecord, AlertSpec};
use weir_engine::operator::window::WindowKind;
use weir_engine::pipeline::view::ViewRuntime;

use crate::database::Database;

/// A request's parameters: the query string, name → value.
pub type Params = BTreeMap<String, String>;

/// Most rows one `/series` page or `/alerts` answer returns.
pub const MAX_LIMIT: usize = 10_000;

/// Rows returned when a request names no `limit`.
pub const DEFAULT_LIMIT: usize = 1_000;

/// Why a read was refused. The message is the text the client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServingError {
    /// The request names a view, key or alert rule that does not exist (HTTP 404);
    /// `parameter` is the parameter that named it, when the answer says so.
    #[error("{message}")]
    NotFound {
        parameter: Option<String>,
        message: String,
    },
    /// A parameter's value is not usable (HTTP 400); the message says what to send.
    #[error("{message}")]
    BadParameter { parameter: String, message: String },
    /// Reading failed where it should not: a bug, or an unreadable history file (HTTP 500).
    #[error("{0}")]
    Internal(String),
}

impl ServingError {
    fn bad(parameter: &str, message: impl Into<String>) -> Self {
        Self::BadParameter {
            parameter: parameter.to_string(),
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound {
            parameter: None,
            message: message.into(),
        }
    }

    fn internal(e: impl fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }

    /// The request parameter the error is about, if the answer names one.
    pub fn parameter(&self) -> Option<&str> {
        match self {
            ServingError::NotFound { parameter, .. } => parameter.as_deref(),
            ServingError::BadParameter { parameter, .. } => Some(parameter),
            ServingError::Internal(_) => None,
        }
    }
}

/// A key parameter: rows are kept where column `column` equals `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyFilter {
    /// The column's index in the view's schema.
    pub column: usize,
    /// The column's (and the parameter's) name.
    pub name: String,
    /// The parameter's value, cast to the column's type.
    pub value: ScalarValue,
}

/// The view named by `view=`, or the view whose window is `window=` (a tumbling window is
/// preferred over a hopping one, then the first by name; alert rules are not candidates).
pub fn resolve_view(
    db: &Database,
    params: &Params,
) -> Result<(String, Arc<ViewRuntime>), ServingError> {
    if let Some(name) = params.get("view") {
        let view = db.view(name).ok_or_else(|| {
            ServingError::not_found(format!("materialized view \"{name}\" does not exist"))
        })?;
        if let Some(w) = params.get("window") {
            let size = parse_window(w)?;
            if view.window().map(|k| k.size()) != Some(size) {
                return Err(ServingError::bad(
                    "window",
                    format!("view {name} does not have {w} windows"),
                ));
            }
        }
        return Ok((name.clone(), view));
    }
    let Some(w) = params.get("window") else {
        return Err(ServingError::bad(
            "window",
            "name a window (window=1m) or a view (view=kpi_1m)",
        ));
    };
    let size = parse_window(w)?;
    let views = db
        .views()
        .into_iter()
        // An alert rule that aggregates has windows too, but its rows are alerts.
        .filter(|(_, v)| !v.is_alert())
        .map(|(n, v)| (n, v.window(), v));
    prefer_window(views, size)
        .ok_or_else(|| ServingError::not_found(format!("no materialized view has {w} windows")))
}

/// Of `views` (name, window kind, view), the one with windows of `size` ns: a tumbling window
/// before a hopping one, then the first by name.
fn prefer_window<T>(
    views: impl IntoIterator<Item = (String, Option<WindowKind>, T)>,
    size: i64,
) -> Option<(String, T)> {
    let mut candidates: Vec<(bool, String, T)> = views
        .into_iter()
        .filter_map(|(n, kind, v)| {
            // Session and cumulative windows have no one length to be named by.
            let hop = match kind? {
                WindowKind::Tumble { size: s } if s == size => false,
                WindowKind::Hop { size: s, .. } if s == size => true,
                _ => return None,
            };
            Some((hop, n, v))
        })
        .collect();
    candidates.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    candidates.into_iter().next().map(|(_, n, v)| (n, v))
}

/// `window=`: a duration such as `1m` or `10s`, as nanoseconds (more than zero).
pub fn parse_window(w: &str) -> Result<i64, ServingError> {
    parse_duration(w)
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .filter(|ns| *ns > 0)
        .ok_or_else(|| {
            ServingError::bad(
                "window",
                format!("'{w}' is not a duration such as 1m or 10s"),
            )
        })
}

/// A window size as the API shows it: `60_000_000_000` → `1m`.
pub fn window_label(ns: i64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        _ if ns % 1_000_000_000 != 0 => format!("{}ms", ns / 1_000_000),
        _ if s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ if s % 3_600 == 0 => format!("{}h", s / 3_600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// A time parameter: RFC 3339 or epoch milliseconds, as nanoseconds.
pub fn parse_time(parameter: &str, v: &str) -> Result<i64, ServingError> {
    if let Ok(ms) = v.parse::<i64>() {
        return ms
            .checked_mul(1_000_000)
            .ok_or_else(|| ServingError::bad(parameter, "out of range"));
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| {
            ServingError::bad(
                parameter,
                format!("'{v}' is not an RFC 3339 time or epoch milliseconds"),
            )
        })
}

/// `limit=`: 1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`].
pub fn parse_limit(params: &Params) -> Result<usize, ServingError> {
    match params.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ServingError::bad(
                "limit",
                format!("limit must be a number from 1 to {MAX_LIMIT}"),
            )),
        },
    }
}

/// Where a `/series` page resumes: after `returned` rows with window start `window_start`.
/// Written `<window_start>.<returned>`, so a page boundary inside one window start resumes
/// exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesCursor {
    /// The last window start returned.
    pub window_start: i64,
    /// How many rows with that window start have been returned.
    pub returned: usize,
}

impl fmt::Display for SeriesCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.window_start, self.returned)
    }
}

/// `cursor=`: a `next_cursor` of an earlier page.
pub fn parse_cursor(c: &str) -> Result<SeriesCursor, ServingError> {
    let bad = || ServingError::bad("cursor", "not a cursor from next_cursor");
    let (t, n) = c.split_once('.').ok_or_else(bad)?;
    match (t.parse(), n.parse()) {
        (Ok(window_start), Ok(returned)) => Ok(SeriesCursor {
            window_start,
            returned,
        }),
        _ => Err(bad()),
    }
}

/// A boolean parameter (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`); absent is false.
pub fn parse_flag(params: &Params, name: &str) -> Result<bool, ServingError> {
    match params.get(name) {
        None => Ok(false),
        Some(v) => crate::session::parse_bool(v).ok_or_else(|| {
            ServingError::bad(name, format!("'{}' is not true or false", v.to_lowercase()))
        }),
    }
}

/// Every parameter that is not one of `reserved` must be a column of the view; its value,
/// cast to the column's type, filters the rows.
pub fn key_filters(
    view: &ViewRuntime,
    params: &Params,
    reserved: &[&str],
) -> Result<Vec<KeyFilter>, ServingError> {
    let schema = view.schema();
    let mut out = Vec::new();
    for (k, v) in params {
        if reserved.contains(&k.as_str()) {
            continue;
        }
        let Ok(col) = schema.index_of(k) else {
            return Err(ServingError::bad(
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
        .map_err(|_| ServingError::bad(k, format!("'{v}' is not a valid {data_type} for {k}")))?;
        out.push(KeyFilter {
            column: col,
            name: k.clone(),
            value,
        });
    }
    Ok(out)
}

/// `source=web, region=eu`, or `any key`.
fn describe(filters: &[KeyFilter]) -> String {
    if filters.is_empty() {
        return "any key".into();
    }
    filters
        .iter()
        .map(|f| format!("{}={}", f.name, f.value))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The view's rows in memory matching every filter, looked up through the index of the first
/// indexed filter column (open windows too when `include_open`); and its history files, read
/// at the same instant: each row is in memory or in a file, never both.
pub fn read_rows(
    view: &ViewRuntime,
    filters: &[KeyFilter],
    include_open: bool,
) -> Result<(Vec<RecordBatch>, Option<HistoryFiles>), ServingError> {
    let lookup = filters
        .iter()
        .find(|f| view.key_columns().contains(&f.column))
        .map(|f| (f.column, &f.value));
    let (batches, history) = view
        .read(lookup, include_open)
        .map_err(ServingError::internal)?;
    Ok((keep_matching(batches, filters)?, history))
}

/// The rows of the `history` files that may hold windows starting at or after `from`,
/// matching every filter. Blocks on file reads: call it where blocking is allowed.
pub fn read_history(
    history: HistoryFiles,
    from: i64,
    filters: &[KeyFilter],
) -> Result<Vec<RecordBatch>, ServingError> {
    let (root, files) = history;
    let mut out = Vec::new();
    // A window is emitted after it ends: a file whose newest row was emitted before `from`
    // holds no window starting at or after it.
    for f in files.iter().filter(|f| f.max_emitted_wm >= from) {
        let batches = read_file(&root, &f.path).map_err(ServingError::internal)?;
        out.extend(keep_matching(batches, filters)?);
    }
    Ok(out)
}

/// The rows of `batches` whose columns equal every filter's value.
fn keep_matching(
    batches: Vec<RecordBatch>,
    filters: &[KeyFilter],
) -> Result<Vec<RecordBatch>, ServingError> {
    batches
        .into_iter()
        .map(|b| {
            let mut mask: Option<BooleanArray> = None;
            for f in filters {
                let scalar = f.value.to_scalar().map_err(ServingError::internal)?;
                let equal = cmp::eq(b.column(f.column), &scalar).map_err(ServingError::internal)?;
                mask = Some(match mask {
                    None => equal,
                    Some(m) => and(&m, &equal).map_err(ServingError::internal)?,
                });
            }
            match mask {
                None => Ok(b),
                Some(m) => filter_record_batch(&b, &m).map_err(ServingError::internal),
            }
        })
        .collect()
}

fn window_start_column(view: &ViewRuntime, name: &str) -> Result<usize, ServingError> {
    view.schema().index_of("window_start").map_err(|_| {
        ServingError::bad(
            "view",
            format!("view {name} has no window_start column to order windows by"),
        )
    })
}

/// The newest row by `window_start` of view `name` matching every filter, as a batch of one
/// row: among closed windows, and open ones when `include_open`.
pub fn latest_window(
    view: &ViewRuntime,
    name: &str,
    filters: &[KeyFilter],
    include_open: bool,
) -> Result<RecordBatch, ServingError> {
    let (rows, _) = read_rows(view, filters, include_open)?;
    let ws = window_start_column(view, name)?;
    let mut best: Option<(i64, &RecordBatch, usize)> = None;
    for b in &rows {
        let starts = timestamps_ns(b.column(ws)).map_err(ServingError::internal)?;
        for i in 0..b.num_rows() {
            if starts.is_valid(i) && best.is_none_or(|(t, _, _)| starts.value(i) > t) {
                best = Some((starts.value(i), b, i));
            }
        }
    }
    let Some((_, batch, row)) = best else {
        return Err(ServingError::not_found(format!(
            "no window in {name} for {}",
            describe(filters)
        )));
    };
    Ok(batch.slice(row, 1))
}

/// The answer to a `/kpi` request.
#[derive(Debug, Clone)]
pub struct Kpi {
    /// The view that answered.
    pub view: String,
    /// Its window kind, for a windowed view.
    pub window: Option<WindowKind>,
    /// The newest window for the key: one row.
    pub row: RecordBatch,
    /// On one of several replicas: the partitions this replica reads, which are all it
    /// answers for.
    pub partitions: Option<Vec<i32>>,
}

/// `/kpi?window=1m&source=web[&closed=true]`: the most recent window the view shows for the
/// key (`closed=true`: the most recent closed one).
pub fn kpi(db: &Database, params: &Params) -> Result<Kpi, ServingError> {
    let (name, view) = resolve_view(db, params)?;
    let closed = parse_flag(params, "closed")?;
    let filters = key_filters(&view, params, &["view", "window", "closed"])?;
    let row = latest_window(&view, &name, &filters, !closed)?;
    Ok(Kpi {
        window: view.window(),
        partitions: view.is_sharded().then(|| view.partitions()),
        view: name,
        row,
    })
}

/// A `/series` request: the windows of one view starting in `[from, to)`, in pages.
#[derive(Clone)]
pub struct SeriesQuery {
    /// The view's name.
    pub name: String,
    pub view: Arc<ViewRuntime>,
    /// Window starts from (inclusive, ns).
    pub from: i64,
    /// Window starts to (exclusive, ns).
    pub to: i64,
    /// Most rows in the page.
    pub limit: usize,
    /// Where the page starts: after the rows of earlier pages.
    pub cursor: Option<SeriesCursor>,
    /// Whether open windows count (not `closed=true`).
    pub include_open: bool,
    pub filters: Vec<KeyFilter>,
    /// The index of the view's `window_start` column.
    window_start: usize,
}

impl SeriesQuery {
    /// Reads `view=` or `window=`, `from=`, `to=`, `limit=`, `cursor=`, `closed=` and the key
    /// filters (every other parameter).
    pub fn parse(db: &Database, params: &Params) -> Result<Self, ServingError> {
        let (name, view) = resolve_view(db, params)?;
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
            return Err(ServingError::bad(
                "to",
                "to must be after from: windows are those with from <= window_start < to",
            ));
        }
        let limit = parse_limit(params)?;
        let cursor = params.get("cursor").map(|c| parse_cursor(c)).transpose()?;
        let closed = parse_flag(params, "closed")?;
        let filters = key_filters(
            &view,
            params,
            &["view", "window", "from", "to", "limit", "cursor", "closed"],
        )?;
        let window_start = window_start_column(&view, &name)?;
        Ok(Self {
            name,
            view,
            from,
            to,
            limit,
            cursor,
            include_open: !closed,
            filters,
            window_start,
        })
    }

    /// The matching rows in memory, and the history files that may hold more: read those
    /// with [`read_history`] (it blocks) and pass both to [`SeriesQuery::page`].
    pub fn read_memory(&self) -> Result<(Vec<RecordBatch>, Option<HistoryFiles>), ServingError> {
        read_rows(&self.view, &self.filters, self.include_open)
    }

    /// The page of `batches` (history and memory rows) the request asks for. `encode` turns
    /// a batch's rows into the caller's rows; `order` gives the text that orders rows with
    /// the same window start, so that pages are stable.
    pub fn page<R, E>(
        &self,
        batches: impl IntoIterator<Item = RecordBatch>,
        mut encode: impl FnMut(&RecordBatch) -> Result<Vec<R>, E>,
        order: impl Fn(&R) -> String,
    ) -> Result<SeriesPage<R>, E>
    where
        E: From<ServingError>,
    {
        let ws = self.window_start;
        let mut rows = Vec::new();
        for b in batches {
            let starts = timestamps_ns(b.column(ws)).map_err(ServingError::internal)?;
            for (i, row) in encode(&b)?.into_iter().enumerate() {
                let t = starts.value(i);
                if starts.is_valid(i) && t >= self.from && t < self.to {
                    rows.push((t, order(&row), row));
                }
            }
        }
        Ok(page_rows(rows, self.limit, self.cursor))
    }
}

/// One page of a `/series` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPage<R> {
    /// By window start, then by order text.
    pub rows: Vec<R>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<SeriesCursor>,
}

/// Sorts `rows` (window start, order text, row) and cuts the page of at most `limit` rows
/// after `cursor`.
fn page_rows<R>(
    mut rows: Vec<(i64, String, R)>,
    limit: usize,
    cursor: Option<SeriesCursor>,
) -> SeriesPage<R> {
    rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let start = match cursor {
        None => 0,
        Some(c) => rows
            .partition_point(|r| r.0 < c.window_start)
            .saturating_add(c.returned),
    };
    let start = start.min(rows.len());
    let end = start.saturating_add(limit).min(rows.len());
    let next_cursor = match end.checked_sub(1) {
        Some(last) if end < rows.len() => {
            let window_start = rows[last].0;
            Some(SeriesCursor {
                window_start,
                returned: end - rows.partition_point(|r| r.0 < window_start),
            })
        }
        _ => None,
    };
    rows.truncate(end);
    let rows = rows.into_iter().skip(start).map(|r| r.2).collect();
    SeriesPage { rows, next_cursor }
}

/// `/alerts?since=…[&name=…&severity=…&limit=…]`: alerts whose event time is at or after
/// `since`, of rule `name` and of `severity` (any case); the newest `limit`, oldest first.
pub fn alerts(
    db: &Database,
    params: &Params,
) -> Result<Vec<(AlertSpec, AlertRecord)>, ServingError> {
    for key in params.keys() {
        if !matches!(key.as_str(), "since" | "name" | "severity" | "limit") {
            return Err(ServingError::bad(key, format!("unknown parameter '{key}'")));
        }
    }
    let since = params
        .get("since")
        .map(|v| parse_time("since", v))
        .transpose()?
        .unwrap_or(i64::MIN);
    let limit = parse_limit(params)?;
    let name = params.get("name");
    if let Some(name) = name {
        if db.view(name).is_none_or(|v| !v.is_alert()) {
            return Err(ServingError::NotFound {
                parameter: Some("name".into()),
                message: format!("no alert rule named '{name}'"),
            });
        }
    }
    let severity = params.get("severity");
    let mut rows: Vec<_> = db
        .alert_records()
        .into_iter()
        .filter(|(spec, r)| {
            r.event_time >= since
                && name.is_none_or(|n| n == &spec.name)
                && severity.is_none_or(|s| s.eq_ignore_ascii_case(&spec.severity))
        })
        .collect();
    rows.sort_by(|a, b| (a.1.event_time, &a.1.alert_id).cmp(&(b.1.event_time, &b.1.alert_id)));
    let skip = rows.len().saturating_sub(limit);
    Ok(rows.split_off(skip))
}

/// One reason the database is not ready to serve (`/ready`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// A source is in error or disconnected; `status` is its status.
    Source { source: String, status: String },
    /// A pipeline of `source` fails to write checkpoints: a crash now would lose the work
    /// since the last checkpoint that was written.
    CheckpointsFailing { source: String, error: String },
    /// A view has not caught up with its source yet.
    CatchingUp { view: String },
    /// A sink's target is unreachable or it does not keep up.
    Sink {
        sink: String,
        status: String,
        backlog: u64,
    },
}

impl NotReady {
    /// The status text the API shows for the reason.
    pub fn status(&self) -> String {
        match self {
            NotReady::Source { status, .. } | NotReady::Sink { status, .. } => status.clone(),
            NotReady::CheckpointsFailing { error, .. } => format!("checkpoints failing: {error}"),
            NotReady::CatchingUp { .. } => "catching up with its source".into(),
        }
    }
}

/// Why the database is not ready: sources in error or disconnected and failing checkpoints
/// (by source), views catching up, unhealthy sinks. Empty when it is ready.
pub fn not_ready(db: &Database) -> Vec<NotReady> {
    let counters = db.counters();
    let mut reasons = Vec::new();
    for s in &counters.sources {
        // The same test as `weir_source_up` in /metrics.
        if s.failing {
            reasons.push(NotReady::Source {
                source: s.name.clone(),
                status: s.status.clone(),
            });
        }
        for error in &s.checkpoint_errors {
            reasons.push(NotReady::CheckpointsFailing {
                source: s.name.clone(),
                error: error.clone(),
            });
        }
    }
    for view in &counters.views {
        if !view.caught_up {
            reasons.push(NotReady::CatchingUp {
                view: view.name.clone(),
            });
        }
    }
    for sink in &counters.sinks {
        if !sink.healthy {
            reasons.push(NotReady::Sink {
                sink: sink.name.clone(),
                status: sink.status.clone(),
                backlog: sink.backlog,
            });
        }
    }
    reasons
}

/// A subscription to a view's emitted rows (`GET /subscribe`).
pub struct Subscription {
    pub view: String,
    /// The rows the view emits from now on.
    pub changes: tokio::sync::broadcast::Receiver<weir_engine::pipeline::view::Emitted>,
    pub filters: Vec<KeyFilter>,
    /// With `limit=n`: the stream ends after `n` rows (snapshot rows included).
    pub limit: Option<usize>,
    /// With `snapshot=true`: the rows the view holds in memory now (open windows of an
    /// `EMIT ON UPDATE` view included), matching the filters, taken after subscribing (a row
    /// emitted in between comes in both; rows carry their key and window, so a client can
    /// tell).
    pub snapshot: Vec<RecordBatch>,
}

/// Subscribes to the view `view=` (or the view of `window=`), filtered by key parameters
/// like `/kpi`; `snapshot=true` adds the rows it holds now, `limit=n` ends after `n` rows.
pub fn subscribe(db: &Database, params: &Params) -> Result<Subscription, ServingError> {
    let (name, view) = resolve_view(db, params)?;
    let snapshot = parse_flag(params, "snapshot")?;
    let limit = params
        .contains_key("limit")
        .then(|| parse_limit(params))
        .transpose()?;
    let filters = key_filters(&view, params, &["view", "window", "snapshot", "limit"])?;
    let changes = view.subscribe();
    let snapshot = if snapshot {
        read_rows(&view, &filters, true)?.0
    } else {
        Vec::new()
    };
    Ok(Subscription {
        view: name,
        changes,
        filters,
        limit,
        snapshot,
    })
}

impl Subscription {
    /// The rows of `emitted` this subscription wants.
    pub fn matching(&self, emitted: &[RecordBatch]) -> Result<Vec<RecordBatch>, ServingError> {
        keep_matching(emitted.to_vec(), &self.filters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const S: i64 = 1_000_000_000;

    #[test]
    fn windows_are_durations_as_connector_options_write_them() {
        assert_eq!(parse_window("1m"), Ok(60 * S));
        assert_eq!(parse_window("10s"), Ok(10 * S));
        assert_eq!(parse_window("500ms"), Ok(S / 2));
        assert_eq!(parse_window("2 minutes"), Ok(120 * S));
        assert_eq!(parse_window("1h"), Ok(3_600 * S));
        assert_eq!(parse_window("3"), Ok(3 * S));
        for bad in [
            "0s",
            "1d",
            "ten seconds",
            "1e400",
            "99999999999999999999s",
            "",
        ] {
            let expected = ServingError::bad(
                "window",
                format!("'{bad}' is not a duration such as 1m or 10s"),
            );
            assert_eq!(parse_window(bad), Err(expected), "{bad}");
        }
    }

    #[test]
    fn window_labels_use_the_largest_whole_unit() {
        assert_eq!(window_label(60 * S), "1m");
        assert_eq!(window_label(90 * S), "90s");
        assert_eq!(window_label(7_200 * S), "2h");
        assert_eq!(window_label(86_400 * S), "1d");
        assert_eq!(window_label(S / 2), "500ms");
    }

    #[test]
    fn times_are_rfc_3339_or_epoch_milliseconds() {
        let t = 1_704_067_200 * S;
        assert_eq!(parse_time("from", "1704067200000"), Ok(t));
        assert_eq!(parse_time("from", "2024-01-01T00:00:00Z"), Ok(t));
        assert_eq!(parse_time("from", "2024-01-01T01:00:00+01:00"), Ok(t));
        assert_eq!(
            parse_time("to", "9223372036854775807"),
            Err(ServingError::bad("to", "out of range"))
        );
        let expected = ServingError::bad(
            "since",
            "'yesterday' is not an RFC 3339 time or epoch milliseconds",
        );
        assert_eq!(parse_time("since", "yesterday"), Err(expected));
    }

    #[test]
    fn limits_are_1_to_10000_default_1000() {
        assert_eq!(parse_limit(&params(&[])), Ok(1_000));
        assert_eq!(parse_limit(&params(&[("limit", "1")])), Ok(1));
        assert_eq!(parse_limit(&params(&[("limit", "10000")])), Ok(10_000));
        let expected = ServingError::bad("limit", "limit must be a number from 1 to 10000");
        for bad in ["0", "10001", "-1", "many"] {
            let got = parse_limit(&params(&[("limit", bad)]));
            assert_eq!(got, Err(expected.clone()), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip() {
        let c = SeriesCursor {
            window_start: -5 * S,
            returned: 3,
        };
        assert_eq!(c.to_string(), "-5000000000.3");
        assert_eq!(parse_cursor(&c.to_string()), Ok(c));
        for bad in ["12", "a.1", "1.b", "1.-1", ""] {
            assert_eq!(
                parse_cursor(bad),
                Err(ServingError::bad("cursor", "not a cursor from next_cursor")),
                "{bad}"
            );
        }
    }

    #[test]
    fn flags() {
        assert_eq!(parse_flag(&params(&[]), "closed"), Ok(false));
        for yes in ["true", "1", "YES", "On"] {
            assert_eq!(parse_flag(&params(&[("closed", yes)]), "closed"), Ok(true));
        }
        for no in ["false", "0", "no", "OFF"] {
            assert_eq!(parse_flag(&params(&[("closed", no)]), "closed"), Ok(false));
        }
        assert_eq!(
            parse_flag(&params(&[("closed", "Maybe")]), "closed"),
            Err(ServingError::bad("closed", "'maybe' is not true or false"))
        );
    }

    #[test]
    fn a_tumbling_window_is_preferred_then_the_first_by_name() {
        let tumble = Some(WindowKind::Tumble { size: 60 * S });
        let hop = Some(WindowKind::Hop {
            slide: 10 * S,
            size: 60 * S,
        });
        let views = || {
            vec![
                ("a_hop".to_string(), hop, 1),
                ("z_tumble".to_string(), tumble, 2),
                ("b_tumble".to_string(), tumble, 3),
                ("plain".to_string(), None, 4),
            ]
        };
        let chosen = |views: Vec<(String, Option<WindowKind>, i32)>, size| {
            prefer_window(views, size).map(|(name, _)| name)
        };
        assert_eq!(chosen(views(), 60 * S).as_deref(), Some("b_tumble"));
        let without_b: Vec<_> = views().into_iter().filter(|v| v.2 != 3).collect();
        assert_eq!(chosen(without_b, 60 * S).as_deref(), Some("z_tumble"));
        let only_hop: Vec<_> = views().into_iter().filter(|v| v.2 == 1).collect();
        assert_eq!(chosen(only_hop, 60 * S).as_deref(), Some("a_hop"));
        assert_eq!(chosen(views(), 10 * S), None);
    }

    #[test]
    fn pages_resume_inside_one_window_start() {
        let rows = || {
            vec![
                (2, "c".to_string(), "2c"),
                (1, "b".to_string(), "1b"),
                (3, "d".to_string(), "3d"),
                (1, "a".to_string(), "1a"),
            ]
        };
        let first = page_rows(rows(), 1, None);
        assert_eq!(first.rows, ["1a"]);
        let cursor = first.next_cursor.unwrap();
        assert_eq!(cursor.to_string(), "1.1");
        let second = page_rows(rows(), 2, Some(cursor));
        assert_eq!(second.rows, ["1b", "2c"]);
        let cursor = second.next_cursor.unwrap();
        assert_eq!(cursor.to_string(), "2.1");
        let last = page_rows(rows(), 2, Some(cursor));
        assert_eq!(last.rows, ["3d"]);
        assert_eq!(last.next_cursor, None);
        // A cursor past the end is an empty last page, not a panic.
        let past = SeriesCursor {
            window_start: 3,
            returned: usize::MAX,
        };
        assert_eq!(page_rows(rows(), 2, Some(past)).rows, Vec::<&str>::new());
        assert_eq!(page_rows(rows(), 10, None).next_cursor, None);
    }

    #[test]
    fn not_ready_reasons_say_what_is_wrong() {
        let failing = NotReady::CheckpointsFailing {
            source: "orders".into(),
            error: "disk full".into(),
        };
        assert_eq!(failing.status(), "checkpoints failing: disk full");
        let view = NotReady::CatchingUp {
            view: "kpi_1m".into(),
        };
        assert_eq!(view.status(), "catching up with its source");
    }
}
