//! `approx_percentile_cont` backed by a mergeable relative-error sketch (DDSketch-style).
//!
//! DataFusion's own `approx_percentile_cont` keeps a t-digest per group, which costs about
//! 14× a log-bucket histogram per event at thousands of groups. This implementation keeps,
//! per group, counts in logarithmic buckets whose bounds grow by γ = (1+α)/(1−α): any value
//! reported lies within relative error α = 1% of the exact quantile of the values it
//! summarizes, whatever the distribution, and merging two sketches is adding counts — so a
//! streaming view and a batch query agree exactly. It is registered under the same name,
//! with the same `WITHIN GROUP (ORDER BY x)` syntax, in every context Weir plans in.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{plan_err, DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, TypeSignature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;

/// Relative accuracy of every reported quantile.
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// Magnitudes below this count as zero.
const MIN_MAGNITUDE: f64 = 1e-12;

fn gamma_ln() -> f64 {
    ((1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)).ln()
}

/// Dense counts of consecutive bucket indices starting at `offset`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Store {
    offset: i32,
    counts: Vec<u64>,
}

impl Store {
    fn add(&mut self, index: i32, n: u64) {
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push(0);
        } else if index < self.offset {
            let grow = (self.offset - index) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = index;
        } else if index >= self.offset + self.counts.len() as i32 {
            self.counts.resize((index - self.offset) as usize + 1, 0);
        }
        self.counts[(index - self.offset) as usize] += n;
    }

    fn merge(&mut self, other: &Store) {
        for (i, &c) in other.counts.iter().enumerate() {
            if c > 0 {
                self.add(other.offset + i as i32, c);
            }
        }
    }
}

/// A quantile sketch of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Sketch {
    positive: Store,
    negative: Store,
    zeros: u64,
    count: u64,
    min: f64,
    max: f64,
}

impl Default for Sketch {
    fn default() -> Self {
        Self {
            positive: Store::default(),
            negative: Store::default(),
            zeros: 0,
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Sketch {
    /// Adds a value (NaN is ignored).
    pub fn add(&mut self, x: f64) {
        if x.is_nan() {
            return;
        }
        self.count += 1;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        if x > MIN_MAGNITUDE {
            self.positive.add((x.ln() / gamma_ln()).ceil() as i32, 1);
        } else if x < -MIN_MAGNITUDE {
            self.negative.add(((-x).ln() / gamma_ln()).ceil() as i32, 1);
        } else {
            self.zeros += 1;
        }
    }

    /// Adds another sketch's values.
    pub fn merge(&mut self, other: &Sketch) {
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
        self.zeros += other.zeros;
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The value of rank `r` (0-based) in sorted order, within the relative accuracy.
    fn value_at_rank(&self, r: u64) -> f64 {
        let bucket_value =
            |i: i32| 2.0 * (i as f64 * gamma_ln()).exp() / (1.0 + (gamma_ln()).exp());
        let mut seen = 0u64;
        for (i, &c) in self.negative.counts.iter().enumerate().rev() {
            seen += c;
            if seen > r {
                return -bucket_value(self.negative.offset + i as i32);
            }
        }
        seen += self.zeros;
        if seen > r {
            return 0.0;
        }
        for (i, &c) in self.positive.counts.iter().enumerate() {
            seen += c;
            if seen > r {
                return bucket_value(self.positive.offset + i as i32);
            }
        }
        self.max
    }

    /// The `q`-quantile (linear interpolation between ranks, like `percentile_cont`).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * (self.count - 1) as f64;
        let (lo, hi) = (rank.floor() as u64, rank.ceil() as u64);
        let a = self.value_at_rank(lo);
        let v = if hi == lo {
            a
        } else {
            a + (self.value_at_rank(hi) - a) * (rank - lo as f64)
        };
        Some(v.clamp(self.min, self.max))
    }

    /// Compact binary form (the accumulator state): the header, then per store its offset
    /// and only its non-empty buckets as (index delta, count) varints — a group of a few
    /// dozen values takes tens of bytes, not the width of its value range.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        self.encode_into(&mut out);
        out
    }

    /// Appends [`Sketch::encode`]'s output to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.zeros.to_le_bytes());
        out.extend_from_slice(&self.min.to_le_bytes());
        out.extend_from_slice(&self.max.to_le_bytes());
        for store in [&self.positive, &self.negative] {
            out.extend_from_slice(&store.offset.to_le_bytes());
            // The number of filled buckets goes first; it is known after one pass.
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            let (mut filled, mut last) = (0u32, 0usize);
            for (i, &c) in store.counts.iter().enumerate() {
                if c > 0 {
                    put_varint(out, (i - last) as u64);
                    put_varint(out, c);
                    last = i;
                    filled += 1;
                }
            }
            out[at..at + 4].copy_from_slice(&filled.to_le_bytes());
        }
    }

    /// Parses [`Sketch::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Sketch> {
        let bad = || DataFusionError::Execution("corrupt percentile sketch state".into());
        let fixed = |at: usize| -> Result<[u8; 8]> {
            bytes
                .get(at..at + 8)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(bad)
        };
        let count = u64::from_le_bytes(fixed(0)?);
        let zeros = u64::from_le_bytes(fixed(8)?);
        let min = f64::from_le_bytes(fixed(16)?);
        let max = f64::from_le_bytes(fixed(24)?);
        let mut pos = 32usize;
        let mut stores = [Store::default(), Store::default()];
        for store in &mut stores {
            let offset = bytes.get(pos..pos + 4).ok_or_else(bad)?;
            store.offset = i32::from_le_bytes(offset.try_into().expect("4 bytes"));
            pos += 4;
            let filled = bytes.get(pos..pos + 4).ok_or_else(bad)?;
            let filled = u32::from_le_bytes(filled.try_into().expect("4 bytes"));
            pos += 4;
            let mut index = 0usize;
            for _ in 0..filled {
                index += get_varint(bytes, &mut pos).ok_or_else(bad)? as usize;
                let c = get_varint(bytes, &mut pos).ok_or_else(bad)?;
                if index > 1 << 20 {
                    return Err(bad());
                }
                if store.counts.len() <= index {
                    store.counts.resize(index + 1, 0);
                }
                store.counts[index] = c;
            }
        }
        let [positive, negative] = stores;
        Ok(Sketch {
            positive,
            negative,
            zeros,
            count,
            min,
            max,
        })
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Replaces DataFusion's `approx_percentile_cont` in `ctx` with the sketch.
pub fn register(ctx: &datafusion::prelude::SessionContext) {
    ctx.register_udaf(datafusion::logical_expr::AggregateUDF::from(
        ApproxPercentileSketch::default(),
    ));
}

/// The `approx_percentile_cont(q [, ignored]) WITHIN GROUP (ORDER BY x)` aggregate.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ApproxPercentileSketch {
    signature: Signature,
}

impl Default for ApproxPercentileSketch {
    fn default() -> Self {
        Self {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Float64, DataType::Float64]),
                    TypeSignature::Exact(vec![
                        DataType::Float64,
                        DataType::Float64,
                        DataType::Int64,
                    ]),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

fn percentile(args: &AccumulatorArgs) -> Result<f64> {
    let Some(lit) = args.exprs.get(1).and_then(|e| e.downcast_ref::<Literal>()) else {
        return plan_err!(
            "approx_percentile_cont: the percentile must be a literal between 0 and 1"
        );
    };
    let q = match lit.value() {
        ScalarValue::Float64(Some(q)) => *q,
        ScalarValue::Float32(Some(q)) => *q as f64,
        other => match other.cast_to(&DataType::Float64) {
            Ok(ScalarValue::Float64(Some(q))) => q,
            _ => {
                return plan_err!(
                    "approx_percentile_cont: the percentile must be a number between 0 and 1"
                )
            }
        },
    };
    if !(0.0..=1.0).contains(&q) {
        return plan_err!(
            "approx_percentile_cont: the percentile must be between 0 and 1, got {q}"
        );
    }
    let descending = args
        .order_bys
        .first()
        .map(|s| s.options.descending)
        .unwrap_or(false);
    Ok(if descending { 1.0 - q } else { q })
}

impl AggregateUDFImpl for ApproxPercentileSketch {
    fn name(&self) -> &str {
        "approx_percentile_cont"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(2..=3).contains(&arg_types.len()) {
            return plan_err!("approx_percentile_cont(percentile) WITHIN GROUP (ORDER BY x) takes a percentile and one value");
        }
        if !arg_types[0].is_numeric() && arg_types[0] != DataType::Null {
            return plan_err!(
                "approx_percentile_cont needs a numeric value, got {}",
                arg_types[0]
            );
        }
        let mut out = vec![DataType::Float64, DataType::Float64];
        if arg_types.len() == 3 {
            out.push(DataType::Int64);
        }
        Ok(out)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "sketch"),
            DataType::Binary,
            true,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SketchAccumulator {
            q: percentile(&args)?,
            sketch: Sketch::default(),
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(SketchGroups {
            q: percentile(&args)?,
            sketches: Vec::new(),
            recycled: None,
        }))
    }

    fn supports_within_group_clause(&self) -> bool {
        true
    }
}

/// Whether row `i` of `values` counts: not null and selected by the aggregate's FILTER.
pub(crate) fn kept(values: &Float64Array, filter: Option<&BooleanArray>, i: usize) -> bool {
    values.is_valid(i) && filter.is_none_or(|f| f.is_valid(i) && f.value(i))
}

/// The argument as doubles.
pub(crate) fn as_f64(values: &ArrayRef) -> Result<Float64Array> {
    Ok(cast(values, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone())
}

#[derive(Debug)]
struct SketchAccumulator {
    q: f64,
    sketch: Sketch,
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for v in as_f64(&values[0])?.iter().flatten() {
            self.sketch.add(v);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(self.sketch.quantile(self.q)))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + 8 * (self.sketch.positive.counts.capacity() + self.sketch.negative.counts.capacity())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(self.sketch.encode()))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for bytes in states[0].as_binary::<i32>().iter().flatten() {
            self.sketch.merge(&Sketch::decode(bytes)?);
        }
        Ok(())
    }
}

struct SketchGroups {
    q: f64,
    sketches: Vec<Sketch>,
    /// The sketches the last `state(EmitTo::All)` encoded, kept until the next call: when
    /// exactly that state is merged straight back (a checkpoint or a snapshot of open
    /// windows), they are put back instead of being decoded again.
    recycled: Option<Recycled>,
}

struct Recycled {
    /// Identity of the state array handed out: its buffers' addresses and length.
    offsets: usize,
    values: usize,
    len: usize,
    sketches: Vec<Sketch>,
}

impl GroupsAccumulator for SketchGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.recycled = None;
        self.sketches.resize_with(total_num_groups, Sketch::default);
        let values = as_f64(&values[0])?;
        match (values.null_count(), opt_filter) {
            (0, None) => {
                for (&g, &v) in group_indices.iter().zip(values.values().iter()) {
                    self.sketches[g].add(v);
                }
            }
            _ => {
                for (i, &g) in group_indices.iter().enumerate() {
                    let keep = kept(&values, opt_filter, i);
                    if keep {
                        self.sketches[g].add(values.value(i));
                    }
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        self.recycled = None;
        let taken = emit_to.take_needed(&mut self.sketches);
        let out: Float64Array = taken.iter().map(|s| s.quantile(self.q)).collect();
        Ok(Arc::new(out))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let taken = emit_to.take_needed(&mut self.sketches);
        // One buffer for all groups' states, then offsets into it.
        let mut data = Vec::with_capacity(taken.len() * 48);
        let mut offsets = Vec::with_capacity(taken.len() + 1);
        offsets.push(0i32);
        for s in &taken {
            s.encode_into(&mut data);
            offsets.push(i32::try_from(data.len()).map_err(|_| {
                DataFusionError::Execution("percentile states exceed 2 GiB".into())
            })?);
        }
        let out = BinaryArray::try_new(
            datafusion::arrow::buffer::OffsetBuffer::new(offsets.into()),
            data.into(),
            None,
        )?;
        self.recycled = (emit_to == EmitTo::All).then(|| Recycled {
            offsets: out.offsets().as_ptr() as usize,
            values: out.values().as_ptr() as usize,
            len: out.len(),
            sketches: taken,
        });
        Ok(vec![Arc::new(out)])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        let states = values[0].as_binary::<i32>();
        if let Some(r) = self.recycled.take() {
            let same = self.sketches.is_empty()
                && r.len == states.len()
                && r.len == total_num_groups
                && r.offsets == states.offsets().as_ptr() as usize
                && r.values == states.values().as_ptr() as usize
                && group_indices.iter().enumerate().all(|(i, &g)| i == g);
            if same {
                self.sketches = r.sketches;
                return Ok(());
            }
        }
        self.sketches.resize_with(total_num_groups, Sketch::default);
        for (i, &g) in group_indices.iter().enumerate() {
            if states.is_valid(i) {
                let other = Sketch::decode(states.value(i))?;
                let sketch = &mut self.sketches[g];
                if sketch.is_empty() {
                    *sketch = other;
                } else {
                    sketch.merge(&other);
                }
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
                let mut s = Sketch::default();
                if keep {
                    s.add(values.value(i));
                }
                Some(s.encode())
            })
            .collect();
        Ok(vec![Arc::new(BinaryArray::from_iter(encoded))])
    }

    fn size(&self) -> usize {
        self.sketches
            .iter()
            .map(|s| {
                std::mem::size_of::<Sketch>()
                    + 8 * (s.positive.counts.capacity() + s.negative.counts.capacity())
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(values: &mut [f64], q: f64) -> f64 {
        values.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let rank = q * (values.len() - 1) as f64;
        let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
        values[lo] + (values[hi] - values[lo]) * (rank - lo as f64)
    }

    #[test]
    fn quantiles_are_within_the_relative_accuracy() {
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for scale in [1e-3, 1.0, 50.0, 1e6] {
            let mut values: Vec<f64> = (0..20_000).map(|_| (next() - 0.2) * scale).collect();
            let mut sketch = Sketch::default();
            values.iter().for_each(|v| sketch.add(*v));
            for q in [0.0, 0.01, 0.5, 0.95, 0.99, 1.0] {
                let want = exact(&mut values, q);
                let got = sketch.quantile(q).unwrap();
                // Within α of the value, plus the interpolation between neighbouring ranks.
                assert!(
                    (got - want).abs() <= 2.0 * RELATIVE_ACCURACY * want.abs() + 1e-9 * scale,
                    "scale {scale} q {q}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn merging_equals_adding_and_state_round_trips() {
        let mut a = Sketch::default();
        let mut b = Sketch::default();
        let mut all = Sketch::default();
        for i in 0..1000 {
            let v = (i as f64 - 300.0) * 0.37;
            if i % 3 == 0 {
                a.add(v)
            } else {
                b.add(v)
            }
            all.add(v);
        }
        let mut merged = Sketch::decode(&a.encode()).unwrap();
        merged.merge(&Sketch::decode(&b.encode()).unwrap());
        assert_eq!(merged.quantile(0.95), all.quantile(0.95));
        assert_eq!(merged.count, 1000);
        assert!(Sketch::decode(&[1, 2, 3]).is_err());
    }
}
