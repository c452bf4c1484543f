//! Two sources read as one, for a view that joins them (`FROM orders o JOIN payments p ON …`).
//!
//! A pipeline reads one source, so a join of two sources gets a pipeline of its own that
//! reads a *pair*: both sources' readers, polled in turn, their batches put in one shape
//! ([`PairLayout`]): a side column, the event time, then the first source's columns and the
//! second's (the other side's columns null). Everything a pipeline does then holds for both
//! at once: one position (both sources' positions), one checkpoint, one watermark — the
//! minimum of the two sources' watermarks, each source's splits tracked with its own
//! declared delay (the first source's splits are even, the second's odd) — and lateness
//! judged against it. When one bounded source ends, only the other holds the watermark back.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, TimestampNanosecondArray, UInt8Array,
};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::json;

use super::source::{
    Poll, RowOrigins, Source, SourceBatch, SourceFactory, SourceSpec, SourceStatus, SplitProgress,
};
use crate::error::{EngineError, Result};
use crate::operator::aggregate::timestamps_ns;

/// Name of the side column (0: first source, 1: second).
pub const SIDE_COLUMN: &str = "__side";
/// Name of the event-time column.
pub const TIME_COLUMN: &str = "__time";
/// Index of the event-time column in a pair's batches.
pub const TIME_INDEX: usize = 1;

/// The engine's name for the pair of sources `a` and `b` (in either order).
pub fn pair_name(a: &str, b: &str) -> String {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    format!("{first}⋈{second}")
}

/// The shape of a pair's batches.
#[derive(Debug, Clone)]
pub struct PairLayout {
    /// The first source's name and schema.
    pub first: (String, SchemaRef),
    /// The second source's name and schema.
    pub second: (String, SchemaRef),
    /// Side, event time, the first source's columns, the second's (all nullable).
    pub schema: SchemaRef,
}

impl PairLayout {
    /// The layout of sources `a` and `b`, ordered by name.
    pub fn new(a: (&str, SchemaRef), b: (&str, SchemaRef)) -> Self {
        let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
        let mut fields = vec![
            Field::new(SIDE_COLUMN, DataType::UInt8, false),
            Field::new(
                TIME_COLUMN,
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                true,
            ),
        ];
        for (name, schema) in [&first, &second] {
            fields.extend(
                schema.fields().iter().map(|f| {
                    Field::new(format!("{name}.{}", f.name()), f.data_type().clone(), true)
                }),
            );
        }
        Self {
            first: (first.0.to_string(), first.1),
            second: (second.0.to_string(), second.1),
            schema: Arc::new(Schema::new(fields)),
        }
    }

    fn side(&self, side: u8) -> &(String, SchemaRef) {
        if side == 0 {
            &self.first
        } else {
            &self.second
        }
    }

    /// The columns of `side` in a pair's batches.
    fn columns(&self, side: u8) -> std::ops::Range<usize> {
        let first = self.first.1.fields().len();
        if side == 0 {
            2..2 + first
        } else {
            2 + first..2 + first + self.second.1.fields().len()
        }
    }

    /// `batch` of source `side`, in the pair's shape; `time` is its event-time column.
    pub fn wrap(&self, side: u8, batch: &RecordBatch, time: usize) -> Result<RecordBatch> {
        let n = batch.num_rows();
        // The instant, whatever the column's unit and time zone.
        let ns = timestamps_ns(batch.column(time))?;
        let times = TimestampNanosecondArray::new(ns.values().clone(), ns.nulls().cloned());
        let mut columns: Vec<ArrayRef> =
            vec![Arc::new(UInt8Array::from(vec![side; n])), Arc::new(times)];
        for s in 0..2u8 {
            let range = self.columns(s);
            if s == side {
                columns.extend(batch.columns().iter().cloned());
            } else {
                columns.extend(
                    self.schema.fields()[range]
                        .iter()
                        .map(|f| new_null_array(f.data_type(), n)),
                );
            }
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// The rows of `side` in `batches`, in that source's own schema.
    pub fn rows_of(&self, side: u8, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let schema = self.side(side).1.clone();
        let mut out = Vec::new();
        for batch in batches {
            let sides = batch
                .column(0)
                .as_any()
                .downcast_ref::<UInt8Array>()
                .ok_or_else(|| EngineError::Internal("a pair's batch without sides".into()))?;
            let mine = sides.values().iter().filter(|s| **s == side).count();
            if mine == 0 {
                continue;
            }
            let batch = if mine == batch.num_rows() {
                batch.clone()
            } else {
                let keep: BooleanArray = sides.values().iter().map(|s| Some(*s == side)).collect();
                filter_record_batch(batch, &keep)?
            };
            let columns = batch.columns()[self.columns(side)].to_vec();
            out.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
        Ok(out)
    }
}

/// One side of a pair: the source's connector, spec and event-time column.
#[derive(Clone)]
pub struct PairSide {
    pub factory: Arc<dyn SourceFactory>,
    pub spec: SourceSpec,
    pub time_column: usize,
}

/// The connector of a pair: opens both sources.
pub struct PairFactory {
    pub layout: PairLayout,
    pub sides: [PairSide; 2],
}

/// The keys of the two sources' positions in a pair's position.
pub const PAIR_KEYS: [&str; 2] = ["first", "second"];

/// A split of `side`'s source as a split of the pair.
fn pair_split(side: u8, split: i32) -> i32 {
    split.saturating_mul(2).saturating_add(side as i32)
}

impl SourceFactory for PairFactory {
    fn name(&self) -> &'static str {
        "pair"
    }

    fn validate(&self, spec: &SourceSpec) -> Result<std::collections::BTreeMap<String, String>> {
        Ok(spec.options.clone())
    }

    fn open(
        &self,
        _spec: &SourceSpec,
        position: Option<&serde_json::Value>,
    ) -> Result<Box<dyn Source>> {
        let mut readers = Vec::with_capacity(2);
        for (side, key) in self.sides.iter().zip(PAIR_KEYS) {
            let at = position.and_then(|p| p.get(key)).filter(|p| !p.is_null());
            readers.push(SideReader {
                source: side.factory.open(&side.spec, at)?,
                position: at.cloned().unwrap_or(serde_json::Value::Null),
                ended: false,
                seen: BTreeSet::new(),
                holding: None,
            });
        }
        let [first, second]: [SideReader; 2] = readers
            .try_into()
            .map_err(|_| EngineError::Internal("a pair has two sides".into()))?;
        Ok(Box::new(PairSource {
            layout: self.layout.clone(),
            time: [self.sides[0].time_column, self.sides[1].time_column],
            readers: [first, second],
            turn: 0,
        }))
    }

    fn is_bounded(&self, _spec: &SourceSpec) -> bool {
        self.sides.iter().all(|s| s.factory.is_bounded(&s.spec))
    }
}

struct SideReader {
    source: Box<dyn Source>,
    /// Its position after the last batch handed out.
    position: serde_json::Value,
    ended: bool,
    /// Its splits seen so far.
    seen: BTreeSet<i32>,
    /// The splits it last said hold the watermark back.
    holding: Option<Vec<i32>>,
}

struct PairSource {
    layout: PairLayout,
    time: [usize; 2],
    readers: [SideReader; 2],
    /// The side polled first next time (so that neither starves the other).
    turn: u8,
}

impl PairSource {
    fn position(&self) -> serde_json::Value {
        json!({ PAIR_KEYS[0]: self.readers[0].position, PAIR_KEYS[1]: self.readers[1].position })
    }

    /// The pair's splits holding the watermark back: those of the sides still reading —
    /// named from the start, so that a side that has delivered nothing yet holds the
    /// watermark at its minimum.
    fn holding(&self) -> Option<Vec<i32>> {
        let mut out = Vec::new();
        for (side, r) in self.readers.iter().enumerate() {
            if r.ended {
                continue;
            }
            let splits: Vec<i32> = match &r.holding {
                Some(h) => h.clone(),
                None if r.seen.is_empty() => vec![0],
                None => r.seen.iter().copied().collect(),
            };
            out.extend(splits.into_iter().map(|s| pair_split(side as u8, s)));
        }
        Some(out)
    }

    /// The event-time column of `side`'s source.
    fn time_name(&self, side: u8) -> Arc<str> {
        let schema = &self.layout.side(side).1;
        Arc::from(schema.field(self.time[side as usize]).name().as_str())
    }

    fn wrap(&mut self, side: u8, b: SourceBatch) -> Result<SourceBatch> {
        let r = &mut self.readers[side as usize];
        r.position = b.position;
        if b.holding_splits.is_some() {
            r.holding = b.holding_splits;
        }
        let n = b.batch.num_rows();
        let splits: Vec<i32> = match b.origins.splits() {
            Some(s) => s.to_vec(),
            None => vec![0; n],
        };
        r.seen.extend(splits.iter().copied());
        let batch = self.layout.wrap(side, &b.batch, self.time[side as usize])?;
        let origins = RowOrigins::Paired {
            source: Arc::from(self.layout.side(side).0.as_str()),
            time_column: self.time_name(side),
            splits: splits.into_iter().map(|s| pair_split(side, s)).collect(),
            inner: Box::new(b.origins),
        };
        let mut out = SourceBatch::new(batch, origins, b.dead_letters, self.position());
        out.holding_splits = self.holding();
        Ok(out)
    }
}

impl Source for PairSource {
    fn next_batch(&mut self) -> Result<Poll> {
        let mut waiting = false;
        for k in 0..2u8 {
            let side = (self.turn + k) % 2;
            let r = &mut self.readers[side as usize];
            if r.ended {
                continue;
            }
            match r.source.next_batch()? {
                Poll::Batch(b) => {
                    self.turn = (side + 1) % 2;
                    return self.wrap(side, b).map(Poll::Batch);
                }
                Poll::End => {
                    r.ended = true;
                    if self.readers.iter().any(|r| !r.ended) {
                        // The other side alone holds the watermark back from now on: an
                        // empty batch says so.
                        let mut marker = SourceBatch::new(
                            RecordBatch::new_empty(self.layout.schema.clone()),
                            RowOrigins::Paired {
                                source: Arc::from(self.layout.side(side).0.as_str()),
                                time_column: self.time_name(side),
                                splits: Vec::new(),
                                inner: Box::new(RowOrigins::Sequence { first: 0 }),
                            },
                            Vec::new(),
                            self.position(),
                        );
                        marker.holding_splits = self.holding();
                        return Ok(Poll::Batch(marker));
                    }
                }
                Poll::Waiting => waiting = true,
                Poll::Idle => {}
            }
        }
        Ok(if self.readers.iter().all(|r| r.ended) {
            Poll::End
        } else if waiting {
            Poll::Waiting
        } else {
            Poll::Idle
        })
    }

    fn status(&self) -> SourceStatus {
        for (r, (name, _)) in self
            .readers
            .iter()
            .zip([&self.layout.first, &self.layout.second])
        {
            match r.source.status() {
                SourceStatus::Running => {}
                SourceStatus::Disconnected(why) => {
                    return SourceStatus::Disconnected(format!("{name}: {why}"))
                }
                SourceStatus::Error(why) => return SourceStatus::Error(format!("{name}: {why}")),
            }
        }
        SourceStatus::Running
    }

    fn splits(&self) -> Vec<SplitProgress> {
        let mut out = Vec::new();
        for (side, r) in self.readers.iter().enumerate() {
            out.extend(r.source.splits().into_iter().map(|mut p| {
                p.split = pair_split(side as u8, p.split);
                p
            }));
        }
        out
    }
}
