//! The streaming path against a DataFusion batch path over the same events: for each window
//! kind, the view's rows equal the batch query over the valid, on-time events.

mod common;

use std::collections::BTreeMap;

use common::*;
use datafusion::arrow::datatypes::DataType;

const DELAY_NS: i64 = 2_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumbling_view_equals_batch_query_with_late_and_malformed_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    // 3 s of disorder against a 2 s watermark delay: some events are late.
    let lines = write_events(&path, 150_000, 7, 3_000, 997);
    let (events, late, bad) = reference_events(&lines, DELAY_NS);
    assert!(
        late > 0 && bad > 0,
        "the input must exercise late and malformed events"
    );

    let db = memory_db().await;
    exec(&db, &create_source(&path)).await;
    exec(
        &db,
        &format!(
            "CREATE MATERIALIZED VIEW kpi_1m AS {}",
            kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '1 minute')")
        ),
    )
    .await;
    wait_caught_up(&db, "events").await;

    let streaming = kpis(
        &db.query(
            "SELECT source, window_start, count, avg_metric, p95_metric, error_rate FROM kpi_1m",
        )
        .await
        .unwrap(),
    );
    let reference = batch(dir.path(), &events, KPI_1M_BATCH_SQL).await;
    let minute = 60_000_000_000i64;
    assert_equivalent(
        &streaming,
        &reference,
        &exact_p95(&events, |t| vec![t.div_euclid(minute) * minute]),
    );

    // Every event is accounted for: in a window, late, or dead-lettered.
    let total: i64 = streaming.values().map(|k| k.count).sum();
    assert_eq!(total as usize, events.len());
    assert_eq!(total as usize + late + bad, lines.len());
    let counts = db
        .query(
            "SELECT events_in, late_events, dead_letters FROM weir.sources WHERE name = 'events'",
        )
        .await
        .unwrap();
    let col = |i: usize| {
        counts[0]
            .column(i)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .unwrap()
            .value(0)
    };
    assert_eq!((col(1) as usize, col(2) as usize), (late, bad));
    assert_eq!(col(0) as usize, lines.len() - bad);

    // Dead letters name their lines; late events keep their raw text.
    let dl = db
        .query("SELECT location, raw, error FROM weir.dead_letters ORDER BY location")
        .await
        .unwrap();
    let rows: usize = dl.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, bad);
    let first_bad_line = lines
        .iter()
        .position(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        .unwrap()
        + 1;
    let formatted = datafusion::arrow::util::pretty::pretty_format_batches(&dl)
        .unwrap()
        .to_string();
    assert!(
        formatted.contains(&format!("events.jsonl:{first_bad_line} ")),
        "{formatted}"
    );
    let late_rows = db
        .query(
            "SELECT count(*) FROM weir.late_events WHERE raw LIKE '{%' AND event_time < watermark",
        )
        .await
        .unwrap();
    let n = late_rows[0]
        .column(0)
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n as usize, late);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hopping_view_equals_batch_query() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let lines = write_events(&path, 60_000, 11, 1_500, 0);
    let (events, _, _) = reference_events(&lines, DELAY_NS);

    let db = memory_db().await;
    exec(&db, &create_source(&path)).await;
    exec(
        &db,
        &format!(
            "CREATE MATERIALIZED VIEW kpi_hop AS {}",
            kpi_query("HOP(events, \"timestamp\", INTERVAL '10 seconds', INTERVAL '1 minute')")
        ),
    )
    .await;
    wait_caught_up(&db, "events").await;
    let streaming = kpis(
        &db.query(
            "SELECT source, window_start, count, avg_metric, p95_metric, error_rate FROM kpi_hop",
        )
        .await
        .unwrap(),
    );
    // Each event belongs to the six 1-minute windows starting every 10 s before it.
    let reference = batch(
        dir.path(),
        &events,
        "SELECT source, CAST(date_bin(INTERVAL '10 seconds', \"timestamp\") AS BIGINT) - o.i * 10000000000 AS ws, count(*), \
         avg(attributes['metric']), approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY attributes['metric']), \
         avg(CASE WHEN attributes['status'] <> 'ok' THEN 1.0 ELSE 0.0 END) \
         FROM events CROSS JOIN (VALUES (0), (1), (2), (3), (4), (5)) AS o(i) GROUP BY 1, 2",
    )
    .await;
    let slide = 10_000_000_000i64;
    let exact = exact_p95(&events, |t| {
        let last = t.div_euclid(slide) * slide;
        (0..6).map(|i| last - i * slide).collect()
    });
    assert_equivalent(&streaming, &reference, &exact);
    let total: i64 = streaming.values().map(|k| k.count).sum();
    assert_eq!(total as usize, events.len() * 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwindowed_and_filter_views_cover_the_whole_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let lines = write_events(&path, 30_000, 3, 0, 0);
    let (events, _, _) = reference_events(&lines, DELAY_NS);

    let db = memory_db().await;
    exec(&db, &create_source(&path)).await;
    exec(&db, "CREATE MATERIALIZED VIEW per_source AS SELECT source, count(*) AS n, sum(attributes.metric) AS total FROM events GROUP BY source").await;
    exec(
        &db,
        &format!(
            "CREATE MATERIALIZED VIEW kpi_1m AS {}",
            kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '1 minute')")
        ),
    )
    .await;
    exec(&db, "CREATE MATERIALIZED VIEW kpi_5m AS SELECT source, window_start, sum(count) AS count FROM TUMBLE(kpi_1m, window_start, INTERVAL '5 minutes') GROUP BY source, window_start, window_end").await;
    exec(&db, "CREATE MATERIALIZED VIEW errors AS SELECT event_id, source, attributes.metric AS metric FROM events WHERE attributes.status = 'error'").await;
    wait_caught_up(&db, "events").await;

    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for e in &events {
        *want.entry(e.source.clone()).or_default() += 1;
    }
    let got = db
        .query("SELECT source, n FROM per_source ORDER BY source")
        .await
        .unwrap();
    let mut have = BTreeMap::new();
    for b in &got {
        let s = b
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        let n = b
            .column(1)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .unwrap();
        for r in 0..b.num_rows() {
            have.insert(s.value(r).to_string(), n.value(r));
        }
    }
    assert_eq!(have, want);

    let errors = db.query("SELECT count(*) FROM errors").await.unwrap();
    let n = errors[0]
        .column(0)
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n as usize, events.iter().filter(|e| e.error).count());

    // A view over a view: 5-minute totals from the closed 1-minute windows.
    let five = db.query("SELECT sum(count) FROM kpi_5m").await.unwrap();
    let total = datafusion::arrow::compute::cast(five[0].column(0), &DataType::Int64).unwrap();
    let total = total
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(total as usize, events.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_on_update_shows_the_open_window_and_views_compose() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let lines = write_events(&path, 130_000, 5, 0, 0);
    // Serve the first 100k lines now, the rest later, through a followed file.
    let first: String = lines[..100_000].iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, first).unwrap();

    let db = memory_db().await;
    exec(
        &db,
        &create_source(&path).replace("format = 'json'", "format = 'json', follow = 'true'"),
    )
    .await;
    exec(
        &db,
        &format!(
            "CREATE MATERIALIZED VIEW live AS {} EMIT ON UPDATE",
            kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '1 minute')")
        ),
    )
    .await;
    exec(
        &db,
        &format!(
            "CREATE MATERIALIZED VIEW closed AS {}",
            kpi_query("TUMBLE(events, \"timestamp\", INTERVAL '1 minute')")
        ),
    )
    .await;
    wait_caught_up(&db, "events").await;

    let count_sql = |v: &str| format!("SELECT coalesce(sum(count), 0) FROM {v}");
    let sum = |b: Vec<datafusion::arrow::array::RecordBatch>| {
        let a = datafusion::arrow::compute::cast(b[0].column(0), &DataType::Int64).unwrap();
        a.as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .unwrap()
            .value(0)
    };
    // 100k events at 1000/s: 100 s of data. The open window is visible only with EMIT ON UPDATE.
    assert_eq!(sum(db.query(&count_sql("live")).await.unwrap()), 100_000);
    let closed_now = sum(db.query(&count_sql("closed")).await.unwrap());
    assert!(
        (60_000..100_000).contains(&closed_now),
        "closed windows hold {closed_now}"
    );

    let rest: String = lines[100_000..].iter().map(|l| format!("{l}\n")).collect();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, rest.as_bytes()).unwrap();
    drop(f);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let live = sum(db.query(&count_sql("live")).await.unwrap());
        if live == 130_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "live view stuck at {live}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // 130 s of data at watermark 128 s: the windows of the first two minutes are closed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while sum(db.query(&count_sql("closed")).await.unwrap()) != 120_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "closed windows did not advance"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Session windows against sessions computed here from the on-time events: per source,
/// sorted by time, a new session wherever the next event comes `gap` or more after the
/// session's latest one. The events arrive out of order (1.5 s of disorder), so sessions
/// are extended and bridged as they stream in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_view_equals_sessions_of_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    // 20 events/s over 8 sources: a source's events come about 0.4 s apart, at random.
    let lines = event_lines(&common::kafka::generator_at_rate(13, 1_500, 20), 6_000, 0);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let (events, _, _) = reference_events(&lines, DELAY_NS);
    let gap = 500_000_000i64;

    let db = memory_db().await;
    exec(&db, &create_source(&path)).await;
    exec(
        &db,
        "CREATE MATERIALIZED VIEW visits AS \
         SELECT source, window_start, window_end, count(*) AS n, sum(attributes.metric) AS total \
         FROM SESSION(events, \"timestamp\", INTERVAL '500 milliseconds') \
         GROUP BY source, window_start, window_end",
    )
    .await;
    wait_caught_up(&db, "events").await;
    let batches = db
        .query(
            "SELECT source, CAST(window_start AS BIGINT), CAST(window_end AS BIGINT), n, total \
             FROM visits",
        )
        .await
        .unwrap();
    let mut streaming: Vec<(String, i64, i64, i64, f64)> = Vec::new();
    for b in &batches {
        let text = |c: usize, r: usize| {
            datafusion::arrow::util::display::array_value_to_string(b.column(c), r).unwrap()
        };
        for r in 0..b.num_rows() {
            streaming.push((
                text(0, r),
                text(1, r).parse().unwrap(),
                text(2, r).parse().unwrap(),
                text(3, r).parse().unwrap(),
                text(4, r).parse().unwrap(),
            ));
        }
    }
    streaming.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));

    let mut by_source: BTreeMap<&str, Vec<&RefEvent>> = BTreeMap::new();
    for e in &events {
        by_source.entry(&e.source).or_default().push(e);
    }
    let mut reference: Vec<(String, i64, i64, i64, f64)> = Vec::new();
    for (source, mut list) in by_source {
        list.sort_by_key(|e| e.time_ns);
        let mut current: Option<(i64, i64, i64, f64)> = None;
        for e in list {
            match current.as_mut() {
                Some((_, last, n, total)) if e.time_ns < *last + gap => {
                    *last = e.time_ns.max(*last);
                    *n += 1;
                    *total += e.metric;
                }
                _ => {
                    if let Some((start, last, n, total)) = current.take() {
                        reference.push((source.to_string(), start, last + gap, n, total));
                    }
                    current = Some((e.time_ns, e.time_ns, 1, e.metric));
                }
            }
        }
        if let Some((start, last, n, total)) = current {
            reference.push((source.to_string(), start, last + gap, n, total));
        }
    }
    reference.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert!(
        reference.len() > 100 && reference.iter().any(|r| r.3 > 1),
        "the input must make many sessions, some of several events"
    );
    assert_eq!(streaming.len(), reference.len(), "session count");
    for (s, r) in streaming.iter().zip(&reference) {
        assert_eq!(
            (&s.0, s.1, s.2, s.3),
            (&r.0, r.1, r.2, r.3),
            "session {r:?}"
        );
        assert!(
            (s.4 - r.4).abs() <= 1e-9 * r.4.abs().max(1.0),
            "{s:?} vs {r:?}"
        );
    }
}

/// A view that joins a table (enrichment) equals the join computed by hand: each on-time
/// event's source looked up in the table, counted and summed per region and minute. The
/// events arrive out of order and some are late or malformed; one source has no row in the
/// table, so `JOIN` drops its events and `LEFT JOIN` keeps them with a NULL region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrichment_join_view_equals_the_join_of_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let lines = write_events(&path, 60_000, 29, 3_000, 499);
    let (events, late, _) = reference_events(&lines, DELAY_NS);
    assert!(late > 0, "the input must exercise late events");
    let sources: Vec<&str> = events
        .iter()
        .map(|e| e.source.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(sources.len() >= 3, "{sources:?}");
    // Every source but the last has a region.
    let regions: BTreeMap<&str, &str> = sources[..sources.len() - 1]
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, if i % 2 == 0 { "east" } else { "west" }))
        .collect();

    let db = memory_db().await;
    exec(
        &db,
        "CREATE TABLE source_regions (source TEXT PRIMARY KEY, region TEXT NOT NULL)",
    )
    .await;
    let values: Vec<String> = regions
        .iter()
        .map(|(s, r)| format!("('{s}', '{r}')"))
        .collect();
    exec(
        &db,
        &format!("INSERT INTO source_regions VALUES {}", values.join(", ")),
    )
    .await;
    exec(&db, &create_source(&path)).await;
    exec(
        &db,
        "CREATE MATERIALIZED VIEW by_region AS \
         SELECT r.region, window_start, count(*) AS n, sum(e.attributes.metric) AS total \
         FROM TUMBLE(events, \"timestamp\", INTERVAL '1 minute') e \
         JOIN source_regions r ON e.source = r.source \
         GROUP BY r.region, window_start",
    )
    .await;
    exec(
        &db,
        "CREATE MATERIALIZED VIEW tagged AS \
         SELECT e.source, r.region, count(*) AS n \
         FROM events e LEFT JOIN source_regions r ON e.source = r.source \
         GROUP BY e.source, r.region",
    )
    .await;
    wait_caught_up(&db, "events").await;

    let minute = 60_000_000_000i64;
    let mut reference: BTreeMap<(String, i64), (i64, f64)> = BTreeMap::new();
    let mut per_source: BTreeMap<(String, String), i64> = BTreeMap::new();
    for e in &events {
        let region = regions.get(e.source.as_str());
        *per_source
            .entry((e.source.clone(), region.unwrap_or(&"NULL").to_string()))
            .or_default() += 1;
        if let Some(region) = region {
            let cell = reference
                .entry((region.to_string(), e.time_ns.div_euclid(minute) * minute))
                .or_default();
            cell.0 += 1;
            cell.1 += e.metric;
        }
    }
    let text = |b: &datafusion::arrow::record_batch::RecordBatch, c: usize, r: usize| {
        datafusion::arrow::util::display::array_value_to_string(b.column(c), r).unwrap()
    };
    let mut streaming: BTreeMap<(String, i64), (i64, f64)> = BTreeMap::new();
    for b in &db
        .query("SELECT region, CAST(window_start AS BIGINT), n, total FROM by_region")
        .await
        .unwrap()
    {
        for r in 0..b.num_rows() {
            streaming.insert(
                (text(b, 0, r), text(b, 1, r).parse().unwrap()),
                (
                    text(b, 2, r).parse().unwrap(),
                    text(b, 3, r).parse().unwrap(),
                ),
            );
        }
    }
    assert_eq!(
        streaming.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>()
    );
    for (key, (n, total)) in &reference {
        let (sn, stotal) = streaming[key];
        assert_eq!(sn, *n, "{key:?}");
        assert!(
            (stotal - total).abs() <= 1e-9 * total.abs().max(1.0),
            "{key:?}"
        );
    }
    let mut tagged: BTreeMap<(String, String), i64> = BTreeMap::new();
    for b in &db
        .query("SELECT source, COALESCE(region, 'NULL'), n FROM tagged")
        .await
        .unwrap()
    {
        for r in 0..b.num_rows() {
            tagged.insert(
                (text(b, 0, r), text(b, 1, r)),
                text(b, 2, r).parse().unwrap(),
            );
        }
    }
    assert_eq!(tagged, per_source);
    assert!(tagged.keys().any(|(_, region)| region == "NULL"));
}

/// An interval self-join view equals the batch join of the same on-time events: every
/// non-ok event paired with the same source's events from 100 ms before to 200 ms after it,
/// computed here by hand. The events arrive out of order over many micro-batches, so pairs
/// form across batches from the kept rows, and some events are late (dropped from both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_join_view_equals_the_batch_join() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let lines = event_lines(&common::kafka::generator_at_rate(17, 3_000, 400), 30_000, 0);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let (events, late, _) = reference_events(&lines, DELAY_NS);
    assert!(late > 0, "the input must exercise late events");

    let db = memory_db().await;
    exec(&db, &create_source(&path)).await;
    exec(
        &db,
        "CREATE MATERIALIZED VIEW pairs AS \
         SELECT a.event_id AS first, b.event_id AS second \
         FROM events a JOIN events b ON a.source = b.source \
         AND b.\"timestamp\" BETWEEN a.\"timestamp\" - INTERVAL '100 milliseconds' \
                              AND a.\"timestamp\" + INTERVAL '200 milliseconds' \
         WHERE a.attributes.status <> 'ok'",
    )
    .await;
    wait_caught_up(&db, "events").await;

    let id = |e: &RefEvent| -> String {
        let v: serde_json::Value = serde_json::from_str(&e.line).unwrap();
        v["event_id"].as_str().unwrap().to_string()
    };
    let mut by_source: BTreeMap<&str, Vec<&RefEvent>> = BTreeMap::new();
    for e in &events {
        by_source.entry(&e.source).or_default().push(e);
    }
    let mut reference: Vec<(String, String)> = Vec::new();
    for list in by_source.values() {
        for a in list.iter().filter(|e| e.error) {
            for b in list {
                let d = b.time_ns - a.time_ns;
                if (-100_000_000..=200_000_000).contains(&d) {
                    reference.push((id(a), id(b)));
                }
            }
        }
    }
    reference.sort();
    let streaming = text_pairs(&db, "SELECT first, second FROM pairs").await;
    assert!(
        reference.len() > 1_000 && reference.iter().any(|(a, b)| a != b),
        "the input must make many pairs: {}",
        reference.len()
    );
    assert_eq!(streaming.len(), reference.len(), "pair count");
    assert!(
        streaming == reference,
        "the pairs differ from the batch join"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_join_of_two_sources_equals_the_batch_join() {
    let dir = tempfile::tempdir().unwrap();
    // Two sources, each out of order within its watermark delay (1.5 s against 2 s), read
    // in several micro-batches each; alarms also holds malformed lines.
    let alarm_lines = event_lines(
        &common::kafka::generator_at_rate(21, 1_500, 400),
        30_000,
        997,
    );
    let event_lines = event_lines(&common::kafka::generator_at_rate(22, 1_500, 400), 30_000, 0);
    let (alarms, late_a, bad_a) = reference_events(&alarm_lines, DELAY_NS);
    let (events, late_e, _) = reference_events(&event_lines, DELAY_NS);
    assert_eq!(
        (late_a, late_e),
        (0, 0),
        "every event is on time in its own source"
    );
    assert!(bad_a > 0, "the input must exercise malformed events");
    let (alarm_path, event_path) = (
        dir.path().join("alarms.jsonl"),
        dir.path().join("events.jsonl"),
    );
    std::fs::write(&alarm_path, alarm_lines.join("\n") + "\n").unwrap();
    std::fs::write(&event_path, event_lines.join("\n") + "\n").unwrap();

    let db = memory_db().await;
    for (name, path) in [("events", &event_path), ("alarms", &alarm_path)] {
        let options = format!(
            "connector = 'file', path = '{}', chunk_bytes = '200000'",
            path.display()
        );
        exec(&db, &weir_server::demo::seed_source(name, &options)).await;
    }
    exec(
        &db,
        "CREATE MATERIALIZED VIEW context AS \
         SELECT a.event_id AS alarm, e.event_id AS event \
         FROM alarms a JOIN events e ON e.source = a.source \
         AND e.\"timestamp\" BETWEEN a.\"timestamp\" - INTERVAL '100 milliseconds' \
                              AND a.\"timestamp\" + INTERVAL '200 milliseconds' \
         WHERE a.attributes.status <> 'ok'",
    )
    .await;

    let id = |e: &RefEvent| -> String {
        let v: serde_json::Value = serde_json::from_str(&e.line).unwrap();
        v["event_id"].as_str().unwrap().to_string()
    };
    let mut reference: Vec<(String, String)> = Vec::new();
    for a in alarms.iter().filter(|a| a.error) {
        for e in events.iter().filter(|e| e.source == a.source) {
            if (-100_000_000..=200_000_000).contains(&(e.time_ns - a.time_ns)) {
                reference.push((id(a), id(e)));
            }
        }
    }
    reference.sort();
    let streaming = text_pairs(&db, "SELECT alarm, event FROM context").await;
    assert!(
        reference.len() > 1_000,
        "the input must make many pairs: {}",
        reference.len()
    );
    assert_eq!(streaming.len(), reference.len(), "pair count");
    assert!(
        streaming == reference,
        "the pairs differ from the batch join"
    );

    // The malformed alarms are dead letters of alarms, once each.
    let dead = db
        .query("SELECT count(*) FROM weir.dead_letters WHERE source = 'alarms'")
        .await
        .unwrap();
    let dead =
        datafusion::arrow::util::display::array_value_to_string(dead[0].column(0), 0).unwrap();
    assert_eq!(dead, bad_a.to_string());
}

/// The rows of a two-column query, as sorted text pairs.
async fn text_pairs(db: &weir_sql::Database, sql: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for b in &db.query(sql).await.unwrap() {
        for r in 0..b.num_rows() {
            let text = |c: usize| {
                datafusion::arrow::util::display::array_value_to_string(b.column(c), r).unwrap()
            };
            out.push((text(0), text(1)));
        }
    }
    out.sort();
    out
}
