//! Session windows: `GROUP BY key, window_start, window_end` over
//! `SESSION(relation, time, gap)`.
//!
//! Per group key, an event at `t` opens the session `[t, t + gap)`; sessions of a key whose
//! spans overlap are one session, so an event can extend a session or bridge two into one
//! (their aggregates merged). A session `[start, last + gap)` — `last` its latest event — is
//! emitted once the watermark reaches `last + gap`: no event that is not late can then reach
//! it. `window_start` and `window_end` are the session's bounds.
//!
//! Sessions merge, so each keeps DataFusion row accumulators of its own (`Accumulator`,
//! whose `state()` and `merge_batch` join two sessions) rather than a slot in a groups
//! accumulator. A batch's rows are sorted by key and time, so the rows that land in one
//! session are handed to its accumulators together.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    new_empty_array, Array, ArrayRef, BooleanArray, Int64Array, UInt32Array,
};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;

use super::aggregate::{batch_with_schema, evaluate_all, timestamps_ns, AggregateSpec};
use super::{Operator, Tick};
use crate::error::{EngineError, Result};

/// One open session of a key.
struct Session {
    start: i64,
    /// The latest event time in it.
    last: i64,
    accumulators: Vec<Box<dyn Accumulator>>,
}

/// The open sessions of one aggregating view over `SESSION(…)`.
pub struct SessionAggregate {
    spec: AggregateSpec,
    gap: i64,
    /// Group expression giving the event time (`window_start` of `SESSION(…)`).
    time_index: usize,
    /// Group expression `window_end`, if grouped by.
    end_index: Option<usize>,
    /// The other group expressions: the session key.
    key_indices: Vec<usize>,
    converter: RowConverter,
    /// Per key (Arrow row format), its sessions by start, none overlapping.
    sessions: HashMap<Box<[u8]>, Vec<Session>>,
}

impl std::fmt::Debug for SessionAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionAggregate")
            .field("gap", &self.gap)
            .field("sessions", &self.groups())
            .finish()
    }
}

impl SessionAggregate {
    /// Empty state for `spec`, whose window binding is a session window of `gap` ns.
    pub fn new(spec: AggregateSpec, gap: i64) -> Result<Self> {
        let window = spec
            .window
            .clone()
            .ok_or_else(|| EngineError::Internal("a session view without its window".into()))?;
        let end_index = spec
            .output_schema
            .fields()
            .iter()
            .take(spec.group_exprs.len())
            .position(|f| f.name() == "window_end");
        let key_indices: Vec<usize> = (0..spec.group_exprs.len())
            .filter(|i| *i != window.group_index && Some(*i) != end_index)
            .collect();
        let mut fields: Vec<SortField> = key_indices
            .iter()
            .map(|&i| SortField::new(spec.output_schema.field(i).data_type().clone()))
            .collect();
        if fields.is_empty() {
            // One session timeline for the whole input.
            fields.push(SortField::new(DataType::Boolean));
        }
        Ok(Self {
            converter: RowConverter::new(fields)?,
            time_index: window.group_index,
            end_index,
            key_indices,
            gap,
            spec,
            sessions: HashMap::new(),
        })
    }

    /// Columns of the session key (the constant column of an ungrouped view included).
    fn converter_fields(&self) -> usize {
        self.key_indices.len().max(1)
    }

    fn new_accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>> {
        self.spec
            .aggregates
            .iter()
            .map(|a| Ok(a.create_accumulator()?))
            .collect()
    }

    /// Folds one batch into the sessions.
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let keys: Vec<ArrayRef> = if self.key_indices.is_empty() {
            vec![Arc::new(BooleanArray::from(vec![true; n]))]
        } else {
            let exprs: Vec<_> = self
                .key_indices
                .iter()
                .map(|&i| self.spec.group_exprs[i].clone())
                .collect();
            evaluate_all(&exprs, batch)?
        };
        let times = timestamps_ns(
            &self.spec.group_exprs[self.time_index]
                .evaluate(batch)?
                .into_array(n)?,
        )?;
        let (args, filters) = self.spec.inputs(batch)?;
        let rows = self.converter.convert_columns(&keys)?;
        let mut order: Vec<u32> = (0..n as u32)
            .filter(|&i| times.is_valid(i as usize))
            .collect();
        order.sort_by(|&a, &b| {
            (rows.row(a as usize), times.value(a as usize))
                .cmp(&(rows.row(b as usize), times.value(b as usize)))
        });
        let gap = self.gap;
        // Rows waiting for the session at `target` (key, index among its sessions).
        let mut pending: Vec<u32> = Vec::new();
        let mut target: Option<(Box<[u8]>, usize)> = None;
        for &i in &order {
            let t = times.value(i as usize);
            let row = rows.row(i as usize);
            // The common case: the run's key, and the event falls in the run's session and
            // reaches no later one. (Rows come sorted by key and time, so no earlier session
            // of the key can reach it.)
            if let Some((k, s)) = &target {
                if k.as_ref() == row.as_ref() {
                    let list = self.sessions.get_mut(k.as_ref()).expect("the run's key");
                    let bridges = list
                        .get(*s + 1)
                        .is_some_and(|next| next.start < t.saturating_add(gap));
                    let session = &mut list[*s];
                    if t < session.last.saturating_add(gap) && !bridges {
                        session.last = session.last.max(t);
                        pending.push(i);
                        continue;
                    }
                }
            }
            if !self.sessions.contains_key(row.as_ref()) {
                self.sessions.insert(row.as_ref().into(), Vec::new());
            }
            let list = &self.sessions[row.as_ref()];
            // Sessions whose span [start, last + gap) overlaps [t, t + gap).
            let first = list.partition_point(|s| s.last.saturating_add(gap) <= t);
            let mut end = first;
            while end < list.len() && list[end].start < t.saturating_add(gap) {
                end += 1;
            }
            let here = if end > first { Some(first) } else { None };
            // The sessions change shape: hand the waiting rows over first.
            if let Some((k, s)) = target.take() {
                self.flush(&k, s, &mut pending, &args, &filters)?;
            }
            let fresh = if here.is_none() {
                Some(self.new_accumulators()?)
            } else {
                None
            };
            let list = self.sessions.get_mut(row.as_ref()).expect("entry");
            let index = match fresh {
                Some(accumulators) => {
                    list.insert(
                        first,
                        Session {
                            start: t,
                            last: t,
                            accumulators,
                        },
                    );
                    first
                }
                None => {
                    // Bridge: merge the later overlapping sessions into the first.
                    let merged: Vec<Session> = list.drain(first + 1..end).collect();
                    let s = &mut list[first];
                    for other in merged {
                        merge_into(s, other)?;
                    }
                    s.start = s.start.min(t);
                    s.last = s.last.max(t);
                    first
                }
            };
            pending.push(i);
            target = Some((row.as_ref().into(), index));
        }
        if let Some((k, s)) = target.take() {
            self.flush(&k, s, &mut pending, &args, &filters)?;
        }
        Ok(())
    }

    /// Hands rows `pending` to the accumulators of session `index` of `key`.
    fn flush(
        &mut self,
        key: &[u8],
        index: usize,
        pending: &mut Vec<u32>,
        args: &[Vec<ArrayRef>],
        filters: &[Option<BooleanArray>],
    ) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let session = &mut self.sessions.get_mut(key).expect("session key")[index];
        for (a, acc) in session.accumulators.iter_mut().enumerate() {
            let rows: UInt32Array = match &filters[a] {
                None => UInt32Array::from(pending.clone()),
                Some(f) => pending
                    .iter()
                    .copied()
                    .filter(|&i| f.is_valid(i as usize) && f.value(i as usize))
                    .collect(),
            };
            if rows.is_empty() {
                continue;
            }
            let values = args[a]
                .iter()
                .map(|v| take(v.as_ref(), &rows, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            acc.update_batch(&values)?;
        }
        pending.clear();
        Ok(())
    }

    /// Removes every session the watermark `wm` has passed and returns its row, sessions
    /// ordered by end, then key.
    fn close(&mut self, wm: i64) -> Result<Vec<RecordBatch>> {
        let gap = self.gap;
        let mut closed: Vec<(i64, Box<[u8]>, Session)> = Vec::new();
        self.sessions.retain(|key, list| {
            let mut kept = Vec::with_capacity(list.len());
            for s in list.drain(..) {
                let end = s.last.saturating_add(gap);
                if end <= wm {
                    closed.push((end, key.clone(), s));
                } else {
                    kept.push(s);
                }
            }
            *list = kept;
            !list.is_empty()
        });
        if closed.is_empty() {
            return Ok(Vec::new());
        }
        closed.sort_by(|a, b| (a.0, &a.1, a.2.start).cmp(&(b.0, &b.1, b.2.start)));
        let parser = self.converter.parser();
        let keys = self
            .converter
            .convert_rows(closed.iter().map(|(_, k, _)| parser.parse(k)))?;
        let starts = Int64Array::from_iter_values(closed.iter().map(|(_, _, s)| s.start));
        let ends = Int64Array::from_iter_values(closed.iter().map(|(e, _, _)| *e));
        let mut values: Vec<Vec<ScalarValue>> = vec![Vec::new(); self.spec.aggregates.len()];
        for (_, _, s) in closed.iter_mut() {
            for (a, acc) in s.accumulators.iter_mut().enumerate() {
                values[a].push(acc.evaluate()?);
            }
        }
        let schema = &self.spec.output_schema;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        let mut key_column = self.key_indices.iter().zip(keys);
        for g in 0..self.spec.group_exprs.len() {
            let time_type = schema.field(g).data_type();
            let column: ArrayRef = if g == self.time_index {
                cast(&starts, time_type)?
            } else if Some(g) == self.end_index {
                cast(&ends, time_type)?
            } else {
                key_column
                    .next()
                    .map(|(_, c)| c)
                    .ok_or_else(|| EngineError::Internal("session key columns".into()))?
            };
            columns.push(column);
        }
        for (a, v) in values.into_iter().enumerate() {
            let field = schema.field(self.spec.group_exprs.len() + a);
            columns.push(scalars_to_array(v, field.data_type())?);
        }
        Ok(vec![batch_with_schema(schema, columns)?])
    }
}

/// Joins `other`'s state into `into`.
fn merge_into(into: &mut Session, mut other: Session) -> Result<()> {
    into.start = into.start.min(other.start);
    into.last = into.last.max(other.last);
    for (acc, from) in into
        .accumulators
        .iter_mut()
        .zip(other.accumulators.iter_mut())
    {
        let state = from
            .state()?
            .into_iter()
            .map(|v| v.to_array())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        acc.merge_batch(&state)?;
    }
    Ok(())
}

fn scalars_to_array(values: Vec<ScalarValue>, data_type: &DataType) -> Result<ArrayRef> {
    if values.is_empty() {
        return Ok(new_empty_array(data_type));
    }
    Ok(ScalarValue::iter_to_array(values)?)
}

/// The checkpointed form: one batch, a row per session — `start`, `last`, the key columns,
/// then every accumulator's state columns.
impl Operator for SessionAggregate {
    fn kind(&self) -> &'static str {
        "session"
    }

    fn process(&mut self, rows: Vec<RecordBatch>, tick: &Tick<'_>) -> Result<Vec<RecordBatch>> {
        for b in &rows {
            self.update(b)?;
        }
        self.close(tick.watermark)
    }

    fn describe(&self) -> String {
        let fields = self.spec.output_schema.fields();
        let key: Vec<&str> = self
            .key_indices
            .iter()
            .map(|&i| fields[i].name().as_str())
            .collect();
        let aggregates: Vec<&str> = self.spec.aggregates.iter().map(|a| a.name()).collect();
        format!(
            "session windows, gap {}; per key ({}); aggregates {}; open sessions {}",
            super::describe_ns(self.gap),
            key.join(", "),
            aggregates.join(", "),
            self.groups()
        )
    }

    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        if self.sessions.is_empty() {
            return Ok(Vec::new());
        }
        let mut keys: Vec<&[u8]> = Vec::new();
        let parser = self.converter.parser();
        let mut starts = Vec::new();
        let mut lasts = Vec::new();
        let mut states: Vec<Vec<Vec<ScalarValue>>> = Vec::new();
        for (key, list) in self.sessions.iter_mut() {
            for s in list.iter_mut() {
                keys.push(key);
                starts.push(s.start);
                lasts.push(s.last);
                for (a, acc) in s.accumulators.iter_mut().enumerate() {
                    let state = acc.state()?;
                    if states.len() <= a {
                        states.push(vec![Vec::new(); state.len()]);
                    }
                    for (j, v) in state.into_iter().enumerate() {
                        states[a][j].push(v);
                    }
                }
            }
        }
        let mut fields = vec![
            Field::new("start", DataType::Int64, false),
            Field::new("last", DataType::Int64, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(starts)),
            Arc::new(Int64Array::from(lasts)),
        ];
        let key_columns = self
            .converter
            .convert_rows(keys.iter().map(|k| parser.parse(k)))?;
        for (i, c) in key_columns.into_iter().enumerate() {
            fields.push(Field::new(format!("k{i}"), c.data_type().clone(), true));
            columns.push(c);
        }
        for (a, agg) in states.into_iter().enumerate() {
            for (j, values) in agg.into_iter().enumerate() {
                let array = ScalarValue::iter_to_array(values)?;
                fields.push(Field::new(
                    format!("s{a}_{j}"),
                    array.data_type().clone(),
                    true,
                ));
                columns.push(array);
            }
        }
        Ok(vec![RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?])
    }

    fn restore(&mut self, state: &[RecordBatch]) -> Result<()> {
        self.sessions.clear();
        let arities: Vec<usize> = self
            .spec
            .aggregates
            .iter()
            .map(|a| Ok(a.state_fields()?.len()))
            .collect::<Result<_>>()?;
        for batch in state {
            if batch.num_rows() == 0 {
                continue;
            }
            let key_count = self.converter_fields();
            let expected = 2 + key_count + arities.iter().sum::<usize>();
            if batch.num_columns() != expected {
                return Err(EngineError::Checkpoint(format!(
                    "session state has {} columns, this view needs {expected}",
                    batch.num_columns(),
                )));
            }
            let starts = timestamps_ns(batch.column(0))?;
            let lasts = timestamps_ns(batch.column(1))?;
            let keys = self
                .converter
                .convert_columns(&batch.columns()[2..2 + key_count])?;
            for r in 0..batch.num_rows() {
                let mut accumulators = self.new_accumulators()?;
                let mut col = 2 + key_count;
                for (acc, &arity) in accumulators.iter_mut().zip(&arities) {
                    let slice: Vec<ArrayRef> = batch.columns()[col..col + arity]
                        .iter()
                        .map(|c| c.slice(r, 1))
                        .collect();
                    acc.merge_batch(&slice)?;
                    col += arity;
                }
                let list = self
                    .sessions
                    .entry(keys.row(r).as_ref().into())
                    .or_default();
                let session = Session {
                    start: starts.value(r),
                    last: lasts.value(r),
                    accumulators,
                };
                let at = list.partition_point(|s| s.start < session.start);
                list.insert(at, session);
            }
        }
        Ok(())
    }

    fn groups(&self) -> usize {
        self.sessions.values().map(|l| l.len()).sum()
    }

    fn state_bytes(&self) -> usize {
        self.sessions
            .iter()
            .map(|(k, l)| {
                k.len()
                    + l.iter()
                        .map(|s| 16 + s.accumulators.iter().map(|a| a.size()).sum::<usize>())
                        .sum::<usize>()
            })
            .sum()
    }

    fn output_watermark(&self, wm: i64) -> i64 {
        if wm == i64::MAX {
            return wm;
        }
        // Sessions to come start at their first event, which is not before the watermark,
        // or are open sessions now.
        self.sessions
            .values()
            .filter_map(|l| l.first().map(|s| s.start))
            .min()
            .map_or(wm, |start| start.min(wm))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
