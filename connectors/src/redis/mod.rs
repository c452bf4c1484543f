//! `connector = 'redis'` sinks: one key per row (per group and window), pipelined.
//!
//! ```sql
//! CREATE SINK kpi_hot FROM kpi_1m WITH (connector = 'redis', url = 'redis://127.0.0.1:6379/0',
//!     key = 'agg:{source}:1m:{window_start}', ttl = '1 hour');
//! ```
//!
//! The value is a JSON object of the row's columns other than those in the key and the
//! window bounds — for the seed's `kpi_1m`, `{"count":…,"avg_metric":…,"p95_metric":…,
//! "error_rate":…}` — or a hash of them with `format = 'hash'`. `latest_key` also keeps each
//! group's newest window (with its `window_start`) under a key without the window, and
//! `channel` publishes every key written. Writes are `SET` (or `DEL` + `HSET`), so writing a
//! row again after a crash leaves the same value: effectively once.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use redis::aio::MultiplexedConnection;
use serde_json::Value;
use weir_engine::connector::sink::{
    mask_url, SinkError, SinkFactory, SinkSpec, SinkWriter, QUEUE_OPTIONS,
};
use weir_engine::error::{EngineError, Result};

use crate::options::{resolve_secret, Options};
use crate::rows::{cell_json, timestamp_ns, Template};

/// Factory of Redis sinks.
#[derive(Debug)]
pub struct RedisSinkConnector;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Hash,
}

#[derive(Debug, Clone)]
struct RedisConfig {
    url: String,
    key: String,
    format: Format,
    ttl: Option<Duration>,
    latest_key: Option<String>,
    channel: Option<String>,
}

impl RedisConfig {
    fn from_spec(spec: &SinkSpec) -> Result<Self> {
        let mut o = Options::new("redis", &spec.options);
        for q in QUEUE_OPTIONS {
            o.optional(q);
        }
        let url = o.required("url")?;
        let key = o.optional("key").unwrap_or_else(|| default_key(spec));
        let format = match o.optional("format").as_deref() {
            None | Some("json") => Format::Json,
            Some("hash") => Format::Hash,
            Some(other) => {
                return Err(EngineError::InvalidOption {
                    option: "format".into(),
                    message: format!("expected 'json' or 'hash', got '{other}'"),
                })
            }
        };
        let ttl = o.duration("ttl")?;
        let latest_key = o.optional("latest_key");
        let channel = o.optional("channel");
        o.finish()?;
        Ok(Self {
            url,
            key,
            format,
            ttl,
            latest_key,
            channel,
        })
    }
}

/// `<relation>:{key1}:…:{window_start}`.
fn default_key(spec: &SinkSpec) -> String {
    let mut key = spec.input.clone();
    for k in &spec.key {
        key.push_str(&format!(":{{{k}}}"));
    }
    key
}

impl SinkFactory for RedisSinkConnector {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn validate(&self, spec: &SinkSpec) -> Result<BTreeMap<String, String>> {
        let config = RedisConfig::from_spec(spec)?;
        RedisWriter::new(spec, config)?;
        let mut options = spec.options.clone();
        options
            .entry("key".into())
            .or_insert_with(|| default_key(spec));
        Ok(options)
    }

    fn create(&self, spec: &SinkSpec) -> Result<Box<dyn SinkWriter>> {
        let config = RedisConfig::from_spec(spec)?;
        Ok(Box::new(RedisWriter::new(spec, config)?))
    }
}

struct RedisWriter {
    sink: String,
    config: RedisConfig,
    key: Template,
    latest: Option<Template>,
    /// Columns written as the value.
    value_columns: Vec<usize>,
    window_start: Option<usize>,
    connection: Option<MultiplexedConnection>,
}

impl RedisWriter {
    fn new(spec: &SinkSpec, config: RedisConfig) -> Result<Self> {
        let schema = &spec.schema;
        let key = Template::parse("key", &config.key, schema)?;
        let latest = config
            .latest_key
            .as_deref()
            .map(|t| Template::parse("latest_key", t, schema))
            .transpose()?;
        let in_key = key.columns();
        let value_columns = (0..schema.fields().len())
            .filter(|c| {
                let name = schema.field(*c).name();
                !in_key.contains(c) && name != "window_start" && name != "window_end"
            })
            .collect();
        Ok(Self {
            sink: spec.name.clone(),
            window_start: schema.index_of("window_start").ok(),
            config,
            key,
            latest,
            value_columns,
            connection: None,
        })
    }

    fn value(&self, batch: &RecordBatch, row: usize) -> serde_json::Map<String, Value> {
        self.value_columns
            .iter()
            .map(|&c| {
                (
                    batch.schema().field(c).name().clone(),
                    cell_json(batch.column(c), row),
                )
            })
            .collect()
    }

    fn add_write(
        &self,
        pipe: &mut redis::Pipeline,
        key: &str,
        value: &serde_json::Map<String, Value>,
    ) {
        match self.config.format {
            Format::Json => {
                let text = Value::Object(value.clone()).to_string();
                match self.config.ttl {
                    Some(ttl) => pipe.set_ex(key, text, ttl.as_secs().max(1)).ignore(),
                    None => pipe.set(key, text).ignore(),
                };
            }
            Format::Hash => {
                let fields: Vec<(String, String)> = value
                    .iter()
                    .map(|(k, v)| {
                        let text = match v {
                            Value::String(s) => s.clone(),
                            Value::Null => String::new(),
                            other => other.to_string(),
                        };
                        (k.clone(), text)
                    })
                    .collect();
                pipe.del(key).ignore();
                pipe.hset_multiple(key, &fields).ignore();
                if let Some(ttl) = self.config.ttl {
                    pipe.expire(key, ttl.as_secs().max(1) as i64).ignore();
                }
            }
        }
        if let Some(channel) = &self.config.channel {
            pipe.publish(channel, key).ignore();
        }
    }
}

fn error(sink: &str, url: &str, e: redis::RedisError) -> SinkError {
    let message = format!("redis {}: {e}", mask_url(url));
    tracing::debug!(sink, error = %message, "redis error");
    match e.kind() {
        redis::ErrorKind::AuthenticationFailed | redis::ErrorKind::InvalidClientConfig => {
            SinkError::Permanent(message)
        }
        _ => SinkError::Transient(message),
    }
}

#[async_trait::async_trait(?Send)]
impl SinkWriter for RedisWriter {
    async fn open(&mut self, _resume: &Value) -> std::result::Result<(), SinkError> {
        let url = resolve_secret("url", &self.config.url)
            .map_err(|e| SinkError::Permanent(e.to_string()))?;
        let client = redis::Client::open(url.as_str())
            .map_err(|e| error(&self.sink, &self.config.url, e))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)));
        let connect = async {
            let mut connection = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let _: String = redis::cmd("PING").query_async(&mut connection).await?;
            Ok::<_, redis::RedisError>(connection)
        };
        let connection = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| {
                SinkError::Transient(format!(
                    "redis {}: no answer within 5 s",
                    mask_url(&self.config.url)
                ))
            })?
            .map_err(|e| error(&self.sink, &self.config.url, e))?;
        self.connection = Some(connection);
        Ok(())
    }

    async fn write(&mut self, batches: &[RecordBatch]) -> std::result::Result<(), SinkError> {
        let mut pipe = redis::pipe();
        // The newest window of each group, for `latest_key`.
        let mut latest: HashMap<String, (i64, serde_json::Map<String, Value>)> = HashMap::new();
        for batch in batches {
            for row in 0..batch.num_rows() {
                let key = self.key.render(batch, row);
                let value = self.value(batch, row);
                self.add_write(&mut pipe, &key, &value);
                if let Some(t) = &self.latest {
                    let start = self
                        .window_start
                        .and_then(|c| timestamp_ns(batch.column(c), row))
                        .unwrap_or(i64::MIN);
                    let k = t.render(batch, row);
                    if latest.get(&k).is_none_or(|(s, _)| *s <= start) {
                        let mut v = value;
                        if let Some(c) = self.window_start {
                            v.insert("window_start".into(), cell_json(batch.column(c), row));
                        }
                        latest.insert(k, (start, v));
                    }
                }
            }
        }
        for (k, (_, v)) in &latest {
            self.add_write(&mut pipe, k, v);
        }
        let connection = self
            .connection
            .as_mut()
            .ok_or_else(|| SinkError::Transient("not connected".into()))?;
        pipe.query_async::<()>(connection)
            .await
            .map_err(|e| error(&self.sink, &self.config.url, e))?;
        Ok(())
    }
}
