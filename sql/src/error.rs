//! Errors of the SQL layer, each with the SQLSTATE a PostgreSQL client expects.

use datafusion::error::DataFusionError;
use weir_engine::EngineError;

/// A statement failed. The variant decides the SQLSTATE.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SqlError {
    /// 42601: the text is not valid SQL.
    #[error("{0}")]
    Syntax(String),
    /// 42P01: unknown relation.
    #[error("{0}")]
    UndefinedObject(String),
    /// 42703: unknown column.
    #[error("{0}")]
    UndefinedColumn(String),
    /// 42883: unknown function.
    #[error("{0}")]
    UndefinedFunction(String),
    /// 42P07: the name is taken.
    #[error("{0}")]
    DuplicateObject(String),
    /// 42809: the object exists but is of another kind.
    #[error("{0}")]
    WrongObjectType(String),
    /// 2BP01: other objects depend on it.
    #[error("{0}")]
    DependentObjects(String),
    /// 22023: a WITH option or parameter has a bad value.
    #[error("{0}")]
    InvalidParameter(String),
    /// 42804/42846: types do not fit.
    #[error("{0}")]
    DatatypeMismatch(String),
    /// 0A000: valid, but not supported (yet).
    #[error("{0}")]
    FeatureNotSupported(String),
    /// 22003: a number does not fit its type (integer overflow).
    #[error("{0}")]
    OutOfRange(String),
    /// 22012: division by zero.
    #[error("{0}")]
    DivisionByZero(String),
    /// 22000 family: the data made a function fail.
    #[error("{0}")]
    DataException(String),
    /// 58030: the data dir could not be read or written.
    #[error("{0}")]
    Io(String),
    /// 54000: a function was asked for a result too large to build.
    #[error("{0}")]
    LimitExceeded(String),
    /// 54001: the statement nests too deeply to plan.
    #[error("{0}")]
    TooComplex(String),
    /// 53200: the query needs more memory than it may use.
    #[error("{0}")]
    OutOfMemory(String),
    /// 57014: the statement was cancelled or ran past `statement_timeout`.
    #[error("{0}")]
    Cancelled(String),
    /// 25P02: a statement in a transaction that an earlier error aborted.
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    InFailedTransaction,
    /// 42501: the user may not run the statement.
    #[error("{0}")]
    InsufficientPrivilege(String),
    /// 42710: a role of that name exists.
    #[error("{0}")]
    DuplicateRole(String),
    /// 42704: no role of that name.
    #[error("{0}")]
    UndefinedRole(String),
    /// 55006: the object is in use and cannot be changed so.
    #[error("{0}")]
    ObjectInUse(String),
    /// 42702: a column name that more than one relation of the query has.
    #[error("{0}")]
    AmbiguousColumn(String),
    /// 42701: a column name given twice.
    #[error("{0}")]
    DuplicateColumn(String),
    /// 08001: a target the statement must reach (a sink's) did not answer or refused.
    #[error("{0}")]
    ConnectionFailure(String),
    /// 34000: no cursor of that name.
    #[error("{0}")]
    InvalidCursorName(String),
    /// 42P03: a cursor of that name exists.
    #[error("{0}")]
    DuplicateCursor(String),
    /// 23505: a row would repeat a table's primary key.
    #[error("{0}")]
    UniqueViolation(String),
    /// 23502: a row has no value for a NOT NULL column.
    #[error("{0}")]
    NotNullViolation(String),
    /// 21000: a statement would change one row twice.
    #[error("{0}")]
    CardinalityViolation(String),
    /// 22P04: COPY data that does not follow its format.
    #[error("{0}")]
    BadCopyFormat(String),
    /// 22P02: a value that does not read as its column's type.
    #[error("{0}")]
    InvalidTextRepresentation(String),
    /// XX000: a bug.
    #[error("internal error (this is a bug): {0}")]
    Internal(String),
}

impl SqlError {
    /// The SQLSTATE code.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            SqlError::Syntax(_) => "42601",
            SqlError::UndefinedObject(_) => "42P01",
            SqlError::UndefinedColumn(_) => "42703",
            SqlError::UndefinedFunction(_) => "42883",
            SqlError::DuplicateObject(_) => "42P07",
            SqlError::WrongObjectType(_) => "42809",
            SqlError::DependentObjects(_) => "2BP01",
            SqlError::InvalidParameter(_) => "22023",
            SqlError::LimitExceeded(_) => "54000",
            SqlError::TooComplex(_) => "54001",
            SqlError::OutOfMemory(_) => "53200",
            SqlError::Cancelled(_) => "57014",
            SqlError::DatatypeMismatch(_) => "42804",
            SqlError::FeatureNotSupported(_) => "0A000",
            SqlError::OutOfRange(_) => "22003",
            SqlError::DivisionByZero(_) => "22012",
            SqlError::DataException(_) => "22000",
            SqlError::Io(_) => "58030",
            SqlError::InFailedTransaction => "25P02",
            SqlError::InsufficientPrivilege(_) => "42501",
            SqlError::DuplicateRole(_) => "42710",
            SqlError::UndefinedRole(_) => "42704",
            SqlError::ObjectInUse(_) => "55006",
            SqlError::AmbiguousColumn(_) => "42702",
            SqlError::DuplicateColumn(_) => "42701",
            SqlError::ConnectionFailure(_) => "08001",
            SqlError::InvalidCursorName(_) => "34000",
            SqlError::DuplicateCursor(_) => "42P03",
            SqlError::UniqueViolation(_) => "23505",
            SqlError::NotNullViolation(_) => "23502",
            SqlError::CardinalityViolation(_) => "21000",
            SqlError::BadCopyFormat(_) => "22P04",
            SqlError::InvalidTextRepresentation(_) => "22P02",
            SqlError::Internal(_) => "XX000",
        }
    }
}

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> Self {
        classify_datafusion(e)
    }
}

impl From<datafusion::arrow::error::ArrowError> for SqlError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        classify_datafusion(DataFusionError::from(e))
    }
}

impl From<EngineError> for SqlError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::DataFusion(e) => classify_datafusion(e),
            EngineError::InvalidOption { option, message } => SqlError::InvalidParameter(format!(
                "invalid value for option \"{option}\": {message}"
            )),
            EngineError::Unsupported(m) => SqlError::FeatureNotSupported(m),
            EngineError::Source { .. } => SqlError::InvalidParameter(e.to_string()),
            EngineError::Arrow(e) => SqlError::DataException(e.to_string()),
            EngineError::Checkpoint(_) => SqlError::Io(e.to_string()),
            EngineError::Connection(m) => SqlError::ConnectionFailure(m),
            EngineError::UniqueViolation(m) => SqlError::UniqueViolation(m),
            EngineError::NotNullViolation(m) => SqlError::NotNullViolation(m),
            EngineError::CardinalityViolation(m) => SqlError::CardinalityViolation(m),
            EngineError::Internal(m) => SqlError::Internal(m),
        }
    }
}

/// Maps a DataFusion error to the SQLSTATE a PostgreSQL user would get for the same mistake.
fn classify_datafusion(e: DataFusionError) -> SqlError {
    match e.find_root() {
        // Weir's own functions raise typed errors through DataFusion.
        DataFusionError::External(inner) => {
            if let Some(e) = inner.downcast_ref::<SqlError>() {
                return e.clone();
            }
        }
        DataFusionError::ResourcesExhausted(m) => {
            return SqlError::OutOfMemory(format!(
                "the query needs more memory than a query may use ({m}); narrow it with WHERE or LIMIT, or raise the server's query_memory_mb (WEIR_QUERY_MEMORY_MB)"
            ))
        }
        _ => {}
    }
    if let Some(kind) = classify_by_kind(e.find_root()) {
        return kind;
    }
    let message = e.find_root().to_string();
    let lower = message.to_lowercase();
    let strip = |m: &str| {
        m.trim_start_matches("Error during planning: ")
            .trim_start_matches("Schema error: ")
            .trim_start_matches("This feature is not implemented: ")
            .trim_start_matches("SQL error: ")
            .trim_start_matches("Execution error: ")
            .trim_start_matches("Arrow error: ")
            .to_string()
    };
    if lower.contains("sql error: parsererror") || lower.starts_with("sql error") {
        SqlError::Syntax(strip(&message))
    } else if lower.contains("table '") && lower.contains("not found")
        || lower.contains("table not found")
    {
        SqlError::UndefinedObject(strip(&message))
    } else if lower.contains("no field named")
        || lower.contains("column") && lower.contains("not found")
    {
        SqlError::UndefinedColumn(strip(&message))
    } else if lower.contains("invalid function")
        || lower.contains("unknown function")
        || lower.contains("function") && lower.contains("not found")
    {
        SqlError::UndefinedFunction(strip(&message))
    } else if lower.contains("not implemented") || lower.contains("unsupported") {
        SqlError::FeatureNotSupported(strip(&message))
    } else if lower.contains("cannot be cast")
        || lower.contains("cast error")
        || lower.contains("no function matches")
        || lower.contains("type coercion")
        || lower.contains("failed to coerce")
    {
        SqlError::DatatypeMismatch(strip(&message))
    } else if lower.contains("divide by zero") || lower.contains("division by zero") {
        SqlError::DivisionByZero(strip(&message))
    } else if lower.contains("overflow") {
        SqlError::OutOfRange(strip(&message))
    } else if lower.starts_with("error during planning") || lower.starts_with("schema error") {
        SqlError::Syntax(strip(&message))
    } else {
        SqlError::DataException(strip(&message))
    }
}

/// The SQLSTATE of the errors DataFusion and Arrow tell apart by kind; `None` for the kinds
/// that carry only a message (planning and execution errors), which
/// [`classify_datafusion`] reads.
fn classify_by_kind(e: &DataFusionError) -> Option<SqlError> {
    use datafusion::arrow::error::ArrowError;
    use datafusion::common::SchemaError;
    let text = || {
        let m = e.to_string();
        [
            "Error during planning: ",
            "Schema error: ",
            "This feature is not implemented: ",
            "SQL error: ",
            "Arrow error: ",
        ]
        .iter()
        .fold(m, |m, p| m.trim_start_matches(p).to_string())
    };
    Some(match e {
        DataFusionError::SQL(..) => SqlError::Syntax(text()),
        DataFusionError::NotImplemented(_) => SqlError::FeatureNotSupported(text()),
        DataFusionError::SchemaError(kind, _) => match kind.as_ref() {
            SchemaError::FieldNotFound { .. } => SqlError::UndefinedColumn(text()),
            SchemaError::AmbiguousReference { .. } => SqlError::AmbiguousColumn(text()),
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => SqlError::DuplicateColumn(text()),
        },
        DataFusionError::ArrowError(arrow, _) => match arrow.as_ref() {
            ArrowError::DivideByZero => SqlError::DivisionByZero("division by zero".into()),
            ArrowError::ArithmeticOverflow(_) => SqlError::OutOfRange(text()),
            ArrowError::CastError(_) | ArrowError::ParseError(_) => {
                SqlError::DatatypeMismatch(text())
            }
            _ => return None,
        },
        _ => return None,
    })
}

/// Result alias for the SQL layer.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;
