//! `connector = 'datagen'`: the seed's events, generated deterministically.
//!
//! Event *i* has time `start + i/rate`; `start` is fixed when the source is created (and
//! persisted with it), so a replay yields the same events. `weir datagen` writes the same
//! events as JSON lines.

mod config;
mod generator;
mod source;

pub use config::DatagenConfig;
pub use generator::EventGenerator;
pub use source::DatagenSource;

use std::collections::BTreeMap;

use weir_engine::connector::source::{Source, SourceFactory, SourceSpec};
use weir_engine::error::Result;

/// Factory of datagen sources.
#[derive(Debug)]
pub struct DatagenConnector;

impl SourceFactory for DatagenConnector {
    fn name(&self) -> &'static str {
        "datagen"
    }

    fn validate(&self, spec: &SourceSpec) -> Result<BTreeMap<String, String>> {
        let config = DatagenConfig::from_options(&spec.options)?;
        let mut options = spec.options.clone();
        // Fix the start for the life of the source so that replays regenerate the same events.
        options
            .entry("start".into())
            .or_insert_with(|| config.start_rfc3339());
        Ok(options)
    }

    fn open(
        &self,
        spec: &SourceSpec,
        position: Option<&serde_json::Value>,
    ) -> Result<Box<dyn Source>> {
        let config = DatagenConfig::from_options(&spec.options)?;
        let mut source = DatagenSource::new(spec, config);
        if let Some(next) = position
            .and_then(|p| p.get("next"))
            .and_then(|v| v.as_u64())
        {
            source.skip_to(next);
        }
        Ok(Box::new(source))
    }

    fn is_bounded(&self, spec: &SourceSpec) -> bool {
        DatagenConfig::from_options(&spec.options)
            .map(|c| c.count.is_some())
            .unwrap_or(false)
    }
}
