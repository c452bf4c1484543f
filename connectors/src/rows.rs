//! Rows of Arrow batches as sinks write them: JSON values, key templates, flattened events.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::ScalarValue;
use serde_json::{Map, Number, Value};
use weir_engine::error::{EngineError, Result};

/// Nanoseconds since the epoch of a timestamp cell, whatever its unit.
pub fn timestamp_ns(array: &ArrayRef, row: usize) -> Option<i64> {
    if array.is_null(row) {
        return None;
    }
    let DataType::Timestamp(unit, _) = array.data_type() else {
        return None;
    };
    use datafusion::arrow::datatypes::*;
    Some(match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row) * 1_000_000_000,
        TimeUnit::Millisecond => {
            array.as_primitive::<TimestampMillisecondType>().value(row) * 1_000_000
        }
        TimeUnit::Microsecond => {
            array.as_primitive::<TimestampMicrosecondType>().value(row) * 1_000
        }
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row),
    })
}

/// RFC 3339 text (UTC, `Z`) of a time in nanoseconds.
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A cell as JSON: numbers as numbers (NaN and infinities as null), timestamps as RFC 3339
/// text, structs as objects, lists as arrays.
pub fn cell_json(array: &ArrayRef, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    if matches!(array.data_type(), DataType::Timestamp(_, _)) {
        return timestamp_ns(array, row)
            .map(|ns| Value::String(rfc3339(ns)))
            .unwrap_or(Value::Null);
    }
    match ScalarValue::try_from_array(array, row) {
        Ok(v) => scalar_json(&v),
        Err(_) => Value::Null,
    }
}

fn scalar_json(v: &ScalarValue) -> Value {
    use ScalarValue::*;
    if v.is_null() {
        return Value::Null;
    }
    let float = |f: f64| {
        Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    };
    match v {
        Boolean(Some(b)) => Value::Bool(*b),
        Int8(Some(n)) => (*n).into(),
        Int16(Some(n)) => (*n).into(),
        Int32(Some(n)) => (*n).into(),
        Int64(Some(n)) => (*n).into(),
        UInt8(Some(n)) => (*n).into(),
        UInt16(Some(n)) => (*n).into(),
        UInt32(Some(n)) => (*n).into(),
        UInt64(Some(n)) => (*n).into(),
        Float32(Some(f)) => float(*f as f64),
        Float64(Some(f)) => float(*f),
        Utf8(Some(s)) | LargeUtf8(Some(s)) | Utf8View(Some(s)) => Value::String(s.clone()),
        Struct(a) => {
            let mut out = serde_json::Map::new();
            for (i, f) in a.fields().iter().enumerate() {
                out.insert(f.name().clone(), cell_json(a.column(i), 0));
            }
            Value::Object(out)
        }
        List(a) => {
            let values = a.value(0);
            Value::Array((0..values.len()).map(|i| cell_json(&values, i)).collect())
        }
        other => Value::String(other.to_string()),
    }
}

/// The named columns of one row as a JSON object.
pub fn row_object(batch: &RecordBatch, row: usize, columns: &[usize]) -> Map<String, Value> {
    let schema = batch.schema();
    columns
        .iter()
        .map(|&c| {
            (
                schema.field(c).name().clone(),
                cell_json(batch.column(c), row),
            )
        })
        .collect()
}

/// A cell as text for a key: timestamps as epoch seconds, text as is, numbers as written.
pub fn cell_key_text(array: &ArrayRef, row: usize) -> String {
    if array.is_null(row) {
        return String::new();
    }
    if matches!(array.data_type(), DataType::Timestamp(_, _)) {
        return timestamp_ns(array, row)
            .map(|ns| ns.div_euclid(1_000_000_000).to_string())
            .unwrap_or_default();
    }
    match cell_json(array, row) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// A key template like `agg:{source}:1m:{window_start}`: text with `{column}` placeholders.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Column(usize),
}

impl Template {
    /// Parses `text` against `schema`; an unknown column is an error naming the option.
    pub fn parse(option: &str, text: &str, schema: &Schema) -> Result<Self> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| EngineError::InvalidOption {
                    option: option.into(),
                    message: format!("unclosed '{{' in '{text}'"),
                })?
                + open;
            let name = &rest[open + 1..close];
            let column = schema
                .index_of(name)
                .map_err(|_| EngineError::InvalidOption {
                    option: option.into(),
                    message: format!(
                        "'{{{name}}}' is not a column; the columns are {}",
                        schema
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })?;
            parts.push(Part::Column(column));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Self { parts })
    }

    /// Columns the template uses.
    pub fn columns(&self) -> Vec<usize> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Column(c) => Some(*c),
                Part::Text(_) => None,
            })
            .collect()
    }

    /// The template filled in with one row.
    pub fn render(&self, batch: &RecordBatch, row: usize) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Column(c) => out.push_str(&cell_key_text(batch.column(*c), row)),
            }
        }
        out
    }
}

/// A leaf column of a possibly nested schema: its path and the name it is known by once
/// flattened (the leaf's own name, or `parent_leaf` where two leaves share a name).
#[derive(Debug, Clone)]
pub struct Leaf {
    pub path: Vec<usize>,
    pub name: String,
    pub data_type: DataType,
}

/// Every leaf of `schema`, structs flattened (`attributes.metric` → `metric`).
pub fn leaves(schema: &Schema) -> Vec<Leaf> {
    fn walk(
        fields: &datafusion::arrow::datatypes::Fields,
        prefix: &[usize],
        parent: &str,
        out: &mut Vec<(Leaf, String)>,
    ) {
        for (i, f) in fields.iter().enumerate() {
            let mut path = prefix.to_vec();
            path.push(i);
            match f.data_type() {
                DataType::Struct(children) => walk(children, &path, f.name(), out),
                dt => out.push((
                    Leaf {
                        path,
                        name: f.name().clone(),
                        data_type: dt.clone(),
                    },
                    if parent.is_empty() {
                        f.name().clone()
                    } else {
                        format!("{parent}_{}", f.name())
                    },
                )),
            }
        }
    }
    let mut out = Vec::new();
    walk(schema.fields(), &[], "", &mut out);
    let names: Vec<String> = out.iter().map(|(l, _)| l.name.clone()).collect();
    out.into_iter()
        .map(|(mut leaf, long)| {
            if names.iter().filter(|n| **n == leaf.name).count() > 1 {
                leaf.name = long;
            }
            leaf
        })
        .collect()
}

/// The array of a leaf in `batch` (nulls of the parents carried down).
pub fn leaf_array(batch: &RecordBatch, leaf: &Leaf) -> ArrayRef {
    let mut array = batch.column(leaf.path[0]).clone();
    for &i in &leaf.path[1..] {
        let s = array.as_struct();
        let child = s.column(i).clone();
        array = match s.nulls() {
            Some(nulls) if nulls.null_count() > 0 => {
                let data = child
                    .to_data()
                    .into_builder()
                    .nulls(Some(
                        datafusion::arrow::buffer::NullBuffer::union(Some(nulls), child.nulls())
                            .expect("parent nulls"),
                    ))
                    .build()
                    .expect("same layout");
                datafusion::arrow::array::make_array(data)
            }
            _ => child,
        };
    }
    array
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, StringArray, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{Field, TimeUnit};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("source", DataType::Utf8, false),
            Field::new(
                "window_start",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("avg", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["web"])),
                Arc::new(
                    TimestampNanosecondArray::from(vec![1_700_000_040_000_000_000])
                        .with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from(vec![Some(f64::NAN)])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn templates_render_window_start_as_epoch_seconds() {
        let b = batch();
        let t = Template::parse("key", "agg:{source}:1m:{window_start}", &b.schema()).unwrap();
        assert_eq!(t.render(&b, 0), "agg:web:1m:1700000040");
        assert_eq!(t.columns(), vec![0, 1]);
        let err = Template::parse("key", "agg:{nope}", &b.schema()).unwrap_err();
        assert!(
            err.to_string().contains("source, window_start, avg"),
            "{err}"
        );
    }

    #[test]
    fn rows_as_json() {
        let b = batch();
        let o = row_object(&b, 0, &[0, 1, 2]);
        assert_eq!(o["source"], "web");
        assert_eq!(o["window_start"], "2023-11-14T22:14:00Z");
        assert_eq!(o["avg"], Value::Null);
    }
}
