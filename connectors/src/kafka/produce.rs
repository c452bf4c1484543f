//! `weir produce`: the seed's events (the datagen generator) written to a Kafka topic,
//! keyed by `source`, optionally paced and with a fraction of malformed messages whose
//! partitions and offsets are reported, so tests can check the dead letters exactly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use weir_engine::error::{EngineError, Result};

use crate::datagen::EventGenerator;

/// What to produce.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Target topic.
    pub topic: String,
    /// Number of messages (events plus malformed ones).
    pub count: u64,
    /// Index of the first event (to continue an earlier run).
    pub first: u64,
    /// Messages per second of wall time; `None` is as fast as the broker takes them.
    pub rate: Option<u64>,
    /// Create the topic with this many partitions when it does not exist.
    pub partitions: Option<i32>,
    /// Fraction of messages replaced by malformed ones.
    pub malformed_rate: f64,
    /// Extra librdkafka properties.
    pub properties: BTreeMap<String, String>,
}

/// A malformed message as the broker stored it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Placed {
    pub partition: i32,
    pub offset: i64,
}

/// What was produced.
#[derive(Debug, Clone, Default)]
pub struct ProduceReport {
    /// Messages acknowledged by the broker.
    pub delivered: u64,
    /// Messages the broker did not take (after librdkafka's retries).
    pub failed: u64,
    /// Where each malformed message landed, in no particular order.
    pub malformed: Vec<Placed>,
    /// Wall time from the first send to the last acknowledgement.
    pub elapsed: Duration,
}

#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    malformed: Mutex<Vec<Placed>>,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    /// 1 for a malformed message, 0 for an event.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, malformed: usize) {
        match result {
            Ok(m) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                if malformed == 1 {
                    self.malformed.lock().push(Placed {
                        partition: m.partition(),
                        offset: m.offset(),
                    });
                }
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first_error.lock().get_or_insert_with(|| e.to_string());
            }
        }
    }
}

fn kafka_error(what: &str, e: KafkaError) -> EngineError {
    EngineError::Source {
        source_name: "produce".into(),
        message: format!("{what}: {e}"),
    }
}

fn client_config(brokers: &str, properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// Creates `topic` with `partitions` partitions; an existing topic is left as it is.
pub fn create_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    properties: &BTreeMap<String, String>,
) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers, properties)
        .create()
        .map_err(|e| kafka_error("creating the admin client", e))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(15)));
    let results = futures::executor::block_on(admin.create_topics([&new], &options))
        .map_err(|e| kafka_error(&format!("creating topic {topic}"), e))?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(EngineError::Source {
                    source_name: "produce".into(),
                    message: format!("creating topic {name}: {code}"),
                })
            }
        }
    }
    Ok(())
}

/// Produces `options.count` messages from `generator`, waits for every acknowledgement, and
/// reports where the malformed ones landed.
pub fn produce(generator: &EventGenerator, options: &ProduceOptions) -> Result<ProduceReport> {
    if let Some(p) = options.partitions {
        create_topic(&options.brokers, &options.topic, p, &options.properties)?;
    }
    let mut config = client_config(&options.brokers, &options.properties);
    for (k, v) in [
        ("linger.ms", "5"),
        ("batch.num.messages", "10000"),
        ("queue.buffering.max.messages", "500000"),
        ("message.timeout.ms", "300000"),
    ] {
        if !options.properties.contains_key(k) {
            config.set(k, v);
        }
    }
    let producer: ThreadedProducer<Deliveries> = config
        .create_with_context(Deliveries::default())
        .map_err(|e| kafka_error("creating the producer", e))?;
    let started = Instant::now();
    let mut payload = Vec::with_capacity(512);
    for n in 0..options.count {
        let i = options.first + n;
        if let Some(rate) = options.rate {
            // Pace to wall time: message n is due at n / rate seconds.
            let due = Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
            let elapsed = started.elapsed();
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
        payload.clear();
        let malformed = generator.is_malformed(i, options.malformed_rate);
        if malformed {
            generator.write_malformed(i, &mut payload);
        } else {
            generator.write_event(i, &mut payload);
            while payload.last() == Some(&b'\n') {
                payload.pop();
            }
        }
        let key = generator.source_of(i);
        let mut record = BaseRecord::with_opaque_to(&options.topic, usize::from(malformed))
            .key(&key)
            .payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(kafka_error("sending", e)),
            }
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .map_err(|e| kafka_error("waiting for acknowledgements", e))?;
    let deliveries = producer.context();
    let report = ProduceReport {
        delivered: deliveries.delivered.load(Ordering::Relaxed),
        failed: deliveries.failed.load(Ordering::Relaxed),
        malformed: std::mem::take(&mut *deliveries.malformed.lock()),
        elapsed: started.elapsed(),
    };
    if report.failed > 0 {
        tracing::warn!(
            failed = report.failed,
            error = deliveries.first_error.lock().as_deref().unwrap_or(""),
            "some messages were not delivered"
        );
    }
    Ok(report)
}
