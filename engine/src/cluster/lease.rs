//! Partition leases in a shared directory, with epochs that fence a stale owner.
//!
//! `<dir>/p<N>/` holds one file per epoch the partition has had: `e<k>` names its holder and
//! is created exclusively (`O_EXCL` in a shared directory, a conditional put with
//! `If-None-Match: *` on S3), so of two replicas reaching for epoch `k` exactly one gets it.
//! Beside it the holder keeps `e<k>.beat` (its wall clock in ms, replaced whole every
//! renewal) and writes `e<k>.released` when it lets go cleanly.
//!
//! A replica may take epoch `k + 1` when epoch `k` is released, its beat is older than the
//! timeout (its holder died or hangs), or its holder has the replica's own name (the same
//! replica, restarted). The holder of epoch `k` checks on every renewal that no later epoch
//! exists, and its [`Fence`] turns false when it lost the lease or has not renewed it for
//! half the timeout — before anyone else may take it — so checkpoints and sink writes that
//! consult the fence stop before a successor starts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::history::HistoryRoot;

/// The leases of one source's partitions, under a directory of a root every replica sees
/// (a shared directory or an S3 prefix).
#[derive(Debug, Clone)]
pub struct LeaseDir {
    root: HistoryRoot,
    dir: String,
    timeout: Duration,
}

/// Who holds a partition's latest epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub partition: i32,
    pub epoch: u64,
    /// The holder's replica name.
    pub replica: String,
    /// Milliseconds since its last renewal.
    pub age_ms: i64,
    /// Let go cleanly.
    pub released: bool,
}

impl LeaseHolder {
    /// Whether the holder still counts as the owner.
    pub fn live(&self, timeout: Duration) -> bool {
        !self.released && self.age_ms < timeout.as_millis() as i64
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The numbers `n` of the entries named `<prefix><n>` right under `dir`, ascending.
fn numbered<T: std::str::FromStr + Ord>(root: &HistoryRoot, dir: &str, prefix: char) -> Vec<T> {
    let mut out: Vec<T> = root
        .list(dir)
        .iter()
        .filter_map(|f| {
            let rest = f.strip_prefix(dir)?.trim_start_matches('/');
            rest.split('/').next()?.strip_prefix(prefix)?.parse().ok()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The epochs present in a partition's directory.
fn epochs(root: &HistoryRoot, dir: &str) -> Vec<u64> {
    numbered(root, dir, 'e')
}

fn epoch_file(dir: &str, epoch: u64, suffix: &str) -> String {
    format!("{dir}/e{epoch}{suffix}")
}

fn read_text(root: &HistoryRoot, relative: &str) -> Option<String> {
    root.read(relative)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

impl LeaseDir {
    /// The leases under `dir` of `root`, expiring after `timeout` without renewal.
    pub fn new(root: HistoryRoot, dir: String, timeout: Duration) -> Self {
        Self { root, dir, timeout }
    }

    fn partition_dir(&self, partition: i32) -> String {
        format!("{}/p{partition}", self.dir)
    }

    /// The holder of `partition`'s latest epoch, if it ever had one.
    pub fn current(&self, partition: i32) -> Option<LeaseHolder> {
        let dir = self.partition_dir(partition);
        let epoch = *epochs(&self.root, &dir).last()?;
        // `e<k>` holds the holder's name and when it took the epoch; `.beat` the last
        // renewal.
        let text = read_text(&self.root, &epoch_file(&dir, epoch, "")).unwrap_or_default();
        let mut lines = text.lines();
        let replica = lines.next().unwrap_or_default().trim().to_string();
        let taken: i64 = lines
            .next()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let beat = read_text(&self.root, &epoch_file(&dir, epoch, ".beat"))
            .and_then(|t| t.trim().parse::<i64>().ok())
            .unwrap_or(taken);
        Some(LeaseHolder {
            partition,
            epoch,
            replica,
            age_ms: now_ms() - beat,
            released: read_text(&self.root, &epoch_file(&dir, epoch, ".released")).is_some(),
        })
    }

    /// Every partition that has a lease, in partition order.
    pub fn holders(&self) -> Vec<LeaseHolder> {
        numbered::<i32>(&self.root, &self.dir, 'p')
            .into_iter()
            .filter_map(|p| self.current(p))
            .collect()
    }

    /// Takes the next epoch of `partition` for `replica` unless another replica holds the
    /// current one (not released, renewed within the timeout): then `Ok(None)`, as when
    /// another replica wins the race for the same epoch.
    pub fn try_acquire(
        &self,
        partition: i32,
        replica: &str,
    ) -> crate::error::Result<Option<Lease>> {
        let current = self.current(partition);
        if let Some(h) = &current {
            if h.replica != replica && h.live(self.timeout) {
                return Ok(None);
            }
        }
        let epoch = current.map_or(1, |h| h.epoch + 1);
        let dir = self.partition_dir(partition);
        let holder = format!("{replica}\n{}\n", now_ms());
        if !self
            .root
            .create(&epoch_file(&dir, epoch, ""), holder.into_bytes())?
        {
            return Ok(None);
        }
        self.root.write(
            &epoch_file(&dir, epoch, ".beat"),
            now_ms().to_string().into_bytes(),
        )?;
        // Epochs before the previous one are history nobody reads.
        for old in epochs(&self.root, &dir)
            .into_iter()
            .filter(|&e| e + 1 < epoch)
        {
            for suffix in ["", ".beat", ".released"] {
                self.root.delete(&epoch_file(&dir, old, suffix));
            }
        }
        Ok(Some(Lease {
            root: self.root.clone(),
            dir,
            partition,
            epoch,
            fence: Fence(Arc::new(FenceState {
                valid: AtomicBool::new(true),
                renewed: Mutex::new(Instant::now()),
                limit: self.timeout / 2,
                epoch,
                what: format!("partition {partition}, epoch {epoch}"),
            })),
        }))
    }
}

/// A partition's lease as held by this replica (a clone is a handle to the same lease).
#[derive(Debug, Clone)]
pub struct Lease {
    root: HistoryRoot,
    dir: String,
    pub partition: i32,
    pub epoch: u64,
    fence: Fence,
}

impl Lease {
    /// Renews the lease. Returns false when a later epoch exists: the lease is lost for
    /// good and the fence is down. A renewal that fails on I/O leaves the fence to expire
    /// by itself.
    pub fn renew(&self) -> bool {
        if epochs(&self.root, &self.dir).last() != Some(&self.epoch) {
            self.fence.0.valid.store(false, Ordering::Release);
            return false;
        }
        match self.root.write(
            &epoch_file(&self.dir, self.epoch, ".beat"),
            now_ms().to_string().into_bytes(),
        ) {
            Ok(_) => {
                *self.fence.0.renewed.lock() = Instant::now();
                true
            }
            Err(e) => {
                tracing::warn!(partition = self.partition, error = %e, "cannot renew lease");
                true
            }
        }
    }

    /// Lets go: a successor may take the next epoch at once.
    pub fn release(&self) {
        self.fence.0.valid.store(false, Ordering::Release);
        if epochs(&self.root, &self.dir).last() == Some(&self.epoch) {
            let _ = self
                .root
                .write(&epoch_file(&self.dir, self.epoch, ".released"), Vec::new());
        }
    }

    /// The fence writes under this lease consult.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }
}

#[derive(Debug)]
struct FenceState {
    valid: AtomicBool,
    renewed: Mutex<Instant>,
    limit: Duration,
    epoch: u64,
    what: String,
}

/// Whether writes on behalf of a lease may still happen: the lease was neither lost nor
/// released, and was renewed within half its timeout.
#[derive(Debug, Clone)]
pub struct Fence(Arc<FenceState>);

impl Fence {
    /// Whether this replica still provably holds the lease.
    pub fn is_current(&self) -> bool {
        self.0.valid.load(Ordering::Acquire) && self.0.renewed.lock().elapsed() < self.0.limit
    }

    /// Whether the lease is gone for good (a later epoch exists, or it was released);
    /// otherwise a fence that is not current may be again after the next renewal.
    pub fn lost(&self) -> bool {
        !self.0.valid.load(Ordering::Acquire)
    }

    /// The lease epoch it guards.
    pub fn epoch(&self) -> u64 {
        self.0.epoch
    }

    /// Why writes stopped, for statuses and errors.
    pub fn reason(&self) -> String {
        format!(
            "fenced: this replica no longer holds the lease of {}",
            self.0.what
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(timeout_ms: u64) -> (tempfile::TempDir, LeaseDir) {
        let tmp = tempfile::tempdir().unwrap();
        let leases = LeaseDir::new(
            HistoryRoot::local(tmp.path().to_path_buf()),
            "leases/events".into(),
            Duration::from_millis(timeout_ms),
        );
        (tmp, leases)
    }

    #[test]
    fn one_holder_per_epoch_and_a_stale_holder_is_fenced() {
        let (_tmp, leases) = dir(400);
        let a = leases.try_acquire(3, "weir-0").unwrap().expect("free");
        assert_eq!(a.epoch, 1);
        assert!(a.fence().is_current());
        // Another replica waits while the holder renews.
        assert!(leases.try_acquire(3, "weir-1").unwrap().is_none());
        assert!(a.renew());
        // The holder stops renewing (it hangs): after the timeout the lease is free, and
        // the old holder's fence went down before that.
        std::thread::sleep(Duration::from_millis(250));
        assert!(!a.fence().is_current(), "not renewed for half the timeout");
        assert!(
            !a.fence().lost(),
            "late, not lost: a renewal may bring it back"
        );
        std::thread::sleep(Duration::from_millis(200));
        let b = leases.try_acquire(3, "weir-1").unwrap().expect("expired");
        assert_eq!(b.epoch, 2);
        // The old holder wakes up: its renewal finds the later epoch; it stays fenced.
        assert!(!a.renew());
        assert!(!a.fence().is_current());
        assert!(a.fence().lost());
        assert!(b.fence().is_current());
        let h = leases.current(3).unwrap();
        assert_eq!((h.epoch, h.replica.as_str()), (2, "weir-1"));
    }

    #[test]
    fn release_hands_over_at_once_and_a_restart_retakes_its_own() {
        let (_tmp, leases) = dir(60_000);
        let a = leases.try_acquire(0, "weir-0").unwrap().unwrap();
        assert!(leases.try_acquire(0, "weir-1").unwrap().is_none());
        a.release();
        assert!(!a.fence().is_current());
        let b = leases.try_acquire(0, "weir-1").unwrap().unwrap();
        assert_eq!(b.epoch, 2);
        // weir-1 crashes and comes back under the same name: no wait for the timeout.
        let c = leases.try_acquire(0, "weir-1").unwrap().unwrap();
        assert_eq!(c.epoch, 3);
        assert!(!b.renew());
        let holders = leases.holders();
        assert_eq!(holders.len(), 1);
        assert!(holders[0].live(Duration::from_secs(60)));
    }

    #[test]
    fn racing_replicas_get_distinct_epochs() {
        let (_tmp, leases) = dir(60_000);
        let won: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let leases = leases.clone();
                    s.spawn(move || {
                        leases
                            .try_acquire(1, &format!("weir-{i}"))
                            .unwrap()
                            .map(|l| l.epoch)
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect()
        });
        // Each epoch has one holder; whoever took epoch 1 made the others wait.
        let mut sorted = won.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), won.len());
        assert!(won.contains(&1));
    }
}
