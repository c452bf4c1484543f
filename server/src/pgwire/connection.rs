//! One client connection: pgwire's message loop, with the client's bytes checked by
//! [`framing`](super::framing) and panics answered instead of dropping the connection.
//!
//! This is `pgwire::tokio::process_socket`'s loop, built from the crate's public parts, so
//! Weir can put [`Checked`] between the socket and the decoder. A message that breaks the
//! framing, or one the decoder panics on, gets `FATAL 08P01`; a panic while handling a
//! message gets `FATAL XX000`. Either ends this connection only.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use pgwire::api::{ClientInfo, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use super::framing::{is_framing_error, Checked};
use super::ConnectionHandlers;

/// A client must finish its startup (and authentication) within this time.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves one client until it leaves or breaks the protocol.
pub async fn serve(
    tcp: TcpStream,
    handlers: ConnectionHandlers,
    tls: Option<pgwire::tokio::TlsAcceptor>,
) -> std::io::Result<()> {
    let startup_timeout = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_timeout);
    let negotiated = tokio::select! {
        _ = &mut startup_timeout => return Ok(()),
        socket = negotiate_tls(tcp, tls) => socket?,
    };
    let Some(plain) = negotiated else {
        return Ok(());
    };
    let old = plain.into_parts();
    let mut read_buf = old.read_buf;
    let io = Checked::with_buffered(old.io, &mut read_buf);
    let mut parts = FramedParts::new(io, old.codec);
    parts.read_buf = read_buf;
    parts.write_buf = old.write_buf;
    let mut socket = Framed::from_parts(parts);

    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let next = AssertUnwindSafe(socket.next()).catch_unwind();
        let next = if starting {
            tokio::select! {
                _ = &mut startup_timeout => return Ok(()),
                next = next => next,
            }
        } else {
            next.await
        };
        let message = match next {
            Ok(Some(Ok(message))) => message,
            Ok(None) => return Ok(()),
            Ok(Some(Err(PgWireError::IoError(e)))) => {
                if let Some(reason) = is_framing_error(&e) {
                    return fatal(&mut socket, "08P01", reason).await;
                }
                return Err(e);
            }
            Ok(Some(Err(e))) => return fatal(&mut socket, "08P01", e.to_string()).await,
            Err(_) => {
                tracing::warn!("a protocol message the decoder could not handle; answered 08P01");
                let reason = "invalid message format: it could not be decoded".to_string();
                return fatal(&mut socket, "08P01", reason).await;
            }
        };
        // Terminate: the client is leaving; some clients wait for the close.
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        let wait_for_sync = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let handled = process_message(
            message,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        );
        match AssertUnwindSafe(handled).catch_unwind().await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => process_error(&mut socket, e, wait_for_sync).await?,
            Err(_) => {
                tracing::error!(
                    "a statement handler panicked; the connection was closed with XX000"
                );
                let reason = "internal error (this is a bug): the statement handler failed; please report it".to_string();
                return fatal(&mut socket, "XX000", reason).await;
            }
        }
    }
}

/// Answers `FATAL code message` and closes the connection.
async fn fatal<S>(socket: &mut S, code: &str, message: String) -> std::io::Result<()>
where
    S: futures::Sink<PgWireBackendMessage, Error = std::io::Error> + Unpin,
{
    let info = ErrorInfo::new("FATAL".into(), code.into(), message);
    socket
        .send(PgWireBackendMessage::ErrorResponse(info.into()))
        .await?;
    socket.close().await
}
