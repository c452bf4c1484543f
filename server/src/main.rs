//! The `weir` binary: `weir [--demo] …` runs the server; `weir datagen` writes seed events;
//! `weir produce` writes seed events to Kafka; `weir bench` runs the file benchmark.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weir_connectors::datagen::{DatagenConfig, EventGenerator};
use weir_connectors::kafka::produce;
use weir_server::Config;

mod bench;

/// Weir: a streaming SQL database.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Data directory (catalog). Default ./weir-data.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// PostgreSQL wire protocol address. Default 127.0.0.1:6875.
    #[arg(long, global = true)]
    pg_addr: Option<SocketAddr>,
    /// REST API address. Default 127.0.0.1:8080.
    #[arg(long, global = true)]
    http_addr: Option<SocketAddr>,
    /// TOML configuration file.
    #[arg(long, global = true, env = "WEIR_CONFIG")]
    config: Option<PathBuf>,
    /// Create a demo source and views over generated events.
    #[arg(long)]
    demo: bool,
    /// Events per second of the demo generator.
    #[arg(long)]
    demo_rate: Option<u64>,
    /// Discard checkpoints written by an incompatible build and rebuild views from their
    /// sources.
    #[arg(long)]
    rebuild_state: bool,
    /// Serve other machines without credentials (pgwire without users on a non-loopback
    /// address; REST there without tokens). Logged as a warning.
    #[arg(long)]
    insecure: bool,
    /// PEM certificate chain: pgwire answers SSLRequest with TLS.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Refuse pgwire clients that do not use TLS.
    #[arg(long)]
    require_tls: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write deterministic seed events as JSON lines to stdout.
    Datagen {
        /// Number of events.
        #[arg(long)]
        count: u64,
        /// Random seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Events per second of event time.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Distinct sources (src-0000 …).
        #[arg(long, default_value_t = 10)]
        sources: u32,
        /// Fraction of events with status 'error'.
        #[arg(long, default_value_t = 0.01)]
        error_rate: f64,
        /// Fraction of outliers (metric ×20).
        #[arg(long, default_value_t = 0.001)]
        outlier_rate: f64,
        /// Shift events up to this many ms back in time (out-of-order input).
        #[arg(long, default_value_t = 0)]
        disorder_ms: u64,
        /// Time of event 0 (RFC 3339).
        #[arg(long, default_value = "2026-11-27T10:00:00Z")]
        start: String,
        /// Fraction of lines written malformed (broken JSON, not JSON, a wrong type, no
        /// timestamp): they become dead letters.
        #[arg(long, default_value_t = 0.0)]
        malformed_rate: f64,
        /// Fraction of events written a minute early in the stream: late events.
        #[arg(long, default_value_t = 0.0)]
        late_rate: f64,
    },
    /// Write seed events to a Kafka topic, keyed by source.
    Produce {
        /// Kafka bootstrap servers.
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Topic to write to.
        #[arg(long, default_value = "events")]
        topic: String,
        /// Number of messages.
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        /// Messages per second of wall time (default: as fast as the broker takes them);
        /// event times advance at the same rate.
        #[arg(long)]
        rate: Option<u64>,
        /// Create the topic with this many partitions if it does not exist.
        #[arg(long)]
        partitions: Option<i32>,
        /// Fraction of messages replaced by malformed ones.
        #[arg(long, default_value_t = 0.0)]
        malformed_rate: f64,
        /// Random seed of the generator.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Distinct sources (src-0000 …), the message keys.
        #[arg(long, default_value_t = 20)]
        sources: u32,
        /// Shift events up to this many ms back in time (out-of-order input).
        #[arg(long, default_value_t = 0)]
        disorder_ms: u64,
        /// Time of event 0 (RFC 3339); default now.
        #[arg(long)]
        start: Option<String>,
        /// Write the partition and offset of each malformed message to this file.
        #[arg(long)]
        malformed_log: Option<PathBuf>,
    },
    /// Kafka → kpi_1m throughput next to a discarding consumer, and end-to-end latency.
    BenchKafka {
        /// Kafka bootstrap servers.
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Events produced for the throughput run.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Partitions of the bench topics.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Steady rate of the latency run (events/s); 0 skips it.
        #[arg(long, default_value_t = 50_000)]
        latency_rate: u64,
        /// Length of the latency run.
        #[arg(long, default_value_t = 30)]
        latency_seconds: u64,
        /// The latency run's `fetch.wait.max.ms` (Weir's default: 50).
        #[arg(long)]
        fetch_wait_ms: Option<u64>,
        /// Further librdkafka consumer properties of the latency run's source, as
        /// `name=value` (repeatable).
        #[arg(long = "consumer-property")]
        consumer_properties: Vec<String>,
    },
    /// Checkpoint cost: throughput with and without checkpoints, size, duration, restore.
    BenchCheckpoint {
        /// Number of events.
        #[arg(long, default_value_t = 2_000_000)]
        events: u64,
        /// Distinct keys; all events fall in one 1-minute window, so this is the number of
        /// open groups.
        #[arg(long, default_value_t = 100_000)]
        sources: u32,
        /// Checkpoint interval.
        #[arg(long, default_value = "1s")]
        interval: String,
        /// Directory for the events file and the data dir (default: the system temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Running for months: simulated days through kpi_1m with retention, printing RSS,
    /// data-dir size and throughput per day, then a 7-day range query over history.
    BenchSoak {
        /// Simulated days.
        #[arg(long, default_value_t = 30)]
        days: u64,
        /// Events per second of event time.
        #[arg(long, default_value_t = 5)]
        rate: u64,
        /// Distinct sources.
        #[arg(long, default_value_t = 100)]
        sources: u64,
        /// The view's retention; `none` keeps every row in memory.
        #[arg(long, default_value = "1 hour")]
        retention: String,
        /// Directory for the data dir (default: the system temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Sink cost: kpi_1m with no sinks, then with Redis, PostgreSQL (kpi_1m and events_raw)
    /// and Kafka sinks, over the same events.
    BenchSinks {
        /// Number of events.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// PostgreSQL database the sinks write to.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/weir_bench")]
        postgres: String,
        /// Redis the hot-aggregate sink writes to.
        #[arg(long, default_value = "redis://127.0.0.1:6379/0")]
        redis: String,
        /// Kafka bootstrap servers.
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Directory for the events file and the data dir (default: the system temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Detection-to-alert latency: paced events through Kafka, the seed's outlier rule,
    /// alerts published to Kafka; prints latency quantiles.
    BenchAlerts {
        /// Events per second (paced to wall time).
        #[arg(long, default_value_t = 50_000)]
        rate: u64,
        /// Seconds of events.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Fraction of events that are outliers.
        #[arg(long, default_value_t = 0.001)]
        outlier_rate: f64,
        /// Kafka bootstrap servers; `mock` runs librdkafka's mock cluster in-process.
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        /// The source's kafka.fetch.wait.max.ms.
        #[arg(long, default_value_t = 50)]
        fetch_wait_ms: u64,
        /// When the rule scores events: `on_watermark` (event-time order, exact) or
        /// `on_arrival`.
        #[arg(long, default_value = "on_watermark")]
        emit: String,
        /// Directory for the data dir (default: the system temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Apply Weir's PostgreSQL schema (migrations/) to a database, as a postgres sink does
    /// when it is created.
    Migrate {
        /// postgres://user[:password]@host[:port]/database
        url: String,
    },
    /// Time the file session (CREATE SOURCE + kpi_1m) over generated events.
    Bench {
        /// Number of events.
        #[arg(long, default_value_t = 2_000_000)]
        events: u64,
        /// Use this file instead of generating one.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The view's window: the seed's TUMBLE, HOP (10 s slide, 1 minute size), CUMULATE
        /// (10 s steps to 1 minute) or SESSION (30 s gap, per source).
        #[arg(long, value_enum, default_value = "tumble")]
        window: bench::Window,
        /// Join every event to a table of this many rows (`owners`, keyed by source) in the
        /// view: the cost of a lookup join. 0: no join.
        #[arg(long, default_value_t = 0)]
        lookup_rows: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Datagen {
            count,
            seed,
            rate,
            sources,
            error_rate,
            outlier_rate,
            disorder_ms,
            start,
            malformed_rate,
            late_rate,
        }) => {
            let options: BTreeMap<String, String> = [
                ("count", count.to_string()),
                ("seed", seed.to_string()),
                ("rate", rate.to_string()),
                ("sources", sources.to_string()),
                ("error_rate", error_rate.to_string()),
                ("outlier_rate", outlier_rate.to_string()),
                ("disorder_ms", disorder_ms.to_string()),
                ("start", start),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            let generator = EventGenerator::new(DatagenConfig::from_options(&options)?);
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            let mut line = Vec::with_capacity(256);
            for i in 0..count {
                line.clear();
                if generator.is_malformed(i, malformed_rate) {
                    generator.write_malformed(i, &mut line);
                    line.push(b'\n');
                } else if generator.is_late(i, late_rate) {
                    generator.write_late_event(i, &mut line);
                } else {
                    generator.write_event(i, &mut line);
                }
                if let Err(e) = out.write_all(&line) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(());
                    }
                    return Err(e.into());
                }
            }
            out.flush()?;
            Ok(())
        }
        Some(Command::Produce {
            brokers,
            topic,
            count,
            rate,
            partitions,
            malformed_rate,
            seed,
            sources,
            disorder_ms,
            start,
            malformed_log,
        }) => {
            init_logging("text", "warn");
            let mut options: BTreeMap<String, String> = [
                ("seed", seed.to_string()),
                ("rate", rate.unwrap_or(1000).to_string()),
                ("sources", sources.to_string()),
                ("disorder_ms", disorder_ms.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            if let Some(start) = start {
                options.insert("start".into(), start);
            }
            let generator = EventGenerator::new(DatagenConfig::from_options(&options)?);
            let report = produce::produce(
                &generator,
                &produce::ProduceOptions {
                    brokers,
                    topic: topic.clone(),
                    count,
                    first: 0,
                    rate,
                    partitions,
                    malformed_rate,
                    properties: BTreeMap::new(),
                },
            )?;
            if let Some(path) = malformed_log {
                let mut placed = report.malformed.clone();
                placed.sort();
                let text: String = placed
                    .iter()
                    .map(|p| format!("{topic}/{}@{}\n", p.partition, p.offset))
                    .collect();
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            println!(
                "delivered {} messages to {topic} ({} malformed, {} failed) in {:.2} s: {:.0} messages/s",
                report.delivered,
                report.malformed.len(),
                report.failed,
                report.elapsed.as_secs_f64(),
                report.delivered as f64 / report.elapsed.as_secs_f64().max(1e-9)
            );
            if report.failed > 0 {
                anyhow::bail!("{} messages were not delivered", report.failed);
            }
            Ok(())
        }
        Some(Command::BenchKafka {
            brokers,
            events,
            partitions,
            latency_rate,
            latency_seconds,
            fetch_wait_ms,
            consumer_properties,
        }) => {
            init_logging("text", "warn");
            let runtime = tokio::runtime::Runtime::new()?;
            let t = runtime.block_on(bench::kafka::throughput(&brokers, events, partitions))?;
            println!("events:                {}", t.events);
            println!(
                "produce:               {:.0} events/s",
                t.produce_per_second
            );
            println!(
                "consume-only:          {:.0} events/s (rdkafka, payloads discarded)",
                t.consume_only_per_second
            );
            println!("weir kafka -> kpi_1m:  {:.0} events/s", t.weir_per_second);
            println!(
                "weir / consume-only:   {:.0}%",
                100.0 * t.weir_per_second / t.consume_only_per_second
            );
            if latency_rate > 0 {
                let l = runtime.block_on(bench::kafka::latency(
                    &brokers,
                    latency_rate,
                    latency_seconds,
                    partitions,
                    fetch_wait_ms,
                    &consumer_properties,
                ))?;
                println!(
                    "latency at {} events/s over {} windows (produce -> 100 ms window emitted): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} events read)",
                    l.rate, l.windows, l.p50_ms, l.p99_ms, l.max_ms, l.events_in
                );
                println!(
                    "after the first second:  p99 {:.1} ms, max {:.1} ms",
                    l.steady_p99_ms, l.steady_max_ms
                );
            }
            Ok(())
        }
        Some(Command::BenchCheckpoint {
            events,
            sources,
            interval,
            dir,
        }) => {
            init_logging("text", "warn");
            let interval = weir_connectors::options::parse_duration(&interval)
                .context("--interval: expected a duration such as 1s or 250ms")?;
            let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("weir-bench-checkpoint"));
            std::fs::create_dir_all(&dir)?;
            let runtime = tokio::runtime::Runtime::new()?;
            let r = runtime.block_on(bench::checkpoint::run(&dir, events, sources, interval))?;
            println!("events:               {}", r.events);
            println!("open groups:          {}", r.groups);
            println!("without checkpoints:  {:.0} events/s", r.without);
            println!(
                "with checkpoints:     {:.0} events/s (every {:?}; {:.1}% of without)",
                r.with,
                r.interval,
                100.0 * r.with / r.without
            );
            println!("checkpoints written:  {}", r.checkpoints);
            println!(
                "checkpoint size:      {:.1} MiB",
                r.size_bytes as f64 / (1024.0 * 1024.0)
            );
            println!(
                "checkpoint duration:  {:.1} ms (capture + write + fsync, last one)",
                r.last.as_secs_f64() * 1000.0
            );
            println!(
                "processing paused:    {:.1} ms per checkpoint (state capture; the write runs alongside)",
                r.capture.as_secs_f64() * 1000.0
            );
            println!(
                "restart to serving:   {:.3} s ({} groups restored)",
                r.restore.as_secs_f64(),
                r.restored_groups
            );
            Ok(())
        }
        Some(Command::BenchSoak {
            days,
            rate,
            sources,
            retention,
            dir,
        }) => {
            init_logging("text", "warn");
            let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("weir-bench-soak"));
            let options = bench::soak::SoakOptions {
                days,
                rate,
                sources,
                retention: (retention != "none").then_some(retention),
            };
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(bench::soak::run(&dir, &options))?;
            Ok(())
        }
        Some(Command::BenchAlerts {
            rate,
            seconds,
            outlier_rate,
            brokers,
            fetch_wait_ms,
            emit,
            dir,
        }) => {
            init_logging("text", "warn");
            let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("weir-bench-alerts"));
            std::fs::create_dir_all(&dir)?;
            let runtime = tokio::runtime::Runtime::new()?;
            let options = bench::alerts::AlertBenchOptions {
                brokers,
                rate,
                seconds,
                outlier_rate,
                fetch_wait_ms,
                emit: emit.clone(),
            };
            let r = runtime.block_on(bench::alerts::run(&dir, &options))?;
            println!("rule:          emit = '{emit}'");
            println!(
                "events:        {} at {:.0} events/s (target {rate})",
                r.events, r.produced_rate
            );
            println!("alerts:        {}", r.latencies_ms.len());
            let q = bench::alerts::AlertBench::quantile;
            for (what, l) in [
                ("event time", &r.latencies_ms),
                ("event produced", &r.from_produce_ms),
            ] {
                println!(
                    "{what} to alert published: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms ({} alerts)",
                    q(l, 0.5),
                    q(l, 0.9),
                    q(l, 0.99),
                    l.last().copied().unwrap_or(0),
                    l.len()
                );
            }
            let (batches, mean, p99) = r.batch_summary();
            println!(
                "pipeline:      {batches} batches, {mean:.1} ms each on average, 99% within {p99} ms"
            );
            Ok(())
        }
        Some(Command::BenchSinks {
            events,
            postgres,
            redis,
            brokers,
            dir,
        }) => {
            init_logging("text", "warn");
            let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("weir-bench-sinks"));
            std::fs::create_dir_all(&dir)?;
            let targets = bench::sinks::Targets {
                postgres,
                redis,
                brokers,
            };
            let runtime = tokio::runtime::Runtime::new()?;
            let r = runtime.block_on(bench::sinks::run(&dir, events, &targets))?;
            println!("events:                 {}", r.events);
            println!("kpi_1m, no sinks:       {:.0} events/s", r.without);
            println!(
                "kpi_1m, four sinks:     {:.0} events/s ({:.0}% of no sinks)",
                r.with,
                100.0 * r.with / r.without
            );
            println!(
                "until sinks drained:    {:.0} events/s ({:.0}% of no sinks)",
                r.end_to_end,
                100.0 * r.end_to_end / r.without
            );
            let k = &r.redis_keys;
            println!(
                "redis, events as keys:  {} keys in {:.2} s = {:.0} keys/s",
                k.rows,
                k.elapsed.as_secs_f64(),
                k.rows as f64 / k.elapsed.as_secs_f64()
            );
            println!("(each sink's time is when the bench saw its queue empty; they are checked in turn)");
            for s in &r.sinks {
                println!(
                    "sink {:<12} {:>9} rows in {:>7.2} s = {:>8.0} rows/s",
                    s.name,
                    s.rows,
                    s.elapsed.as_secs_f64(),
                    s.rows as f64 / s.elapsed.as_secs_f64()
                );
            }
            Ok(())
        }
        Some(Command::Migrate { url }) => {
            init_logging("text", "warn");
            let runtime = tokio::runtime::Runtime::new()?;
            let applied = runtime
                .block_on(weir_connectors::postgres::migrate_url(&url))
                .with_context(|| {
                    format!(
                        "cannot migrate {}",
                        weir_engine::connector::sink::mask_url(&url)
                    )
                })?;
            if applied.is_empty() {
                println!("schema up to date");
            } else {
                for v in applied {
                    let name = weir_connectors::postgres::MIGRATIONS
                        .iter()
                        .find(|m| m.0 == v)
                        .map(|m| m.1)
                        .unwrap_or("");
                    println!("applied {v:04} {name}");
                }
            }
            Ok(())
        }
        Some(Command::Bench {
            events,
            file,
            window,
            lookup_rows,
        }) => {
            init_logging("text", "warn");
            let path = match file {
                Some(p) => p,
                None => {
                    let p = bench::default_file(events);
                    if !p.exists() {
                        eprintln!("generating {events} events into {} …", p.display());
                        bench::write_events(&p, events, 42)?;
                    }
                    p
                }
            };
            let runtime = tokio::runtime::Runtime::new()?;
            let report = runtime.block_on(bench::run(&path, events, window, lookup_rows))?;
            println!("file:        {}", path.display());
            println!("window:      {}", window.windowed_relation());
            if lookup_rows > 0 {
                println!("lookup join: a table of {lookup_rows} rows (owners, keyed by source)");
            }
            println!("events:      {}", report.events);
            println!("windows:     {}", report.windows);
            println!(
                "elapsed:     {:.3} s (first byte read to last window emitted)",
                report.elapsed.as_secs_f64()
            );
            println!("throughput:  {:.0} events/s", report.events_per_second());
            if let Some(rss) = report.peak_rss_bytes {
                println!("peak RSS:    {:.1} MiB", rss as f64 / (1024.0 * 1024.0));
            }
            Ok(())
        }
        None => serve(cli),
    }
}

fn serve(cli: Cli) -> anyhow::Result<()> {
    let mut config = Config::load(cli.config.as_deref(), std::env::vars())?;
    if let Some(d) = cli.data_dir {
        config.data_dir = d;
    }
    if let Some(a) = cli.pg_addr {
        config.pg_addr = a;
    }
    if let Some(a) = cli.http_addr {
        config.http_addr = a;
    }
    if cli.demo {
        config.demo = true;
    }
    if cli.rebuild_state {
        config.rebuild_state = true;
    }
    if cli.insecure {
        config.insecure = true;
    }
    if cli.tls_cert.is_some() {
        config.tls_cert = cli.tls_cert;
    }
    if cli.tls_key.is_some() {
        config.tls_key = cli.tls_key;
    }
    if cli.require_tls {
        config.require_tls = true;
    }
    if let Some(r) = cli.demo_rate {
        config.demo_rate = r;
    }
    init_logging(&config.log_format, "info");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let pg = tokio::net::TcpListener::bind(config.pg_addr)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (pgwire); if another process (another weir?) has the port, pick another with --pg-addr HOST:PORT or WEIR_PG_ADDR",
                    config.pg_addr
                )
            })?;
        let http = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (REST); if another process (another weir?) has the port, pick another with --http-addr HOST:PORT or WEIR_HTTP_ADDR",
                    config.http_addr
                )
            })?;
        let pg_addr = config.pg_addr;
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        eprintln!(
            "weir: psql -h {} -p {} -U weir -d weir",
            pg_addr.ip(),
            pg_addr.port()
        );
        weir_server::run(config, pg, Some(http), shutdown).await?;
        Ok(())
    })
}

fn init_logging(format: &str, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
