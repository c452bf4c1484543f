//! `CREATE TABLE … WITH (connector = 'file', path = 'devices.csv')`: a table's rows from a
//! CSV file (columns in the table's order, a header line unless `header = 'false'`) or a
//! JSON-lines file (fields by name), read once under the same directory rule as file
//! sources.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use weir_engine::connector::table::TableLoader;
use weir_engine::error::{EngineError, Result};

use super::FileConnector;
use crate::options::Options;

/// Loads tables from files under the directories file sources may read.
#[derive(Debug)]
pub struct FileTableLoader {
    files: FileConnector,
}

impl FileTableLoader {
    /// Reads files under `dirs` only.
    pub fn new(dirs: Vec<std::path::PathBuf>) -> Self {
        Self {
            files: FileConnector::new(dirs),
        }
    }
}

/// The options of a file table, read.
struct FileTable {
    path: std::path::PathBuf,
    csv: bool,
    header: bool,
    delimiter: u8,
}

impl FileTable {
    fn from_options(options: &BTreeMap<String, String>) -> Result<Self> {
        let mut o = Options::new("file", options);
        let path = std::path::PathBuf::from(o.required("path")?);
        let by_extension = match path.extension().and_then(|e| e.to_str()) {
            Some("json" | "jsonl" | "ndjson") => "json",
            _ => "csv",
        };
        let format = o
            .optional("format")
            .unwrap_or_else(|| by_extension.to_string())
            .to_lowercase();
        let csv = match format.as_str() {
            "csv" => true,
            "json" => false,
            other => {
                return Err(EngineError::InvalidOption {
                    option: "format".into(),
                    message: format!(
                        "tables load format 'csv' or 'json' (JSON lines), not '{other}'"
                    ),
                })
            }
        };
        let header = o.flag("header")?.unwrap_or(true);
        let delimiter = match o.optional("delimiter") {
            None => b',',
            Some(d) if d.len() == 1 => d.as_bytes()[0],
            Some(d) => {
                return Err(EngineError::InvalidOption {
                    option: "delimiter".into(),
                    message: format!("expected one character, got '{d}'"),
                })
            }
        };
        o.finish()?;
        Ok(Self {
            path,
            csv,
            header,
            delimiter,
        })
    }
}

#[async_trait]
impl TableLoader for FileTableLoader {
    fn name(&self) -> &'static str {
        "file"
    }

    fn validate(&self, options: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
        let table = FileTable::from_options(options)?;
        self.files.check(&table.path)?;
        Ok(options.clone())
    }

    async fn load(
        &self,
        options: &BTreeMap<String, String>,
        schema: SchemaRef,
    ) -> Result<Vec<RecordBatch>> {
        let table = FileTable::from_options(options)?;
        self.files.check(&table.path)?;
        let unreadable = |e: std::io::Error| EngineError::InvalidOption {
            option: "path".into(),
            message: format!("file {} cannot be read: {e}", table.path.display()),
        };
        // Read nullable: a missing NOT NULL value is reported by the table, with its name.
        let nullable = weir_engine::table::all_nullable(&schema);
        let file = File::open(&table.path).map_err(unreadable)?;
        let bad = |e: datafusion::arrow::error::ArrowError| EngineError::InvalidOption {
            option: "path".into(),
            message: format!("{}: {e}", table.path.display()),
        };
        let mut batches = Vec::new();
        if table.csv {
            let mut reader = BufReader::new(file);
            if table.header {
                let mut first = String::new();
                reader.read_line(&mut first).map_err(unreadable)?;
                let names: Vec<String> = first
                    .trim_end_matches(['\r', '\n'])
                    .split(table.delimiter as char)
                    .map(|n| n.trim().trim_matches('"').to_string())
                    .collect();
                let expected: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
                if names.iter().collect::<Vec<_>>() != expected {
                    return Err(EngineError::InvalidOption {
                        option: "path".into(),
                        message: format!(
                            "{}: the header names columns {} but the table's columns are {} (in that order)",
                            table.path.display(),
                            names.join(", "),
                            expected.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    });
                }
            }
            let reader = datafusion::arrow::csv::ReaderBuilder::new(nullable)
                .with_delimiter(table.delimiter)
                .build(reader)
                .map_err(bad)?;
            for batch in reader {
                batches.push(batch.map_err(bad)?);
            }
        } else {
            let reader = datafusion::arrow::json::ReaderBuilder::new(nullable)
                .build(BufReader::new(file))
                .map_err(bad)?;
            for batch in reader {
                batches.push(batch.map_err(bad)?);
            }
        }
        Ok(batches)
    }
}
