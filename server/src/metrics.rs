//! Prometheus metrics: every name is defined here. Engine facts (sources, partitions, views,
//! checkpoints) are read from the same counters as the `weir.*` relations when `/metrics` is
//! scraped; HTTP request counts and latencies are recorded as requests are served. Labels are
//! bounded: source, view and partition names come from the catalog, routes from the router.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use weir_sql::Database;

/// Metrics recorded while serving (they live as long as the server).
#[derive(Clone)]
pub struct ServerMetrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_seconds: HistogramVec,
    pg_statements: IntCounterVec,
    pg_seconds: HistogramVec,
    pg_connections: IntGaugeVec,
    pg_refused: IntCounterVec,
    /// The data dir, whose size `/metrics` reports.
    data_dir: Option<std::path::PathBuf>,
}

/// Latency buckets of requests and statements (seconds).
const REQUEST_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

impl Default for ServerMetrics {
    fn default() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "weir_http_requests_total",
                "HTTP requests served, by route and status.",
            ),
            &["route", "status"],
        )
        .expect("valid metric");
        let http_seconds = HistogramVec::new(
            HistogramOpts::new(
                "weir_http_request_duration_seconds",
                "Time to serve an HTTP request, by route.",
            )
            .buckets(REQUEST_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let pg_statements = counter(
            "weir_pgwire_statements_total",
            "Statements run over the PostgreSQL wire protocol, by kind and outcome.",
            &["kind", "outcome"],
        );
        let pg_seconds = HistogramVec::new(
            HistogramOpts::new(
                "weir_pgwire_statement_duration_seconds",
                "Time to plan and run a statement (pgwire), by kind.",
            )
            .buckets(REQUEST_BUCKETS.to_vec()),
            &["kind"],
        )
        .expect("valid metric");
        let pg_connections = gauge(
            "weir_pgwire_connections",
            "Open PostgreSQL wire protocol connections.",
            &[],
        );
        let pg_refused = counter(
            "weir_pgwire_connections_refused_total",
            "Connections refused with 53300 (max_connections reached).",
            &[],
        );
        // Exported from the start, at 0.
        pg_connections.with_label_values::<&str>(&[]);
        pg_refused.with_label_values::<&str>(&[]);
        registry
            .register(Box::new(pg_connections.clone()))
            .expect("unique metric");
        for m in [&http_requests, &pg_statements, &pg_refused] {
            registry
                .register(Box::new(m.clone()))
                .expect("unique metric");
        }
        for m in [&http_seconds, &pg_seconds] {
            registry
                .register(Box::new(m.clone()))
                .expect("unique metric");
        }
        Self {
            registry,
            http_requests,
            http_seconds,
            pg_statements,
            pg_seconds,
            pg_connections,
            pg_refused,
            data_dir: None,
        }
    }
}

impl ServerMetrics {
    /// Metrics that also report the size of `data_dir`.
    pub fn with_data_dir(data_dir: &std::path::Path) -> Self {
        Self {
            data_dir: Some(data_dir.to_path_buf()),
            ..Self::default()
        }
    }

    /// A pgwire connection opened (+1) or closed (-1).
    pub fn connection(&self, delta: i64) {
        self.pg_connections
            .with_label_values::<&str>(&[])
            .add(delta);
    }

    /// A pgwire client refused past `max_connections`.
    pub fn refused(&self) {
        self.pg_refused.with_label_values::<&str>(&[]).inc();
    }

    /// Records one pgwire statement of `kind` (a bounded set, see `pgwire::statement_kind`).
    pub fn observe_statement(&self, kind: &str, ok: bool, elapsed: std::time::Duration) {
        self.pg_statements
            .with_label_values(&[kind, if ok { "ok" } else { "error" }])
            .inc();
        self.pg_seconds
            .with_label_values(&[kind])
            .observe(elapsed.as_secs_f64());
    }
}

/// Axum middleware counting and timing every request by its route pattern.
pub async fn track(State(m): State<ServerMetrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let response = next.run(request).await;
    m.http_seconds
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    m.http_requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    response
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

/// A memory figure of this process from Linux's `/proc/self/status`, in bytes: `VmRSS`
/// (resident now) or `VmHWM` (peak resident).
pub fn process_memory(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
}

/// The text exposition of every metric.
pub fn render(db: &Arc<Database>, server: &ServerMetrics) -> String {
    let engine = Registry::new();
    let events = counter(
        "weir_source_events_total",
        "Events decoded from a source and accepted (on time and late); a message that becomes a dead letter counts in weir_source_dead_letters_total only.",
        &["source"],
    );
    let late = counter(
        "weir_source_late_events_total",
        "Events behind the watermark, kept in weir.late_events.",
        &["source"],
    );
    let dead = counter(
        "weir_source_dead_letters_total",
        "Messages that could not be decoded, kept in weir.dead_letters.",
        &["source"],
    );
    let wm_lag = gauge(
        "weir_source_watermark_lag_seconds",
        "Wall time minus the source's watermark.",
        &["source"],
    );
    let partition_lag = gauge(
        "weir_source_partition_lag_messages",
        "Messages behind the end of a partition (Kafka consumer lag).",
        &["source", "partition"],
    );
    let partition_position = gauge(
        "weir_source_partition_position",
        "Next offset a source reads in a partition (Kafka) or byte offset (files).",
        &["source", "partition"],
    );
    let partition_idle = gauge(
        "weir_source_partition_idle",
        "1 while a partition has had no events for the source's idle timeout (it holds no watermark back).",
        &["source", "partition"],
    );
    let data_dir_bytes = gauge(
        "weir_data_dir_bytes",
        "Bytes of the files under the data dir (catalog, checkpoints, history, logs).",
        &[],
    );
    let source_up = gauge(
        "weir_source_up",
        "1 while a source reads (running, idle or finished); 0 when it failed or lost its service.",
        &["source"],
    );
    let ck_time = gauge(
        "weir_checkpoint_timestamp_seconds",
        "Wall time of the oldest of the source's pipelines' latest checkpoints (Unix seconds).",
        &["source"],
    );
    let ck_epoch = gauge(
        "weir_checkpoint_epoch",
        "Epoch of the source's last checkpoint.",
        &["source"],
    );
    let ck_bytes = gauge(
        "weir_checkpoint_size_bytes",
        "Bytes of all files the last checkpoint names.",
        &["source"],
    );
    let ck_seconds = GaugeVec::new(
        Opts::new(
            "weir_checkpoint_duration_seconds",
            "Capture plus write time of the last checkpoint.",
        ),
        &["source"],
    )
    .expect("valid metric");
    let rows = gauge(
        "weir_view_rows",
        "Rows a materialized view shows.",
        &["view"],
    );
    let groups = gauge(
        "weir_view_groups",
        "Open (key, window) groups of a view.",
        &["view"],
    );
    let state_bytes = gauge(
        "weir_view_state_bytes",
        "Approximate memory of a view's state.",
        &["view"],
    );
    let open_state_bytes = gauge(
        "weir_view_open_state_bytes",
        "Approximate memory of a view's open windows (accumulators, OVER frames), part of weir_view_state_bytes.",
        &["view"],
    );
    let history_rows = gauge(
        "weir_view_history_rows",
        "Rows of a view in Parquet history (moved out of memory by retention).",
        &["view"],
    );
    let history_bytes = gauge(
        "weir_view_history_bytes",
        "Bytes of a view's Parquet history files.",
        &["view"],
    );
    let rss = gauge(
        "weir_process_resident_memory_bytes",
        "Resident memory of the weir process.",
        &[],
    );
    let rows_in = counter(
        "weir_view_input_rows_total",
        "Rows a view has processed.",
        &["view"],
    );
    let sink_rows = counter(
        "weir_sink_rows_written_total",
        "Rows a sink's target has acknowledged.",
        &["sink", "connector"],
    );
    let sink_errors = counter(
        "weir_sink_errors_total",
        "Failed sink writes (each retry counts).",
        &["sink", "connector"],
    );
    let sink_backlog = gauge(
        "weir_sink_backlog_rows",
        "Rows queued for a sink, not yet acknowledged by its target.",
        &["sink", "connector"],
    );
    let sink_up = gauge(
        "weir_sink_up",
        "1 while the sink writes, 0 while it retries or has stopped on an error.",
        &["sink", "connector"],
    );
    let alerts = counter(
        "weir_alerts_total",
        "Alerts an alert rule has raised (repeats within the cooldown not included).",
        &["alert", "severity"],
    );
    let alert_repeats = counter(
        "weir_alert_repeats_total",
        "Firings within the cooldown, counted on an earlier alert instead of sent.",
        &["alert", "severity"],
    );
    let alerts_firing = gauge(
        "weir_alerts_firing",
        "Keys whose threshold alert is firing and not resolved yet.",
        &["alert", "severity"],
    );
    for (name, v) in db.views() {
        let Some((spec, records, firing)) = v.alerts() else {
            continue;
        };
        let l = [name.as_str(), spec.severity.as_str()];
        alerts.with_label_values(&l).inc_by(records.len() as u64);
        alert_repeats
            .with_label_values(&l)
            .inc_by(records.iter().map(|r| r.repeats).sum());
        alerts_firing.with_label_values(&l).set(firing as i64);
    }
    // One snapshot, the one weir.* and /ready read.
    let counters = db.counters();
    for sink in &counters.sinks {
        let l = [sink.name.as_str(), sink.connector.as_str()];
        sink_rows.with_label_values(&l).inc_by(sink.rows_written);
        sink_errors.with_label_values(&l).inc_by(sink.errors);
        sink_backlog.with_label_values(&l).set(sink.backlog as i64);
        sink_up.with_label_values(&l).set(i64::from(sink.healthy));
    }
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    for s in &counters.sources {
        let l = [s.name.as_str()];
        events.with_label_values(&l).inc_by(s.events_in);
        late.with_label_values(&l).inc_by(s.late_events);
        dead.with_label_values(&l).inc_by(s.dead_letters);
        if s.watermark != i64::MIN && s.watermark != i64::MAX {
            wm_lag
                .with_label_values(&l)
                .set(now_ns.saturating_sub(s.watermark) / 1_000_000_000);
        }
        for p in &s.splits {
            let l = [s.name.as_str(), &p.split.to_string()];
            if let Some(lag) = p.lag() {
                partition_lag.with_label_values(&l).set(lag);
            }
            partition_position.with_label_values(&l).set(p.position);
            partition_idle.with_label_values(&l).set(i64::from(p.idle));
        }
        source_up.with_label_values(&l).set(i64::from(!s.failing));
        if s.checkpoints.oldest_at_ms > 0 {
            ck_time
                .with_label_values(&l)
                .set(s.checkpoints.oldest_at_ms / 1000);
        }
        ck_epoch
            .with_label_values(&l)
            .set(s.checkpoints.epoch as i64);
        ck_bytes
            .with_label_values(&l)
            .set(s.checkpoints.total_bytes as i64);
        ck_seconds
            .with_label_values(&l)
            .set(s.checkpoints.slowest_micros as f64 / 1e6);
    }
    if let Some(dir) = &server.data_dir {
        data_dir_bytes
            .with_label_values::<&str>(&[])
            .set(dir_bytes(dir) as i64);
    }
    if let Some(bytes) = process_memory("VmRSS") {
        rss.with_label_values::<&str>(&[]).set(bytes as i64);
    }
    for v in &counters.views {
        let l = [v.name.as_str()];
        rows.with_label_values(&l).set(v.rows as i64);
        history_rows
            .with_label_values(&l)
            .set(v.history.rows as i64);
        history_bytes
            .with_label_values(&l)
            .set(v.history.bytes as i64);
        groups.with_label_values(&l).set(v.groups as i64);
        state_bytes.with_label_values(&l).set(v.state_bytes as i64);
        open_state_bytes
            .with_label_values(&l)
            .set(v.open_state_bytes as i64);
        rows_in.with_label_values(&l).inc_by(v.rows_in);
    }
    for c in [
        &events,
        &late,
        &dead,
        &rows_in,
        &sink_rows,
        &sink_errors,
        &alerts,
        &alert_repeats,
    ] {
        engine.register(Box::new(c.clone())).expect("unique metric");
    }
    for g in [
        &wm_lag,
        &partition_lag,
        &partition_position,
        &partition_idle,
        &data_dir_bytes,
        &ck_epoch,
        &ck_bytes,
        &source_up,
        &ck_time,
        &rows,
        &groups,
        &state_bytes,
        &open_state_bytes,
        &history_rows,
        &history_bytes,
        &rss,
        &sink_backlog,
        &sink_up,
        &alerts_firing,
    ] {
        engine.register(Box::new(g.clone())).expect("unique metric");
    }
    engine
        .register(Box::new(ck_seconds.clone()))
        .expect("unique metric");
    let mut families = engine.gather();
    families.extend(server.registry.gather());
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut out)
        .expect("text encoding into memory");
    let mut text = String::from_utf8(out).unwrap_or_default();
    batch_histograms(db, &mut text);
    crate::process_metrics::render(&mut text);
    text
}

/// Bytes allocated on disk for the files under `dir` (a hole-punched ingest log counts what
/// it holds, not its length); links are not followed.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

/// `weir_batch_duration_seconds`: the engine keeps its own fixed buckets (it does not depend
/// on the prometheus crate), written here in the text format.
fn batch_histograms(db: &Arc<Database>, out: &mut String) {
    use std::fmt::Write;
    let sources = db.engine().sources();
    if sources.is_empty() {
        return;
    }
    let name = "weir_batch_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time to process one micro-batch (lateness, every view, sink queues)."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for s in sources {
        let source = label_value(&s.name);
        let (buckets, sum_us) = s.stats.batch_latency.cumulative();
        let mut count = 0;
        for (le_us, n) in buckets {
            let le = if le_us == u64::MAX {
                "+Inf".to_string()
            } else {
                format!("{}", le_us as f64 / 1e6)
            };
            let _ = writeln!(out, "{name}_bucket{{source=\"{source}\",le=\"{le}\"}} {n}");
            count = n;
        }
        let _ = writeln!(
            out,
            "{name}_sum{{source=\"{source}\"}} {}",
            sum_us as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{source=\"{source}\"}} {count}");
    }
}

/// A label value escaped for the text format.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
