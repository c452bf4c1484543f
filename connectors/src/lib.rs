//! `weir-connectors`: one folder per connector, one cargo feature each.
//!
//! Each connector implements `weir_engine::connector::source::SourceFactory` (sources) or
//! `weir_engine::connector::sink::SinkFactory` (sinks); [`register_all`] is the
//! only list of them.

pub mod options;
pub mod rows;

#[cfg(feature = "alertmanager")]
pub mod alertmanager;
#[cfg(feature = "datagen")]
pub mod datagen;
#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "parquet")]
pub mod parquet;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "webhook")]
pub mod webhook;

use weir_engine::connector::source::SourceRegistry;

/// Whether `resolved` (a path with links and `..` resolved) lies under one of `dirs`, and
/// `dirs` listed for the message that says where paths may be.
pub(crate) fn inside_dirs(
    resolved: &std::path::Path,
    dirs: &[std::path::PathBuf],
) -> (bool, String) {
    let inside = dirs
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .any(|d| resolved.starts_with(d));
    let listed = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    (inside, listed)
}

/// Every connector compiled in; `http` sources keep their logs in a directory of the
/// system's temp dir (see [`register_all_in`]).
/// File sources read any path: for tools (benchmarks) and tests, not for a server that
/// takes SQL from others (that uses [`register_all_with`]).
pub fn register_all() -> SourceRegistry {
    register_all_with(
        &std::env::temp_dir().join(format!("weir-{}", std::process::id())),
        vec![std::path::PathBuf::from("/")],
    )
}

/// The directories file sources may read unless configured: the data dir, `./import` and
/// the system's temporary directory.
pub fn default_file_dirs(data_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    vec![
        data_dir.to_path_buf(),
        std::path::PathBuf::from("import"),
        std::env::temp_dir(),
    ]
}

/// Every connector compiled in, `http` sources logging under `data_dir/ingest`, file
/// sources reading under [`default_file_dirs`].
pub fn register_all_in(data_dir: &std::path::Path) -> SourceRegistry {
    register_all_with(data_dir, default_file_dirs(data_dir))
}

/// Like [`register_all_in`], file sources reading only under `file_dirs`.
pub fn register_all_with(
    data_dir: &std::path::Path,
    file_dirs: Vec<std::path::PathBuf>,
) -> SourceRegistry {
    let mut registry = SourceRegistry::default();
    #[cfg(not(feature = "file"))]
    let _ = file_dirs;
    #[cfg(feature = "http")]
    registry.register(std::sync::Arc::new(http::HttpConnector::new(
        data_dir.join("ingest"),
    )));
    #[cfg(not(feature = "http"))]
    let _ = data_dir;
    #[cfg(feature = "parquet")]
    registry.register_sink(std::sync::Arc::new(parquet::ParquetSinkConnector::new(
        data_dir.to_path_buf(),
        file_dirs.clone(),
    )));
    #[cfg(feature = "file")]
    registry.register_loader(std::sync::Arc::new(file::FileTableLoader::new(
        file_dirs.clone(),
    )));
    #[cfg(feature = "file")]
    registry.register(std::sync::Arc::new(file::FileConnector::new(file_dirs)));
    #[cfg(feature = "datagen")]
    registry.register(std::sync::Arc::new(datagen::DatagenConnector));
    #[cfg(feature = "kafka")]
    registry.register(std::sync::Arc::new(kafka::KafkaConnector));
    #[cfg(feature = "kafka")]
    registry.register_sink(std::sync::Arc::new(kafka::KafkaSinkConnector));
    #[cfg(feature = "redis")]
    registry.register_sink(std::sync::Arc::new(crate::redis::RedisSinkConnector));
    #[cfg(feature = "postgres")]
    registry.register_sink(std::sync::Arc::new(postgres::PostgresSinkConnector));
    #[cfg(feature = "postgres")]
    registry.register_loader(std::sync::Arc::new(postgres::PostgresTableLoader));
    #[cfg(feature = "webhook")]
    registry.register_sink(std::sync::Arc::new(webhook::WebhookSinkConnector));
    #[cfg(feature = "alertmanager")]
    registry.register_sink(std::sync::Arc::new(alertmanager::AlertmanagerSinkConnector));
    registry
}
