//! Eviction: passes of the policy (on the evictor's interval, under its
//! lease, or right after saves that put a namespace over its budget) that
//! remove entries batch by batch.

use super::*;

impl CacheService {
    /// The policy's pass as of `now`: over every namespace and the global
    /// budget, or over `only` that namespace. The caller takes its batches and
    /// removes ([`CacheService::evict`]) or prints them.
    pub async fn eviction_pass(
        &self,
        only: Option<&str>,
        now: i64,
    ) -> Result<EvictionPass<'_>, CoreError> {
        EvictionPass::new(self.meta.as_ref(), &self.config.policy, only, now).await
    }

    /// Removes a batch of a pass: entries leave lookups at once (unless used
    /// since the pass read them), their bytes after the delete grace period.
    /// Returns what was removed.
    pub async fn evict(&self, batch: &[(Candidate, Reason)]) -> Result<Batch, CoreError> {
        let planned: Vec<(i64, i64)> = batch
            .iter()
            .map(|(c, _)| (c.id, c.last_accessed_at))
            .collect();
        let not_before = now_millis() + self.config.delete_grace_secs * 1000;
        let removed: HashSet<i64> = self
            .meta
            .delete_unused(&planned, &entry_prefix, not_before)
            .await?
            .into_iter()
            .collect();
        Ok(batch
            .iter()
            .filter(|(c, _)| removed.contains(&c.id))
            .cloned()
            .collect())
    }

    /// Runs a pass to the end, batch by batch (a pass over a million entries
    /// never holds them all): removes each batch before reading the next, or
    /// with `dry_run` only reads, and shows `seen` each entry removed (or that
    /// would be). Under a lease (holder, length), renews it after each batch
    /// and stops if it was lost, so a long pass never overlaps another
    /// replica's. The server's evictor and `hoard gc` both run passes here.
    pub async fn run_pass(
        &self,
        mut pass: EvictionPass<'_>,
        lease: Option<(&str, i64)>,
        dry_run: bool,
        mut seen: impl FnMut(&Candidate, Reason) + Send,
    ) -> Result<Evicted, CoreError> {
        let mut done = Evicted::default();
        while let Some(batch) = pass.next_chunk(EVICT_CHUNK).await? {
            let batch = if dry_run {
                batch
            } else {
                self.evict(&batch).await?
            };
            for (c, r) in &batch {
                if !dry_run {
                    self.stats.evicted(*r);
                }
                seen(c, *r);
                done.entries += 1;
                done.bytes += c.size;
            }
            if let Some((holder, lease_ms)) = lease {
                let now = now_millis();
                if !self
                    .meta
                    .try_lease("evictor", holder, now, now + lease_ms)
                    .await?
                {
                    tracing::warn!("the evictor lease went to another replica mid-pass; stopping");
                    self.stats.lease_lost();
                    break;
                }
            }
        }
        Ok(done)
    }

    /// One evictor pass, if this replica holds (or takes) the evictor lease:
    /// several replicas run the evictor, one at a time, and a crashed holder's
    /// lease lapses after `lease_ms`. Returns what was removed, or `None` when
    /// another replica holds the lease.
    pub async fn evict_if_leader(
        &self,
        holder: &str,
        lease_ms: i64,
    ) -> Result<Option<Evicted>, CoreError> {
        self.leader_pass(holder, lease_ms, true).await
    }

    /// A full pass under the evictor lease; `analyze` refreshes the planner's
    /// statistics first (the interval pass does, once per interval; a pass on
    /// pressure, which can follow every save, does not).
    pub(super) async fn leader_pass(
        &self,
        holder: &str,
        lease_ms: i64,
        analyze: bool,
    ) -> Result<Option<Evicted>, CoreError> {
        let now = now_millis();
        if !self
            .meta
            .try_lease("evictor", holder, now, now + lease_ms)
            .await?
        {
            return Ok(None);
        }
        // Recent restores count: this replica's buffered accesses go first.
        self.flush_accesses().await?;
        if analyze {
            self.meta.refresh_statistics().await?;
        }
        let pass = self.eviction_pass(None, now).await?;
        let done = self
            .run_pass(pass, Some((holder, lease_ms)), false, |_, _| {})
            .await?;
        self.stats.leader_pass_done(now_millis());
        Ok(Some(done))
    }

    /// The most bytes one entry of `namespace` may have: its maximum entry size
    /// or, if smaller, its whole budget.
    pub fn entry_limit(&self, namespace: &str) -> u64 {
        let limits = self.config.policy.limits(namespace);
        limits
            .max_entry_bytes
            .unwrap_or(u64::MAX)
            .min(limits.budget_bytes.unwrap_or(u64::MAX))
    }

    pub(super) fn note_pressure(&self, namespace: &str) {
        let mut set = self.pressure.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() < MAX_PRESSURED || set.contains(namespace) {
            set.insert(namespace.to_string());
        }
        drop(set);
        self.pressure_notify.notify_one();
    }

    /// Resolves when an entry was committed since the last call: time to check
    /// budgets.
    pub async fn pressure(&self) {
        self.pressure_notify.notified().await
    }

    /// Makes room right after saves instead of at the next evictor tick: each
    /// namespace that committed an entry and is now over its budget loses its
    /// least recently used entries; if the whole store is above its high
    /// watermark, a full pass runs (under the evictor lease).
    pub async fn relieve_pressure(
        &self,
        holder: &str,
        lease_ms: i64,
    ) -> Result<Evicted, CoreError> {
        let namespaces: Vec<String> = {
            let mut set = self.pressure.lock().unwrap_or_else(|p| p.into_inner());
            set.drain().collect()
        };
        if namespaces.is_empty() {
            return Ok(Evicted::default());
        }
        self.flush_accesses().await?;
        let now = now_millis();
        let mut done = Evicted::default();
        for ns in &namespaces {
            let Some(budget) = self.config.policy.limits(ns).budget_bytes else {
                continue;
            };
            if self.meta.usage(Some(ns)).await? <= budget {
                continue;
            }
            // Deletes are idempotent (each id is removed once, whoever asks), so
            // two replicas relieving one namespace at once remove nothing twice.
            let pass = self.eviction_pass(Some(ns), now).await?;
            let one = self.run_pass(pass, None, false, |_, _| {}).await?;
            done.entries += one.entries;
            done.bytes += one.bytes;
        }
        if self.config.policy.global.is_some()
            && self
                .config
                .policy
                .global_excess(self.meta.usage(None).await?)
                > 0
        {
            if let Some(one) = self.leader_pass(holder, lease_ms, false).await? {
                done.entries += one.entries;
                done.bytes += one.bytes;
            }
        }
        Ok(done)
    }
}
