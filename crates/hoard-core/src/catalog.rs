//! What an operator asks of the entries a namespace holds (the management API's
//! nouns): pages of entries in a chosen order, deletions by id or by key, and
//! usage per namespace.

/// The order a catalog page is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogSort {
    CreatedAt,
    LastAccessedAt,
    Size,
}

/// One page of a namespace's committed entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogQuery {
    /// Keys starting with this (an exact key is its own prefix).
    pub key_prefix: Option<String>,
    /// Only this scope (the ref an entry was saved from).
    pub scope: Option<String>,
    pub sort: CatalogSort,
    pub descending: bool,
    pub limit: i64,
    pub offset: i64,
}

/// Which committed entries a deletion removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Id(i64),
    /// Every entry with exactly this key (any version), in one scope or all.
    Key {
        key: String,
        scope: Option<String>,
    },
}

/// Committed entries and their bytes in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceUsage {
    pub namespace: String,
    pub entries: u64,
    pub bytes: u64,
}
