//! `weir-connectors`: one folder per connector, one cargo feature each.
//!
//! Each connector implements `weir_engine::source::SourceFactory`; [`register_all`] is the
//! only list of them.

pub mod options;

#[cfg(feature = "datagen")]
pub mod datagen;
#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "kafka")]
pub mod kafka;

use weir_engine::source::SourceRegistry;

/// Every connector compiled in.
pub fn register_all() -> SourceRegistry {
    let mut registry = SourceRegistry::default();
    #[cfg(feature = "file")]
    registry.register(std::sync::Arc::new(file::FileConnector));
    #[cfg(feature = "datagen")]
    registry.register(std::sync::Arc::new(datagen::DatagenConnector));
    #[cfg(feature = "kafka")]
    registry.register(std::sync::Arc::new(kafka::KafkaConnector));
    registry
}
