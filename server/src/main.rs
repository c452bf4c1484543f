//! The `weir` binary: `weir [--demo] …` runs the server; `weir datagen` writes seed events;
//! `weir bench` runs the file benchmark.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weir_connectors::datagen::{DatagenConfig, EventGenerator};
use weir_server::{bench, Config};

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
    },
    /// Time the file session (CREATE SOURCE + kpi_1m) over generated events.
    Bench {
        /// Number of events.
        #[arg(long, default_value_t = 2_000_000)]
        events: u64,
        /// Use this file instead of generating one.
        #[arg(long)]
        file: Option<PathBuf>,
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
                generator.write_event(i, &mut line);
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
        Some(Command::Bench { events, file }) => {
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
            let report = runtime.block_on(bench::run(&path, events))?;
            println!("file:        {}", path.display());
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
    if let Some(r) = cli.demo_rate {
        config.demo_rate = r;
    }
    init_logging(&config.log_format, "info");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let pg = tokio::net::TcpListener::bind(config.pg_addr)
            .await
            .with_context(|| format!("cannot listen on {} (pgwire)", config.pg_addr))?;
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
        weir_server::run(config, pg, None, shutdown).await?;
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
