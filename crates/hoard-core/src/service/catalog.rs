//! The operator's view (the management API): pages of a namespace's entries,
//! deletions by id or key, usage per namespace, and readiness.

use super::*;
use crate::catalog::{CatalogQuery, NamespaceUsage, Selection};

impl CacheService {
    /// A page of a namespace's committed entries and the number that match.
    /// This replica's buffered restores are written first, so last-access
    /// times are current (other replicas' arrive within their flush interval).
    pub async fn catalog(
        &self,
        namespace: &str,
        query: &CatalogQuery,
    ) -> Result<(u64, Vec<Entry>), CoreError> {
        if let Some(prefix) = &query.key_prefix {
            self.config.names.key(prefix)?;
        }
        self.flush_accesses().await?;
        Ok(self.meta.catalog(namespace, query).await?)
    }

    /// Deletes a namespace's committed entries named by `which`: they leave
    /// lookups at once, their bytes after the delete grace period.
    pub async fn remove(
        &self,
        namespace: &str,
        which: &Selection,
    ) -> Result<Vec<Entry>, CoreError> {
        if let Selection::Key { key, .. } = which {
            self.config.names.key(key)?;
        }
        let gone = self.meta.delete_entries(namespace, which).await?;
        let ids: Vec<i64> = gone.iter().map(|e| e.id).collect();
        self.remove_objects_later(&ids).await;
        Ok(gone)
    }

    /// Committed entries and bytes of one namespace.
    pub async fn namespace_usage(&self, namespace: &str) -> Result<NamespaceUsage, CoreError> {
        let everything = CatalogQuery {
            key_prefix: None,
            scope: None,
            sort: crate::catalog::CatalogSort::CreatedAt,
            descending: true,
            limit: 0,
            offset: 0,
        };
        let (entries, _) = self.meta.catalog(namespace, &everything).await?;
        Ok(NamespaceUsage {
            namespace: namespace.to_string(),
            entries,
            bytes: self.meta.usage(Some(namespace)).await?,
        })
    }

    /// Committed entries and bytes of every namespace.
    pub async fn usage_by_namespace(&self) -> Result<Vec<NamespaceUsage>, CoreError> {
        Ok(self.meta.usage_by_namespace().await?)
    }

    /// Ok when both stores answer: the database (migrated) and the blob store.
    pub async fn check_ready(&self) -> Result<(), CoreError> {
        self.meta.check_ready().await?;
        self.blobs.probe().await?;
        Ok(())
    }

    /// What this service did on its own (evictions), for metrics.
    pub fn stats(&self) -> &crate::stats::Stats {
        &self.stats
    }
}
