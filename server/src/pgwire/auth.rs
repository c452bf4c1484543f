//! pgwire authentication and authorization.
//!
//! With no users (`weir.users` empty) every client is trusted, like PostgreSQL's `trust`:
//! the embedded default, which listens on loopback only (the server refuses a non-loopback
//! address without users or `--insecure`). Once a user exists — `CREATE USER`, or the
//! `admin_password` the server ensures at start — every new connection authenticates with
//! SCRAM-SHA-256 against the users' salted passwords; a wrong password or an unknown user
//! gets `FATAL 28P01` (an unknown user goes through the same exchange with a made-up secret,
//! so the answer does not tell which names exist). After a failed login the next attempt
//! from the same address waits (100 ms, doubling to 5 s), which slows password guessing.
//!
//! Authorization is one attribute: an `ADMIN` user runs everything; any other user is
//! read-only and gets 42501 for statements that change the catalog or users
//! ([`needs_admin`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use weir_sql::{Database, Prepared, SqlError};

use super::handler::TrustStartup;

/// The users' SCRAM secrets, for pgwire's SCRAM exchange.
#[derive(Debug)]
struct Secrets {
    db: Arc<Database>,
}

#[async_trait]
impl AuthSource for Secrets {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let name = login.user().unwrap_or_default();
        match self.db.users().get(name) {
            Some(user) => {
                let (salt, salted, _) = user.scram_secret();
                Ok(Password::new(Some(salt), salted))
            }
            // A secret nobody knows: the exchange fails as for a wrong password.
            None => {
                let mut secret = [0u8; 32];
                getrandom::getrandom(&mut secret).map_err(|e| {
                    PgWireError::ApiError(Box::new(std::io::Error::other(e.to_string())))
                })?;
                Ok(Password::new(Some(secret[..16].to_vec()), secret.to_vec()))
            }
        }
    }
}

/// Failed logins per client address, for the backoff.
#[derive(Debug, Default)]
pub struct LoginFailures {
    by_address: parking_lot::Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// The longest wait before a client with failed logins may try again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl LoginFailures {
    /// How long a new login from `ip` waits: 0 without recent failures, else 100 ms doubling
    /// per failure (at most [`MAX_BACKOFF`]); failures older than a minute are forgotten.
    fn delay(&self, ip: IpAddr) -> Duration {
        let mut map = self.by_address.lock();
        match map.get(&ip) {
            Some((_, at)) if at.elapsed() > Duration::from_secs(60) => {
                map.remove(&ip);
                Duration::ZERO
            }
            Some((n, _)) => (Duration::from_millis(100) * 2u32.saturating_pow(n.saturating_sub(1)))
                .min(MAX_BACKOFF),
            None => Duration::ZERO,
        }
    }

    fn failed(&self, ip: IpAddr) {
        let mut map = self.by_address.lock();
        if map.len() > 100_000 {
            map.clear();
        }
        let entry = map.entry(ip).or_insert((0, Instant::now()));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
    }

    fn succeeded(&self, ip: IpAddr) {
        self.by_address.lock().remove(&ip);
    }
}

/// The startup of one connection: trust while there are no users, SCRAM-SHA-256 once there
/// are; either way the connection registers for CancelRequests once it is ready.
pub struct Startup {
    trust: TrustStartup,
    require_tls: bool,
    failures: Arc<LoginFailures>,
    scram: Option<SASLAuthStartupHandler<DefaultServerParameterProvider>>,
}

impl Startup {
    pub fn new(
        db: Arc<Database>,
        trust: TrustStartup,
        failures: Arc<LoginFailures>,
        require_tls: bool,
    ) -> Self {
        let scram = (!db.users().is_empty()).then(|| {
            let mut auth = ScramAuth::new(Arc::new(Secrets { db }));
            auth.set_iterations(weir_sql::users::ITERATIONS as usize);
            SASLAuthStartupHandler::new(Arc::new(DefaultServerParameterProvider::default()))
                .with_scram(auth)
        });
        Self {
            trust,
            require_tls,
            failures,
            scram,
        }
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.require_tls
            && !client.is_secure()
            && matches!(message, PgWireFrontendMessage::Startup(_))
        {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28000".into(),
                "TLS is required: connect with sslmode=require (or verify-full)".into(),
            ))));
        }
        let Some(scram) = &self.scram else {
            return self.trust.on_startup(client, message).await;
        };
        let ip = client.socket_addr().ip();
        if matches!(message, PgWireFrontendMessage::Startup(_)) {
            let wait = self.failures.delay(ip);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        match scram.on_startup(client, message).await {
            Ok(()) => {
                if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
                    self.failures.succeeded(ip);
                    self.trust.register(client);
                }
                Ok(())
            }
            Err(PgWireError::InvalidPassword(_)) => {
                let user = client
                    .metadata()
                    .get(pgwire::api::METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                tracing::warn!(client = %ip, %user, "password authentication failed");
                self.failures.failed(ip);
                // PostgreSQL's words, with the user's name.
                Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".into(),
                    "28P01".into(),
                    format!("password authentication failed for user \"{user}\""),
                ))))
            }
            Err(e) => Err(e),
        }
    }
}

/// Whether `prepared` needs the `ADMIN` attribute: every statement that does not only read
/// (`WeirStatement::reads_only`, the rule a `read` REST token follows too); a pool's
/// `DISCARD ALL` is a no-op and stays open.
pub fn needs_admin(prepared: &Prepared) -> bool {
    match prepared {
        // Planned by DataFusion: a query (DDL and DML are refused when planning).
        Prepared::Query { .. } => false,
        Prepared::Statement(s) => !s.reads_only(),
        // INSERT, UPDATE, DELETE change a table.
        Prepared::Modify { .. } => true,
    }
}

/// 42501 when `user` (the connection's, if it authenticated) may not run `prepared`.
pub fn authorize(db: &Database, user: Option<&str>, prepared: &Prepared) -> Result<(), SqlError> {
    if !needs_admin(prepared) {
        return Ok(());
    }
    match user.and_then(|u| db.users().get(u)) {
        Some(u) if !u.admin => Err(SqlError::InsufficientPrivilege(format!(
            "permission denied: user \"{}\" is read-only; this statement needs a user WITH ADMIN",
            u.name
        ))),
        // An admin, or a connection trusted before any user existed.
        _ => Ok(()),
    }
}
