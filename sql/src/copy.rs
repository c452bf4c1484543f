//! `COPY table FROM STDIN`: PostgreSQL's text and CSV formats read into Arrow rows.
//!
//! Text format (the default, what `pg_dump` and psql's `\copy` without options send): one
//! row per line, columns separated by a tab, `\N` for NULL, backslash escapes (`\t`, `\n`,
//! `\\` …). CSV (`WITH (FORMAT csv)`): comma-separated, `"` quoting with `""` inside, an
//! unquoted empty field is NULL, `HEADER` skips the first line. Values are read as text and
//! converted to each column's type; a value that does not convert fails the whole COPY with
//! its line and column (SQLSTATE 22P02), a row with too few or too many fields with 22P04.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::SchemaRef;

use crate::error::{Result, SqlError};

/// How the data of one COPY is laid out.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyFormat {
    csv: bool,
    delimiter: char,
    null: String,
    header: bool,
    quote: char,
}

impl CopyFormat {
    /// From `COPY … WITH (…)` options: `format`, `delimiter`, `null`, `header`, `quote`.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self> {
        let csv = match options.get("format").map(|f| f.to_lowercase()).as_deref() {
            None | Some("text") => false,
            Some("csv") => true,
            Some(other) => {
                return Err(SqlError::FeatureNotSupported(format!(
                    "COPY FROM STDIN reads FORMAT text or csv, not {other}"
                )))
            }
        };
        let one_char = |key: &str, default: char| -> Result<char> {
            match options.get(key) {
                None => Ok(default),
                Some(v) if v.chars().count() == 1 => Ok(v.chars().next().unwrap_or(default)),
                Some(v) => Err(SqlError::InvalidParameter(format!(
                    "COPY {key} must be a single one-byte character, not '{v}'"
                ))),
            }
        };
        let header = match options.get("header").map(|h| h.to_lowercase()).as_deref() {
            None | Some("false" | "off" | "0") => false,
            Some("true" | "on" | "1" | "match") => true,
            Some(other) => {
                return Err(SqlError::InvalidParameter(format!(
                    "COPY header takes true or false, not '{other}'"
                )))
            }
        };
        if header && !csv {
            return Err(SqlError::FeatureNotSupported(
                "COPY HEADER is available only in CSV mode".into(),
            ));
        }
        for key in options.keys() {
            if !matches!(
                key.as_str(),
                "format" | "delimiter" | "null" | "header" | "quote" | "escape"
            ) {
                return Err(SqlError::InvalidParameter(format!(
                    "COPY option \"{key}\" is not recognized; Weir reads format, delimiter, null, header and quote"
                )));
            }
        }
        Ok(Self {
            csv,
            delimiter: one_char("delimiter", if csv { ',' } else { '\t' })?,
            null: options.get("null").cloned().unwrap_or_else(|| {
                if csv {
                    String::new()
                } else {
                    "\\N".into()
                }
            }),
            header,
            quote: one_char("quote", '"')?,
        })
    }

    /// Reads `data` as rows of the columns of `schema` (in order), each converted to its
    /// column's type. `table` names the table in errors.
    pub fn read(&self, data: &[u8], schema: &SchemaRef, table: &str) -> Result<Vec<ArrayRef>> {
        let text = std::str::from_utf8(data).map_err(|e| {
            SqlError::BadCopyFormat(format!("COPY {table}: the data is not valid UTF-8 ({e})"))
        })?;
        let records = if self.csv {
            self.csv_records(text, table)?
        } else {
            self.text_records(text)
        };
        let width = schema.fields().len();
        let mut columns: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(records.len()); width];
        let mut lines = Vec::with_capacity(records.len());
        for (line, fields) in records.into_iter().skip(usize::from(self.header)) {
            if fields.len() != width {
                return Err(SqlError::BadCopyFormat(format!(
                    "COPY {table}, line {line}: {} — expected {width} columns ({})",
                    if fields.len() < width {
                        "missing data for a column"
                    } else {
                        "extra data after the last expected column"
                    },
                    schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            for (c, f) in fields.into_iter().enumerate() {
                columns[c].push(f);
            }
            lines.push(line);
        }
        let mut out = Vec::with_capacity(width);
        for (field, values) in schema.fields().iter().zip(columns) {
            let text = StringArray::from(values);
            let safe = CastOptions {
                safe: true,
                ..Default::default()
            };
            let converted = cast_with_options(&text, field.data_type(), &safe)?;
            if converted.null_count() != text.null_count() {
                if let Some(row) =
                    (0..text.len()).find(|&i| text.is_valid(i) && converted.is_null(i))
                {
                    return Err(SqlError::InvalidTextRepresentation(format!(
                        "invalid input syntax for type {}: \"{}\" (COPY {table}, line {}, column {})",
                        crate::types::pg_type_names(field.data_type()).0,
                        text.value(row),
                        lines[row],
                        field.name()
                    )));
                }
            }
            out.push(converted);
        }
        Ok(out)
    }

    /// Text format: (line number, fields) per row.
    fn text_records(&self, text: &str) -> Vec<(usize, Vec<Option<String>>)> {
        let mut rows = Vec::new();
        let lines = text.split('\n').count();
        for (i, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line == "\\." {
                break;
            }
            if line.is_empty() && i + 1 == lines {
                continue;
            }
            let fields = line
                .split(self.delimiter)
                .map(|f| {
                    if f == self.null {
                        None
                    } else {
                        Some(unescape(f))
                    }
                })
                .collect();
            rows.push((i + 1, fields));
        }
        rows
    }

    /// CSV: (line number where the record starts, fields) per record; quoted fields may hold
    /// delimiters, quotes (doubled) and line breaks.
    fn csv_records(&self, text: &str, table: &str) -> Result<Vec<(usize, Vec<Option<String>>)>> {
        let mut rows = Vec::new();
        let mut chars = text.chars().peekable();
        let mut line = 1;
        while chars.peek().is_some() {
            let start = line;
            let mut fields = Vec::new();
            let mut field = String::new();
            let mut quoted = false;
            let mut in_quotes = false;
            let mut at_start = true;
            loop {
                let Some(c) = chars.next() else {
                    if in_quotes {
                        return Err(SqlError::BadCopyFormat(format!(
                            "COPY {table}, line {start}: unterminated CSV quoted field"
                        )));
                    }
                    fields.push(self.csv_field(field, quoted));
                    break;
                };
                if in_quotes {
                    if c == self.quote {
                        if chars.peek() == Some(&self.quote) {
                            chars.next();
                            field.push(c);
                        } else {
                            in_quotes = false;
                        }
                    } else {
                        if c == '\n' {
                            line += 1;
                        }
                        field.push(c);
                    }
                    continue;
                }
                if c == self.quote && at_start {
                    in_quotes = true;
                    quoted = true;
                    at_start = false;
                } else if c == self.delimiter {
                    fields.push(self.csv_field(std::mem::take(&mut field), quoted));
                    quoted = false;
                    at_start = true;
                } else if c == '\n' || c == '\r' {
                    if c == '\r' && chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    line += 1;
                    fields.push(self.csv_field(field, quoted));
                    break;
                } else {
                    field.push(c);
                    at_start = false;
                }
            }
            if fields.len() == 1 && fields[0].as_deref() == Some("\\.") {
                break;
            }
            if fields.len() == 1 && fields[0].is_none() && self.null.is_empty() {
                // An empty line.
                continue;
            }
            rows.push((start, fields));
        }
        Ok(rows)
    }

    fn csv_field(&self, field: String, quoted: bool) -> Option<String> {
        if !quoted && field == self.null {
            None
        } else {
            Some(field)
        }
    }
}

/// The text format's backslash escapes.
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// A schema of `columns` of `schema`, in that order.
pub fn columns_of(schema: &SchemaRef, columns: &[usize]) -> SchemaRef {
    Arc::new(datafusion::arrow::datatypes::Schema::new(
        columns
            .iter()
            .map(|&i| schema.field(i).clone())
            .collect::<Vec<_>>(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_text_format_with_nulls_and_escapes() {
        let format = CopyFormat::from_options(&BTreeMap::new()).unwrap();
        let data = b"1\ta\\tb\n2\t\\N\n\\.\n";
        let columns = format.read(data, &schema(), "t").unwrap();
        let ids: &Int64Array = columns[0].as_primitive::<Int64Type>();
        assert_eq!(ids.values().to_vec(), vec![1, 2]);
        let names = columns[1].as_string::<i32>();
        assert_eq!(names.value(0), "a\tb");
        assert!(names.is_null(1));
    }

    #[test]
    fn reads_csv_with_quotes_header_and_empty_strings() {
        let format =
            CopyFormat::from_options(&options(&[("format", "csv"), ("header", "true")])).unwrap();
        let data = b"id,name\n1,\"a, \"\"b\"\"\nc\"\n2,\n3,\"\"\n";
        let columns = format.read(data, &schema(), "t").unwrap();
        let names = columns[1].as_string::<i32>();
        assert_eq!(names.value(0), "a, \"b\"\nc");
        assert!(names.is_null(1));
        assert_eq!(names.value(2), "");
        assert_eq!(columns[0].len(), 3);
    }

    #[test]
    fn a_bad_value_names_its_line_and_column() {
        let format = CopyFormat::from_options(&options(&[("format", "csv")])).unwrap();
        let e = format.read(b"1,a\nx,b\n", &schema(), "t").unwrap_err();
        assert_eq!(e.sqlstate(), "22P02");
        assert!(
            e.to_string().contains("\"x\" (COPY t, line 2, column id)"),
            "{e}"
        );
        let e = format.read(b"1,a,extra\n", &schema(), "t").unwrap_err();
        assert_eq!(e.sqlstate(), "22P04");
    }
}
