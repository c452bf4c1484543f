//! `SUBSCRIBE` over the PostgreSQL protocol, as cursors: `DECLARE c CURSOR FOR SUBSCRIBE
//! view [WITH (snapshot = true)]` starts receiving the rows the view emits (closed windows,
//! new rows, alert messages), `FETCH ALL c [WITH (timeout = '1s')]` returns those received
//! since the last FETCH — waiting for the first one up to `timeout` (without it, until one
//! comes; `statement_timeout` and a cancel still apply) — and `CLOSE c` ends it. Any
//! PostgreSQL client (psql, psycopg, JDBC) can follow a view this way; `GET /subscribe`
//! does the same over HTTP.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrame;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use weir_engine::pipeline::view::Emitted;

use super::{Database, Outcome};
use crate::error::{Result, SqlError};
use crate::session::Session;

/// The cursors of one session. Each is locked while a FETCH waits on it, so a FETCH that is
/// cancelled or times out leaves the cursor as it was.
pub type Cursors = Arc<parking_lot::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<Cursor>>>>>;

/// A subscription to one view.
#[derive(Debug)]
pub struct Cursor {
    view: String,
    schema: SchemaRef,
    changes: tokio::sync::broadcast::Receiver<Emitted>,
    /// Rows received and not fetched yet.
    pending: VecDeque<RecordBatch>,
    /// The view was dropped: nothing more will come.
    ended: bool,
}

impl Cursor {
    /// Moves every batch already received into `pending`.
    fn drain(&mut self) -> Result<()> {
        loop {
            match self.changes.try_recv() {
                Ok(batches) => self.pending.extend(batches.iter().cloned()),
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Closed) => {
                    self.ended = true;
                    return Ok(());
                }
                Err(TryRecvError::Lagged(n)) => return Err(lagged(&self.view, n)),
            }
        }
    }

    /// Up to `count` pending rows (all with `None`), splitting a batch if needed.
    fn take(&mut self, count: Option<usize>) -> Vec<RecordBatch> {
        let mut left = count.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        while left > 0 {
            let Some(b) = self.pending.pop_front() else {
                break;
            };
            if b.num_rows() > left {
                out.push(b.slice(0, left));
                self.pending.push_front(b.slice(left, b.num_rows() - left));
                left = 0;
            } else {
                left -= b.num_rows();
                out.push(b);
            }
        }
        out
    }
}

fn lagged(view: &str, batches: u64) -> SqlError {
    SqlError::LimitExceeded(format!(
        "the subscription to \"{view}\" fell {batches} batches of rows behind and missed them: \
         FETCH more often, or CLOSE the cursor and DECLARE it again WITH (snapshot = true)"
    ))
}

fn cursor_missing(name: &str) -> SqlError {
    SqlError::InvalidCursorName(format!("cursor \"{name}\" does not exist"))
}

impl Database {
    /// `DECLARE cursor CURSOR FOR SUBSCRIBE view`.
    pub(super) fn declare_subscribe(
        &self,
        session: &Session,
        cursor: String,
        view_name: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<Outcome> {
        let mut snapshot = false;
        for (key, value) in options {
            match key.as_str() {
                "snapshot" => {
                    snapshot = crate::session::parse_bool(value).ok_or_else(|| {
                        SqlError::InvalidParameter(format!(
                            "snapshot = '{value}': use true or false"
                        ))
                    })?
                }
                other => {
                    return Err(SqlError::InvalidParameter(format!(
                        "unknown SUBSCRIBE option \"{other}\"; it has snapshot"
                    )))
                }
            }
        }
        let view = self.view(view_name).ok_or_else(|| {
            SqlError::UndefinedObject(format!(
                "materialized view or alert \"{view_name}\" does not exist"
            ))
        })?;
        let changes = view.subscribe();
        let pending = if snapshot {
            view.read(None, true)?.0.into()
        } else {
            VecDeque::new()
        };
        let mut cursors = session.cursors().lock();
        if cursors.contains_key(&cursor) {
            return Err(SqlError::DuplicateCursor(format!(
                "cursor \"{cursor}\" already exists"
            )));
        }
        cursors.insert(
            cursor,
            Arc::new(tokio::sync::Mutex::new(Cursor {
                view: view_name.to_string(),
                schema: view.schema(),
                changes,
                pending,
                ended: false,
            })),
        );
        Ok(Outcome::Command("DECLARE CURSOR".into()))
    }

    /// `FETCH [count] cursor [WITH (timeout = '…')]`.
    pub(super) async fn fetch(
        &self,
        session: &Session,
        name: &str,
        count: Option<usize>,
        options: &BTreeMap<String, String>,
    ) -> Result<Outcome> {
        let mut timeout = None;
        for (key, value) in options {
            match key.as_str() {
                "timeout" => {
                    let ns = crate::dialect::parse_interval_ns(value)?;
                    timeout = Some(std::time::Duration::from_nanos(ns.max(0) as u64));
                }
                other => {
                    return Err(SqlError::InvalidParameter(format!(
                        "unknown FETCH option \"{other}\"; it has timeout"
                    )))
                }
            }
        }
        // The session's map is not locked across the wait; the cursor is.
        let cursor = session
            .cursors()
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(|| cursor_missing(name))?;
        let mut cursor = cursor.lock().await;
        let result = async {
            cursor.drain()?;
            if cursor.pending.is_empty() && !cursor.ended && count != Some(0) {
                let first = cursor.changes.recv();
                let received = match timeout {
                    Some(t) => tokio::time::timeout(t, first).await.ok(),
                    None => Some(first.await),
                };
                match received {
                    None => {}
                    Some(Ok(batches)) => cursor.pending.extend(batches.iter().cloned()),
                    Some(Err(RecvError::Closed)) => cursor.ended = true,
                    Some(Err(RecvError::Lagged(n))) => return Err(lagged(&cursor.view, n)),
                }
                cursor.drain()?;
            }
            Ok(cursor.take(count))
        }
        .await;
        let schema = cursor.schema.clone();
        if result.is_err() {
            // It missed rows: it cannot go on.
            drop(cursor);
            session.cursors().lock().remove(name);
        }
        let mut batches = result?;
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(schema));
        }
        let frame: DataFrame = self.ctx.read_batches(batches)?;
        Ok(Outcome::Rows(frame))
    }

    /// `CLOSE cursor` / `CLOSE ALL`.
    pub(super) fn close_cursor(&self, session: &Session, name: Option<&str>) -> Result<Outcome> {
        let mut cursors = session.cursors().lock();
        match name {
            None => cursors.clear(),
            Some(name) => {
                cursors.remove(name).ok_or_else(|| cursor_missing(name))?;
            }
        }
        Ok(Outcome::Command("CLOSE CURSOR".into()))
    }
}
