//! `connector = 'file'`: JSON lines from a local file; bounded unless `follow = 'true'`.

mod config;
mod source;

pub use config::FileConfig;
pub use source::FileSource;

use std::collections::BTreeMap;

use weir_engine::error::Result;
use weir_engine::source::{Source, SourceFactory, SourceSpec};

/// Factory of file sources.
#[derive(Debug)]
pub struct FileConnector;

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
        Ok(spec.options.clone())
    }

    fn open(
        &self,
        spec: &SourceSpec,
        position: Option<&serde_json::Value>,
    ) -> Result<Box<dyn Source>> {
        let config = FileConfig::from_options(&spec.options)?;
        Ok(Box::new(FileSource::open_at(spec, config, position)?))
    }

    fn is_bounded(&self, spec: &SourceSpec) -> bool {
        FileConfig::from_options(&spec.options)
            .map(|c| !c.follow)
            .unwrap_or(true)
    }
}
