//! `weir-server`: the `weir` binary's library — configuration, start-up and shutdown, and the
//! PostgreSQL wire protocol front end. Business logic lives in `weir-sql` and `weir-engine`.

pub mod config;
pub mod demo;
pub mod error;
pub mod metrics;
pub mod pgwire;
pub mod process_metrics;
pub mod rest;
pub mod tls;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use weir_sql::{Database, DatabaseOptions};

pub use config::Config;
pub use error::{Result, ServerError};

/// Opens the database described by `config` (and installs the demo if asked).
pub async fn open_database(config: &Config) -> Result<Arc<Database>> {
    let mut options = DatabaseOptions::persistent(
        config.data_dir.clone(),
        weir_connectors::register_all_with(&config.data_dir, config.file_dirs()),
    );
    options.checkpoint_interval = config.checkpoint_interval()?;
    options.rebuild_state = config.rebuild_state;
    options.query_memory = config.query_memory_mb << 20;
    options.view_defaults = config.view_defaults();
    options.history_url = config.history_url.clone();
    options.system_log_retention = config.system_log_retention()?;
    options.startup_sql = config.startup_sql()?;
    options.cluster = config.cluster()?;
    Ok(Database::open(options).await?)
}

/// Runs the server until `shutdown` completes. Listeners are passed in so tests can bind
/// port 0; without `http` there is no REST API.
pub async fn run(
    config: Config,
    pg_listener: TcpListener,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let tokens = config.api_tokens()?;
    let http_addr = match &http {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let admin_password = config.admin_password()?;
    let pg_tls = config.pg_tls()?;
    let rest_tls = config.rest_tls()?;
    let db = open_database(&config).await?;
    if let Some(password) = &admin_password {
        db.users().ensure_admin(&config.admin_user, password)?;
    }
    config.check_exposure(pg_listener.local_addr()?, http_addr, !db.users().is_empty())?;
    let metrics = metrics::ServerMetrics::with_data_dir(&config.data_dir);
    if let Some(http) = http {
        let https = rest_tls.is_some();
        tracing::info!(http_addr = %http.local_addr()?, https, "REST API listening");
        let app = rest::router_secured(db.clone(), metrics.clone(), tokens);
        tokio::spawn(async move {
            let served = match rest_tls {
                Some(acceptor) => match tls::TlsListener::new(http, acceptor) {
                    Ok(listener) => axum::serve(listener, app).await,
                    Err(e) => Err(e),
                },
                None => axum::serve(http, app).await,
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "REST API stopped");
            }
        });
    }
    tracing::info!(
        pg_addr = %pg_listener.local_addr()?,
        data_dir = %config.data_dir.display(),
        demo = config.demo,
        "weir is ready"
    );
    let accept = pgwire::serve(
        pg_listener,
        db.clone(),
        metrics.clone(),
        config.max_connections,
        pg_tls,
    );
    tokio::select! {
        _ = accept => {}
        _ = shutdown => tracing::info!("shutting down"),
    }
    db.shutdown();
    Ok(())
}
