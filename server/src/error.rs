//! Errors of the server.

/// What can stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// Opening the database or installing the demo failed.
    #[error(transparent)]
    Sql(#[from] weir_sql::SqlError),
    /// A socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for the server.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;
