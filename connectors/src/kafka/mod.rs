//! `connector = 'kafka'`: every partition of a topic, JSON payloads decoded in batches,
//! per-partition watermarks, dead letters named `topic/partition@offset`.
//!
//! [`produce`] writes the seed's events to a topic (`weir produce`) for tests and demos.

mod config;
mod metadata;
pub mod produce;
mod sink;
mod source;

pub use config::{KafkaConfig, OnError, StartPosition};
pub use metadata::METADATA_COLUMNS;
pub use sink::KafkaSinkConnector;
pub use source::KafkaSource;

use std::collections::BTreeMap;

use weir_engine::connector::source::{Source, SourceFactory, SourceSpec};
use weir_engine::error::Result;

/// Factory of Kafka sources.
#[derive(Debug)]
pub struct KafkaConnector;

impl SourceFactory for KafkaConnector {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn validate(&self, spec: &SourceSpec) -> Result<BTreeMap<String, String>> {
        let config = KafkaConfig::from_options(&spec.name, &spec.options)?;
        metadata::MetadataColumns::of(&spec.schema)?;
        // librdkafka checks property names and values without connecting: a typo in a
        // `kafka.*` option fails CREATE SOURCE, not the reader later.
        source::check_client_config(&spec.name, &config)?;
        Ok(spec.options.clone())
    }

    fn open(
        &self,
        spec: &SourceSpec,
        position: Option<&serde_json::Value>,
    ) -> Result<Box<dyn Source>> {
        let config = KafkaConfig::from_options(&spec.name, &spec.options)?;
        let mut source = KafkaSource::open(spec, config)?;
        if let Some(p) = position {
            source.resume_at(p)?;
        }
        Ok(Box::new(source))
    }

    fn is_bounded(&self, _spec: &SourceSpec) -> bool {
        false
    }

    fn can_split(&self) -> bool {
        true
    }

    fn splits(&self, spec: &SourceSpec) -> Result<Option<Vec<i32>>> {
        let config = KafkaConfig::from_options(&spec.name, &spec.options)?;
        source::topic_partitions(&spec.name, &config).map(Some)
    }
}
