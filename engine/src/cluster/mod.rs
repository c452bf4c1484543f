//! Scale-out: replicas of one deployment split each Kafka source's partitions.
//!
//! A replica knows its ordinal and the replica count (a StatefulSet's pod `weir-2` of 3);
//! partition `p` belongs to ordinal `p mod count`. That is the whole assignment: no
//! coordinator, no group protocol. What makes moving a partition safe is the **lease**
//! ([`lease`]) each partition has in the shared state (a directory every replica mounts,
//! or an S3 prefix): a replica reads a partition only while it holds the partition's
//! current lease epoch, renews it every second, and stops writing the moment it cannot
//! prove it still holds it. A replica that
//! wants a partition another replica holds waits until that lease is released (a clean
//! stop) or expires (a crash), then takes the next epoch — so a partition has one writer at
//! every instant, whatever the replicas believe about the count.
//!
//! Each owned partition runs as a *lane* (see `pipeline::shards`): a source entry of its own
//! reading that one partition, with its own copies of the source's views and sinks and its
//! own checkpoints in the shared state, keyed by (source, partition). A replica that takes
//! a partition over restores that partition's state and position from there.

pub mod lease;

use std::path::PathBuf;
use std::time::Duration;

pub use lease::{Fence, Lease, LeaseDir, LeaseHolder};

/// How this process takes part in a deployment of several replicas.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This replica's name (unique among the replicas; the pod name in Kubernetes).
    pub replica: String,
    /// This replica's ordinal, `0..replicas`.
    pub ordinal: u32,
    /// How many replicas share the partitions.
    pub replicas: u32,
    /// Where every replica sees the leases: the shared directory, or an S3 prefix.
    pub shared: crate::history::HistoryRoot,
    /// A shared directory (a volume every replica mounts): lanes write their checkpoints
    /// there. `None` with an S3 `shared`: lanes write them to the data dir and copy each
    /// one there (a *mirror*), and a new owner downloads the newest.
    pub state_dir: Option<PathBuf>,
    /// A lease not renewed for this long is free for another replica.
    pub lease_timeout: Duration,
}

impl ClusterConfig {
    /// Whether partition `partition` belongs to this replica.
    pub fn owns(&self, partition: i32) -> bool {
        partition >= 0 && (partition as u32) % self.replicas.max(1) == self.ordinal
    }

    /// Where lanes' checkpoints go, with a shared directory.
    pub fn checkpoint_dir(&self) -> Option<PathBuf> {
        self.state_dir.as_ref().map(|d| d.join("checkpoints"))
    }

    /// The leases of `source`'s partitions.
    pub fn leases(&self, source: &str) -> LeaseDir {
        LeaseDir::new(
            self.shared.clone(),
            format!("leases/{}", crate::paths::file_name(source)),
            self.lease_timeout,
        )
    }

    /// How often leases are renewed and wanted partitions retried.
    pub fn tick(&self) -> Duration {
        (self.lease_timeout / 5).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }
}

/// The name of the lane of `source` (or of a view or sink) for `partition`.
pub fn lane_name(name: &str, partition: i32) -> String {
    format!("{name}@p{partition}")
}

/// The name a lane's checkpoints are stored under while its replica holds lease `epoch`:
/// each owner writes a directory of its own, so a stale owner never touches its
/// successor's (the successor starts from a copy of the newest earlier one).
pub fn lane_store_name(lane: &str, epoch: u64) -> String {
    format!("{}{epoch}", lane_store_prefix(lane))
}

/// What every store name of lane `lane` starts with.
pub fn lane_store_prefix(lane: &str) -> String {
    format!("{lane}#e")
}

/// The partition of a lane's name, and the name it is a lane of.
pub fn lane_of(name: &str) -> Option<(&str, i32)> {
    let (base, p) = name.rsplit_once("@p")?;
    Some((base, p.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_go_round_the_ordinals() {
        let config = |ordinal| ClusterConfig {
            replica: format!("weir-{ordinal}"),
            ordinal,
            replicas: 3,
            shared: crate::history::HistoryRoot::local(PathBuf::from("/tmp")),
            state_dir: Some(PathBuf::from("/tmp")),
            lease_timeout: Duration::from_secs(10),
        };
        let owned = |o| (0..6).filter(|&p| config(o).owns(p)).collect::<Vec<_>>();
        assert_eq!(owned(0), vec![0, 3]);
        assert_eq!(owned(1), vec![1, 4]);
        assert_eq!(owned(2), vec![2, 5]);
        assert_eq!(lane_name("events", 4), "events@p4");
        assert_eq!(lane_of("kpi@p4"), Some(("kpi", 4)));
        assert_eq!(lane_of("kpi"), None);
        assert_eq!(lane_store_name("events@p4", 7), "events@p4#e7");
    }
}
