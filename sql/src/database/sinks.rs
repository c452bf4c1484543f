//! `CREATE SINK` and the sinks' lifecycle: the spec a connector gets, the target check,
//! one engine sink per alert rule for a sink `FROM weir.alerts`, and stopping them.

use std::collections::BTreeMap;
use std::sync::Arc;

use weir_engine::connector::sink::SinkSpec;
use weir_engine::pipeline::sink_queue::SinkRuntime;
use weir_engine::pipeline::SinkNode;

use crate::catalog::{Catalog, CatalogEntry, SinkDef};
use crate::dialect::{CreateSink, ALL_ALERTS};
use crate::error::{Result, SqlError};

use super::{Database, Outcome};

impl Database {
    /// Stops the engine sinks that deliver alert rule `alert`'s alerts for `FROM weir.alerts`
    /// sinks.
    pub(super) fn drop_alert_sinks(&self, alert: &str) {
        let suffix = format!("@{alert}");
        for (_, sink) in self.engine.sinks() {
            if sink.name().ends_with(&suffix) {
                self.engine.drop_sink(sink.name());
            }
        }
    }

    pub(super) async fn create_sink(&self, c: CreateSink) -> Result<Outcome> {
        if let Some(done) = name_taken(&*self.catalog.lock().await, &c) {
            return done;
        }
        // A `${env:…}`/`${file:…}` reference that does not resolve now would fail the sink
        // when it connects: say so at creation (the catalog keeps the reference).
        for (key, value) in &c.options {
            weir_engine::connector::sink::resolve_secret(key, value)?;
        }
        let def = SinkDef {
            name: c.name.clone(),
            from: c.from.clone(),
            options: c.options.clone(),
        };
        // The target check may take seconds: other DDL does not wait for it.
        let relation = (def.from != ALL_ALERTS).then_some(def.from.as_str());
        let (factory, mut spec) = self.sink_spec(&def, &def.name, relation)?;
        spec.options = factory.validate(&spec)?;
        crate::sink_check::check_target(factory, spec).await?;
        let mut catalog = self.catalog.lock().await;
        if let Some(done) = name_taken(&catalog, &c) {
            return done;
        }
        let def = self.instantiate_sink(def)?;
        let (name, from) = (def.name.clone(), def.from.clone());
        if let Err(e) = catalog.add(CatalogEntry::Sink(def)) {
            self.stop_sink(&name, &from);
            return Err(e);
        }
        Ok(Outcome::Command("CREATE SINK".into()))
    }

    /// Builds and starts a sink; returns its definition with the connector's defaults. A
    /// sink `FROM weir.alerts` gets one writer per alert rule, named `sink@rule`.
    pub(super) fn instantiate_sink(&self, mut def: SinkDef) -> Result<SinkDef> {
        if def.from != ALL_ALERTS {
            def.options = self.start_sink(&def, &def.name.clone(), &def.from.clone())?;
            return Ok(def);
        }
        let (factory, spec) = self.sink_spec(&def, &def.name, None)?;
        def.options = factory.validate(&spec)?;
        weir_engine::connector::sink::settings_from(&def.options)?;
        for alert in self.alert_names() {
            self.start_sink(&def, &alert_sink_name(&def.name, &alert), &alert)?;
        }
        Ok(def)
    }

    /// What a sink named `name` on `relation` (`None`: the alert message schema) is given,
    /// and its connector.
    pub(super) fn sink_spec(
        &self,
        def: &SinkDef,
        name: &str,
        relation: Option<&str>,
    ) -> Result<(Arc<dyn weir_engine::connector::sink::SinkFactory>, SinkSpec)> {
        let registry = self.engine.registry();
        let Some(connector) = def.options.get("connector").cloned() else {
            return Err(SqlError::InvalidParameter(format!(
                "CREATE SINK needs WITH (connector = '…'); available sink connectors: {}",
                registry.sink_names().join(", ")
            )));
        };
        let factory = registry.sink(&connector)?;
        let alert_key = || vec!["alert_id".to_string(), "status".to_string()];
        let Some(relation_name) = relation else {
            let spec = SinkSpec {
                name: name.to_string(),
                input: ALL_ALERTS.to_string(),
                from_source: false,
                schema: weir_engine::operator::alert::message_schema(),
                key: alert_key(),
                event_time: None,
                updating: false,
                once_per_key: true,
                options: def.options.clone(),
            };
            return Ok((factory, spec));
        };
        let relation = self
            .relations
            .read()
            .get(relation_name)
            .cloned()
            .ok_or_else(|| {
                SqlError::UndefinedObject(format!(
                    "relation \"{relation_name}\" does not exist; a sink reads a materialized view, a source, an alert rule or weir.alerts"
                ))
            })?;
        let schema = relation.stream.schema.clone();
        let name_of = |i: usize| schema.field(i).name().clone();
        let (key, updating, once_per_key) = match &relation.view {
            Some(view) if view.is_alert() => (alert_key(), false, true),
            Some(view) => {
                let mut key: Vec<String> = view.key_columns().iter().map(|&i| name_of(i)).collect();
                if view.window().is_some() && schema.index_of("window_start").is_ok() {
                    key.push("window_start".to_string());
                }
                (key, view.updating(), false)
            }
            None => {
                let key = schema
                    .index_of("event_id")
                    .map(|_| vec!["event_id".to_string()])
                    .unwrap_or_default();
                (key, false, false)
            }
        };
        let spec = SinkSpec {
            name: name.to_string(),
            input: relation_name.to_string(),
            from_source: relation.view.is_none(),
            schema,
            key,
            event_time: relation.event_time.clone(),
            updating,
            once_per_key,
            options: def.options.clone(),
        };
        Ok((factory, spec))
    }

    /// Starts engine sink `name` of `def` on `relation`; returns the validated options.
    pub(super) fn start_sink(
        &self,
        def: &SinkDef,
        name: &str,
        relation: &str,
    ) -> Result<BTreeMap<String, String>> {
        let (factory, mut spec) = self.sink_spec(def, name, Some(relation))?;
        let options = factory.validate(&spec)?;
        let settings = weir_engine::connector::sink::settings_from(&options)?;
        spec.options = options.clone();
        let writer = factory.create(&spec)?;
        let fingerprint = format!("{relation}|{options:?}");
        let root = self
            .relations
            .read()
            .get(relation)
            .map(|r| (r.stream.root_source.clone(), r.view.is_some()))
            .ok_or_else(|| {
                SqlError::UndefinedObject(format!("relation \"{relation}\" does not exist"))
            })?;
        // On a source split into partition lanes (cluster mode) each lane writes through a
        // sink of its own, `<sink>@p<N>`, with its own queue and checkpointed position.
        let lanes: Option<weir_engine::pipeline::SinkLanes> =
            self.engine.sharding(&root.0).map(|_| {
                let (spec, fingerprint) = (spec.clone(), fingerprint.clone());
                let lanes: weir_engine::pipeline::SinkLanes = Arc::new(move |p| {
                    let mut spec = spec.clone();
                    spec.name = weir_engine::cluster::lane_name(&spec.name, p);
                    let writer = factory.create(&spec)?;
                    Ok(SinkRuntime::new(
                        spec,
                        fingerprint.clone(),
                        settings,
                        writer,
                    ))
                });
                lanes
            });
        let sink = SinkRuntime::new(spec, fingerprint, settings, writer);
        self.engine.add_sink(
            &root.0,
            SinkNode {
                sink,
                view: root.1.then(|| relation.to_string()),
                lanes,
            },
        )?;
        Ok(options)
    }

    /// Stops sink `name` reading `from` (every rule's writer for a sink `FROM weir.alerts`).
    pub(super) fn stop_sink(&self, name: &str, from: &str) {
        if from == ALL_ALERTS {
            let prefix = format!("{name}@");
            for (_, sink) in self.engine.sinks() {
                if sink.name().starts_with(&prefix) {
                    self.engine.drop_sink(sink.name());
                }
            }
        } else {
            self.engine.drop_sink(name);
        }
    }
}

/// The `FROM weir.alerts` sinks among `entries`.
pub(super) fn alert_sinks(entries: &[CatalogEntry]) -> Vec<SinkDef> {
    entries
        .iter()
        .filter_map(|e| match e {
            CatalogEntry::Sink(k) if k.from == ALL_ALERTS => Some(k.clone()),
            _ => None,
        })
        .collect()
}

/// The engine sink delivering rule `alert`'s alerts for sink `sink` (`FROM weir.alerts`).
pub(super) fn alert_sink_name(sink: &str, alert: &str) -> String {
    format!("{sink}@{alert}")
}

/// What CREATE SINK answers when its name is taken: nothing to do (`IF NOT EXISTS`) or 42P07.
fn name_taken(catalog: &Catalog, c: &CreateSink) -> Option<Result<Outcome>> {
    catalog.get(&c.name)?;
    Some(if c.if_not_exists {
        Ok(Outcome::Command("CREATE SINK".into()))
    } else {
        Err(SqlError::DuplicateObject(format!(
            "an object named \"{}\" already exists",
            c.name
        )))
    })
}
