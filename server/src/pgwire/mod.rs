//! The PostgreSQL wire protocol front end (pgwire), one handler per connection.
//!
//! Statements are split and executed by `weir-sql`; results are encoded from Arrow by
//! `arrow-pg`. Errors carry the SQLSTATE `weir-sql` assigns, and never close the connection.

mod auth;
mod connection;
mod copy;
mod encode;
mod framing;
mod handler;
mod limits;
mod listener;
mod transaction;

pub use handler::ConnectionHandlers;
pub use listener::serve;

/// pgwire's TLS settings.
#[derive(Clone, Default)]
pub struct PgTls {
    /// Answers SSLRequest with TLS when set.
    pub acceptor: Option<pgwire::tokio::TlsAcceptor>,
    /// Refuse clients that do not use TLS (`FATAL 28000`).
    pub require: bool,
}
