//! The `weir.*` system relations: what the engine reports about sources, views, sinks,
//! alert rules, dead letters and late events, built as Arrow batches at scan time.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, TableProvider};
use weir_engine::operator::alert::{AlertRecord, AlertSpec};
use weir_engine::pipeline::sink_queue::SinkRuntime;
use weir_engine::pipeline::view::ViewRuntime;

use crate::catalog::{AlertDef, CatalogEntry};
use crate::error::{Result, SqlError};
use crate::retention::format_age;
use crate::system::{Columns, SystemTable};

use super::Database;

impl Database {
    pub(super) fn register_system_relations(self: &Arc<Self>) -> Result<()> {
        let schema = Arc::new(MemorySchemaProvider::new());
        let catalog = self
            .ctx
            .catalog("weir")
            .ok_or_else(|| SqlError::Internal("catalog weir missing".into()))?;
        catalog.register_schema("weir", schema.clone())?;
        let weak = Arc::downgrade(self);
        let tables: Vec<(&str, crate::system::RowsFn)> = vec![
            ("sources", {
                let weak = weak.clone();
                Arc::new(move || {
                    let db = weak.upgrade().ok_or_else(shutting_down)?;
                    Ok(db.sources_batch())
                })
            }),
            ("source_partitions", {
                let weak = weak.clone();
                Arc::new(move || {
                    let db = weak.upgrade().ok_or_else(shutting_down)?;
                    Ok(db.source_partitions_batch())
                })
            }),
            ("cluster", {
                let weak = weak.clone();
                Arc::new(move || {
                    let db = weak.upgrade().ok_or_else(shutting_down)?;
                    db.cluster_batch()
                })
            }),
            ("views", {
                let weak = weak.clone();
                Arc::new(move || {
                    let db = weak.upgrade().ok_or_else(shutting_down)?;
                    db.views_batch()
                })
            }),
            ("sinks", {
                let weak = weak.clone();
                Arc::new(move || {
                    let db = weak.upgrade().ok_or_else(shutting_down)?;
                    db.sinks_batch()
                })
            }),
            ("alerts", {
                let weak = weak.clone();
                Arc::new(move || {
                    let db = weak.upgrade().ok_or_else(shutting_down)?;
                    db.alerts_batch()
                })
            }),
            ("alert_rules", {
                let weak = weak.clone();
                Arc::new(move || {
                    let db = weak.upgrade().ok_or_else(shutting_down)?;
                    db.alert_rules_batch()
                })
            }),
            ("view_operators", {
                let weak = weak.clone();
                Arc::new(move || {
                    let db = weak.upgrade().ok_or_else(shutting_down)?;
                    db.view_operators_batch()
                })
            }),
            ("tables", {
                let weak = weak.clone();
                Arc::new(move || {
                    let db = weak.upgrade().ok_or_else(shutting_down)?;
                    db.tables_batch()
                })
            }),
            ("users", {
                let weak = weak.clone();
                Arc::new(move || {
                    let db = weak.upgrade().ok_or_else(shutting_down)?;
                    crate::users::batch(&db.users)
                })
            }),
            ("dead_letters", {
                let weak = weak.clone();
                Arc::new(move || {
                    let db = weak.upgrade().ok_or_else(shutting_down)?;
                    db.dead_letters_batch()
                })
            }),
            ("late_events", {
                let weak = weak.clone();
                Arc::new(move || {
                    let db = weak.upgrade().ok_or_else(shutting_down)?;
                    db.late_events_batch()
                })
            }),
        ];
        for (name, rows) in tables {
            let probe = rows()?;
            let table: Arc<dyn TableProvider> = Arc::new(SystemTable::new(probe.schema(), rows));
            schema.register_table(name.to_string(), table)?;
        }
        Ok(())
    }

    fn sources_batch(&self) -> RecordBatch {
        let sources = self.counters().sources;
        Columns::new()
            .text("name", sources.iter().map(|s| Some(s.name.clone())))
            .text(
                "connector",
                sources.iter().map(|s| Some(s.connector.clone())),
            )
            .text("status", sources.iter().map(|s| Some(s.status.clone())))
            // A finished source shows the watermark its events reached.
            .time_ns(
                "watermark",
                sources.iter().map(|s| Some(s.reported_watermark())),
            )
            .int("events_in", sources.iter().map(|s| int(s.events_in)))
            .int("late_events", sources.iter().map(|s| int(s.late_events)))
            .int("dead_letters", sources.iter().map(|s| int(s.dead_letters)))
            .int("lag", sources.iter().map(|s| Some(s.lag)))
            .bool("caught_up", sources.iter().map(|s| Some(s.caught_up)))
            .text(
                "position",
                sources.iter().map(|s| Some(s.position.to_string())),
            )
            .text("views", sources.iter().map(|s| Some(s.views.join(","))))
            .int(
                "pipelines",
                sources.iter().map(|s| Some(s.pipelines as i64)),
            )
            .int(
                "checkpoint_epoch",
                sources.iter().map(|s| Some(s.checkpoints.epoch as i64)),
            )
            .time_ns(
                "checkpoint_at",
                sources.iter().map(|s| {
                    let ms = s.checkpoints.oldest_at_ms;
                    (ms > 0).then(|| ms.saturating_mul(1_000_000))
                }),
            )
            .int(
                "checkpoint_bytes",
                sources
                    .iter()
                    .map(|s| Some(s.checkpoints.total_bytes as i64)),
            )
            .int(
                "checkpoint_micros",
                sources
                    .iter()
                    .map(|s| Some(s.checkpoints.slowest_micros as i64)),
            )
            .finish()
            .expect("static schema")
    }

    fn source_partitions_batch(&self) -> RecordBatch {
        struct Row {
            source: String,
            replica: Option<String>,
            split: i32,
            position: Option<i64>,
            high_watermark: Option<i64>,
            lag: Option<i64>,
            watermark: Option<i64>,
            idle: bool,
        }
        let mut rows = Vec::new();
        let cluster = self.engine.cluster().cloned();
        for s in self.counters().sources {
            if self.engine.sharding(&s.name).is_some() {
                // Read by its partitions' lanes, listed under the source's name below.
                continue;
            }
            // A partition's lane (cluster mode): shown as the source, read by this replica.
            let (source, replica, lane) = match (&cluster, weir_engine::cluster::lane_of(&s.name)) {
                (Some(c), Some((base, p))) if self.engine.sharding(base).is_some() => {
                    (base.to_string(), Some(c.replica.clone()), Some(p))
                }
                _ => (s.name.clone(), None, None),
            };
            if s.splits.is_empty() {
                // A source of one split: its position is the connector's own counter (a
                // lane that has read nothing yet: its partition, no position).
                rows.push(Row {
                    source: source.clone(),
                    replica: replica.clone(),
                    split: lane.unwrap_or(0),
                    position: ["offset", "next"]
                        .iter()
                        .find_map(|k| s.position.get(k).and_then(|v| v.as_i64())),
                    high_watermark: None,
                    lag: Some(0),
                    watermark: Some(s.watermark),
                    idle: false,
                });
                continue;
            }
            for p in &s.splits {
                rows.push(Row {
                    source: source.clone(),
                    replica: replica.clone(),
                    split: p.split,
                    position: Some(p.position),
                    high_watermark: p.high_watermark,
                    lag: p.lag(),
                    watermark: s
                        .split_watermarks
                        .iter()
                        .find(|(w, _)| *w == p.split)
                        .map(|(_, wm)| *wm),
                    idle: p.idle,
                });
            }
        }
        Columns::new()
            .text("source", rows.iter().map(|r| Some(r.source.clone())))
            .int("partition", rows.iter().map(|r| Some(r.split as i64)))
            .int("position", rows.iter().map(|r| r.position))
            .int("high_watermark", rows.iter().map(|r| r.high_watermark))
            .int("lag", rows.iter().map(|r| r.lag))
            .time_ns("watermark", rows.iter().map(|r| r.watermark))
            .bool("idle", rows.iter().map(|r| Some(r.idle)))
            .text("replica", rows.iter().map(|r| r.replica.clone()))
            .finish()
            .expect("static schema")
    }

    /// `weir.cluster`: every partition of every source split among replicas, with the
    /// replica holding its lease (read from the shared directory) and what this replica
    /// does with it. Empty outside cluster mode.
    fn cluster_batch(&self) -> datafusion::error::Result<RecordBatch> {
        let rows = self.engine.partition_owners();
        let me = self.engine.cluster().cloned();
        Columns::new()
            .text("source", rows.iter().map(|r| Some(r.source.clone())))
            .int("partition", rows.iter().map(|r| Some(r.partition as i64)))
            .text("owner", rows.iter().map(|r| r.owner.clone()))
            .int("lease_epoch", rows.iter().map(|r| Some(r.epoch as i64)))
            .bool("owner_live", rows.iter().map(|r| Some(r.live)))
            .text(
                "replica",
                rows.iter().map(|_| me.as_ref().map(|c| c.replica.clone())),
            )
            .int(
                "ordinal",
                rows.iter().map(|_| me.as_ref().map(|c| c.ordinal as i64)),
            )
            .int(
                "replicas",
                rows.iter().map(|_| me.as_ref().map(|c| c.replicas as i64)),
            )
            .bool("assigned_here", rows.iter().map(|r| Some(r.assigned)))
            .bool("read_here", rows.iter().map(|r| Some(r.here)))
            .text("waiting", rows.iter().map(|r| r.waiting.clone()))
            .finish()
    }

    fn sinks_batch(&self) -> datafusion::error::Result<RecordBatch> {
        let mut sinks = self.engine.sinks();
        sinks.sort_by(|a, b| a.1.name().cmp(b.1.name()));
        let sinks: Vec<Arc<SinkRuntime>> = sinks.into_iter().map(|(_, s)| s).collect();
        let counters = self.counters();
        let counted = |s: &SinkRuntime| counters.sink(s.name());
        let catalog = self.catalog.try_lock().ok();
        let definition = |name: &str| {
            let def = |n: &str| {
                catalog.as_ref().and_then(|c| match c.get(n) {
                    Some(CatalogEntry::Sink(k)) => Some(k.to_sql()),
                    _ => None,
                })
            };
            // A `FROM weir.alerts` sink's writer for one rule is `sink@rule`.
            def(name).or_else(|| name.split_once('@').and_then(|(n, _)| def(n)))
        };
        Columns::new()
            .text("name", sinks.iter().map(|s| Some(s.name().to_string())))
            .text("definition", sinks.iter().map(|s| definition(s.name())))
            .text(
                "relation",
                sinks.iter().map(|s| Some(s.spec().input.clone())),
            )
            .text(
                "connector",
                sinks
                    .iter()
                    .map(|s| s.spec().options.get("connector").cloned()),
            )
            .text(
                "status",
                sinks.iter().map(|s| counted(s).map(|c| c.status.clone())),
            )
            .int(
                "rows_written",
                sinks
                    .iter()
                    .map(|s| counted(s).and_then(|c| int(c.rows_written))),
            )
            .int(
                "backlog",
                sinks
                    .iter()
                    .map(|s| counted(s).and_then(|c| int(c.backlog))),
            )
            .int("buffered", sinks.iter().map(|s| Some(s.buffered() as i64)))
            .int(
                "errors",
                sinks.iter().map(|s| counted(s).and_then(|c| int(c.errors))),
            )
            .text(
                "last_error",
                sinks.iter().map(|s| s.stats.last_error.lock().clone()),
            )
            .time_ns(
                "last_write_at",
                sinks.iter().map(|s| {
                    let ms = s.stats.last_write_ms.load(Ordering::Relaxed);
                    (ms > 0).then(|| ms as i64 * 1_000_000)
                }),
            )
            .finish()
    }

    fn views_batch(&self) -> datafusion::error::Result<RecordBatch> {
        let relations = self.relations.read().clone();
        let roots: BTreeMap<String, String> = relations
            .iter()
            .map(|(n, r)| (n.clone(), r.stream.root_source.clone()))
            .collect();
        let catalog = self.catalog.try_lock().ok();
        // Alert rules are listed in weir.alert_rules.
        let views: Vec<(String, Arc<ViewRuntime>)> = relations
            .into_iter()
            .filter_map(|(n, r)| r.view.map(|v| (n, v)))
            .filter(|(_, v)| !v.is_alert())
            .collect();
        let definition = |name: &str| {
            catalog.as_ref().and_then(|c| match c.get(name) {
                Some(CatalogEntry::View(v)) => Some(v.to_sql()),
                Some(CatalogEntry::Alert(a)) => Some(a.to_sql()),
                _ => None,
            })
        };
        let counters = self.counters();
        let counted = |name: &str| counters.view(name);
        let mut rows = Vec::new();
        let mut history = Vec::new();
        for (_, v) in &views {
            let (memory, cold) = v
                .rows_and_history()
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            rows.push(Some(memory as i64));
            history.push(cold);
        }
        Columns::new()
            .text("name", views.iter().map(|(n, _)| Some(n.clone())))
            .text("definition", views.iter().map(|(n, _)| definition(n)))
            .text(
                "emit",
                views.iter().map(|(_, v)| Some(v.plan().emit.as_sql())),
            )
            .int("rows", rows)
            .int(
                "groups",
                views
                    .iter()
                    .map(|(n, _)| counted(n).map(|c| c.groups as i64)),
            )
            .int(
                "state_bytes",
                views
                    .iter()
                    .map(|(n, _)| counted(n).map(|c| c.state_bytes as i64)),
            )
            .time_ns(
                "watermark",
                views.iter().map(|(_, v)| Some(v.shown_watermark())),
            )
            .bool(
                "caught_up",
                views.iter().map(|(n, _)| counted(n).map(|c| c.caught_up)),
            )
            .float(
                "backfill_progress",
                views.iter().map(|(n, _)| {
                    if counted(n)?.caught_up {
                        return Some(1.0);
                    }
                    let root = roots.get(n)?;
                    crate::backfill::progress(&self.engine, root).and_then(|p| p.fraction)
                }),
            )
            .int(
                "rows_in",
                views
                    .iter()
                    .map(|(n, _)| counted(n).and_then(|c| int(c.rows_in))),
            )
            .int(
                "dropped_rows",
                views
                    .iter()
                    .map(|(n, _)| counted(n).and_then(|c| int(c.dropped_rows))),
            )
            .text(
                "retention",
                views
                    .iter()
                    .map(|(_, v)| v.retention().map(|r| format_age(r.memory_ns))),
            )
            .text(
                "history",
                views
                    .iter()
                    .map(|(_, v)| v.retention().map(|r| format_age(r.history_ns))),
            )
            .int("history_rows", history.iter().map(|h| Some(h.rows as i64)))
            .int(
                "history_bytes",
                history.iter().map(|h| Some(h.bytes as i64)),
            )
            .int(
                "history_files",
                history.iter().map(|h| Some(h.files as i64)),
            )
            .finish()
    }

    /// Every alert rule's runtime, by name.
    fn alert_views(&self) -> Vec<(String, Arc<ViewRuntime>)> {
        self.views()
            .into_iter()
            .filter(|(_, v)| v.is_alert())
            .collect()
    }

    /// Every alert of every rule, with its rule's settings.
    pub fn alert_records(&self) -> Vec<(AlertSpec, AlertRecord)> {
        let mut rows = Vec::new();
        for (name, view) in self.alert_views() {
            let Some((spec, records, _)) = view.alerts() else {
                continue;
            };
            // Alerts forgotten past the rule's retention are still in its messages.
            if view.retention().is_some() {
                let known = records.iter().map(|r| r.alert_id.clone()).collect();
                let archived = view
                    .emitted_all()
                    .map_err(SqlError::from)
                    .and_then(|m| crate::alerts::archived_records(&m, &known));
                match archived {
                    Ok(old) => rows.extend(old.into_iter().map(|r| (spec.clone(), r))),
                    Err(e) => {
                        tracing::warn!(alert = %name, error = %e, "cannot read the rule's archived alerts")
                    }
                }
            }
            rows.extend(records.into_iter().map(|r| (spec.clone(), r)));
        }
        rows
    }

    fn alerts_batch(&self) -> datafusion::error::Result<RecordBatch> {
        let rows: Vec<(AlertSpec, bool, AlertRecord)> = self
            .alert_records()
            .into_iter()
            .map(|(s, r)| {
                let threshold = s.resolve.is_some();
                (s, threshold, r)
            })
            .collect();
        Columns::new()
            .text(
                "alert_id",
                rows.iter().map(|(_, _, r)| Some(r.alert_id.clone())),
            )
            .text("name", rows.iter().map(|(s, _, _)| Some(s.name.clone())))
            .text(
                "severity",
                rows.iter().map(|(s, _, _)| Some(s.severity.clone())),
            )
            .text("key", rows.iter().map(|(_, _, r)| Some(r.key.clone())))
            .text(
                "status",
                rows.iter().map(|(_, _, r)| {
                    Some(if r.resolved_at.is_some() {
                        "resolved"
                    } else {
                        "firing"
                    })
                }),
            )
            .time_ns(
                "event_time",
                rows.iter().map(|(_, _, r)| Some(r.event_time)),
            )
            .time_ns(
                "detected_at",
                rows.iter().map(|(_, _, r)| Some(r.detected_at)),
            )
            .time_ns("resolved_at", rows.iter().map(|(_, _, r)| r.resolved_at))
            .int(
                "repeats",
                rows.iter().map(|(_, _, r)| Some(r.repeats as i64)),
            )
            .time_ns(
                "last_event_time",
                rows.iter().map(|(_, _, r)| Some(r.last_event_time)),
            )
            .text(
                "payload",
                rows.iter().map(|(_, _, r)| Some(r.payload.clone())),
            )
            .bool("threshold", rows.iter().map(|(_, t, _)| Some(*t)))
            .finish()
    }

    /// Every view's and alert rule's operators, in the order a batch goes through them.
    fn view_operators_batch(&self) -> datafusion::error::Result<RecordBatch> {
        let mut rows: Vec<(String, i64, &'static str, String)> = Vec::new();
        for (name, view) in self.views() {
            for (i, (kind, detail)) in view.operators().into_iter().enumerate() {
                rows.push((name.clone(), i as i64 + 1, kind, detail));
            }
        }
        Columns::new()
            .text("view", rows.iter().map(|r| Some(r.0.clone())))
            .int("step", rows.iter().map(|r| Some(r.1)))
            .text("operator", rows.iter().map(|r| Some(r.2)))
            .text("detail", rows.iter().map(|r| Some(r.3.clone())))
            .finish()
    }

    fn alert_rules_batch(&self) -> datafusion::error::Result<RecordBatch> {
        let catalog = self.catalog.try_lock().ok();
        let mut rows = Vec::new();
        for (name, view) in self.alert_views() {
            let Some((spec, records, firing)) = view.alerts() else {
                continue;
            };
            let def = catalog.as_ref().and_then(|c| match c.get(&name) {
                Some(CatalogEntry::Alert(a)) => Some(a.clone()),
                _ => None,
            });
            let repeats: u64 = records.iter().map(|r| r.repeats).sum();
            rows.push((name, spec, def, records.len(), firing, repeats));
        }
        let opt =
            |d: &Option<AlertDef>, k: &str| d.as_ref().and_then(|d| d.options.get(k).cloned());
        Columns::new()
            .text("name", rows.iter().map(|r| Some(r.0.clone())))
            .text("severity", rows.iter().map(|r| Some(r.1.severity.clone())))
            .text("key", rows.iter().map(|r| opt(&r.2, "key")))
            .text("cooldown", rows.iter().map(|r| opt(&r.2, "cooldown")))
            .text(
                "relation",
                rows.iter().map(|r| r.2.as_ref().map(|d| d.input.clone())),
            )
            .int("alerts", rows.iter().map(|r| Some(r.3 as i64)))
            .int("firing", rows.iter().map(|r| Some(r.4 as i64)))
            .int("repeats", rows.iter().map(|r| Some(r.5 as i64)))
            .text(
                "definition",
                rows.iter().map(|r| r.2.as_ref().map(|d| d.to_sql())),
            )
            .finish()
    }

    fn dead_letters_batch(&self) -> datafusion::error::Result<RecordBatch> {
        self.with_archive("weir.dead_letters", self.dead_letters_memory()?)
    }

    fn late_events_batch(&self) -> datafusion::error::Result<RecordBatch> {
        self.with_archive("weir.late_events", self.late_events_memory()?)
    }

    /// `memory` (a system log's rows in memory) with the rows archived to Parquet: each
    /// row once.
    fn with_archive(
        &self,
        relation: &str,
        memory: RecordBatch,
    ) -> datafusion::error::Result<RecordBatch> {
        match &self.archive {
            None => Ok(memory),
            Some(archive) => archive
                .with_archive(relation, memory)
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e))),
        }
    }

    /// Moves the system logs' rows past their retention to Parquet files.
    pub(super) fn archive_system_logs(&self) -> Result<()> {
        let Some(archive) = &self.archive else {
            return Ok(());
        };
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        archive.run(
            self.engine.system(),
            |kind| {
                Ok(match kind {
                    weir_engine::serving::system::LogKind::DeadLetters => {
                        self.dead_letters_memory()?
                    }
                    weir_engine::serving::system::LogKind::LateEvents => {
                        self.late_events_memory()?
                    }
                })
            },
            now,
        )
    }

    fn dead_letters_memory(&self) -> datafusion::error::Result<RecordBatch> {
        let rows = self.engine.system().dead_letters();
        Columns::new()
            .text("source", rows.iter().map(|r| Some(r.source.clone())))
            .text("location", rows.iter().map(|r| Some(r.location.clone())))
            .text("raw", rows.iter().map(|r| Some(r.raw.clone())))
            .text("error", rows.iter().map(|r| Some(r.error.clone())))
            .time("received_at", rows.iter().map(|r| Some(r.received_at)))
            .finish()
    }

    fn late_events_memory(&self) -> datafusion::error::Result<RecordBatch> {
        let rows = self.engine.system().late_events();
        Columns::new()
            .text("source", rows.iter().map(|r| Some(r.source.clone())))
            .text("location", rows.iter().map(|r| Some(r.location.clone())))
            .time_ns("event_time", rows.iter().map(|r| Some(r.event_time)))
            .time_ns("watermark", rows.iter().map(|r| Some(r.watermark)))
            .text("raw", rows.iter().map(|r| r.raw.clone()))
            .time("received_at", rows.iter().map(|r| Some(r.received_at)))
            .finish()
    }
}

fn shutting_down() -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Execution("the database is shutting down".into())
}

/// A counter as a column value (counters stay far below `i64::MAX`).
fn int(n: impl TryInto<i64>) -> Option<i64> {
    n.try_into().ok()
}
