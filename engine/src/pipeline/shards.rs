//! Sources split into partition lanes (cluster mode; see [`crate::cluster`]).
//!
//! A source that can be split (Kafka) is registered as usual but runs nothing itself: its
//! entry keeps the views and sinks added to it. For each partition this replica owns and
//! holds the lease of, the engine opens a *lane*: a source entry named `<source>@p<N>` that
//! reads that one partition, with a runtime of every view (`<view>@p<N>`, see
//! [`ViewRuntime::add_lane`]) and sink (`<sink>@p<N>`) of the source, its own watermark, and
//! checkpoints under the shared state directory, keyed by (source, partition). Everything
//! else — recovery, backfills, views over views, sink queues — is the ordinary machinery
//! running on the lane's entry. A view's runtime that queries read unions its lanes.
//!
//! The cluster thread renews the leases every tick, closes a lane whose lease was lost
//! (without a last checkpoint: its fence is down) and opens lanes for owned partitions whose
//! leases it can take; shutdown stops the lanes (each writes a last checkpoint) and releases
//! their leases, so a successor takes over at once.

use super::*;
use crate::cluster::{lane_name, Lease, LeaseDir};

/// How often a sharded source's partition list is read again.
const LIST_INTERVAL: Duration = Duration::from_secs(5);

/// What the engine keeps of a source split into lanes.
pub(super) struct Sharded {
    /// Views over the source, in the order they were added (parents first).
    pub(super) views: Vec<ViewNode>,
    /// Sinks over the source or its views, each able to make its lanes' sinks.
    pub(super) sinks: Vec<SinkNode>,
    leases: LeaseDir,
    /// The lanes this replica runs, with their leases.
    running: BTreeMap<i32, Lease>,
    /// The source's partitions as last listed, and when.
    partitions: Vec<i32>,
    listed: Option<Instant>,
    /// Why a partition this replica owns does not run here.
    waiting: BTreeMap<i32, String>,
    /// Why the partitions could not be listed, last time.
    unlisted: Option<String>,
}

impl Sharded {
    pub(super) fn new(leases: LeaseDir) -> Self {
        Self {
            views: Vec::new(),
            sinks: Vec::new(),
            leases,
            running: BTreeMap::new(),
            partitions: Vec::new(),
            listed: None,
            waiting: BTreeMap::new(),
            unlisted: None,
        }
    }

    /// Lets go of every lease (the lanes have stopped).
    pub(super) fn release_all(&self) {
        for lease in self.running.values() {
            lease.release();
        }
    }
}

/// One partition of a sharded source, as this replica sees it (`weir.cluster`).
#[derive(Debug, Clone)]
pub struct PartitionOwner {
    pub source: String,
    pub partition: i32,
    /// The replica holding its latest lease epoch, if it ever had one.
    pub owner: Option<String>,
    pub epoch: u64,
    /// Whether that lease is held (not released, renewed within the timeout).
    pub live: bool,
    /// Whether this replica runs the partition's lane.
    pub here: bool,
    /// Whether the partition belongs to this replica (ordinal and count).
    pub assigned: bool,
    /// Why an assigned partition does not run here.
    pub waiting: Option<String>,
}

/// Records a view over `source` when the source is split into lanes; returns the
/// partitions whose lanes run now (the view is to be added to each), or `None` when the
/// source is not split.
pub(super) fn record_view(
    sources: &mut BTreeMap<String, SourceEntry>,
    source: &str,
    node: &ViewNode,
) -> Option<Vec<i32>> {
    let shard = sources.get_mut(source)?.shard.as_mut()?;
    node.view.shard();
    shard.views.push(node.clone());
    Some(shard.running.keys().copied().collect())
}

/// Records a sink like [`record_view`].
pub(super) fn record_sink(
    sources: &mut BTreeMap<String, SourceEntry>,
    source: &str,
    node: &SinkNode,
) -> Result<Option<Vec<i32>>> {
    let Some(shard) = sources.get_mut(source).and_then(|e| e.shard.as_mut()) else {
        return Ok(None);
    };
    if node.lanes.is_none() {
        return Err(EngineError::Internal(format!(
            "sink {} reads a source split into partition lanes but cannot make their sinks",
            node.sink.name()
        )));
    }
    node.sink.stats.set_status(format!(
        "sharded: written by the sinks of this replica's partitions ({}@p<N>)",
        node.sink.name()
    ));
    shard.sinks.push(node.clone());
    Ok(Some(shard.running.keys().copied().collect()))
}

/// A view's node in partition `p`'s lane.
pub(super) fn lane_view(node: &ViewNode, p: i32) -> Result<ViewNode> {
    Ok(ViewNode {
        view: node.view.add_lane(p)?,
        parent: node.parent.as_ref().map(|v| lane_name(v, p)),
    })
}

/// A sink's node in partition `p`'s lane.
pub(super) fn lane_sink(node: &SinkNode, p: i32) -> Result<SinkNode> {
    let make = node
        .lanes
        .as_ref()
        .ok_or_else(|| EngineError::Internal(format!("sink {} has no lanes", node.sink.name())))?;
    Ok(SinkNode {
        sink: make(p)?,
        view: node.view.as_ref().map(|v| lane_name(v, p)),
        lanes: None,
    })
}

/// The counters of every pipeline reading `source`: its own, or its lanes' for a source
/// split into lanes.
pub(super) fn pipelines_of(
    sources: &BTreeMap<String, SourceEntry>,
    source: &str,
) -> Option<Vec<Arc<SourceStats>>> {
    let entry = sources.get(source)?;
    let own = |e: &SourceEntry| e.pipelines.iter().map(|p| p.stats.clone()).collect();
    match &entry.shard {
        None => Some(own(entry)),
        Some(shard) => Some(
            shard
                .running
                .keys()
                .filter_map(|p| sources.get(&lane_name(source, *p)))
                .flat_map(|e| own(e).into_iter())
                .collect(),
        ),
    }
}

impl Engine {
    /// Starts the thread that takes, renews and gives up partition leases (cluster mode;
    /// nothing otherwise). Call after [`start`](Self::start).
    pub fn run_cluster(self: &Arc<Self>) -> Result<()> {
        let Some(cluster) = self.cluster.clone() else {
            return Ok(());
        };
        let engine = Arc::downgrade(self);
        let stop = self.cluster_stop.clone();
        let handle = std::thread::Builder::new()
            .name("weir-cluster".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let Some(engine) = engine.upgrade() else {
                        return;
                    };
                    engine.cluster_tick(&cluster);
                    drop(engine);
                    let until = Instant::now() + cluster.tick();
                    while Instant::now() < until && !stop.load(Ordering::Acquire) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
            .map_err(|e| EngineError::Internal(format!("spawning the cluster thread: {e}")))?;
        *self.cluster_thread.lock() = Some(handle);
        Ok(())
    }

    /// Stops the cluster thread (leases are then neither renewed nor taken).
    pub(super) fn stop_cluster(&self) {
        self.cluster_stop.store(true, Ordering::Release);
        let handle = self.cluster_thread.lock().take();
        if let Some(h) = handle {
            // The thread may hold the last reference to the engine, and drop it there.
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }

    /// One round: renew leases (closing lanes whose lease was lost), list partitions now
    /// and then, and open lanes for owned partitions whose leases can be taken.
    fn cluster_tick(&self, cluster: &ClusterConfig) {
        let hubs: Vec<(String, Arc<dyn SourceFactory>, SourceSpec, bool)> = {
            let sources = self.sources.lock();
            sources
                .iter()
                .filter_map(|(name, e)| {
                    let shard = e.shard.as_ref()?;
                    let due = shard.listed.is_none_or(|t| t.elapsed() >= LIST_INTERVAL);
                    Some((name.clone(), e.factory.clone(), e.spec.clone(), due))
                })
                .collect()
        };
        for (name, factory, spec, due) in hubs {
            // Renewed outside the engine's lock: on S3 each renewal is two requests.
            let held: Vec<(i32, Lease)> = {
                let sources = self.sources.lock();
                let Some(shard) = sources.get(&name).and_then(|e| e.shard.as_ref()) else {
                    continue;
                };
                shard
                    .running
                    .iter()
                    .map(|(p, lease)| (*p, lease.clone()))
                    .collect()
            };
            let lost: Vec<i32> = held
                .iter()
                .filter(|(_, lease)| !lease.renew())
                .map(|(p, _)| *p)
                .collect();
            for p in lost {
                tracing::warn!(source = %name, partition = p, "lease lost: another replica took the partition; its lane stops here");
                self.close_lane(&name, p, true);
            }
            if due {
                // Outside the engine's lock: it asks the brokers.
                let listed = factory.splits(&spec);
                let mut sources = self.sources.lock();
                let Some(entry) = sources.get_mut(&name) else {
                    continue;
                };
                let Some(shard) = entry.shard.as_mut() else {
                    continue;
                };
                shard.listed = Some(Instant::now());
                shard.unlisted = None;
                match listed {
                    Ok(Some(parts)) if parts.is_empty() => {
                        shard.unlisted = Some("the topic has no partitions (yet)".into())
                    }
                    Ok(Some(parts)) => shard.partitions = parts,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(source = %name, error = %e, "cannot list the source's partitions");
                        shard.unlisted = Some(e.to_string());
                    }
                }
            }
            let (leases, wanted) = {
                let sources = self.sources.lock();
                let Some(shard) = sources.get(&name).and_then(|e| e.shard.as_ref()) else {
                    continue;
                };
                let wanted: Vec<i32> = shard
                    .partitions
                    .iter()
                    .copied()
                    .filter(|p| cluster.owns(*p) && !shard.running.contains_key(p))
                    .collect();
                (shard.leases.clone(), wanted)
            };
            for p in wanted {
                let note = match leases.try_acquire(p, &cluster.replica) {
                    Ok(Some(lease)) => {
                        let began = Instant::now();
                        match self.open_lane(&name, p, lease) {
                            Ok(()) => {
                                tracing::info!(source = %name, partition = p, took_ms = began.elapsed().as_millis() as u64, "partition taken: its lane restored and reading");
                                None
                            }
                            Err(e) => {
                                tracing::error!(source = %name, partition = p, error = %e, "cannot start the partition's lane");
                                Some(format!("error: {e}"))
                            }
                        }
                    }
                    Ok(None) => Some(match leases.current(p) {
                        Some(h) => format!(
                            "waiting: {} holds epoch {} (renewed {} ms ago)",
                            h.replica, h.epoch, h.age_ms
                        ),
                        None => "waiting: another replica took it first".into(),
                    }),
                    Err(e) => Some(format!("cannot take the lease: {e}")),
                };
                let mut sources = self.sources.lock();
                if let Some(shard) = sources.get_mut(&name).and_then(|e| e.shard.as_mut()) {
                    match note {
                        Some(n) => shard.waiting.insert(p, n),
                        None => shard.waiting.remove(&p),
                    };
                }
            }
            self.show_lanes(&name, cluster);
        }
    }

    /// Puts the partitions this replica runs and waits for in the source's status.
    fn show_lanes(&self, source: &str, cluster: &ClusterConfig) {
        let sources = self.sources.lock();
        let Some(entry) = sources.get(source) else {
            return;
        };
        let Some(shard) = entry.shard.as_ref() else {
            return;
        };
        let list = |parts: Vec<String>| {
            if parts.is_empty() {
                "none".to_string()
            } else {
                parts.join(", ")
            }
        };
        let running = list(shard.running.keys().map(|p| p.to_string()).collect());
        let mut status = format!(
            "sharded: replica {} (ordinal {} of {}) reads partitions {running}",
            cluster.replica, cluster.ordinal, cluster.replicas
        );
        if !shard.waiting.is_empty() {
            let waiting = list(
                shard
                    .waiting
                    .iter()
                    .map(|(p, why)| format!("{p} ({why})"))
                    .collect(),
            );
            status.push_str(&format!("; not yet {waiting}"));
        }
        if let Some(why) = &shard.unlisted {
            status.push_str(&format!("; cannot list partitions: {why}"));
        }
        entry.idle_stats.set_status(status);
    }

    /// Opens partition `p`'s lane of `source` under `lease`: restores the partition's
    /// checkpoint from the shared directory and starts reading at its position.
    fn open_lane(&self, source: &str, p: i32, lease: Lease) -> Result<()> {
        let lane = lane_name(source, p);
        // Checkpoints in the shared directory, or in the data dir mirrored to S3.
        let (root, mirror) = match (&self.checkpoints, &self.cluster) {
            (Some(local), Some(cluster)) => match cluster.checkpoint_dir() {
                Some(shared) => (Some(shared), None),
                None => (Some(local.dir.clone()), Some(cluster.shared.clone())),
            },
            _ => (None, None),
        };
        if let Some(root) = &root {
            // This owner's checkpoints start as a copy of the previous owner's (a copy or a
            // download: outside the engine's lock).
            let adopted = match &mirror {
                None => CheckpointStore::adopt(root, &lane, lease.epoch),
                Some(remote) => CheckpointStore::adopt_mirrored(remote, root, &lane, lease.epoch),
            };
            if let Err(e) = adopted {
                lease.release();
                return Err(e);
            }
        }
        let mut sources = self.sources.lock();
        let hub = sources
            .get_mut(source)
            .ok_or_else(|| EngineError::Internal(format!("source {source} is not registered")))?;
        let (spec, factory, watermark) = (hub.spec.clone(), hub.factory.clone(), hub.watermark);
        let shard = hub
            .shard
            .as_mut()
            .ok_or_else(|| EngineError::Internal(format!("source {source} is not sharded")))?;
        let nodes = shard
            .views
            .iter()
            .map(|n| lane_view(n, p))
            .collect::<Result<Vec<_>>>()
            .and_then(|views| {
                let sinks = shard
                    .sinks
                    .iter()
                    .map(|n| lane_sink(n, p))
                    .collect::<Result<Vec<_>>>()?;
                Ok((views, sinks))
            });
        let (views, sinks) = match nodes {
            Ok(nodes) => nodes,
            Err(e) => {
                // A lane that cannot open leaves no trace but its error; the lease goes back.
                for n in &shard.views {
                    n.view.remove_lane(p);
                }
                lease.release();
                return Err(e);
            }
        };
        let fence = lease.fence();
        let store = crate::cluster::lane_store_name(&lane, lease.epoch);
        shard.running.insert(p, lease);
        let mut spec = spec;
        spec.name = lane.clone();
        spec.options.insert("partitions".into(), p.to_string());
        let mut entry = self.new_entry(spec, factory, watermark, None);
        entry.root = root;
        entry.mirror = mirror;
        entry.store = Some(store);
        entry.fence = Some(fence.clone());
        for s in &sinks {
            s.sink.set_fence(fence.clone());
        }
        entry.reading.store(true, Ordering::Release);
        let started = self.start_source(&mut entry, views, sinks);
        entry.readers.set_ready();
        if let Err(e) = &started {
            entry.idle_stats.set_status(format!("error: {e}"));
        }
        sources.insert(lane, entry);
        started
    }

    /// Closes partition `p`'s lane of `source`: a lost lease stops it where it is (no last
    /// checkpoint: the fence is down); otherwise it checkpoints and the lease is released.
    fn close_lane(&self, source: &str, p: i32, lost: bool) {
        let mut sources = self.sources.lock();
        if let Some(mut entry) = sources.remove(&lane_name(source, p)) {
            for pipeline in &mut entry.pipelines {
                if lost {
                    pipeline.abort();
                } else {
                    pipeline.stop();
                }
                for s in pipeline.sinks.read().iter() {
                    s.sink.stop();
                }
            }
        }
        if let Some(shard) = sources.get_mut(source).and_then(|e| e.shard.as_mut()) {
            for n in &shard.views {
                n.view.remove_lane(p);
            }
            if let Some(lease) = shard.running.remove(&p) {
                if !lost {
                    lease.release();
                }
            }
            if lost {
                shard
                    .waiting
                    .insert(p, "lost its lease to another replica".into());
            }
        }
    }

    /// Every partition of every source split into lanes, with its lease's holder.
    pub fn partition_owners(&self) -> Vec<PartitionOwner> {
        let Some(cluster) = &self.cluster else {
            return Vec::new();
        };
        /// What a source's entry knows, taken under the engine's lock.
        struct Seen {
            source: String,
            leases: LeaseDir,
            listed: Vec<i32>,
            running: Vec<i32>,
            waiting: BTreeMap<i32, String>,
        }
        let seen: Vec<Seen> = self
            .sources
            .lock()
            .iter()
            .filter_map(|(source, entry)| {
                let shard = entry.shard.as_ref()?;
                Some(Seen {
                    source: source.clone(),
                    leases: shard.leases.clone(),
                    listed: shard.partitions.clone(),
                    running: shard.running.keys().copied().collect(),
                    waiting: shard.waiting.clone(),
                })
            })
            .collect();
        // The lease files are read outside the lock (on S3, requests).
        let mut out = Vec::new();
        for s in seen {
            // The partitions listed, and any that has a lease (listed by another replica).
            let holders = s.leases.holders();
            let mut parts = s.listed;
            parts.extend(holders.iter().map(|h| h.partition));
            parts.sort_unstable();
            parts.dedup();
            for p in parts {
                let holder = holders.iter().find(|h| h.partition == p);
                out.push(PartitionOwner {
                    source: s.source.clone(),
                    partition: p,
                    owner: holder.map(|h| h.replica.clone()),
                    epoch: holder.map_or(0, |h| h.epoch),
                    live: holder.is_some_and(|h| h.live(cluster.lease_timeout)),
                    here: s.running.contains(&p),
                    assigned: cluster.owns(p),
                    waiting: s.waiting.get(&p).cloned(),
                });
            }
        }
        out
    }
}
