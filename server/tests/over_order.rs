//! OVER windows on out-of-order input (issue 21): events up to 1.5 s out of order, each
//! source's events spread over four Kafka partitions (so no key arrives in event-time
//! order), through the Kafka-compatible test broker. In the default event-time order the
//! view equals DataFusion's batch query over the same events for every OVER function and
//! both frame kinds; `ewma`/`ewm_zscore` (streaming only) equal the same view over the
//! events in event-time order.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use common::kafka::{broker, generator, kafka_source, lines, unique_topic};
use common::*;
use datafusion::arrow::array::{Array, Float64Array, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

const BATCH_COLUMNS: &str = "\
    count(attributes.metric) OVER r AS r_count, sum(attributes.metric) OVER r AS r_sum, \
    avg(attributes.metric) OVER r AS r_avg, min(attributes.metric) OVER r AS r_min, \
    max(attributes.metric) OVER r AS r_max, stddev(attributes.metric) OVER r AS r_stddev, \
    stddev_pop(attributes.metric) OVER r AS r_stddev_pop, var(attributes.metric) OVER r AS r_var, \
    var_pop(attributes.metric) OVER r AS r_var_pop, \
    count(*) OVER w AS w_count, sum(attributes.metric) OVER w AS w_sum, \
    avg(attributes.metric) OVER w AS w_avg, min(attributes.metric) OVER w AS w_min, \
    max(attributes.metric) OVER w AS w_max, stddev(attributes.metric) OVER w AS w_stddev, \
    var_pop(attributes.metric) OVER w AS w_var_pop";
const WINDOWS: &str = "\
    WINDOW r AS (PARTITION BY source ORDER BY \"timestamp\" \
                 RANGE BETWEEN INTERVAL '3 seconds' PRECEDING AND INTERVAL '1 millisecond' PRECEDING), \
           w AS (PARTITION BY source ORDER BY \"timestamp\" ROWS BETWEEN 20 PRECEDING AND CURRENT ROW)";
const EWM_COLUMNS: &str = "\
    ewma(attributes.metric, INTERVAL '2 seconds') OVER (PARTITION BY source ORDER BY \"timestamp\") AS e_mean, \
    ewm_zscore(attributes.metric, INTERVAL '2 seconds') OVER (PARTITION BY source ORDER BY \"timestamp\") AS e_z";

/// (source, time ns) → every f64 column after the first two.
type Scored = BTreeMap<(String, i64), Vec<Option<f64>>>;

fn scored(batches: &[RecordBatch]) -> Scored {
    let mut out = Scored::new();
    for b in batches {
        let (keys, times) = common::alerts::keys_and_times(b);
        let values: Vec<Float64Array> = (2..b.num_columns())
            .map(|c| {
                let a = cast(b.column(c), &DataType::Float64).unwrap();
                a.as_any().downcast_ref::<Float64Array>().unwrap().clone()
            })
            .collect();
        for r in 0..b.num_rows() {
            let row = values
                .iter()
                .map(|v| v.is_valid(r).then(|| v.value(r)))
                .collect();
            out.insert((keys.value(r).to_string(), times.value(r)), row);
        }
    }
    out
}

fn assert_same(got: &Scored, want: &Scored, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: rows");
    for (k, w) in want {
        let g = got
            .get(k)
            .unwrap_or_else(|| panic!("{what}: row {k:?} missing"));
        for (c, (a, b)) in g.iter().zip(w).enumerate() {
            match (a, b) {
                (Some(a), Some(b)) => assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                    "{what}: {k:?} column {c}: {a} vs {b}"
                ),
                (None, None) => {}
                _ => panic!("{what}: {k:?} column {c}: {a:?} vs {b:?}"),
            }
        }
    }
}

/// DataFusion's answer to `sql` over `lines` as table `events`.
async fn batch_query(dir: &std::path::Path, lines: &[String], sql: &str) -> Vec<RecordBatch> {
    let path = dir.join("batch.json");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_json(
        "events",
        path.to_str().unwrap(),
        datafusion::prelude::JsonReadOptions::default()
            .schema(&event_schema())
            .file_extension(".json"),
    )
    .await
    .unwrap();
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

/// Produces `lines` round-robin over `partitions` partitions, whatever their key.
fn produce_spread(brokers: &str, topic: &str, lines: &[String], partitions: i32) {
    weir_connectors::kafka::produce::create_topic(brokers, topic, partitions, &BTreeMap::new())
        .unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    for (i, line) in lines.iter().enumerate() {
        let record = BaseRecord::<(), str>::to(topic)
            .payload(line.as_str())
            .partition(i as i32 % partitions);
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_windows_equal_the_batch_query_on_out_of_order_partitions() {
    // 1.5 s of disorder under the 2 s watermark delay; one event per (source, time) so
    // that ROWS frames have one batch answer.
    let mut seen = HashSet::new();
    let all: Vec<String> = lines(&generator(21, 1500), 12_000, 0.0)
        .into_iter()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            seen.insert((
                v["source"].as_str().unwrap().to_string(),
                v["timestamp"].as_str().unwrap().to_string(),
            ))
        })
        .collect();
    let brokers = broker();
    let topic = unique_topic("over-order");
    produce_spread(&brokers, &topic, &all, 4);

    let dir = tempfile::tempdir().unwrap();
    let sorted_path = dir.path().join("sorted.jsonl");
    let mut sorted = all.clone();
    sorted.sort_by_key(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        common::alerts::time_ns(&v["timestamp"])
    });
    std::fs::write(&sorted_path, sorted.join("\n") + "\n").unwrap();

    let db = memory_db().await;
    exec(
        &db,
        &format!(
            "{};\n{};\n\
             CREATE MATERIALIZED VIEW scored AS SELECT source, \"timestamp\", {BATCH_COLUMNS}, {EWM_COLUMNS} FROM events {WINDOWS};\n\
             CREATE MATERIALIZED VIEW in_order WITH (emit = 'on_arrival') AS SELECT source, \"timestamp\", {EWM_COLUMNS} FROM ordered",
            kafka_source("events", &brokers, &topic, ", start = 'earliest'"),
            weir_server::demo::seed_source(
                "ordered",
                &format!("connector = 'file', path = '{}', format = 'json'", sorted_path.display())
            ),
        ),
    )
    .await;

    // Every event below the view's watermark is scored, and no other: read both until
    // they agree (the watermark is the minimum over the partitions, and moves once more
    // when idle partitions stop holding it back).
    let times: Vec<i64> = all
        .iter()
        .map(|l| {
            common::alerts::time_ns(
                &serde_json::from_str::<serde_json::Value>(l).unwrap()["timestamp"],
            )
        })
        .collect();
    let watermark_sql =
        "SELECT CAST(watermark AS BIGINT) * 1000 FROM weir.views WHERE name = 'scored'";
    let deadline = Instant::now() + Duration::from_secs(120);
    let watermark = loop {
        let before = common::kafka::int(&db, watermark_sql).await;
        let n: usize = db
            .query("SELECT source FROM scored")
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        let after = common::kafka::int(&db, watermark_sql).await;
        let below = times.iter().filter(|t| **t < before).count();
        if before == after && n == below && n > all.len() / 2 {
            break before;
        }
        assert!(
            Instant::now() < deadline,
            "{n} rows scored, {below} events below the watermark {before}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    wait_caught_up(&db, "ordered").await;
    let late = db
        .query("SELECT count(*) FROM weir.late_events")
        .await
        .unwrap();
    let late = late[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(late, 0, "disorder stays within the watermark delay");

    // The batch query over the same events, restricted to the scored ones.
    let batch_sql = format!("SELECT source, \"timestamp\", {BATCH_COLUMNS} FROM events {WINDOWS}");
    let want: Scored = scored(&batch_query(dir.path(), &all, &batch_sql).await)
        .into_iter()
        .filter(|((_, t), _)| *t < watermark)
        .collect();
    let got_all = scored(
        &db.query(&format!(
            "SELECT source, \"timestamp\", {} FROM scored",
            BATCH_COLUMNS
                .split(',')
                .map(|c| c.rsplit(" AS ").next().unwrap().trim())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .await
        .unwrap(),
    );
    assert_same(&got_all, &want, "OVER frames vs batch");

    let ewm = scored(
        &db.query("SELECT source, \"timestamp\", e_mean, e_z FROM scored")
            .await
            .unwrap(),
    );
    let reference: Scored = scored(
        &db.query("SELECT source, \"timestamp\", e_mean, e_z FROM in_order")
            .await
            .unwrap(),
    )
    .into_iter()
    .filter(|((_, t), _)| *t < watermark)
    .collect();
    assert_same(&ewm, &reference, "ewma/ewm_zscore vs in-order");
    db.shutdown();
}
