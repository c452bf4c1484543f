//! Options of the file connector.

use std::collections::BTreeMap;
use std::path::PathBuf;

use weir_engine::error::{EngineError, Result};

use crate::options::Options;

/// `WITH (connector = 'file', …)`.
#[derive(Debug, Clone)]
pub struct FileConfig {
    /// The file to read.
    pub path: PathBuf,
    /// Keep reading as the file grows (default false: stop at its end).
    pub follow: bool,
    /// Bytes read per chunk (default 4 MiB).
    pub chunk_bytes: usize,
}

impl FileConfig {
    /// Reads and checks the options.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self> {
        let mut o = Options::new("file", options);
        let path = PathBuf::from(o.required("path")?);
        let format = o.optional("format").unwrap_or_else(|| "json".into());
        if format != "json" {
            return Err(EngineError::InvalidOption {
                option: "format".into(),
                message: format!(
                    "the file connector reads format 'json' (JSON lines), not '{format}'"
                ),
            });
        }
        let follow = o.flag("follow")?.unwrap_or(false);
        let chunk_bytes = o
            .parse_in::<usize>("chunk_bytes", "a number of bytes", 1024, 256 << 20)?
            .unwrap_or(4 << 20);
        o.finish()?;
        Ok(Self {
            path,
            follow,
            chunk_bytes,
        })
    }
}
