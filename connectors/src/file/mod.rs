//! `connector = 'file'`: JSON lines from a local file; bounded unless `follow = 'true'`.

mod config;
mod source;
mod table;

pub use config::FileConfig;
pub use source::FileSource;
pub use table::FileTableLoader;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use weir_engine::connector::source::{Source, SourceFactory, SourceSpec};
use weir_engine::error::{EngineError, Result};

/// Factory of file sources, reading only files under the directories it is given.
///
/// `CREATE SOURCE … WITH (connector = 'file', path = '/etc/shadow')` would otherwise put
/// every line of any file the server can read into `weir.dead_letters` for any SQL user.
/// Paths are resolved (symbolic links and `..` included) before they are checked.
#[derive(Debug)]
pub struct FileConnector {
    dirs: Vec<PathBuf>,
}

impl FileConnector {
    /// Reads files under `dirs` only.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Self { dirs }
    }

    /// `path` resolved, if it lies under one of the allowed directories.
    pub(crate) fn check(&self, path: &Path) -> Result<()> {
        let refused = |why: String| EngineError::InvalidOption {
            option: "path".into(),
            message: why,
        };
        let resolved = path
            .canonicalize()
            .map_err(|e| refused(format!("file {} cannot be read: {e}", path.display())))?;
        let (inside, listed) = crate::inside_dirs(&resolved, &self.dirs);
        if !inside {
            return Err(refused(format!(
                "file {} is outside the directories file sources may read ({listed}); move it into one of them, or add its directory to the server's file_dirs setting",
                path.display(),
            )));
        }
        Ok(())
    }
}

impl SourceFactory for FileConnector {
    fn name(&self) -> &'static str {
        "file"
    }

    fn validate(&self, spec: &SourceSpec) -> Result<BTreeMap<String, String>> {
        let config = FileConfig::from_options(&spec.options)?;
        if !config.path.is_file() {
            return Err(weir_engine::EngineError::InvalidOption {
                option: "path".into(),
                message: format!(
                    "file {} does not exist or is not a regular file",
                    config.path.display()
                ),
            });
        }
        self.check(&config.path)?;
        Ok(spec.options.clone())
    }

    fn open(
        &self,
        spec: &SourceSpec,
        position: Option<&serde_json::Value>,
    ) -> Result<Box<dyn Source>> {
        let config = FileConfig::from_options(&spec.options)?;
        self.check(&config.path)?;
        Ok(Box::new(FileSource::open_at(spec, config, position)?))
    }

    fn is_bounded(&self, spec: &SourceSpec) -> bool {
        FileConfig::from_options(&spec.options)
            .map(|c| !c.follow)
            .unwrap_or(true)
    }
}
