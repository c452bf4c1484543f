//! How long a statement may run: the session's `statement_timeout`, and the client's
//! CancelRequest (psql's Ctrl-C) for the connection's running statement.
//!
//! A statement runs under [`Limits`]: planning, execution and every batch of its rows wait
//! on the work *or* the deadline *or* a cancel, so a runaway query ends with SQLSTATE 57014
//! and its plan is dropped (DataFusion stops the plan's tasks with it). pgwire's own cancel
//! support covers only the call that plans a statement, not the rows streamed after it, so
//! Weir keeps its own [`CancelRegistry`]: the startup handler registers each connection
//! under the pid and secret key it sent in BackendKeyData, and a CancelRequest bumps that
//! connection's counter, which the running statement's [`Limits`] watch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::ClientInfo;
use pgwire::messages::cancel::CancelRequest;
use tokio::sync::watch;
use tokio::time::Instant;
use weir_sql::{Session, SqlError};

/// (pid, secret key) of a connection.
type ConnectionKey = (i32, Vec<u8>);

/// Every open connection's cancel counter, by the key its client may cancel with.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    connections: Mutex<HashMap<ConnectionKey, Arc<watch::Sender<u64>>>>,
}

/// A connection's cancel counter, kept in its session extensions.
pub struct ConnectionCancel(Arc<watch::Sender<u64>>);

/// Removes a connection from the registry when the connection ends.
pub struct Registration {
    registry: Arc<CancelRegistry>,
    key: ConnectionKey,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut map) = self.registry.connections.lock() {
            map.remove(&self.key);
        }
    }
}

impl CancelRegistry {
    /// Registers `client`'s connection (after its pid and secret key are set).
    pub fn register<C: ClientInfo>(self: &Arc<Self>, client: &C) {
        let (pid, secret) = client.pid_and_secret_key();
        let key = (pid, secret.to_bytes().to_vec());
        let counter = Arc::new(watch::Sender::new(0u64));
        if let Ok(mut map) = self.connections.lock() {
            map.insert(key.clone(), counter.clone());
        }
        client
            .session_extensions()
            .insert(ConnectionCancel(counter));
        client.session_extensions().insert(Registration {
            registry: self.clone(),
            key,
        });
    }
}

#[async_trait]
impl CancelHandler for CancelRegistry {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes().to_vec());
        let counter = self
            .connections
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned());
        // An unknown key is ignored, as PostgreSQL ignores it.
        if let Some(counter) = counter {
            counter.send_modify(|n| *n += 1);
        }
    }
}

/// What ends a statement early.
#[derive(Clone, Default)]
pub struct Limits {
    deadline: Option<Instant>,
    /// The connection's cancel counter as it was when the statement started.
    cancel: Option<watch::Receiver<u64>>,
}

impl Limits {
    /// The limits of a statement starting now on `client`'s connection.
    pub fn start<C: ClientInfo>(client: &C, session: &Session) -> Self {
        let cancel = client
            .session_extensions()
            .get::<ConnectionCancel>()
            .map(|c| {
                let mut rx = c.0.subscribe();
                rx.borrow_and_update();
                rx
            });
        Self {
            deadline: session.statement_timeout().map(|t| Instant::now() + t),
            cancel,
        }
    }

    /// `f`, or SQLSTATE 57014 once the deadline passes or the client cancels.
    pub async fn within<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, SqlError>>,
    ) -> Result<T, SqlError> {
        let deadline = async {
            match self.deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let cancelled = async {
            if let Some(mut rx) = self.cancel.clone() {
                if rx.changed().await.is_ok() {
                    return;
                }
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            r = f => r,
            _ = deadline => Err(SqlError::Cancelled(
                "canceling statement due to statement timeout".into(),
            )),
            _ = cancelled => Err(SqlError::Cancelled(
                "canceling statement due to user request".into(),
            )),
        }
    }
}
