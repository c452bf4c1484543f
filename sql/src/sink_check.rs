//! `CREATE SINK` connects to its target once before the sink exists, so a target that is
//! down, a database that does not exist or credentials that are refused are an error the
//! user sees at creation (08001, naming what failed) rather than a sink that fails later.
//! Catalog replay at restart does not check: a target that is down then makes the sink
//! retry while Weir serves.

use std::sync::Arc;
use std::time::Duration;

use weir_engine::connector::sink::{SinkError, SinkFactory, SinkSpec};

use crate::error::{Result, SqlError};

/// How long the check waits for the target.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a writer for `spec` as the sink would, then drops it.
pub async fn check_target(factory: Arc<dyn SinkFactory>, spec: SinkSpec) -> Result<()> {
    let writer = factory.create(&spec)?;
    let name = spec.name.clone();
    let connector = factory.name();
    let outcome = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SinkError::Transient(format!("starting the check: {e}")))?;
        runtime.block_on(async move {
            let mut writer = writer;
            match tokio::time::timeout(CHECK_TIMEOUT, writer.open(&serde_json::Value::Null)).await {
                Ok(result) => result,
                Err(_) => Err(SinkError::Transient(format!(
                    "no answer within {} s",
                    CHECK_TIMEOUT.as_secs()
                ))),
            }
        })
    })
    .await
    .map_err(|e| SqlError::Internal(format!("sink check: {e}")))?;
    outcome.map_err(|e| {
        let message = match &e {
            SinkError::Transient(m) | SinkError::Permanent(m) => m.clone(),
        };
        SqlError::ConnectionFailure(format!(
            "sink \"{name}\" cannot use its {connector} target: {message}{}. CREATE SINK connects to the target once to check it: start it or correct the options, then run CREATE SINK again",
            hint(connector, &message)
        ))
    })
}

/// What to do about the failures a user is most likely to meet first.
fn hint(connector: &str, message: &str) -> &'static str {
    if connector == "postgres" && message.contains("does not exist") {
        " (create the database first, for example: psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE weir')"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_postgres_database_gets_the_command_that_creates_it() {
        assert!(hint("postgres", "database \"weir\" does not exist").contains("CREATE DATABASE"));
        assert_eq!(hint("redis", "connection refused"), "");
    }
}
