//! The pipelines reading one source, as seen by the connector: after a checkpoint, the
//! connector learns the oldest position any pipeline could read again, and may free what
//! lies before it (the `http` connector's ingest log).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::connector::source::{SourceFactory, SourceSpec};
use crate::serving::system::SourceStats;

/// Every pipeline of a source, by its counters (which hold its committed position).
pub(super) struct Readers {
    factory: Arc<dyn SourceFactory>,
    spec: SourceSpec,
    /// Each pipeline's counters, and for a pair's pipeline the key of this source's
    /// position in the pair's position.
    members: Mutex<Vec<(Arc<SourceStats>, Option<&'static str>)>>,
    /// False while the engine starts the source's pipelines: a pipeline not launched yet
    /// may read from the start.
    ready: AtomicBool,
}

impl Readers {
    pub(super) fn new(factory: Arc<dyn SourceFactory>, spec: SourceSpec, ready: bool) -> Self {
        Self {
            factory,
            spec,
            members: Mutex::new(Vec::new()),
            ready: AtomicBool::new(ready),
        }
    }

    /// A pipeline joins (before its threads start); a pair's pipeline with the key of this
    /// source's position in its own.
    pub(super) fn join(&self, stats: &Arc<SourceStats>, key: Option<&'static str>) {
        self.members.lock().push((stats.clone(), key));
    }

    /// A pipeline leaves (stopped; its checkpoints deleted).
    pub(super) fn leave(&self, stats: &Arc<SourceStats>) {
        self.members.lock().retain(|(m, _)| !Arc::ptr_eq(m, stats));
    }

    /// Every pipeline the engine starts with has joined.
    pub(super) fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Tells the connector the committed positions, once every pipeline has one.
    pub(super) fn release(&self) {
        if !self.ready.load(Ordering::Acquire) {
            return;
        }
        let committed: Option<Vec<serde_json::Value>> = self
            .members
            .lock()
            .iter()
            .map(|(m, key)| {
                let committed = m.committed.lock().clone()?;
                match key {
                    None => Some(committed),
                    // A pair that has not read this source yet holds all of it.
                    Some(k) => committed.get(*k).filter(|p| !p.is_null()).cloned(),
                }
            })
            .collect();
        if let Some(committed) = committed.filter(|c| !c.is_empty()) {
            self.factory.release(&self.spec, &committed);
        }
    }
}
