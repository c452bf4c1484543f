//! The catalog: definitions of sources and views, persisted in the data dir.
//!
//! `catalog.json` lists the definitions in creation order; on start-up they are replayed.
//! Writes are atomic (temp file, fsync, rename) so a crash leaves the old or the new catalog,
//! never a torn one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use weir_engine::pipeline::view::EmitMode;

use crate::dialect::{ColumnDef, WatermarkDef};
use crate::error::{Result, SqlError};

/// Version of the catalog file format this build reads and writes.
pub const CATALOG_FORMAT: u32 = 1;

/// A persisted `CREATE SOURCE`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceDef {
    pub name: String,
    pub columns: Vec<ColumnDef>,
    pub watermark: Option<WatermarkDef>,
    /// Options as validated by the connector (defaults that must stay fixed filled in).
    pub options: BTreeMap<String, String>,
}

/// A persisted `CREATE TABLE` (its rows live in `tables/<name>.arrow`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableDef {
    pub name: String,
    pub columns: Vec<ColumnDef>,
    pub primary_key: Vec<String>,
    /// Where its rows were loaded from (`connector = 'file' | 'postgres'`), if anywhere.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

impl TableDef {
    /// `CREATE TABLE …` as it would recreate this table (without its rows), secrets masked.
    pub fn to_sql(&self) -> String {
        let mut parts: Vec<String> = self.columns.iter().map(column_sql).collect();
        let key: Vec<String> = self.primary_key.iter().map(|k| quote_ident(k)).collect();
        parts.push(format!("PRIMARY KEY ({})", key.join(", ")));
        let with = if self.options.is_empty() {
            String::new()
        } else {
            format!(" WITH ({})", options_sql(&self.options))
        };
        format!(
            "CREATE TABLE {} (\n    {}\n){with}",
            quote_ident(&self.name),
            parts.join(",\n    ")
        )
    }
}

/// A persisted `CREATE MATERIALIZED VIEW`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewDef {
    pub name: String,
    /// The query as written.
    pub query: String,
    /// The EMIT clause as written, if any.
    pub emit: Option<EmitMode>,
    /// `WITH (…)` options, normalized (an OVER view's `emit`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// The relation it reads.
    pub input: String,
    /// The tables it joins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// The other source it joins in a time interval (`input` is the first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joins: Vec<String>,
}

/// A persisted `CREATE SINK`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SinkDef {
    pub name: String,
    /// The view or source it reads.
    pub from: String,
    /// Options as validated by the connector; secret references (`${env:NAME}`) are kept
    /// as written and resolved when the sink starts.
    pub options: BTreeMap<String, String>,
}

/// A persisted `CREATE ALERT`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertDef {
    pub name: String,
    /// The rule's query as written.
    pub query: String,
    /// `severity`, `key`, `cooldown`, `time`, with defaults filled in.
    pub options: BTreeMap<String, String>,
    /// The relation it reads.
    pub input: String,
    /// The tables it joins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
}

impl AlertDef {
    /// `CREATE ALERT …` as written (options normalized).
    pub fn to_sql(&self) -> String {
        format!(
            "CREATE ALERT {} WITH ({}) AS {}",
            quote_ident(&self.name),
            options_sql(&self.options),
            self.query
        )
    }
}

/// One catalog object.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CatalogEntry {
    Source(SourceDef),
    Table(TableDef),
    View(ViewDef),
    Sink(SinkDef),
    Alert(AlertDef),
}

impl CatalogEntry {
    /// The object's name.
    pub fn name(&self) -> &str {
        match self {
            CatalogEntry::Source(s) => &s.name,
            CatalogEntry::Table(t) => &t.name,
            CatalogEntry::View(v) => &v.name,
            CatalogEntry::Sink(k) => &k.name,
            CatalogEntry::Alert(a) => &a.name,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CatalogFile {
    format: u32,
    entries: Vec<CatalogEntry>,
}

/// Definitions, in creation order.
#[derive(Debug)]
pub struct Catalog {
    path: Option<PathBuf>,
    entries: Vec<CatalogEntry>,
}

impl Catalog {
    /// Loads `dir/catalog.json` (empty when missing); `None` keeps the catalog in memory.
    pub fn open(dir: Option<&Path>) -> Result<Self> {
        let Some(dir) = dir else {
            return Ok(Self {
                path: None,
                entries: vec![],
            });
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| SqlError::Io(format!("cannot create data dir {}: {e}", dir.display())))?;
        let path = dir.join("catalog.json");
        let entries = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: CatalogFile = serde_json::from_slice(&bytes).map_err(|e| {
                    SqlError::Io(format!("catalog {} is unreadable: {e}", path.display()))
                })?;
                if file.format != CATALOG_FORMAT {
                    return Err(SqlError::Io(format!(
                        "catalog {} has format {}, this build reads format {CATALOG_FORMAT}",
                        path.display(),
                        file.format
                    )));
                }
                file.entries
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // The catalog is written before any pipeline exists, so checkpoints without
                // it mean it was lost: starting empty would silently throw the views away.
                let checkpoints = dir.join("checkpoints");
                if weir_engine::checkpoint::CheckpointStore::any_checkpoint(&checkpoints) {
                    return Err(SqlError::Io(format!(
                        "{} is missing but {} holds checkpoints of views: the catalog was deleted or lost; restore catalog.json from a backup, or move the data dir away to start empty",
                        path.display(),
                        checkpoints.display()
                    )));
                }
                vec![]
            }
            Err(e) => return Err(SqlError::Io(format!("cannot read {}: {e}", path.display()))),
        };
        Ok(Self {
            path: Some(path),
            entries,
        })
    }

    /// All entries in creation order.
    pub fn entries(&self) -> &[CatalogEntry] {
        &self.entries
    }

    /// Finds an object by name.
    pub fn get(&self, name: &str) -> Option<&CatalogEntry> {
        self.entries.iter().find(|e| e.name() == name)
    }

    /// Views and sinks reading `name` directly.
    pub fn dependents(&self, name: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                CatalogEntry::View(v)
                    if v.input == name
                        || v.tables.iter().any(|t| t == name)
                        || v.joins.iter().any(|t| t == name) =>
                {
                    Some(v.name.clone())
                }
                CatalogEntry::Alert(a) if a.input == name || a.tables.iter().any(|t| t == name) => {
                    Some(a.name.clone())
                }
                CatalogEntry::Sink(k) if k.from == name => Some(k.name.clone()),
                _ => None,
            })
            .collect()
    }

    /// Adds an entry and persists.
    pub fn add(&mut self, entry: CatalogEntry) -> Result<()> {
        self.entries.push(entry);
        self.save().inspect_err(|_| {
            // Not written: not added.
            self.entries.pop();
        })
    }

    /// Replaces the entry of the same name and persists; when the catalog cannot be
    /// written, nothing changes.
    pub fn replace(&mut self, entry: CatalogEntry) -> Result<()> {
        let before = self.entries.clone();
        for e in &mut self.entries {
            if e.name() == entry.name() {
                *e = entry.clone();
            }
        }
        self.save().inspect_err(|_| self.entries = before)
    }

    /// Removes an entry and persists.
    pub fn remove(&mut self, name: &str) -> Result<()> {
        self.remove_all(&[name.to_string()])
    }

    /// Removes entries in one atomic write: all of them or, when the catalog cannot be
    /// written, none.
    pub fn remove_all(&mut self, names: &[String]) -> Result<()> {
        let before = self.entries.clone();
        self.entries
            .retain(|e| !names.iter().any(|n| n == e.name()));
        self.save().inspect_err(|_| self.entries = before)
    }

    fn save(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = CatalogFile {
            format: CATALOG_FORMAT,
            entries: self.entries.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| SqlError::Internal(format!("serializing catalog: {e}")))?;
        write_atomic(path, &bytes)
            .map_err(|e| SqlError::Io(format!("cannot write {}: {e}", path.display())))
    }
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Whether an option holds a secret that must not be shown.
pub fn is_secret_option(key: &str) -> bool {
    let k = key.to_lowercase();
    [
        "password",
        "secret",
        "token",
        "sasl.jaas",
        "key.pem",
        "credentials",
    ]
    .iter()
    .any(|s| k.contains(s))
}

impl SourceDef {
    /// `CREATE SOURCE …` as it would recreate this source, secrets masked.
    pub fn to_sql(&self) -> String {
        let mut parts: Vec<String> = self.columns.iter().map(column_sql).collect();
        if let Some(w) = &self.watermark {
            let col = quote_ident(&w.column);
            parts.push(format!(
                "WATERMARK FOR {col} AS {col} - INTERVAL '{}'",
                w.delay
            ));
        }
        format!(
            "CREATE SOURCE {} (\n    {}\n) WITH ({})",
            quote_ident(&self.name),
            parts.join(",\n    "),
            options_sql(&self.options)
        )
    }
}

impl SinkDef {
    /// `CREATE SINK …` as it would recreate this sink, secrets masked.
    pub fn to_sql(&self) -> String {
        format!(
            "CREATE SINK {} FROM {} WITH ({})",
            quote_ident(&self.name),
            quote_ident(&self.from),
            options_sql(&self.options)
        )
    }
}

/// `key = 'value', …` with secret options and passwords in URLs masked.
fn options_sql(options: &BTreeMap<String, String>) -> String {
    options
        .iter()
        .map(|(k, v)| {
            let v = if is_secret_option(k) {
                "***".to_string()
            } else {
                weir_engine::connector::sink::mask_url(v)
            };
            format!("{k} = '{}'", v.replace('\'', "''"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl ViewDef {
    /// `CREATE MATERIALIZED VIEW …` as written.
    pub fn to_sql(&self) -> String {
        let emit = self
            .emit
            .map(|e| format!(" EMIT {}", e.as_sql()))
            .unwrap_or_default();
        let with = if self.options.is_empty() {
            String::new()
        } else {
            format!(" WITH ({})", options_sql(&self.options))
        };
        format!(
            "CREATE MATERIALIZED VIEW {}{with} AS {}{emit}",
            quote_ident(&self.name),
            self.query
        )
    }
}

/// A column as `CREATE SOURCE` / `CREATE TABLE` declare it.
fn column_sql(c: &ColumnDef) -> String {
    format!(
        "{} {}{}",
        quote_ident(&c.name),
        c.data_type,
        if c.not_null { " NOT NULL" } else { "" }
    )
}

/// Quotes an identifier when PostgreSQL would need it.
pub fn quote_ident(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && !matches!(
            name,
            "timestamp"
                | "user"
                | "select"
                | "from"
                | "where"
                | "order"
                | "group"
                | "window"
                | "table"
        );
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}
