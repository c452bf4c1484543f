//! Alerts: the rows a rule's query selects become alerts, deduplicated per key over an
//! event-time cooldown.
//!
//! An alert rule is a view whose query rows go through an [`AlertStage`] instead of being
//! stored: per key, the first row starts an alert (a `firing` message); a row within
//! `cooldown` of the last alert sent for that key is counted on that alert (`repeats`)
//! instead. For a threshold rule (one without `OVER`) a row of the rule's input for a key
//! whose alert is firing, later than the last row that held, and that the rule did not
//! select means the condition cleared: the alert gets a `resolved` message.
//!
//! Every decision depends on event times and the order of a key's rows only, so a replay
//! after a crash from the same checkpoint makes the same decisions and produces the same
//! messages with the same `alert_id`s. The messages are the view's emitted rows: they are
//! checkpointed, served and handed to sinks like any view's rows.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
    UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::{Operator, Tick};
use crate::error::{EngineError, Result};
use crate::operator::aggregate::timestamps_ns;

/// Where the input rows that can clear a threshold alert keep their key and time.
#[derive(Debug, Clone)]
pub struct ResolveSpec {
    /// Key columns in the rule's input rows.
    pub key_columns: Vec<usize>,
    /// The event-time column in the rule's input rows.
    pub time_column: usize,
}

/// A rule's alerting settings, from `CREATE ALERT … WITH (…)`.
#[derive(Debug, Clone)]
pub struct AlertSpec {
    pub name: String,
    pub severity: String,
    /// Key columns in the query's rows (empty: one key for the whole rule).
    pub key_columns: Vec<usize>,
    /// The event-time column in the query's rows.
    pub time_column: usize,
    pub cooldown_ns: i64,
    /// The query's own schema (the payload's columns).
    pub query_schema: SchemaRef,
    /// Threshold rules: how to see the condition clear.
    pub resolve: Option<ResolveSpec>,
    /// The input updates rows in place (an `EMIT ON UPDATE` view): the same (key, time)
    /// is seen again and again, and counts once.
    pub updating_input: bool,
}

/// The schema of alert messages (an alert rule's rows).
pub fn message_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into()));
    Arc::new(Schema::new(vec![
        Field::new("alert_id", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("event_time", ts.clone(), false),
        Field::new("detected_at", ts, false),
        Field::new("payload", DataType::Utf8, false),
    ]))
}

/// One alert as `weir.alerts` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    pub alert_id: String,
    pub key: String,
    /// Event time of the row that started it.
    pub event_time: i64,
    /// Wall time (ns) it was detected.
    pub detected_at: i64,
    /// Rows within the cooldown counted on this alert.
    pub repeats: u64,
    /// Event time of the last row counted.
    pub last_event_time: i64,
    /// Event time the condition cleared (threshold rules).
    pub resolved_at: Option<i64>,
    pub payload: String,
}

impl AlertRecord {
    /// Event time of its last row, or of its resolution.
    fn ended(&self) -> i64 {
        self.last_event_time
            .max(self.resolved_at.unwrap_or(i64::MIN))
    }
}

#[derive(Debug, Clone)]
struct KeyAlert {
    /// The key's latest alert (index into `alerts`).
    alert: usize,
    last_sent: i64,
    last_hold: i64,
    firing: bool,
    /// Updating inputs: the times that held since the alert started.
    held: Vec<i64>,
}

/// The per-key state of an alert rule and every alert it raised.
#[derive(Debug)]
pub struct AlertStage {
    spec: AlertSpec,
    keys: HashMap<String, KeyAlert>,
    alerts: Vec<AlertRecord>,
    /// The earliest end of an alert that is not its key's latest ([`AlertStage::prune`]
    /// has nothing to do below it).
    next_prune: i64,
}

enum Event {
    Hold(usize, usize),
    Clear,
}

impl AlertStage {
    /// No alerts yet.
    pub fn new(spec: AlertSpec) -> Self {
        Self {
            spec,
            keys: HashMap::new(),
            alerts: Vec::new(),
            next_prune: i64::MAX,
        }
    }

    /// The settings.
    pub fn spec(&self) -> &AlertSpec {
        &self.spec
    }

    /// Every alert raised, oldest first.
    pub fn alerts(&self) -> &[AlertRecord] {
        &self.alerts
    }

    /// Forgets alerts that ended (their last row's event time, or their resolution) at or
    /// before `cutoff` and are no longer their key's latest: the state keeps the alerts of
    /// the rule's retention; the rule's own rows (its messages, in memory and history) keep
    /// every one, and `weir.alerts` shows the forgotten ones from them. Cheap when nothing
    /// is old enough.
    pub fn prune(&mut self, cutoff: i64) {
        if cutoff < self.next_prune {
            return;
        }
        let current: HashSet<usize> = self.keys.values().map(|k| k.alert).collect();
        let mut moved = HashMap::new();
        let mut kept = Vec::with_capacity(self.alerts.len());
        self.next_prune = i64::MAX;
        for (i, a) in std::mem::take(&mut self.alerts).into_iter().enumerate() {
            let is_current = current.contains(&i);
            if is_current || a.ended() > cutoff {
                if !is_current {
                    self.next_prune = self.next_prune.min(a.ended());
                }
                moved.insert(i, kept.len());
                kept.push(a);
            }
        }
        self.alerts = kept;
        for k in self.keys.values_mut() {
            k.alert = moved[&k.alert];
        }
    }

    /// Alerts currently firing.
    pub fn firing(&self) -> usize {
        self.keys.values().filter(|k| k.firing).count()
    }

    /// Decides on the query's `rows` (and, for threshold rules, the `input` rows they were
    /// selected from) and returns the messages to publish.
    pub fn apply(
        &mut self,
        rows: &[RecordBatch],
        input: &[RecordBatch],
    ) -> Result<Vec<RecordBatch>> {
        let mut events: Vec<(i64, String, Event)> = Vec::new();
        let mut held: HashSet<(String, i64)> = HashSet::new();
        let mut held_keys: HashSet<String> = HashSet::new();
        for (b, batch) in rows.iter().enumerate() {
            let keys = key_strings(batch, &self.spec.key_columns)?;
            let times = timestamps_ns(batch.column(self.spec.time_column))?;
            for (r, key) in keys.into_iter().enumerate() {
                if times.is_null(r) {
                    continue;
                }
                let t = times.value(r);
                if self.spec.resolve.is_some() {
                    held.insert((key.clone(), t));
                    held_keys.insert(key.clone());
                }
                events.push((t, key, Event::Hold(b, r)));
            }
        }
        if let Some(resolve) = &self.spec.resolve {
            for batch in input {
                let keys = key_strings(batch, &resolve.key_columns)?;
                let times = timestamps_ns(batch.column(resolve.time_column))?;
                for (r, key) in keys.into_iter().enumerate() {
                    let watched =
                        held_keys.contains(&key) || self.keys.get(&key).is_some_and(|k| k.firing);
                    if times.is_null(r) || !watched {
                        continue;
                    }
                    let t = times.value(r);
                    if !held.contains(&(key.clone(), t)) {
                        events.push((t, key, Event::Clear));
                    }
                }
            }
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        events.sort_by_key(|(t, _, _)| *t);
        let payloads: Vec<Vec<String>> = rows.iter().map(payloads).collect::<Result<_>>()?;
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let mut out = Messages::default();
        for (t, key, event) in events {
            match event {
                Event::Hold(b, r) => self.hold(t, key, &payloads[b][r], now, &mut out),
                Event::Clear => self.clear(t, &key, now, &mut out),
            }
        }
        out.finish(&self.spec)
    }

    fn hold(&mut self, t: i64, key: String, payload: &str, now: i64, out: &mut Messages) {
        if let Some(k) = self.keys.get_mut(&key) {
            if self.spec.updating_input && k.held.contains(&t) {
                // The same row again (an updating view's open window): nothing new.
                return;
            }
            if t.saturating_sub(k.last_sent) < self.spec.cooldown_ns {
                let alert = &mut self.alerts[k.alert];
                alert.repeats += 1;
                alert.last_event_time = alert.last_event_time.max(t);
                k.last_hold = k.last_hold.max(t);
                if self.spec.updating_input {
                    k.held.push(t);
                }
                return;
            }
        }
        let alert_id = alert_id(&self.spec.name, &key, t);
        let record = AlertRecord {
            alert_id,
            key: key.clone(),
            event_time: t,
            detected_at: now,
            repeats: 0,
            last_event_time: t,
            resolved_at: None,
            payload: payload.to_string(),
        };
        out.push(&record, "firing", t, now);
        if let Some(previous) = self.keys.get(&key) {
            // The key's previous alert is no longer its latest: it may be pruned.
            self.next_prune = self.next_prune.min(self.alerts[previous.alert].ended());
        }
        self.alerts.push(record);
        self.keys.insert(
            key,
            KeyAlert {
                alert: self.alerts.len() - 1,
                last_sent: t,
                last_hold: t,
                firing: self.spec.resolve.is_some(),
                held: if self.spec.updating_input {
                    vec![t]
                } else {
                    Vec::new()
                },
            },
        );
    }

    fn clear(&mut self, t: i64, key: &str, now: i64, out: &mut Messages) {
        let Some(k) = self.keys.get_mut(key) else {
            return;
        };
        if !k.firing || t <= k.last_hold {
            return;
        }
        k.firing = false;
        let alert = &mut self.alerts[k.alert];
        alert.resolved_at = Some(t);
        out.push(alert, "resolved", t, now);
    }

    /// The state as one batch (one row per alert; `current` marks each key's latest).
    pub fn export(&self) -> Result<RecordBatch> {
        let current: HashMap<usize, &KeyAlert> = self.keys.values().map(|k| (k.alert, k)).collect();
        let a = &self.alerts;
        let col_i64 = |f: &dyn Fn(usize) -> Option<i64>| -> ArrayRef {
            Arc::new(Int64Array::from((0..a.len()).map(f).collect::<Vec<_>>()))
        };
        Ok(RecordBatch::try_from_iter(vec![
            (
                "alert_id",
                Arc::new(StringArray::from_iter_values(a.iter().map(|x| &x.alert_id))) as ArrayRef,
            ),
            (
                "key",
                Arc::new(StringArray::from_iter_values(a.iter().map(|x| &x.key))) as ArrayRef,
            ),
            ("event_time", col_i64(&|i| Some(a[i].event_time))),
            ("detected_at", col_i64(&|i| Some(a[i].detected_at))),
            (
                "repeats",
                Arc::new(UInt64Array::from_iter_values(a.iter().map(|x| x.repeats))) as ArrayRef,
            ),
            ("last_event_time", col_i64(&|i| Some(a[i].last_event_time))),
            ("resolved_at", col_i64(&|i| a[i].resolved_at)),
            (
                "payload",
                Arc::new(StringArray::from_iter_values(a.iter().map(|x| &x.payload))) as ArrayRef,
            ),
            (
                "current",
                Arc::new(BooleanArray::from(
                    (0..a.len())
                        .map(|i| current.contains_key(&i))
                        .collect::<Vec<_>>(),
                )) as ArrayRef,
            ),
            (
                "last_sent",
                col_i64(&|i| current.get(&i).map(|k| k.last_sent)),
            ),
            (
                "last_hold",
                col_i64(&|i| current.get(&i).map(|k| k.last_hold)),
            ),
            (
                "firing",
                Arc::new(BooleanArray::from(
                    (0..a.len())
                        .map(|i| current.get(&i).map(|k| k.firing))
                        .collect::<Vec<_>>(),
                )) as ArrayRef,
            ),
            (
                "held",
                Arc::new(StringArray::from(
                    (0..a.len())
                        .map(|i| {
                            current.get(&i).map(|k| {
                                k.held
                                    .iter()
                                    .map(i64::to_string)
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                        })
                        .collect::<Vec<_>>(),
                )) as ArrayRef,
            ),
        ])?)
    }

    /// Replaces the state with an exported one.
    pub fn import(&mut self, batch: &RecordBatch) -> Result<()> {
        self.keys.clear();
        self.alerts.clear();
        self.next_prune = i64::MIN;
        let s = |name: &str| -> Result<StringArray> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
                .ok_or_else(|| EngineError::Checkpoint(format!("alert state lacks {name}")))
        };
        let i = |name: &str| -> Result<Int64Array> {
            let c = batch
                .column_by_name(name)
                .ok_or_else(|| EngineError::Checkpoint(format!("alert state lacks {name}")))?;
            let c = datafusion::arrow::compute::cast(c, &DataType::Int64)?;
            crate::operator::over::typed::<Int64Array>(&c)
        };
        let b = |name: &str| -> Result<BooleanArray> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<BooleanArray>().cloned())
                .ok_or_else(|| EngineError::Checkpoint(format!("alert state lacks {name}")))
        };
        let (ids, keys, payload) = (s("alert_id")?, s("key")?, s("payload")?);
        let (event_time, detected_at, repeats) =
            (i("event_time")?, i("detected_at")?, i("repeats")?);
        let (last_event, resolved_at) = (i("last_event_time")?, i("resolved_at")?);
        let (current, last_sent, last_hold, firing) = (
            b("current")?,
            i("last_sent")?,
            i("last_hold")?,
            b("firing")?,
        );
        let held = s("held")?;
        for r in 0..batch.num_rows() {
            self.alerts.push(AlertRecord {
                alert_id: ids.value(r).to_string(),
                key: keys.value(r).to_string(),
                event_time: event_time.value(r),
                detected_at: detected_at.value(r),
                repeats: repeats.value(r) as u64,
                last_event_time: last_event.value(r),
                resolved_at: resolved_at.is_valid(r).then(|| resolved_at.value(r)),
                payload: payload.value(r).to_string(),
            });
            if current.value(r) {
                self.keys.insert(
                    keys.value(r).to_string(),
                    KeyAlert {
                        alert: r,
                        last_sent: last_sent.value(r),
                        last_hold: last_hold.value(r),
                        firing: firing.is_valid(r) && firing.value(r),
                        held: held
                            .value(r)
                            .split(',')
                            .filter_map(|t| t.parse().ok())
                            .collect(),
                    },
                );
            }
        }
        Ok(())
    }
}

/// Messages being built for one batch.
#[derive(Default)]
struct Messages {
    ids: Vec<String>,
    keys: Vec<String>,
    status: Vec<&'static str>,
    times: Vec<i64>,
    detected: Vec<i64>,
    payloads: Vec<String>,
}

impl Messages {
    fn push(&mut self, alert: &AlertRecord, status: &'static str, t: i64, now: i64) {
        self.ids.push(alert.alert_id.clone());
        self.keys.push(alert.key.clone());
        self.status.push(status);
        self.times.push(t);
        self.detected.push(now);
        self.payloads.push(alert.payload.clone());
    }

    fn finish(self, spec: &AlertSpec) -> Result<Vec<RecordBatch>> {
        if self.ids.is_empty() {
            return Ok(Vec::new());
        }
        let n = self.ids.len();
        let tz = Some::<Arc<str>>("+00:00".into());
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(self.ids)),
            Arc::new(StringArray::from(vec![spec.name.as_str(); n])),
            Arc::new(StringArray::from(vec![spec.severity.as_str(); n])),
            Arc::new(StringArray::from(self.keys)),
            Arc::new(StringArray::from(self.status)),
            Arc::new(TimestampNanosecondArray::from(self.times).with_timezone_opt(tz.clone())),
            Arc::new(TimestampNanosecondArray::from(self.detected).with_timezone_opt(tz)),
            Arc::new(StringArray::from(self.payloads)),
        ];
        Ok(vec![RecordBatch::try_new(message_schema(), columns)?])
    }
}

/// Each row's key: the key columns' values, joined by `,` (empty for no key columns).
fn key_strings(batch: &RecordBatch, columns: &[usize]) -> Result<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let formatters = columns
        .iter()
        .map(|&c| ArrayFormatter::try_new(batch.column(c).as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((0..batch.num_rows())
        .map(|r| {
            formatters
                .iter()
                .map(|f| f.value(r).to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect())
}

/// Each row as a JSON object.
fn payloads(batch: &RecordBatch) -> Result<Vec<String>> {
    let mut buf = Vec::new();
    {
        let mut writer = LineDelimitedWriter::new(&mut buf);
        writer.write(batch)?;
        writer.finish()?;
    }
    let text = String::from_utf8(buf).map_err(|e| EngineError::Internal(e.to_string()))?;
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.len() != batch.num_rows() {
        return Err(EngineError::Internal("alert payloads: row count".into()));
    }
    Ok(lines)
}

/// A stable id for the alert of rule `name` on `key` starting at event time `t`: 128-bit
/// FNV-1a, hex.
pub fn alert_id(name: &str, key: &str, t: i64) -> String {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    let prime: u128 = 0x0000000001000000000000000000013B;
    let time = t.to_le_bytes();
    let parts: [&[u8]; 5] = [name.as_bytes(), &[0], key.as_bytes(), &[0], &time];
    for part in parts {
        for b in part {
            h ^= *b as u128;
            h = h.wrapping_mul(prime);
        }
    }
    format!("{h:032x}")
}

impl Operator for AlertStage {
    fn kind(&self) -> &'static str {
        "alert"
    }

    fn describe(&self) -> String {
        let fields = self.spec.query_schema.fields();
        let key: Vec<&str> = self
            .spec
            .key_columns
            .iter()
            .map(|&i| fields[i].name().as_str())
            .collect();
        format!(
            "alert rule {} (severity {}): one alert per key ({}) and cooldown of {} on {}; {}; \
             alerts {}, firing {}",
            self.spec.name,
            self.spec.severity,
            key.join(", "),
            super::describe_ns(self.spec.cooldown_ns),
            fields[self.spec.time_column].name(),
            if self.spec.resolve.is_some() {
                "resolved when an input row of a firing key no longer matches"
            } else {
                "alerts are not resolved"
            },
            self.alerts.len(),
            self.firing()
        )
    }

    fn process(&mut self, rows: Vec<RecordBatch>, tick: &Tick<'_>) -> Result<Vec<RecordBatch>> {
        let input = if self.spec.resolve.is_some() {
            tick.input
        } else {
            &[]
        };
        self.apply(&rows, input)
    }

    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        Ok(vec![self.export()?])
    }

    fn restore(&mut self, state: &[RecordBatch]) -> Result<()> {
        match state.first() {
            Some(batch) => self.import(batch),
            None => Ok(()),
        }
    }

    fn prune(&mut self, cutoff: i64) {
        AlertStage::prune(self, cutoff)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(resolve: bool) -> AlertSpec {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("t", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]));
        AlertSpec {
            name: "r".into(),
            severity: "warning".into(),
            key_columns: vec![0],
            time_column: 1,
            cooldown_ns: 10,
            query_schema: schema,
            resolve: resolve.then_some(ResolveSpec {
                key_columns: vec![0],
                time_column: 1,
            }),
            updating_input: false,
        }
    }

    fn rows(rows: &[(&str, i64)]) -> RecordBatch {
        let s = spec(false).query_schema;
        RecordBatch::try_new(
            s,
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(TimestampNanosecondArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn statuses(out: &[RecordBatch]) -> Vec<(String, String, i64)> {
        let mut v = Vec::new();
        for b in out {
            let key = b.column(3).as_any().downcast_ref::<StringArray>().unwrap();
            let st = b.column(4).as_any().downcast_ref::<StringArray>().unwrap();
            let t = b
                .column(5)
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
                .unwrap();
            for r in 0..b.num_rows() {
                v.push((
                    key.value(r).to_string(),
                    st.value(r).to_string(),
                    t.value(r),
                ));
            }
        }
        v
    }

    #[test]
    fn pruning_forgets_ended_alerts_but_each_keys_latest_and_decides_the_same() {
        let mut stage = AlertStage::new(spec(false));
        let mut kept = AlertStage::new(spec(false));
        let mut messages = (Vec::new(), Vec::new());
        for t in (0..200).step_by(20) {
            let batch = [rows(&[("a", t), ("b", t / 100)])];
            messages
                .0
                .extend(statuses(&stage.apply(&batch, &[]).unwrap()));
            messages
                .1
                .extend(statuses(&kept.apply(&batch, &[]).unwrap()));
            stage.prune(t - 50);
        }
        // Pruning changes what the state holds, never the decisions.
        assert_eq!(messages.0, messages.1);
        assert_eq!(kept.alerts().len(), 10 + 1);
        let ids = |s: &AlertStage| -> Vec<(String, i64)> {
            s.alerts()
                .iter()
                .map(|a| (a.key.clone(), a.event_time))
                .collect()
        };
        // "b" fired once at 0 and is still its key's latest; "a"'s alerts ended 130 and
        // later stay.
        assert_eq!(
            ids(&stage),
            vec![
                ("b".into(), 0),
                ("a".into(), 140),
                ("a".into(), 160),
                ("a".into(), 180)
            ]
        );
        // The key index follows the moved alerts: b's repeats still count on its alert.
        stage.apply(&[rows(&[("b", 5), ("a", 185)])], &[]).unwrap();
        assert_eq!(stage.alerts()[0].repeats, kept.alerts()[1].repeats + 1);
        assert_eq!(stage.alerts()[3].repeats, 1);
        // Restored state prunes the same.
        let mut restored = AlertStage::new(spec(false));
        restored.import(&kept.export().unwrap()).unwrap();
        restored.prune(130);
        assert_eq!(ids(&restored), ids(&stage));
    }

    #[test]
    fn cooldown_counts_repeats_per_key_in_event_time() {
        let mut stage = AlertStage::new(spec(false));
        let out = stage
            .apply(
                &[rows(&[
                    ("a", 0),
                    ("b", 1),
                    ("a", 5),
                    ("a", 9),
                    ("a", 10),
                    ("b", 30),
                ])],
                &[],
            )
            .unwrap();
        assert_eq!(
            statuses(&out),
            vec![
                ("a".into(), "firing".into(), 0),
                ("b".into(), "firing".into(), 1),
                ("a".into(), "firing".into(), 10),
                ("b".into(), "firing".into(), 30),
            ]
        );
        let a0 = &stage.alerts()[0];
        assert_eq!((a0.repeats, a0.last_event_time), (2, 9));
        assert_eq!(a0.alert_id, alert_id("r", "a", 0));
        // A replay from exported state decides the same.
        let saved = stage.export().unwrap();
        let mut again = AlertStage::new(spec(false));
        again.import(&saved).unwrap();
        assert_eq!(again.alerts(), stage.alerts());
        let next = [rows(&[("a", 15)])];
        assert!(stage.apply(&next, &[]).unwrap().is_empty());
        assert!(again.apply(&next, &[]).unwrap().is_empty());
        assert_eq!(again.alerts(), stage.alerts());
    }

    #[test]
    fn a_threshold_alert_resolves_once_when_its_key_clears() {
        let mut stage = AlertStage::new(spec(true));
        let input = rows(&[("a", 0), ("b", 0)]);
        let out = stage.apply(&[rows(&[("a", 0)])], &[input]).unwrap();
        assert_eq!(statuses(&out), vec![("a".into(), "firing".into(), 0)]);
        assert_eq!(stage.firing(), 1);
        // The next window of `a` does not hold: resolved; later clear rows change nothing.
        let out = stage.apply(&[], &[rows(&[("a", 60), ("b", 60)])]).unwrap();
        assert_eq!(statuses(&out), vec![("a".into(), "resolved".into(), 60)]);
        assert!(stage.apply(&[], &[rows(&[("a", 120)])]).unwrap().is_empty());
        assert_eq!(stage.alerts()[0].resolved_at, Some(60));
        assert_eq!(stage.firing(), 0);
    }
}

#[cfg(test)]
mod updating {
    use super::*;

    #[test]
    fn an_updating_input_counts_each_window_once() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("t", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]));
        let mut stage = AlertStage::new(AlertSpec {
            name: "r".into(),
            severity: "warning".into(),
            key_columns: vec![0],
            time_column: 1,
            cooldown_ns: 1_000,
            query_schema: schema.clone(),
            resolve: None,
            updating_input: true,
        });
        let rows = |ts: &[i64]| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(vec!["a"; ts.len()])),
                    Arc::new(TimestampNanosecondArray::from(ts.to_vec())),
                ],
            )
            .unwrap()
        };
        // Two open windows seen again and again: one alert, one repeat.
        for _ in 0..5 {
            stage.apply(&[rows(&[0, 60])], &[]).unwrap();
        }
        assert_eq!(stage.alerts().len(), 1);
        assert_eq!(stage.alerts()[0].repeats, 1);
        let saved = stage.export().unwrap();
        let mut again = AlertStage::new(stage.spec().clone());
        again.import(&saved).unwrap();
        again.apply(&[rows(&[0, 60])], &[]).unwrap();
        assert_eq!(again.alerts()[0].repeats, 1);
    }
}
