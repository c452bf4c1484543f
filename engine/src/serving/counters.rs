//! One snapshot of the engine's counters, taken at once and read by everything that reports
//! them — `weir.sources`, `weir.source_partitions`, `weir.views`, `weir.sinks`, `/metrics`
//! and `/ready` — so that each report is of one instant, and they all apply the same rules
//! (a source `/ready` calls failing is the one `weir_source_up` reports 0 for, a finished
//! source's watermark is the one its events reached everywhere).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::connector::source::SplitProgress;
use crate::pipeline::sink_queue::SinkRuntime;
use crate::pipeline::view::{HistoryStats, ViewRuntime};
use crate::pipeline::Engine;
use crate::serving::system::CheckpointSummary;

/// A source's counters.
#[derive(Debug, Clone)]
pub struct SourceCounters {
    pub name: String,
    pub connector: String,
    /// `running`, `finished`, `disconnected: …`, `error: …` …
    pub status: String,
    /// Failed, or its service unreachable: `weir_source_up` 0, `/ready` not ready.
    pub failing: bool,
    pub events_in: u64,
    pub late_events: u64,
    pub dead_letters: u64,
    /// The watermark (ns); `i64::MAX` once a bounded input ended.
    pub watermark: i64,
    /// The watermark its events reached (what a finished source shows).
    pub last_watermark: i64,
    /// Messages behind the end of the input, summed over splits.
    pub lag: i64,
    pub caught_up: bool,
    /// The connector's position (JSON).
    pub position: serde_json::Value,
    /// Per split (Kafka partition): progress and watermark.
    pub splits: Vec<SplitProgress>,
    pub split_watermarks: Vec<(i32, i64)>,
    /// The views reading it.
    pub views: Vec<String>,
    pub pipelines: usize,
    pub checkpoints: CheckpointSummary,
    /// The error of each of its pipelines whose last checkpoint failed.
    pub checkpoint_errors: Vec<String>,
}

impl SourceCounters {
    /// The watermark to report: a finished source's is the one its events reached, not the
    /// end of time.
    pub fn reported_watermark(&self) -> i64 {
        match self.watermark {
            i64::MAX => self.last_watermark,
            wm => wm,
        }
    }
}

/// A view's counters.
#[derive(Debug, Clone)]
pub struct ViewCounters {
    pub name: String,
    /// Whether it is an alert rule's view.
    pub alert: bool,
    pub rows_in: u64,
    pub watermark: i64,
    pub caught_up: bool,
    pub dropped_rows: u64,
    /// Rows in memory (0 when they cannot be counted now).
    pub rows: usize,
    pub history: HistoryStats,
    pub groups: usize,
    pub state_bytes: usize,
    pub open_state_bytes: usize,
}

/// A sink's counters.
#[derive(Debug, Clone)]
pub struct SinkCounters {
    pub name: String,
    pub connector: String,
    pub status: String,
    pub healthy: bool,
    pub rows_written: u64,
    pub errors: u64,
    pub backlog: u64,
}

/// Every counter, of one instant.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub sources: Vec<SourceCounters>,
    pub views: Vec<ViewCounters>,
    pub sinks: Vec<SinkCounters>,
}

impl Counters {
    /// Reads the counters of `engine`'s sources and sinks and of `views`.
    pub fn capture(engine: &Engine, views: &[(String, Arc<ViewRuntime>)]) -> Self {
        let sources = engine
            .sources()
            .into_iter()
            .map(|s| {
                let st = &s.stats;
                // One lock at a time: a guard kept for the whole struct expression would
                // be taken again by `is_failing` or `lag` (parking_lot locks do not nest).
                let status = st.status.lock().clone();
                let failing = st.is_failing();
                let lag = st.lag();
                let position = st.position.lock().clone();
                let splits = st.splits.lock().clone();
                let split_watermarks = st.split_watermarks.lock().clone();
                let checkpoint_errors = engine
                    .pipeline_stats(&s.name)
                    .iter()
                    .filter_map(|p| p.checkpoint_error.lock().clone())
                    .collect();
                SourceCounters {
                    status,
                    failing,
                    events_in: st.events_in.load(Ordering::Relaxed),
                    late_events: st.late_events.load(Ordering::Relaxed),
                    dead_letters: st.dead_letters.load(Ordering::Relaxed),
                    watermark: st.watermark.load(Ordering::Relaxed),
                    last_watermark: st.last_watermark.load(Ordering::Relaxed),
                    lag,
                    caught_up: st.caught_up.load(Ordering::Relaxed),
                    position,
                    splits,
                    split_watermarks,
                    checkpoint_errors,
                    name: s.name,
                    connector: s.connector,
                    views: s.views,
                    pipelines: s.pipelines,
                    checkpoints: s.checkpoints,
                }
            })
            .collect();
        let views = views
            .iter()
            .map(|(name, v)| {
                let (rows, history) = v.rows_and_history().unwrap_or_default();
                let totals = v.totals();
                ViewCounters {
                    name: name.clone(),
                    alert: v.is_alert(),
                    rows_in: totals.rows_in,
                    watermark: totals.watermark,
                    caught_up: totals.caught_up,
                    dropped_rows: totals.dropped_rows,
                    rows,
                    history,
                    groups: v.groups(),
                    state_bytes: v.state_bytes(),
                    open_state_bytes: v.open_state_bytes(),
                }
            })
            .collect();
        let mut sinks: Vec<SinkCounters> = engine
            .sinks()
            .into_iter()
            .map(|(_, sink)| sink_counters(&sink))
            .collect();
        sinks.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            sources,
            views,
            sinks,
        }
    }

    /// The view called `name`.
    pub fn view(&self, name: &str) -> Option<&ViewCounters> {
        self.views.iter().find(|v| v.name == name)
    }

    /// The sink called `name`.
    pub fn sink(&self, name: &str) -> Option<&SinkCounters> {
        self.sinks.iter().find(|s| s.name == name)
    }
}

fn sink_counters(sink: &SinkRuntime) -> SinkCounters {
    SinkCounters {
        name: sink.name().to_string(),
        connector: sink
            .spec()
            .options
            .get("connector")
            .cloned()
            .unwrap_or_default(),
        status: sink.stats.status(),
        healthy: sink.is_healthy(),
        rows_written: sink.stats.rows_written.load(Ordering::Relaxed),
        errors: sink.stats.errors.load(Ordering::Relaxed),
        backlog: sink.backlog(),
    }
}
