//! One eviction pass over the store in bounded memory, handed out in batches so
//! the caller removes (or, for a dry run, prints) as it goes.
//!
//! The namespaces come one at a time: each one's entries are read, planned by
//! the policy and dropped before the next. The global budget's share then comes
//! from the store-wide least-recently-used order, read a page at a time, so a
//! million entries are never all in memory at once. What the pass keeps between
//! batches: the names of the namespaces, and (only with a global budget) the ids
//! the namespace phase already chose, so a dry run does not count them twice.

use crate::error::CoreError;
use crate::policy::{Candidate, Policy, Reason};
use crate::store::MetaStore;
use std::collections::HashSet;

/// Entries read per page of the store-wide order, and the most in one batch.
const PAGE: i64 = 2000;

pub type Batch = Vec<(Candidate, Reason)>;

pub struct EvictionPass<'a> {
    meta: &'a dyn MetaStore,
    policy: &'a Policy,
    now: i64,
    namespaces: std::vec::IntoIter<String>,
    global: Option<GlobalPhase>,
}

/// The store-wide phase: runs after every namespace was planned, on what they
/// kept, from the least recently used up, protected keys last.
struct GlobalPhase {
    kept_bytes: u64,
    planned: HashSet<i64>,
    /// Bytes still to free; known once the namespaces are done.
    to_free: Option<u64>,
    after: Option<(i64, i64)>,
    scanned: bool,
    page: i64,
    protected: std::collections::VecDeque<Candidate>,
}

impl<'a> EvictionPass<'a> {
    /// A pass over every namespace (and the global budget, if the policy has
    /// one), or over `only` that namespace.
    pub async fn new(
        meta: &'a dyn MetaStore,
        policy: &'a Policy,
        only: Option<&str>,
        now: i64,
    ) -> Result<EvictionPass<'a>, CoreError> {
        let namespaces = match only {
            Some(ns) => vec![ns.to_string()],
            None => meta.namespaces().await?,
        };
        let global = (only.is_none() && policy.global.is_some()).then(|| GlobalPhase {
            kept_bytes: 0,
            planned: HashSet::new(),
            to_free: None,
            after: None,
            scanned: false,
            page: PAGE,
            protected: Default::default(),
        });
        Ok(EvictionPass {
            meta,
            policy,
            now,
            namespaces: namespaces.into_iter(),
            global,
        })
    }

    /// Reads the store-wide order `n` entries at a time (tests use small pages).
    pub fn with_page_size(mut self, n: i64) -> Self {
        if let Some(g) = &mut self.global {
            g.page = n.max(1);
        }
        self
    }

    /// Batches joined until at least `at_least` entries (or the end of the
    /// pass), so removal commits in few large transactions.
    pub async fn next_chunk(&mut self, at_least: usize) -> Result<Option<Batch>, CoreError> {
        let mut chunk: Batch = Vec::new();
        while chunk.len() < at_least {
            match self.next_batch().await? {
                Some(batch) => chunk.extend(batch),
                None => break,
            }
        }
        Ok((!chunk.is_empty()).then_some(chunk))
    }

    /// The next entries to remove, in the policy's order; `None` when the pass
    /// is over. Batches are never empty.
    pub async fn next_batch(&mut self) -> Result<Option<Batch>, CoreError> {
        for ns in self.namespaces.by_ref() {
            let entries = self.meta.eviction_candidates(&ns).await?;
            let (gone, kept) = self.policy.plan_namespace(&ns, &entries, self.now);
            if let Some(g) = &mut self.global {
                g.kept_bytes += kept.iter().map(|c| c.size).sum::<u64>();
                g.planned.extend(gone.iter().map(|(c, _)| c.id));
            }
            if !gone.is_empty() {
                return Ok(Some(
                    gone.into_iter().map(|(c, r)| (c.clone(), r)).collect(),
                ));
            }
        }
        match &mut self.global {
            Some(g) => g.next_batch(self.meta, self.policy).await,
            None => Ok(None),
        }
    }
}

impl GlobalPhase {
    async fn next_batch(
        &mut self,
        meta: &dyn MetaStore,
        policy: &Policy,
    ) -> Result<Option<Batch>, CoreError> {
        let kept = self.kept_bytes;
        let to_free = self
            .to_free
            .get_or_insert_with(|| policy.global_excess(kept));
        let mut batch = Vec::new();
        let limit = self.page as usize;
        while *to_free > 0 && !self.scanned && batch.len() < limit {
            let page = meta.least_recently_used(self.after, self.page).await?;
            self.scanned = page.len() < limit;
            for c in page {
                self.after = Some((c.last_accessed_at, c.id));
                if *to_free == 0 {
                    break;
                }
                if self.planned.contains(&c.id) {
                    continue;
                }
                if policy.is_protected(&c) {
                    self.protected.push_back(c);
                    continue;
                }
                *to_free = to_free.saturating_sub(c.size);
                batch.push((c, Reason::GlobalBudget));
            }
        }
        // Protected entries only when every other one is gone and room is
        // still needed, least recently used first.
        if self.scanned {
            while *to_free > 0 && batch.len() < limit {
                let Some(c) = self.protected.pop_front() else {
                    break;
                };
                *to_free = to_free.saturating_sub(c.size);
                batch.push((c, Reason::GlobalBudget));
            }
        }
        Ok((!batch.is_empty()).then_some(batch))
    }
}
