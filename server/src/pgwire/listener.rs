//! The pgwire accept loop: a cap on open connections and a back-off on accept errors.
//!
//! With every file descriptor in use, `accept` fails at once, again and again: without a
//! pause the loop spins and floods the log while the connections already open starve. Each
//! failure waits (10 ms, doubling to 1 s) and is logged once per [`LOG_EVERY`] with the
//! number left out. Past `max_connections` a new client is answered the way PostgreSQL
//! answers it — `FATAL 53300 sorry, too many clients already` — and closed, so the
//! descriptors of idle clients cannot exhaust the process. A message the protocol decoder
//! cannot handle (a Bind whose counts do not match its bytes panics inside the `pgwire`
//! crate) ends that one connection with `FATAL 08P01`; every other client carries on.

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
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let connections = Arc::new(CancelRegistry::default());
    let mut backoff = Duration::ZERO;
    let mut last_log: Option<Instant> = None;
    let mut suppressed = 0u64;
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(s) => {
                backoff = Duration::ZERO;
                s
            }
            Err(e) => {
                if last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                    tracing::warn!(error = %e, suppressed, "accept failed; backing off");
                    last_log = Some(Instant::now());
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(socket, max_connections));
            continue;
        };
        // A second handle on the socket answers the client if the protocol handler panics
        // on a malformed message (the handler owns the first).
        let (socket, spare) = match split_spare(socket) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cannot set up the connection");
                continue;
            }
        };
        let handlers = ConnectionHandlers::new(db.clone(), metrics.clone(), connections.clone());
        tokio::spawn(async move {
            let connection = tokio::spawn(::pgwire::tokio::process_socket(socket, None, handlers));
            match connection.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
                Err(e) if e.is_panic() => {
                    tracing::warn!(%peer, "a malformed protocol message broke the connection; answered 08P01");
                    if let Ok(mut spare) = TcpStream::from_std(spare) {
                        let message = "invalid protocol message: it could not be decoded (a count or length does not match its contents)";
                        let _ = spare.write_all(&error_response("08P01", message)).await;
                        let _ = spare.shutdown().await;
                    }
                }
                Err(_) => {}
            }
            drop(permit);
        });
    }
}

/// The socket for the protocol handler and a duplicate of it.
fn split_spare(socket: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std = socket.into_std()?;
    let spare = std.try_clone()?;
    Ok((TcpStream::from_std(std)?, spare))
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
