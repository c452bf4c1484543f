//! Starting a source's pipelines: what is on disk, the recovery plan
//! ([`crate::checkpoint::recovery`]), restoring and seeding views and sinks as it says.

use super::*;

impl Engine {
    pub(super) fn start_source(
        &self,
        entry: &mut SourceEntry,
        views: Vec<ViewNode>,
        sinks: Vec<SinkNode>,
    ) -> Result<()> {
        let source = entry.spec.name.clone();
        let stored = entry.store_name().to_string();
        // What is on disk.
        let mut stores: BTreeMap<u64, CheckpointStore> = BTreeMap::new();
        let mut checkpoints: BTreeMap<u64, Restored> = BTreeMap::new();
        if let (Some(config), Some(root)) = (&self.checkpoints, entry.root.clone()) {
            for id in CheckpointStore::pipelines(&root, &stored) {
                entry.next_pipeline = entry.next_pipeline.max(id + 1);
                let mut store = CheckpointStore::new(&root, &stored, id);
                match store.load() {
                    Ok(Some(restored)) => {
                        stores.insert(id, store);
                        checkpoints.insert(id, restored);
                    }
                    Ok(None) => store.remove(),
                    Err(e) if config.rebuild_incompatible => {
                        tracing::warn!(source = %source, error = %e, "discarding checkpoint; state is rebuilt from the source");
                        store.remove();
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let mut on_disk: Vec<recovery::OnDisk> = checkpoints
            .iter()
            .map(|(id, r)| recovery::OnDisk {
                id: *id,
                point: input_point(r),
                views: r
                    .views
                    .iter()
                    .map(|(n, v)| (n.clone(), v.meta.fingerprint.clone()))
                    .collect(),
                sinks: r
                    .sinks
                    .iter()
                    .map(|(n, k)| (n.clone(), k.fingerprint.clone()))
                    .collect(),
            })
            .collect();
        let wanted_views: Vec<recovery::WantedView> = views
            .iter()
            .map(|n| recovery::WantedView {
                name: n.view.name().to_string(),
                fingerprint: n.view.fingerprint().to_string(),
                parent: n.parent.clone(),
            })
            .collect();
        let wanted_sinks: Vec<recovery::WantedSink> = sinks
            .iter()
            .map(|n| recovery::WantedSink {
                name: n.sink.name().to_string(),
                fingerprint: n.sink.fingerprint().to_string(),
                view: n.view.clone(),
            })
            .collect();
        // Restore the views the plan resumes; a view whose state cannot be restored is
        // rebuilt: planned again without that state.
        let mut restored_batches: HashMap<String, usize> = HashMap::new();
        let plan = loop {
            let plan = recovery::plan(&on_disk, &wanted_views, &wanted_sinks, entry.next_pipeline);
            let mut failed = None;
            'views: for p in &plan.pipelines {
                for (name, start) in &p.views {
                    let recovery::ViewStart::Resume { from } = start else {
                        continue;
                    };
                    let node = views
                        .iter()
                        .find(|n| n.view.name() == name)
                        .expect("planned view");
                    let restored = &checkpoints[from];
                    match node.view.restore(&restored.views[name]) {
                        Ok(batches) => {
                            tracing::info!(view = %name, epoch = restored.manifest.epoch, groups = node.view.groups(), "view state restored from checkpoint");
                            restored_batches.insert(name.clone(), batches);
                        }
                        Err(e) => {
                            tracing::warn!(view = %name, error = %e, "cannot restore view state; rebuilding it from the source");
                            node.view.reset()?;
                            failed = Some((*from, name.clone()));
                            break 'views;
                        }
                    }
                }
            }
            match failed {
                None => break plan,
                Some((from, name)) => {
                    if let Some(d) = on_disk.iter_mut().find(|d| d.id == from) {
                        d.views.remove(&name);
                    }
                }
            }
        };
        if let Some(name) = recovery::unplaced_sinks(&plan, &wanted_sinks)
            .into_iter()
            .next()
        {
            let view = wanted_sinks
                .iter()
                .find(|k| k.name == name)
                .and_then(|k| k.view.clone())
                .unwrap_or_default();
            return Err(EngineError::Internal(format!(
                "view {view} of sink {name} has no pipeline"
            )));
        }
        entry.next_pipeline = plan.next_id;
        for id in &plan.delete {
            if let Some(store) = stores.remove(id) {
                store.remove();
            }
        }
        let mut views: HashMap<String, ViewNode> = views
            .into_iter()
            .map(|n| (n.view.name().to_string(), n))
            .collect();
        let mut sinks: HashMap<String, SinkNode> = sinks
            .into_iter()
            .map(|n| (n.sink.name().to_string(), n))
            .collect();
        let mut drafts = Vec::with_capacity(plan.pipelines.len());
        for planned in &plan.pipelines {
            let mut draft = Draft::fresh(planned.id, entry.root.as_deref(), &stored);
            if let Some(store) = stores.remove(&planned.id) {
                draft.store = Some(store);
            }
            let wm = checkpoints
                .get(&planned.id)
                .map(|r| r.manifest.tracker.watermark())
                .unwrap_or(i64::MIN);
            for (name, start) in &planned.views {
                let node = views.remove(name).expect("planned view");
                match start {
                    recovery::ViewStart::Resume { from } => {
                        // Rows of a view merged in from another pipeline are rewritten here.
                        let batches = if *from == planned.id {
                            restored_batches.get(name).copied().unwrap_or(0)
                        } else {
                            0
                        };
                        draft.persisted.insert(name.clone(), batches);
                    }
                    recovery::ViewStart::Seed => seed(&draft.nodes, &node, wm)?,
                    recovery::ViewStart::Fresh => {}
                }
                draft.nodes.push(node);
            }
            for (name, start) in &planned.sinks {
                let node = sinks.remove(name).expect("planned sink");
                match start {
                    recovery::SinkStart::Resume { from } => {
                        let restored = &checkpoints[from].sinks[name];
                        node.sink.restore(restored);
                        let persisted = if *from == planned.id {
                            restored.pushed
                        } else {
                            0
                        };
                        draft.sink_persisted.insert(name.clone(), persisted);
                        node.sink.start()?;
                    }
                    recovery::SinkStart::Seed => {
                        node.sink.start()?;
                        // A new sink on a restored view starts with the rows the view has.
                        seed_sink(&draft.nodes, &node)?;
                    }
                    recovery::SinkStart::Fresh => node.sink.start()?,
                }
                draft.sinks.push(node);
            }
            draft.absorbed = planned
                .absorbed
                .iter()
                .filter_map(|id| stores.remove(id))
                .collect();
            drafts.push(draft);
        }
        for draft in &mut drafts {
            draft.restored = checkpoints.remove(&draft.id);
        }
        drop(checkpoints);
        for draft in drafts {
            self.launch(entry, draft)?;
        }
        Ok(())
    }
}

/// A pipeline being assembled at start.
pub(super) struct Draft {
    pub(super) id: u64,
    pub(super) store: Option<CheckpointStore>,
    pub(super) restored: Option<Restored>,
    pub(super) nodes: Vec<ViewNode>,
    /// Emitted batches of each view already in the checkpoint.
    pub(super) persisted: HashMap<String, usize>,
    /// Stores of the pipelines merged into this one, deleted once it has checkpointed
    /// their views.
    pub(super) absorbed: Vec<CheckpointStore>,
    pub(super) sinks: Vec<SinkNode>,
    /// Rows of each sink already in the checkpoint's files.
    pub(super) sink_persisted: HashMap<String, u64>,
}

impl Draft {
    pub(super) fn fresh(id: u64, root: Option<&std::path::Path>, source: &str) -> Self {
        Self {
            id,
            store: root.map(|r| CheckpointStore::new(r, source, id)),
            restored: None,
            nodes: Vec::new(),
            persisted: HashMap::new(),
            absorbed: Vec::new(),
            sinks: Vec::new(),
            sink_persisted: HashMap::new(),
        }
    }
}

/// The point of the input a checkpoint was taken at: position and watermarks (without a
/// held-back watermark). Checkpoints at the same point are merged.
pub(super) fn input_point(restored: &Restored) -> serde_json::Value {
    let mut tracker = restored.manifest.tracker.clone();
    tracker.set_holding(None);
    serde_json::json!([
        restored.manifest.position,
        serde_json::to_value(&tracker).unwrap_or_default()
    ])
}

/// Feeds a new view over a view with everything its parent has emitted, at the watermark
/// the parent's output has at source watermark `wm`.
pub(super) fn seed(nodes: &[ViewNode], node: &ViewNode, wm: i64) -> Result<()> {
    let Some(parent) = node
        .parent
        .as_ref()
        .and_then(|p| nodes.iter().find(|n| n.view.name() == p))
    else {
        return Ok(());
    };
    let rows = parent.view.emitted_all()?;
    let child_wm = parent.view.output_watermark(wm);
    node.view.process(rows, child_wm)?;
    Ok(())
}

/// Hands a new sink on a view every row the view has now.
pub(super) fn seed_sink(nodes: &[ViewNode], node: &SinkNode) -> Result<()> {
    let Some(view) = node
        .view
        .as_ref()
        .and_then(|v| nodes.iter().find(|n| n.view.name() == v))
    else {
        return Ok(());
    };
    // Never waits for room: the engine is locked while a sink is added, and the target may
    // be down. The queue may exceed its bound by the view's rows once.
    let no_wait = AtomicBool::new(true);
    node.sink.push(&view.view.emitted_all()?, &no_wait);
    if node.sink.spec().updating {
        node.sink.push(&view.view.open_rows_snapshot()?, &no_wait);
    }
    Ok(())
}
