//! Compaction: an entry committed as several objects (a block list: the
//! toolkit's large archives, BuildKit's 1 MiB blocks) is rewritten in the
//! background as one object, so that a lookup can hand out the blob store's
//! own presigned URL for it (`direct_download`) and the bytes skip hoard, as
//! they already do for entries saved with one Put Blob.

use super::*;

/// Entries waiting for compaction at most; past that, the others stay as they
/// are (served through hoard, as before).
const MAX_QUEUED: usize = 10_000;

impl CacheService {
    fn compaction_queue(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<i64>> {
        self.compaction.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a just-committed entry for compaction, where it is on.
    pub(super) fn queue_compaction(&self, entry_id: i64) {
        if !self.config.compact {
            return;
        }
        let mut queue = self.compaction_queue();
        if queue.len() < MAX_QUEUED {
            queue.push_back(entry_id);
        }
        drop(queue);
        self.compaction_notify.notify_one();
    }

    /// Queues committed entries still made of several objects (saved before
    /// compaction was on, or queued on a replica that stopped first), as many
    /// as the queue holds, and wakes the compactor; returns how many. The
    /// compactor does this once at start-up, under a lease, so replicas
    /// starting together do not rewrite the same entries.
    pub async fn queue_uncompacted(&self) -> Result<usize, CoreError> {
        let mut after = 0;
        let mut queued = 0;
        loop {
            let room = MAX_QUEUED.saturating_sub(self.compaction_queue().len());
            let page = match room {
                0 => Vec::new(),
                n => {
                    self.meta
                        .multi_part_entries(after, n.min(1000) as i64)
                        .await?
                }
            };
            let Some(&last) = page.last() else {
                if queued > 0 {
                    self.compaction_notify.notify_one();
                }
                return Ok(queued);
            };
            after = last;
            queued += page.len();
            self.compaction_queue().extend(page);
        }
    }

    /// Resolves when entries may be waiting for compaction.
    pub async fn compaction_wanted(&self) {
        self.compaction_notify.notified().await
    }

    /// Compacts the queued entries one at a time (one rewrite per replica at
    /// once, so saves keep the store's bandwidth); returns how many were
    /// rewritten.
    pub async fn compact_queued(&self) -> usize {
        let mut done = 0;
        loop {
            let next = self.compaction_queue().pop_front();
            let Some(entry_id) = next else {
                return done;
            };
            match self.compact(entry_id).await {
                Ok(true) => done += 1,
                Ok(false) => {}
                Err(e) => {
                    self.stats.compaction_failed();
                    tracing::warn!(entry_id, error = %e, "could not compact an entry; it is served from its parts")
                }
            }
        }
    }

    /// Rewrites a committed entry of several objects as one: reads its parts
    /// (checked, as any download is), stores them as one new object, and
    /// switches the entry to it in one transaction; the old objects are
    /// deleted after the delete grace period, so a download that opened them
    /// before the switch finishes. `false`: nothing to do (one object already,
    /// gone, or changed meanwhile; the new object is then deleted).
    pub async fn compact(&self, entry_id: i64) -> Result<bool, CoreError> {
        let entry = match self.meta.entry(entry_id).await? {
            Some(e) if e.state == EntryState::Committed => e,
            _ => return Ok(false),
        };
        let parts = self.meta.parts(entry_id).await?;
        if parts.len() < 2 {
            return Ok(false);
        }
        let old: Vec<String> = parts.iter().map(|p| p.object.clone()).collect();
        let size = entry.size.max(0) as u64;
        let body = self.read(&entry, parts, 0, size).await?;
        let whole = self.store_object(&entry, "whole", body, size).await?;
        if whole.size != entry.size || !self.meta.replace_parts(entry_id, &old, &whole).await? {
            self.delete_objects(&[whole.object]).await;
            return Ok(false);
        }
        tracing::info!(
            entry_id,
            parts = old.len(),
            bytes = size,
            "entry compacted into one object"
        );
        self.stats.compacted(size);
        self.delete_objects_after_grace(old);
        Ok(true)
    }

    /// Deletes objects no part refers to any more once the delete grace period
    /// is over. Kept in memory: if the process stops first, the orphan sweep
    /// deletes them (objects under a committed entry that no part names).
    fn delete_objects_after_grace(&self, names: Vec<String>) {
        let blobs = self.blobs.clone();
        let grace = Duration::from_secs(self.config.delete_grace_secs.max(0) as u64);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            for name in names {
                if let Err(e) = blobs.delete(&name).await {
                    tracing::warn!(object = %name, error = %e, "could not delete a compacted entry's old object; the orphan sweep will");
                }
            }
        });
    }
}
