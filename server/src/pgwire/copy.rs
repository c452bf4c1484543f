//! `COPY table FROM STDIN` (psql's `\copy`): the data the client sends after the statement
//! is collected and inserted in one step when the client ends it — every row or, on any
//! error, none.

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::Tag;
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::PgWireBackendMessage;
use weir_sql::database::CopyTarget;
use weir_sql::SqlError;

use super::handler::{user_error, Handler};

/// The most data one COPY may send: it is held in memory until the COPY ends.
const MAX_COPY_BYTES: usize = 1 << 30;

/// A COPY in progress.
pub(super) struct CopyIn {
    target: CopyTarget,
    data: Vec<u8>,
    too_large: bool,
}

impl CopyIn {
    pub(super) fn new(target: CopyTarget) -> Self {
        Self {
            target,
            data: Vec::new(),
            too_large: false,
        }
    }
}

#[async_trait]
impl CopyHandler for Handler {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Errors wait for the end of the data, where the protocol can report them.
        if let Some(copy) = self.copy.lock().as_mut() {
            if copy.data.len() + copy_data.data.len() > MAX_COPY_BYTES {
                copy.too_large = true;
                copy.data = Vec::new();
            } else if !copy.too_large {
                copy.data.extend_from_slice(&copy_data.data);
            }
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(copy) = self.copy.lock().take() else {
            return Err(user_error(SqlError::Internal(
                "COPY data ended without a COPY statement".into(),
            )));
        };
        if copy.too_large {
            return Err(user_error(SqlError::LimitExceeded(format!(
                "COPY data larger than {} MiB: split it into several COPY statements",
                MAX_COPY_BYTES >> 20
            ))));
        }
        let db = self.db.clone();
        let rows = tokio::task::spawn_blocking(move || db.copy_in(&copy.target, &copy.data))
            .await
            .map_err(|e| user_error(SqlError::Internal(format!("COPY: {e}"))))?
            .map_err(user_error)?;
        let tag = Tag::new("COPY").with_rows(rows as usize);
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.copy.lock().take();
        user_error(SqlError::Cancelled(format!(
            "COPY from stdin failed: {}; no rows were added",
            fail.message
        )))
    }
}
