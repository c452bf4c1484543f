//! The pgwire accept loop: a cap on open connections and a back-off on accept errors.
//!
//! With every file descriptor in use, `accept` fails at once, again and again: without a
//! pause the loop spins and floods the log while the connections already open starve. Each
//! failure waits (10 ms, doubling to 1 s) and is logged once per [`LOG_EVERY`] with the
//! number left out. Past `max_connections` a new client is answered the way PostgreSQL
//! answers it — `FATAL 53300 sorry, too many clients already` — and closed, so the
//! descriptors of idle clients cannot exhaust the process. Each client is served by
//! [`connection::serve`](super::connection::serve).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use weir_sql::Database;

use super::limits::CancelRegistry;
use super::ConnectionHandlers;
use crate::metrics::ServerMetrics;

/// At most one "accept failed" line per this interval.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// A refused client gets this long to send its startup message.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts clients on `listener` forever, at most `max_connections` at a time.
pub async fn serve(
    listener: TcpListener,
    db: Arc<Database>,
    metrics: ServerMetrics,
    max_connections: usize,
    tls: super::PgTls,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let connections = Arc::new(CancelRegistry::default());
    let failures = Arc::new(super::auth::LoginFailures::default());
    let mut backoff = Backoff::default();
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                backoff.failed(&e).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics.refused();
            tokio::spawn(refuse(socket, max_connections));
            continue;
        };
        let handlers = ConnectionHandlers::new(
            db.clone(),
            metrics.clone(),
            connections.clone(),
            failures.clone(),
            tls.require,
        );
        let acceptor = tls.acceptor.clone();
        let metrics = metrics.clone();
        metrics.connection(1);
        tokio::spawn(async move {
            if let Err(e) = super::connection::serve(socket, handlers, acceptor).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            metrics.connection(-1);
            drop(permit);
        });
        backoff.reset();
    }
}

/// The pause and log rate after a failure to take a new client (no descriptor left).
#[derive(Default)]
struct Backoff {
    delay: Duration,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl Backoff {
    /// A client was taken: the next failure starts from the shortest pause.
    fn reset(&mut self) {
        self.delay = Duration::ZERO;
    }

    /// Logs at most once per [`LOG_EVERY`] (counting the lines left out), then waits
    /// 10 ms, doubling up to 1 s.
    async fn failed(&mut self, e: &std::io::Error) {
        if self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            let suppressed = self.suppressed;
            tracing::warn!(error = %e, suppressed, "accept failed; backing off");
            self.last_log = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        self.delay = (self.delay * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        tokio::time::sleep(self.delay).await;
    }
}

/// Reads the client's startup (declining TLS) and answers `FATAL 53300`.
async fn refuse(mut socket: TcpStream, max_connections: usize) {
    let answer = async {
        loop {
            let len = socket.read_i32().await? as usize;
            if !(8..=10_000).contains(&len) {
                return Ok(());
            }
            let mut body = vec![0u8; len - 4];
            socket.read_exact(&mut body).await?;
            // SSLRequest / GSSENCRequest: decline, then the startup message follows.
            if len == 8 && matches!(body[..4], [4, 210, 22, 47] | [4, 210, 22, 48]) {
                socket.write_all(b"N").await?;
                continue;
            }
            break;
        }
        let message =
            format!("sorry, too many clients already (max_connections = {max_connections})");
        socket.write_all(&error_response("53300", &message)).await?;
        socket.shutdown().await
    };
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, answer).await;
}

/// A FATAL `ErrorResponse` message.
fn error_response(code: &str, message: &str) -> Vec<u8> {
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&((fields.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(&fields);
    out
}
