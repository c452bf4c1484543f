//! Integer `+`, `-` and `*` that fail on overflow, as PostgreSQL's do.
//!
//! DataFusion wraps: `SELECT 9223372036854775807 + 1` answers a negative number. An analyzer
//! rule replaces each integer `+`/`-`/`*` of an ad-hoc query (after type coercion, so both
//! sides have one type) by a function that uses Arrow's checked kernels; an overflow fails
//! the query with SQLSTATE 22003 (`numeric value out of range`). The rewrite keeps each
//! expression's name, so result columns are named as before. Constant folding leaves a
//! failing call in place, so the error comes when the query runs. Views keep DataFusion's
//! arithmetic: one event must not stop a view (documented in docs/sql.md).

use std::sync::Arc;

use datafusion::arrow::array::{Array, Datum};
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::SessionContext;

use crate::error::SqlError;

/// Makes integer arithmetic of queries planned by `ctx` fail on overflow.
pub fn register(ctx: &SessionContext) {
    ctx.add_analyzer_rule(Arc::new(CheckedArithmetic));
}

#[derive(Debug)]
struct CheckedArithmetic;

impl AnalyzerRule for CheckedArithmetic {
    fn name(&self) -> &str {
        "weir_checked_integer_arithmetic"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| {
            let schema = input_schema(&plan);
            let names = NamePreserver::new(&plan);
            let rewritten = plan.map_expressions(|expr| {
                let name = names.save(&expr);
                let (expr, _) = rewrite(expr, &schema)?;
                Ok(Transformed::yes(name.restore(expr)))
            })?;
            rewritten.map_data(|p| p.recompute_schema())
        })
        .map(|t| t.data)
    }
}

/// The columns a node's expressions may refer to: its inputs', or its own for a leaf.
fn input_schema(plan: &LogicalPlan) -> DFSchema {
    let inputs = plan.inputs();
    if inputs.is_empty() {
        return plan.schema().as_ref().clone();
    }
    let mut schema = DFSchema::empty();
    for input in inputs {
        schema.merge(input.schema());
    }
    schema
}

/// `expr` with checked functions in place of integer `+`, `-` and `*`, and its type when
/// it is one of those. Types are carried up a chain of arithmetic rather than asked of
/// each node (asking recomputes the whole subtree: a chain of n would cost n²).
fn rewrite(expr: Expr, schema: &DFSchema) -> Result<(Expr, Option<DataType>)> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(op, Operator::Plus | Operator::Minus | Operator::Multiply) =>
        {
            let (left, l) = rewrite(*left, schema)?;
            let (right, r) = rewrite(*right, schema)?;
            let l = l.or_else(|| left.get_type(schema).ok());
            let r = r.or_else(|| right.get_type(schema).ok());
            match (l, r) {
                (Some(l), Some(r)) if l == r && l.is_integer() => {
                    let udf = ScalarUDF::new_from_impl(Checked::new(op));
                    let call = ScalarFunction::new_udf(Arc::new(udf), vec![left, right]);
                    Ok((Expr::ScalarFunction(call), Some(l)))
                }
                _ => Ok((
                    Expr::BinaryExpr(BinaryExpr::new(Box::new(left), op, Box::new(right))),
                    None,
                )),
            }
        }
        other => {
            let rewritten =
                other.map_children(|c| rewrite(c, schema).map(|(c, _)| Transformed::yes(c)))?;
            Ok((rewritten.data, None))
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Checked {
    op: Operator,
    name: &'static str,
    signature: Signature,
}

impl Checked {
    fn new(op: Operator) -> Self {
        let name = match op {
            Operator::Plus => "checked_add",
            Operator::Minus => "checked_sub",
            _ => "checked_mul",
        };
        Self {
            op,
            name,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Checked {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [l, r] = args.args.as_slice() else {
            return Err(DataFusionError::Internal(format!(
                "{} takes two arguments",
                self.name
            )));
        };
        let scalars = matches!((l, r), (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)));
        let (l, r) = (datum(l)?, datum(r)?);
        let kernel = match self.op {
            Operator::Plus => numeric::add,
            Operator::Minus => numeric::sub,
            _ => numeric::mul,
        };
        let result = kernel(l.as_ref(), r.as_ref()).map_err(|e| match e {
            ArrowError::ArithmeticOverflow(detail) => {
                let detail = detail.trim_start_matches("Overflow happened on: ");
                let kind = match args.return_field.data_type() {
                    DataType::Int16 => "smallint",
                    DataType::Int32 => "integer",
                    DataType::Int64 => "bigint",
                    other => {
                        return DataFusionError::External(Box::new(SqlError::OutOfRange(format!(
                            "{other} out of range: {detail}"
                        ))))
                    }
                };
                DataFusionError::External(Box::new(SqlError::OutOfRange(format!(
                    "{kind} out of range: {detail}"
                ))))
            }
            other => other.into(),
        })?;
        Ok(if scalars {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?)
        } else {
            ColumnarValue::Array(result)
        })
    }
}

/// An argument as Arrow's kernels take it.
fn datum(v: &ColumnarValue) -> Result<Box<dyn Datum>> {
    Ok(match v {
        ColumnarValue::Array(a) => Box::new(Arc::clone(a) as Arc<dyn Array>),
        ColumnarValue::Scalar(s) => Box::new(s.to_scalar()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(ctx: &SessionContext, sql: &str) -> std::result::Result<String, SqlError> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(
            datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .map_err(|e| SqlError::Internal(e.to_string()))?
                .to_string(),
        )
    }

    #[tokio::test]
    async fn integer_overflow_is_22003_and_names_stay() {
        let ctx = SessionContext::new();
        register(&ctx);
        for sql in [
            "SELECT 9223372036854775807 + 1",
            "SELECT -9223372036854775807 - 2",
            "SELECT 4611686018427387904 * 2",
            "SELECT x * x FROM (VALUES (CAST(3037000500 AS BIGINT))) t(x)",
            "SELECT CAST(2147483647 AS INT) + CAST(1 AS INT)",
        ] {
            let e = run(&ctx, sql).await.unwrap_err();
            assert_eq!(e.sqlstate(), "22003", "{sql}: {e}");
            assert!(e.to_string().contains("out of range: "), "{e}");
        }
        let ok = run(
            &ctx,
            "SELECT x + 1 AS y, x - 1, 2.5 * 2 FROM (VALUES (41)) t(x)",
        )
        .await
        .unwrap();
        assert!(
            ok.contains("| y  | t.x - Int64(1) | Float64(2.5) * Int64(2) |"),
            "{ok}"
        );
        assert!(
            ok.contains("| 42 | 40             | 5.0                     |"),
            "{ok}"
        );
    }
}
