//! Errors of the streaming engine.

use datafusion::error::DataFusionError;

/// What can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A DataFusion plan or kernel failed.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// An Arrow kernel failed.
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// Reading a source failed (file missing, unreadable …).
    #[error("source {source_name}: {message}")]
    Source {
        source_name: String,
        message: String,
    },
    /// A connector option has a bad value.
    #[error("invalid option {option}: {message}")]
    InvalidOption { option: String, message: String },
    /// The query shape is valid SQL but cannot be maintained incrementally.
    #[error("{0}")]
    Unsupported(String),
    /// A checkpoint cannot be written or read.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A service the statement must reach (a table's PostgreSQL) did not answer or refused.
    #[error("{0}")]
    Connection(String),
    /// A row would repeat a table's primary key.
    #[error("{0}")]
    UniqueViolation(String),
    /// A row has no value for a column that must have one.
    #[error("{0}")]
    NotNullViolation(String),
    /// A statement would change one row twice.
    #[error("{0}")]
    CardinalityViolation(String),
    /// An invariant broke: this is a bug.
    #[error("internal error (this is a bug): {0}")]
    Internal(String),
}

/// Result alias for the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
