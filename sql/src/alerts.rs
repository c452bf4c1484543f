//! `CREATE ALERT name WITH (severity, key, cooldown, time) AS query`: the options of an
//! alert rule, checked against its planned query.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::{DataType, Schema};
use weir_engine::operator::alert::{AlertSpec, ResolveSpec};
use weir_engine::pipeline::view::{EmitMode, ViewPlan};

use crate::dialect::parse_interval_ns;
use crate::error::{Result, SqlError};

const OPTIONS: [&str; 7] = [
    "severity",
    "key",
    "cooldown",
    "time",
    "emit",
    crate::retention::RETENTION_OPTION,
    crate::retention::HISTORY_OPTION,
];

/// The engine's alert settings for rule `name` over `plan` (reading rows of
/// `input_schema`, updated in place when `input_updating`), and the options with defaults filled in (what the catalog keeps).
pub fn alert_spec(
    name: &str,
    options: &BTreeMap<String, String>,
    plan: &ViewPlan,
    input_schema: &Schema,
    input_updating: bool,
) -> Result<(AlertSpec, BTreeMap<String, String>)> {
    if let Some(unknown) = options.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
        return Err(SqlError::InvalidParameter(format!(
            "unknown alert option \"{unknown}\"; alerts take {}",
            OPTIONS.join(", ")
        )));
    }
    if plan.aggregate.is_some() && plan.emit == EmitMode::OnUpdate {
        return Err(SqlError::FeatureNotSupported(
            "an alert rule that aggregates must group by window_start of TUMBLE(…) or HOP(…), so each window is judged once when it closes; to judge open windows, alert on an EMIT ON UPDATE view".into(),
        ));
    }
    let schema = plan.output_schema.clone();
    let columns = || {
        schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut normalized = BTreeMap::new();
    let severity = options
        .get("severity")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_else(|| "warning".into());
    if severity.is_empty() {
        return Err(SqlError::InvalidParameter(
            "severity must not be empty (for example 'critical', 'warning' or 'info')".into(),
        ));
    }
    normalized.insert("severity".to_string(), severity.clone());
    let key_names: Vec<String> = options
        .get("key")
        .map(|k| {
            k.split(',')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let mut key_columns = Vec::new();
    for k in &key_names {
        let i = schema.index_of(k).map_err(|_| {
            SqlError::UndefinedColumn(format!(
                "alert key \"{k}\" is not a column of the rule's query; its columns are {}",
                columns()
            ))
        })?;
        key_columns.push(i);
    }
    normalized.insert("key".to_string(), key_names.join(", "));
    let cooldown_text = options
        .get("cooldown")
        .cloned()
        .unwrap_or_else(|| "1 minute".into());
    let cooldown_ns = parse_interval_ns(&cooldown_text).map_err(|e| {
        SqlError::InvalidParameter(format!(
            "cooldown: {e}; write an interval such as '5 minutes' (or '0 seconds' to alert on every row)"
        ))
    })?;
    if cooldown_ns < 0 {
        return Err(SqlError::InvalidParameter(
            "cooldown must not be negative".into(),
        ));
    }
    normalized.insert("cooldown".to_string(), cooldown_text);
    let is_time = |t: &DataType| matches!(t, DataType::Timestamp(_, _));
    let time_column = match options.get("time") {
        Some(t) => {
            let i = schema.index_of(t.trim()).map_err(|_| {
                SqlError::UndefinedColumn(format!(
                    "alert time column \"{t}\" is not a column of the rule's query; its columns are {}",
                    columns()
                ))
            })?;
            if !is_time(schema.field(i).data_type()) {
                return Err(SqlError::DatatypeMismatch(format!(
                    "alert time column \"{t}\" is {}, not a timestamp",
                    schema.field(i).data_type()
                )));
            }
            i
        }
        None => schema
            .fields()
            .iter()
            .position(|f| is_time(f.data_type()))
            .ok_or_else(|| {
                SqlError::InvalidParameter(format!(
                    "alert {name}: the rule's query must select an event time (the source's event-time column, or window_start) so cooldowns and alert ids follow event time; its columns are {}",
                    columns()
                ))
            })?,
    };
    normalized.insert("time".to_string(), schema.field(time_column).name().clone());
    // A threshold rule (no OVER, no aggregation) sees its condition clear on input rows of
    // the same key and time column that it does not select.
    let resolve = if plan.over.is_none() && plan.aggregate.is_none() {
        let time_name = schema.field(time_column).name();
        let keys: Option<Vec<usize>> = key_names
            .iter()
            .map(|k| input_schema.index_of(k).ok())
            .collect();
        match (keys, input_schema.index_of(time_name)) {
            (Some(key_columns), Ok(time_column))
                if is_time(input_schema.field(time_column).data_type()) =>
            {
                Some(ResolveSpec {
                    key_columns,
                    time_column,
                })
            }
            _ => None,
        }
    } else {
        None
    };
    let spec = AlertSpec {
        name: name.to_string(),
        severity,
        key_columns,
        time_column,
        cooldown_ns,
        query_schema: schema.clone(),
        resolve,
        updating_input: input_updating,
    };
    Ok((spec, normalized))
}

/// The alerts a rule's own rows (its `firing` and `resolved` messages, from memory and
/// Parquet history) show but its state no longer holds (forgotten past `retention`), for
/// `weir.alerts`: each `alert_id` once, resolved when a `resolved` message says so. Repeats
/// within the cooldown are not in the messages: they show as 0.
pub fn archived_records(
    messages: &[datafusion::arrow::record_batch::RecordBatch],
    known: &std::collections::HashSet<String>,
) -> Result<Vec<weir_engine::operator::alert::AlertRecord>> {
    use datafusion::arrow::array::{Array, AsArray};
    let mut by_id: BTreeMap<String, weir_engine::operator::alert::AlertRecord> = BTreeMap::new();
    let mut resolved: Vec<(String, i64)> = Vec::new();
    for batch in messages {
        let text = |name: &str| -> Result<datafusion::arrow::array::ArrayRef> {
            let column = batch
                .column_by_name(name)
                .ok_or_else(|| SqlError::Internal(format!("alert message without {name}")))?;
            Ok(datafusion::arrow::compute::cast(column, &DataType::Utf8)?)
        };
        let time = |name: &str| -> Result<datafusion::arrow::array::Int64Array> {
            let column = batch
                .column_by_name(name)
                .ok_or_else(|| SqlError::Internal(format!("alert message without {name}")))?;
            Ok(weir_engine::operator::aggregate::timestamps_ns(column)?)
        };
        let (ids, keys, status, payload) = (
            text("alert_id")?,
            text("key")?,
            text("status")?,
            text("payload")?,
        );
        let (ids, keys, status, payload) = (
            ids.as_string::<i32>(),
            keys.as_string::<i32>(),
            status.as_string::<i32>(),
            payload.as_string::<i32>(),
        );
        let (event_time, detected_at) = (time("event_time")?, time("detected_at")?);
        for r in 0..batch.num_rows() {
            let id = ids.value(r);
            if known.contains(id) || ids.is_null(r) {
                continue;
            }
            if status.value(r) == "resolved" {
                resolved.push((id.to_string(), event_time.value(r)));
                continue;
            }
            by_id.entry(id.to_string()).or_insert_with(|| {
                weir_engine::operator::alert::AlertRecord {
                    alert_id: id.to_string(),
                    key: keys.value(r).to_string(),
                    event_time: event_time.value(r),
                    detected_at: detected_at.value(r),
                    repeats: 0,
                    last_event_time: event_time.value(r),
                    resolved_at: None,
                    payload: payload.value(r).to_string(),
                }
            });
        }
    }
    for (id, t) in resolved {
        if let Some(a) = by_id.get_mut(&id) {
            a.resolved_at = Some(t);
        }
    }
    let mut out: Vec<_> = by_id.into_values().collect();
    out.sort_by_key(|a| a.event_time);
    Ok(out)
}
