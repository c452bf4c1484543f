//! Exact percentiles: `percentile_cont(q) WITHIN GROUP (ORDER BY x)`,
//! `percentile_disc(q) WITHIN GROUP (ORDER BY x)` and `median(x)`, computed as PostgreSQL
//! computes them.
//!
//! - `percentile_cont`: with the n values sorted, the rank `q·(n−1)` lies between the values
//!   at `floor` and `ceil` of it; the result is `lower + (rank − floor)·(upper − lower)`,
//!   in double precision (PostgreSQL's formula, so results are equal to the last bit).
//! - `percentile_disc`: the first value whose position (1-based) reaches `q·n`, in the input's
//!   type.
//! - `median(x)` is `percentile_cont(0.5) WITHIN GROUP (ORDER BY x)`, as in DuckDB.
//!
//! Exact means every value is kept: 8 bytes per value in the group's state (and in a
//! checkpoint), freed when the window closes. For large windows `approx_percentile_cont`
//! keeps a few hundred bytes per group whatever the count, within 1%.
//!
//! The state is the values packed as little-endian doubles, so merging states is
//! concatenating them, and streaming and batch give the same answer. Numeric inputs only
//! (values are held as doubles: integers are exact up to 2^53).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{plan_err, DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;
use datafusion::prelude::SessionContext;

use crate::percentile::{as_f64, kept};

/// Which function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Cont,
    Disc,
    Median,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Cont => "percentile_cont",
            Kind::Disc => "percentile_disc",
            Kind::Median => "median",
        }
    }
}

/// One of the exact percentile aggregates.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ExactPercentile {
    kind: Kind,
    signature: Signature,
}

impl ExactPercentile {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// Registers `percentile_cont`, `percentile_disc` and `median` in `ctx` (replacing
/// DataFusion's `percentile_cont` and `median`, whose results differ from PostgreSQL's).
pub fn register(ctx: &SessionContext) {
    for kind in [Kind::Cont, Kind::Disc, Kind::Median] {
        ctx.register_udaf(AggregateUDF::from(ExactPercentile::new(kind)));
    }
}

impl AggregateUDFImpl for ExactPercentile {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.kind.name();
        let wanted = if self.kind == Kind::Median { 1 } else { 2 };
        if arg_types.len() != wanted {
            return match self.kind {
                Kind::Median => plan_err!("median(x) takes one value"),
                _ => plan_err!(
                    "{name}(fraction) WITHIN GROUP (ORDER BY x) takes a fraction and one value"
                ),
            };
        }
        if !arg_types[0].is_numeric() && arg_types[0] != DataType::Null {
            return plan_err!(
                "{name} needs a numeric value, got {}; exact percentiles of other types are \
                 not supported",
                arg_types[0]
            );
        }
        let mut out = vec![arg_types[0].clone()];
        if wanted == 2 {
            out.push(DataType::Float64);
        }
        Ok(out)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            Kind::Disc if arg_types[0] != DataType::Null => arg_types[0].clone(),
            _ => DataType::Float64,
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "values"),
            DataType::Binary,
            true,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(ExactAccumulator {
            rule: Rule::from_args(self.kind, &args)?,
            values: Vec::new(),
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(ExactGroups {
            rule: Rule::from_args(self.kind, &args)?,
            groups: Vec::new(),
        }))
    }

    fn supports_within_group_clause(&self) -> bool {
        self.kind != Kind::Median
    }
}

/// What to compute from a group's values.
#[derive(Debug, Clone)]
struct Rule {
    kind: Kind,
    /// The fraction, in ascending order (a descending ORDER BY is `1 − q` for
    /// `percentile_cont`; `percentile_disc` counts from the top).
    q: f64,
    descending: bool,
    output: DataType,
}

impl Rule {
    fn from_args(kind: Kind, args: &AccumulatorArgs) -> Result<Self> {
        let name = kind.name();
        let q = match kind {
            Kind::Median => 0.5,
            _ => {
                let Some(lit) = args.exprs.get(1).and_then(|e| e.downcast_ref::<Literal>()) else {
                    return plan_err!("{name}: the fraction must be a literal between 0 and 1");
                };
                let q = match lit.value().cast_to(&DataType::Float64) {
                    Ok(ScalarValue::Float64(Some(q))) => q,
                    _ => return plan_err!("{name}: the fraction must be a number between 0 and 1"),
                };
                if !(0.0..=1.0).contains(&q) {
                    return plan_err!("{name}: the fraction must be between 0 and 1, got {q}");
                }
                q
            }
        };
        let descending = args
            .order_bys
            .first()
            .map(|s| s.options.descending)
            .unwrap_or(false);
        Ok(Self {
            kind,
            q,
            descending,
            output: args.return_field.data_type().clone(),
        })
    }

    /// The result over `values` (reordered in place).
    fn evaluate(&self, values: &mut [f64]) -> Option<f64> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let at = |values: &mut [f64], ascending_index: usize| -> f64 {
            let (_, v, _) = values.select_nth_unstable_by(ascending_index, |a, b| a.total_cmp(b));
            *v
        };
        // Position in the requested order → position in ascending order.
        let ascending = |i: usize| if self.descending { n - 1 - i } else { i };
        match self.kind {
            Kind::Cont | Kind::Median => {
                let rank = self.q * (n - 1) as f64;
                let (lo, hi) = (rank.floor(), rank.ceil());
                let lower = at(values, ascending(lo as usize));
                if hi == lo {
                    return Some(lower);
                }
                let upper = at(values, ascending(hi as usize));
                Some(lower + (rank - lo) * (upper - lower))
            }
            Kind::Disc => {
                let position = (self.q * n as f64).ceil() as usize;
                Some(at(values, ascending(position.saturating_sub(1).min(n - 1))))
            }
        }
    }

    /// The results as an array of the output type.
    fn output(&self, results: Float64Array) -> Result<ArrayRef> {
        let array: ArrayRef = Arc::new(results);
        if self.output == DataType::Float64 {
            return Ok(array);
        }
        Ok(cast(&array, &self.output)?)
    }
}

fn encode(values: &[f64], out: &mut Vec<u8>) {
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn decode_into(bytes: &[u8], out: &mut Vec<f64>) -> Result<()> {
    if !bytes.len().is_multiple_of(8) {
        return Err(DataFusionError::Execution(format!(
            "exact percentile state of {} bytes is not a list of doubles",
            bytes.len()
        )));
    }
    out.extend(
        bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))),
    );
    Ok(())
}

#[derive(Debug)]
struct ExactAccumulator {
    rule: Rule,
    values: Vec<f64>,
}

impl Accumulator for ExactAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.values.extend(as_f64(&values[0])?.iter().flatten());
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let v = self.rule.evaluate(&mut self.values);
        let array = self.rule.output(Float64Array::from(vec![v]))?;
        ScalarValue::try_from_array(&array, 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + 8 * self.values.capacity()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut bytes = Vec::with_capacity(8 * self.values.len());
        encode(&self.values, &mut bytes);
        Ok(vec![ScalarValue::Binary(Some(bytes))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for bytes in states[0].as_binary::<i32>().iter().flatten() {
            decode_into(bytes, &mut self.values)?;
        }
        Ok(())
    }
}

struct ExactGroups {
    rule: Rule,
    groups: Vec<Vec<f64>>,
}

impl GroupsAccumulator for ExactGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Vec::new);
        let values = as_f64(&values[0])?;
        for (i, &g) in group_indices.iter().enumerate() {
            let keep = kept(&values, opt_filter, i);
            if keep {
                self.groups[g].push(values.value(i));
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let taken = emit_to.take_needed(&mut self.groups);
        let results: Float64Array = taken
            .into_iter()
            .map(|mut values| self.rule.evaluate(&mut values))
            .collect();
        self.rule.output(results)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let taken = emit_to.take_needed(&mut self.groups);
        let total: usize = taken.iter().map(|v| v.len()).sum();
        let mut data = Vec::with_capacity(8 * total);
        let mut offsets = Vec::with_capacity(taken.len() + 1);
        offsets.push(0i32);
        for values in &taken {
            encode(values, &mut data);
            offsets.push(i32::try_from(data.len()).map_err(|_| {
                DataFusionError::Execution(
                    "exact percentile states exceed 2 GiB; use approx_percentile_cont".into(),
                )
            })?);
        }
        let out = BinaryArray::try_new(
            datafusion::arrow::buffer::OffsetBuffer::new(offsets.into()),
            data.into(),
            None,
        )?;
        Ok(vec![Arc::new(out)])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Vec::new);
        let states = values[0].as_binary::<i32>();
        for (i, &g) in group_indices.iter().enumerate() {
            if states.is_valid(i) {
                decode_into(states.value(i), &mut self.groups[g])?;
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let values = as_f64(&values[0])?;
        let encoded: Vec<Option<Vec<u8>>> = (0..values.len())
            .map(|i| {
                let keep = kept(&values, opt_filter, i);
                Some(if keep {
                    values.value(i).to_le_bytes().to_vec()
                } else {
                    Vec::new()
                })
            })
            .collect();
        Ok(vec![Arc::new(BinaryArray::from_iter(encoded))])
    }

    fn size(&self) -> usize {
        self.groups.capacity() * std::mem::size_of::<Vec<f64>>()
            + self.groups.iter().map(|v| 8 * v.capacity()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: Kind, q: f64, descending: bool) -> Rule {
        Rule {
            kind,
            q,
            descending,
            output: DataType::Float64,
        }
    }

    /// The values PostgreSQL 15 returns for the same input: `SELECT percentile_cont(0.9)
    /// WITHIN GROUP (ORDER BY x), percentile_cont(0.9) WITHIN GROUP (ORDER BY x DESC), …
    /// FROM (VALUES (7.0::float8), (1), (3), (10), (4)) t(x)` gives 8.8, 1.7999999999999998, ….
    #[test]
    fn results_follow_postgresql() {
        let values = [7.0, 1.0, 3.0, 10.0, 4.0];
        let eval = |r: Rule| r.evaluate(&mut values.to_vec()).unwrap();
        // sorted: 1 3 4 7 10
        assert_eq!(eval(rule(Kind::Cont, 0.5, false)), 4.0);
        assert_eq!(eval(rule(Kind::Cont, 0.9, false)), 8.8);
        assert_eq!(eval(rule(Kind::Cont, 0.25, false)), 3.0);
        assert_eq!(eval(rule(Kind::Cont, 0.9, true)), 1.7999999999999998);
        assert_eq!(eval(rule(Kind::Disc, 0.5, false)), 4.0);
        assert_eq!(eval(rule(Kind::Disc, 0.0, false)), 1.0);
        assert_eq!(eval(rule(Kind::Disc, 0.61, false)), 7.0);
        assert_eq!(eval(rule(Kind::Disc, 1.0, false)), 10.0);
        assert_eq!(eval(rule(Kind::Disc, 0.2, true)), 10.0);
        assert_eq!(eval(rule(Kind::Median, 0.5, false)), 4.0);
        assert_eq!(rule(Kind::Cont, 0.5, false).evaluate(&mut []), None);
        let mut even = vec![2.0, 1.0];
        assert_eq!(
            rule(Kind::Median, 0.5, false).evaluate(&mut even),
            Some(1.5)
        );
    }

    #[test]
    fn state_round_trips() {
        let mut bytes = Vec::new();
        encode(&[1.5, -2.0, f64::MAX], &mut bytes);
        let mut back = Vec::new();
        decode_into(&bytes, &mut back).unwrap();
        assert_eq!(back, vec![1.5, -2.0, f64::MAX]);
        assert!(decode_into(&[1, 2, 3], &mut back).is_err());
    }
}
