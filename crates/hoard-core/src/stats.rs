//! Counters of the work a service does on its own (eviction, compaction), read by the
//! server's metrics at scrape time.

use crate::policy::Reason;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Stats {
    evicted: [AtomicU64; 3],
    leader_passes: AtomicU64,
    last_leader_pass_at: AtomicI64,
    leases_lost: AtomicU64,
    /// Compactions: [rewritten, failed], and bytes rewritten.
    compactions: [AtomicU64; 2],
    compacted_bytes: AtomicU64,
}

fn slot(reason: Reason) -> usize {
    match reason {
        Reason::Expired => 0,
        Reason::NamespaceBudget => 1,
        Reason::GlobalBudget => 2,
    }
}

impl Stats {
    pub(crate) fn evicted(&self, reason: Reason) {
        self.evicted[slot(reason)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn leader_pass_done(&self, at: i64) {
        self.leader_passes.fetch_add(1, Ordering::Relaxed);
        self.last_leader_pass_at.store(at, Ordering::Relaxed);
    }

    pub(crate) fn lease_lost(&self) {
        self.leases_lost.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn compacted(&self, bytes: u64) {
        self.compactions[0].fetch_add(1, Ordering::Relaxed);
        self.compacted_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn compaction_failed(&self) {
        self.compactions[1].fetch_add(1, Ordering::Relaxed);
    }

    /// Entries this process rewrote as one object, and compactions that failed.
    pub fn compactions(&self) -> (u64, u64) {
        (
            self.compactions[0].load(Ordering::Relaxed),
            self.compactions[1].load(Ordering::Relaxed),
        )
    }

    /// Bytes of the entries this process rewrote as one object.
    pub fn compacted_bytes(&self) -> u64 {
        self.compacted_bytes.load(Ordering::Relaxed)
    }

    /// Entries this process removed for `reason`.
    pub fn evictions(&self, reason: Reason) -> u64 {
        self.evicted[slot(reason)].load(Ordering::Relaxed)
    }

    /// Full passes this process ran under the evictor lease.
    pub fn leader_passes(&self) -> u64 {
        self.leader_passes.load(Ordering::Relaxed)
    }

    /// When this process last finished such a pass (millis; 0: never).
    pub fn last_leader_pass_at(&self) -> i64 {
        self.last_leader_pass_at.load(Ordering::Relaxed)
    }

    /// Passes stopped because another replica took the lease mid-pass.
    pub fn leases_lost(&self) -> u64 {
        self.leases_lost.load(Ordering::Relaxed)
    }
}
