//! Options of the Kafka connector.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::DateTime;
use weir_engine::error::{EngineError, Result};

use crate::options::{resolve_secret, Options};

/// Where a partition with no position of Weir's own starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The earliest retained offset.
    Earliest,
    /// Only messages produced from now on.
    Latest,
    /// The first message whose timestamp is at or after this time (ms since the epoch).
    Timestamp(i64),
}

/// What a message that cannot be decoded does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Keep it in `weir.dead_letters` and go on (default).
    DeadLetter,
    /// Stop the source with an error naming the message.
    Fail,
}

/// `WITH (connector = 'kafka', …)`.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The topic to read (all of its partitions).
    pub topic: String,
    /// Consumer group offsets are committed to, for monitoring tools (default
    /// `weir-<source>`).
    pub group_id: String,
    /// Where partitions start.
    pub start: StartPosition,
    /// A partition with nothing new for this long stops holding the watermark back.
    pub idle_timeout: Duration,
    /// Messages larger than this are dead letters.
    pub max_message_bytes: usize,
    /// Dead-letter or fail on a bad message.
    pub on_error: OnError,
    /// Most messages per micro-batch.
    pub max_batch_messages: usize,
    /// How long a micro-batch waits to fill up once its first message arrived.
    pub max_batch_wait: Duration,
    /// librdkafka properties given as `kafka.<property>` (secret references resolved by
    /// [`KafkaConfig::client_properties`]).
    pub properties: BTreeMap<String, String>,
    /// Only these partitions (`partitions = '0,3'`); `None`: all of them. A replica's lane
    /// reads one (see the engine's `cluster` module).
    pub partitions: Option<Vec<i32>>,
}

impl KafkaConfig {
    /// Reads and checks the options of source `source`.
    pub fn from_options(source: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let mut o = Options::new("kafka", options);
        let brokers = o.required("brokers")?;
        let topic = o.required("topic")?;
        let group_id = o
            .optional("group_id")
            .unwrap_or_else(|| format!("weir-{source}"));
        let start = match o.optional("start") {
            None => StartPosition::Earliest,
            Some(s) => parse_start(&s)?,
        };
        let format = o.optional("format").unwrap_or_else(|| "json".into());
        if format != "json" {
            return Err(bad(
                "format",
                format!("the kafka connector reads format 'json' (one JSON object per message), not '{format}'"),
            ));
        }
        let idle_timeout = o
            .duration("idle_timeout")?
            .unwrap_or(Duration::from_secs(10));
        let max_message_bytes = o
            .parse_in("max_message_bytes", "a number of bytes", 1, 256 << 20)?
            .unwrap_or(1 << 20usize);
        let on_error = match o.optional("on_error").as_deref() {
            None | Some("dead_letter") => OnError::DeadLetter,
            Some("fail") => OnError::Fail,
            Some(other) => {
                return Err(bad(
                    "on_error",
                    format!("expected 'dead_letter' or 'fail', got '{other}'"),
                ))
            }
        };
        let max_batch_messages = o
            .parse_in("max_batch_messages", "a number of messages", 1, 1_000_000)?
            .unwrap_or(16_384usize);
        let max_batch_wait = o
            .duration("max_batch_wait")?
            .unwrap_or(Duration::from_millis(5));
        let partitions = match o.optional("partitions") {
            None => None,
            Some(list) => Some(parse_partitions(&list)?),
        };
        // Read by the SQL layer (which column the producer partitions by); checked there.
        let _ = o.optional("partition_key");
        let properties = o.take_prefixed("kafka.");
        for reserved in ["bootstrap.servers", "group.id", "enable.partition.eof"] {
            if properties.contains_key(reserved) {
                return Err(bad(
                    &format!("kafka.{reserved}"),
                    format!(
                        "set by Weir; use the option {}",
                        match reserved {
                            "bootstrap.servers" => "brokers",
                            "group.id" => "group_id",
                            _ => "(none: Weir needs partition EOF events)",
                        }
                    ),
                ));
            }
        }
        o.finish()?;
        Ok(Self {
            brokers,
            topic,
            group_id,
            start,
            idle_timeout,
            max_message_bytes,
            on_error,
            max_batch_messages,
            max_batch_wait,
            properties,
            partitions,
        })
    }

    /// The librdkafka properties of a consumer: Weir's settings, then the user's
    /// `kafka.*` ones (secret references resolved).
    pub fn client_properties(&self) -> Result<BTreeMap<String, String>> {
        let mut p: BTreeMap<String, String> = [
            ("bootstrap.servers", self.brokers.as_str()),
            ("group.id", self.group_id.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
            ("statistics.interval.ms", "1000"),
            // A paused broker is noticed in seconds, not the default minute.
            ("socket.timeout.ms", "10000"),
            ("topic.metadata.refresh.interval.ms", "10000"),
            // Fresh data reaches views sooner than librdkafka's 500 ms long-poll default,
            // for brokers that answer a fetch only when the wait is over.
            ("fetch.wait.max.ms", "50"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in &self.properties {
            p.insert(k.clone(), resolve_secret(&format!("kafka.{k}"), v)?);
        }
        Ok(p)
    }
}

fn parse_start(s: &str) -> Result<StartPosition> {
    match s.trim().to_lowercase().as_str() {
        "earliest" => return Ok(StartPosition::Earliest),
        "latest" => return Ok(StartPosition::Latest),
        _ => {}
    }
    if let Ok(ms) = s.trim().parse::<i64>() {
        return Ok(StartPosition::Timestamp(ms));
    }
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| StartPosition::Timestamp(t.timestamp_millis()))
        .map_err(|_| {
            bad(
                "start",
                format!("expected 'earliest', 'latest', an RFC 3339 timestamp or epoch milliseconds, got '{s}'"),
            )
        })
}

fn bad(option: &str, message: String) -> EngineError {
    EngineError::InvalidOption {
        option: option.into(),
        message,
    }
}

/// `partitions = '0, 3, 5'`.
fn parse_partitions(list: &str) -> Result<Vec<i32>> {
    let parsed: std::result::Result<Vec<i32>, _> =
        list.split(',').map(|p| p.trim().parse::<i32>()).collect();
    match parsed {
        Ok(mut v) if !v.is_empty() && v.iter().all(|p| *p >= 0) => {
            v.sort_unstable();
            v.dedup();
            Ok(v)
        }
        _ => Err(bad(
            "partitions",
            format!("expected partition numbers separated by commas, got '{list}'"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_pass_through() {
        let c = KafkaConfig::from_options(
            "events",
            &options(&[
                ("brokers", "b:9092"),
                ("topic", "t"),
                ("kafka.security.protocol", "SASL_PLAINTEXT"),
                ("kafka.sasl.password", "${env:WEIR_TEST_KAFKA_PASSWORD}"),
            ]),
        )
        .unwrap();
        assert_eq!(c.group_id, "weir-events");
        assert_eq!(c.start, StartPosition::Earliest);
        assert_eq!(c.idle_timeout, Duration::from_secs(10));
        std::env::set_var("WEIR_TEST_KAFKA_PASSWORD", "s3cret");
        let p = c.client_properties().unwrap();
        assert_eq!(p["security.protocol"], "SASL_PLAINTEXT");
        assert_eq!(p["sasl.password"], "s3cret");
        assert_eq!(p["bootstrap.servers"], "b:9092");
    }

    #[test]
    fn bad_options_name_themselves() {
        let err = |pairs: &[(&str, &str)]| {
            KafkaConfig::from_options("s", &options(pairs))
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[("topic", "t")]).contains("brokers"));
        assert!(err(&[("brokers", "b"), ("topic", "t"), ("start", "yesterday")]).contains("start"));
        assert!(
            err(&[("brokers", "b"), ("topic", "t"), ("on_error", "ignore")]).contains("on_error")
        );
        assert!(err(&[("brokers", "b"), ("topic", "t"), ("colour", "red")]).contains("colour"));
        assert!(
            err(&[("brokers", "b"), ("topic", "t"), ("kafka.group.id", "g")]).contains("group_id")
        );
        let c = KafkaConfig::from_options(
            "s",
            &options(&[
                ("brokers", "b"),
                ("topic", "t"),
                ("start", "2026-11-27T10:00:00Z"),
            ]),
        )
        .unwrap();
        assert_eq!(c.start, StartPosition::Timestamp(1_795_773_600_000));
        assert!(
            err(&[("brokers", "b"), ("topic", "t"), ("partitions", "1,x")]).contains("partitions")
        );
        let c = KafkaConfig::from_options(
            "s",
            &options(&[("brokers", "b"), ("topic", "t"), ("partitions", " 3, 0,3")]),
        )
        .unwrap();
        assert_eq!(c.partitions, Some(vec![0, 3]));
    }
}
