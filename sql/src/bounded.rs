//! Functions whose output size a caller picks (`lpad(s, n)`, `rpad`, `repeat(s, n)`,
//! `array_repeat(x, n)`), wrapped so one call cannot allocate without bound.
//!
//! DataFusion allocates their results outside any memory pool: `lpad('x', 2147483647)`
//! asks for 2 GiB per row, `array_repeat(1, 400000000)` for 3 GiB, and an allocation
//! failure aborts the process. The wrapper checks the requested size of a batch before
//! the function runs and refuses more than [`MAX_RESULT_BYTES`] with SQLSTATE 54000, as
//! PostgreSQL refuses `requested length too large`.

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

use crate::error::SqlError;

/// The most bytes (or array elements × 8) one call of a wrapped function may produce for a
/// batch.
pub const MAX_RESULT_BYTES: i64 = 256 << 20;

/// (function, index of its size argument, whether the first argument's length multiplies
/// the size).
const WRAPPED: [(&str, usize, bool); 4] = [
    ("lpad", 1, false),
    ("rpad", 1, false),
    ("repeat", 1, true),
    ("array_repeat", 1, false),
];

/// Replaces the wrapped functions of `ctx` by their bounded forms.
pub fn register(ctx: &SessionContext) {
    for (name, size_arg, times_len) in WRAPPED {
        if let Ok(inner) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
                inner: inner.as_ref().clone(),
                size_arg,
                times_len,
            }));
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: ScalarUDF,
    size_arg: usize,
    times_len: bool,
}

/// The largest integer in `v` (0 when none).
fn max_int(v: &ColumnarValue) -> i64 {
    let array = match v {
        ColumnarValue::Scalar(s) => match s.to_array() {
            Ok(a) => a,
            Err(_) => return 0,
        },
        ColumnarValue::Array(a) => a.clone(),
    };
    let Ok(ints) = cast(&array, &DataType::Int64) else {
        return 0;
    };
    ints.as_any()
        .downcast_ref::<Int64Array>()
        .and_then(|a| a.iter().flatten().max())
        .unwrap_or(0)
}

/// The longest string in `v` (bytes; 1 for other types).
fn max_len(v: &ColumnarValue) -> i64 {
    match v {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(s)))
        | ColumnarValue::Scalar(ScalarValue::LargeUtf8(Some(s)))
        | ColumnarValue::Scalar(ScalarValue::Utf8View(Some(s))) => s.len() as i64,
        ColumnarValue::Array(a) => match cast(a, &DataType::Utf8) {
            Ok(s) => s
                .as_any()
                .downcast_ref::<datafusion::arrow::array::StringArray>()
                .and_then(|s| s.iter().flatten().map(|v| v.len() as i64).max())
                .unwrap_or(1),
            Err(_) => 1,
        },
        _ => 1,
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some(size) = args.args.get(self.size_arg) {
            let mut per_row = max_int(size).max(0);
            if self.times_len {
                per_row = per_row.saturating_mul(args.args.first().map(max_len).unwrap_or(1));
            } else if self.name() == "array_repeat" {
                per_row = per_row.saturating_mul(8);
            } else {
                // Characters: up to 4 bytes each.
                per_row = per_row.saturating_mul(4);
            }
            let rows = args.number_rows.max(1) as i64;
            if per_row.saturating_mul(rows) > MAX_RESULT_BYTES {
                return Err(DataFusionError::External(Box::new(SqlError::LimitExceeded(
                    format!(
                        "{}(…): requested length too large (about {} MiB for {rows} rows; at most {} MiB)",
                        self.name(),
                        per_row.saturating_mul(rows) >> 20,
                        MAX_RESULT_BYTES >> 20
                    ),
                ))));
            }
        }
        self.inner.invoke_with_args(args)
    }
}
