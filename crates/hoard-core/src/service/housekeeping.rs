//! Housekeeping: deleting entries and their objects (after a grace period
//! for downloads in flight), reclaiming abandoned uploads, and sweeping
//! objects no entry owns.

use super::*;

impl CacheService {
    /// DeleteCacheEntry: removes the caller's committed entries with this key.
    pub async fn delete(&self, caller: &Caller, key: &str) -> Result<Vec<i64>, CoreError> {
        self.config.names.key(key)?;
        let scope = Self::write_scope(caller)?;
        let ids = self.meta.delete_key(&caller.namespace, scope, key).await?;
        self.remove_objects_later(&ids).await;
        Ok(ids)
    }

    pub(crate) async fn delete_objects(&self, names: &[String]) {
        for name in names {
            if let Err(e) = self.blobs.delete(name).await {
                tracing::warn!(object = %name, error = %e, "could not delete an unused object; the orphan sweep will");
            }
        }
    }

    /// Metadata goes first (the entries are already invisible); their objects go
    /// after the grace period, so a download in flight is never cut short.
    /// Scheduled in the database, so any replica carries it out.
    pub(super) async fn remove_objects_later(&self, entry_ids: &[i64]) {
        let when = now_millis() + self.config.delete_grace_secs * 1000;
        let prefixes: Vec<String> = entry_ids.iter().map(|id| entry_prefix(*id)).collect();
        if let Err(e) = self.meta.doom(&prefixes, when).await {
            tracing::warn!(entries = entry_ids.len(), error = %e, "could not schedule deleted entries' objects for deletion; the orphan sweep will");
        }
    }

    /// Deletes the objects of deleted entries whose grace period is over.
    pub async fn delete_doomed_objects(&self) -> Result<usize, CoreError> {
        let mut total = 0;
        loop {
            let due = self.meta.due_dooms(now_millis(), 500).await?;
            let mut done = Vec::with_capacity(due.len());
            for prefix in &due {
                if let Err(e) = self.blobs.delete_prefix(prefix).await {
                    // What was deleted is forgotten; the rest is due again.
                    self.meta.forget_dooms(&done).await?;
                    return Err(e.into());
                }
                done.push((prefix.clone(), owner_of(prefix)));
            }
            self.meta.forget_dooms(&done).await?;
            total += due.len();
            if due.len() < 500 {
                return Ok(total);
            }
        }
    }

    /// Deletes objects that no entry owns: left by a crash between storing an
    /// object and recording it, or by a delete that failed. Only objects older
    /// than `grace_secs` are considered, so an upload in progress (bytes stored,
    /// row about to be written) is never touched; objects awaiting their
    /// scheduled deletion are left to it. Returns how many were deleted (with
    /// `dry_run`, how many would be, deleting nothing).
    pub async fn sweep_orphans(&self, grace_secs: i64, dry_run: bool) -> Result<usize, CoreError> {
        let cutoff = now_millis() - grace_secs * 1000;
        let mut listing = self.blobs.list(ENTRIES);
        let mut batch: Vec<(i64, String)> = Vec::new();
        let mut deleted = 0;
        while let Some(object) = listing.next().await {
            let object = object?;
            if object.modified > cutoff {
                continue;
            }
            if let Some(id) = owner_of(&object.name) {
                batch.push((id, object.name));
            }
            if batch.len() >= ORPHAN_BATCH {
                deleted += self.delete_orphans(&mut batch, dry_run).await?;
            }
        }
        deleted += self.delete_orphans(&mut batch, dry_run).await?;
        Ok(deleted)
    }

    pub(super) async fn delete_orphans(
        &self,
        batch: &mut Vec<(i64, String)>,
        dry_run: bool,
    ) -> Result<usize, CoreError> {
        let mut ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let existing: HashSet<i64> = self
            .meta
            .existing_entries(&ids)
            .await?
            .into_iter()
            .collect();
        let prefixes: Vec<String> = ids.iter().map(|id| entry_prefix(*id)).collect();
        let doomed: HashSet<String> = self
            .meta
            .doomed_among(&prefixes)
            .await?
            .into_iter()
            .collect();
        // Under a committed entry, an object no part refers to is an orphan
        // too (blocks staged after the list whose delete failed, a replaced
        // block). Unfinished uploads keep all their objects: one may be stored
        // and not yet recorded; reclaiming the upload removes them all.
        let live: Vec<i64> = existing.iter().copied().collect();
        let mut committed: HashSet<i64> = HashSet::new();
        let mut referenced: HashSet<String> = HashSet::new();
        for (id, object) in self.meta.committed_objects(&live).await? {
            committed.insert(id);
            referenced.extend(object);
        }
        let mut deleted = 0;
        for (id, name) in batch.drain(..) {
            let kept =
                existing.contains(&id) && (!committed.contains(&id) || referenced.contains(&name));
            if kept || doomed.contains(&entry_prefix(id)) {
                continue;
            }
            if !dry_run {
                self.blobs.delete(&name).await?;
            }
            deleted += 1;
        }
        Ok(deleted)
    }

    pub(super) async fn remove_objects(&self, entry_id: i64) {
        if let Err(e) = self.blobs.delete_prefix(&entry_prefix(entry_id)).await {
            tracing::warn!(entry_id, error = %e, "could not delete an entry's objects; the orphan sweep will");
        }
    }

    /// Uploads never finalized within the timeout: what the next reclaim
    /// deletes, oldest first, at most `limit`.
    pub async fn stale_uploads(&self, limit: i64) -> Result<Vec<Entry>, CoreError> {
        let before = now_millis() - self.config.pending_timeout_secs * 1000;
        Ok(self.meta.stale_uploads(before, limit).await?)
    }

    /// Deletes uploads that were never finalized within the timeout, and their bytes.
    pub async fn reclaim_stale_uploads(&self) -> Result<usize, CoreError> {
        let before = now_millis() - self.config.pending_timeout_secs * 1000;
        let mut total = 0;
        loop {
            let ids = self.meta.delete_stale_uploads(before, 500).await?;
            for id in &ids {
                self.remove_objects(*id).await;
            }
            total += ids.len();
            if ids.len() < 500 {
                break;
            }
        }
        if total > 0 {
            tracing::info!(count = total, "reclaimed abandoned uploads");
        }
        Ok(total)
    }
}
