//! The two storage traits the service runs on. Implementations live in hoard-db
//! (metadata) and hoard-storage (bytes); both keep all state outside the process so
//! any replica can serve any request.

use crate::catalog::{CatalogQuery, NamespaceUsage, Selection};
use crate::model::{Entry, Part, StoredObject};
use crate::policy::Candidate;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A body of bytes, streamed.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Backend(String),
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("object {0} not found")]
    NotFound(String),
    /// The object is not what was stored (e.g. shorter than its recorded size).
    #[error("{0}")]
    Corrupt(String),
    /// The store is too busy to take this now (no buffer free in time); the
    /// client should retry shortly.
    #[error("{0}")]
    Busy(String),
    /// The body stream itself failed; nothing was stored.
    #[error("{0}")]
    Body(std::io::Error),
    #[error("{0}")]
    Backend(String),
}

/// An object as listed by a blob store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub name: String,
    /// Last modification, milliseconds since the epoch.
    pub modified: i64,
}

/// Objects listed a page at a time, however many there are.
pub type ObjectList = BoxStream<'static, Result<ListedObject, BlobError>>;

/// Result of a reservation attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Reserved as a new entry; `replaced` is an abandoned upload it took over,
    /// whose objects are to be deleted.
    Created {
        id: i64,
        replaced: Option<i64>,
    },
    Taken,
}

/// Result of staging a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staged {
    /// Staged; the object it replaced (a retried block id), to delete.
    Ok { replaced: Option<String> },
    /// The upload is gone or no longer accepts blocks.
    NotPending,
}

/// Result of committing the blob of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobCommit {
    /// Committed; objects no part refers to any more, to delete.
    Ok {
        size: i64,
        unused: Vec<String>,
    },
    /// The same block list was committed and finalized before: nothing changed.
    AlreadyCommitted {
        size: i64,
    },
    /// The entry is finalized with other content.
    Immutable,
    /// A block id in the list was never staged.
    UnknownBlock(String),
    /// The listed blocks add up to more than the entry may have.
    TooLarge {
        size: i64,
    },
    NotFound,
}

/// Result of finalizing an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finalized {
    /// Visible; `unused` are staged objects the committed blob does not use
    /// (blocks staged after the last block list), to delete.
    Ok {
        id: i64,
        unused: Vec<String>,
    },
    SizeMismatch {
        expected: i64,
    },
    /// Reserved, but no blob has been committed yet.
    NoBlob,
    NotFound,
}

/// Entries and uploads. Every method is one atomic step.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Reserves `key`+`version` in `namespace`/`scope`. An unfinished reservation
    /// created before `stale_before` does not block: it is replaced.
    async fn reserve(
        &self,
        namespace: &str,
        scope: &str,
        key: &str,
        version: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<Reservation, StoreError>;

    /// Unfinished uploads of a namespace reserved at or after `since`.
    async fn open_uploads(&self, namespace: &str, since: i64) -> Result<u64, StoreError>;

    /// Bytes staged as blocks by the unfinished uploads of `namespace`: in all
    /// of them, and in upload `entry_id` alone, not counting what block
    /// `block_id` of that upload holds now (a retried block replaces it).
    async fn staged_bytes(
        &self,
        namespace: &str,
        entry_id: i64,
        block_id: &str,
    ) -> Result<(u64, u64), StoreError>;

    /// The blocks staged for upload `entry_id`: (block id, bytes), in no order.
    async fn staged_blocks(&self, entry_id: i64) -> Result<Vec<(String, i64)>, StoreError>;

    /// The committed entries among `entry_ids`, each with every object its
    /// parts refer to (one row per part).
    async fn committed_objects(
        &self,
        entry_ids: &[i64],
    ) -> Result<Vec<(i64, Option<String>)>, StoreError>;

    /// An entry in any state, by id.
    async fn entry(&self, id: i64) -> Result<Option<Entry>, StoreError>;

    /// Records a staged block of a pending upload (last write of an id wins).
    async fn stage_block(
        &self,
        entry_id: i64,
        block_id: &str,
        stored: &StoredObject,
    ) -> Result<Staged, StoreError>;

    /// Makes the listed blocks, in order, the upload's blob, unless together
    /// they are larger than `max_size`.
    async fn commit_block_list(
        &self,
        entry_id: i64,
        block_ids: &[String],
        max_size: i64,
        now: i64,
    ) -> Result<BlobCommit, StoreError>;

    /// Makes one object the upload's whole blob (Put Blob).
    async fn commit_single(
        &self,
        entry_id: i64,
        stored: &StoredObject,
        now: i64,
    ) -> Result<BlobCommit, StoreError>;

    /// Makes an uploaded entry visible, if its blob has `size` bytes. Finalizing a
    /// finalized entry of that size answers its id again.
    async fn finalize(
        &self,
        namespace: &str,
        scope: &str,
        key: &str,
        version: &str,
        size: i64,
        now: i64,
    ) -> Result<Finalized, StoreError>;

    /// The committed entry with exactly this key.
    async fn find_exact(
        &self,
        namespace: &str,
        scope: &str,
        version: &str,
        key: &str,
    ) -> Result<Option<Entry>, StoreError>;

    /// The newest committed entry whose key starts with `prefix`.
    async fn find_newest_with_prefix(
        &self,
        namespace: &str,
        scope: &str,
        version: &str,
        prefix: &str,
    ) -> Result<Option<Entry>, StoreError>;

    /// The entry a lookup restores, in one query: the matching rule of
    /// [`crate::matching`] (each scope in order; each key in order; an exact key
    /// before the newest with the key as prefix).
    async fn find_first(
        &self,
        namespace: &str,
        scopes: &[String],
        version: &str,
        keys: &[&str],
    ) -> Result<Option<Entry>, StoreError>;

    /// Committed entries of a namespace in the given scopes whose key starts with
    /// one of `prefixes` (all when empty), newest first, at most `limit`.
    async fn list(
        &self,
        namespace: &str,
        scopes: &[String],
        prefixes: &[String],
        limit: i64,
    ) -> Result<Vec<Entry>, StoreError>;

    /// The parts of a committed blob, in order.
    async fn parts(&self, entry_id: i64) -> Result<Vec<Part>, StoreError>;

    /// Deletes the committed entries with this key (any version) in a scope;
    /// returns their ids.
    async fn delete_key(
        &self,
        namespace: &str,
        scope: &str,
        key: &str,
    ) -> Result<Vec<i64>, StoreError>;

    /// Unfinished uploads created before `before`, oldest first, at most `limit`.
    async fn stale_uploads(&self, before: i64, limit: i64) -> Result<Vec<Entry>, StoreError>;

    /// Deletes unfinished uploads created before `before`; returns their ids.
    async fn delete_stale_uploads(&self, before: i64, limit: i64) -> Result<Vec<i64>, StoreError>;

    /// Records last-access times (batched by the caller).
    async fn touch(&self, accesses: &[(i64, i64)]) -> Result<(), StoreError>;

    /// Schedules the objects under each of `prefixes` for deletion at
    /// `not_before`.
    async fn doom(&self, prefixes: &[String], not_before: i64) -> Result<(), StoreError>;

    /// Prefixes whose deletion is due at `now`, at most `limit`.
    async fn due_dooms(&self, now: i64, limit: i64) -> Result<Vec<String>, StoreError>;

    /// Forgets scheduled deletions (prefix, owner) once carried out, with the
    /// `parts` and `blocks` rows of the entry (`owner`) whose objects these
    /// were: an eviction pass leaves them to this, so it only removes what
    /// lookups see. One transaction for all.
    async fn forget_dooms(&self, done: &[(String, Option<i64>)]) -> Result<(), StoreError>;

    /// Replaces the parts of a committed entry, if they are still the objects
    /// `old` in order, by the one object `whole` holding all their bytes (the
    /// compaction of an entry, in one transaction: a reader sees the old parts
    /// or the new one, never a mix). `false`: the entry is gone or changed.
    async fn replace_parts(
        &self,
        entry_id: i64,
        old: &[String],
        whole: &StoredObject,
    ) -> Result<bool, StoreError>;

    /// Committed entries made of more than one object, by id after `after`,
    /// at most `limit`: what compaction has left to do.
    async fn multi_part_entries(&self, after: i64, limit: i64) -> Result<Vec<i64>, StoreError>;

    /// Of `ids`, those that have an entry in any state.
    async fn existing_entries(&self, ids: &[i64]) -> Result<Vec<i64>, StoreError>;

    /// Of `prefixes`, those scheduled for deletion.
    async fn doomed_among(&self, prefixes: &[String]) -> Result<Vec<String>, StoreError>;

    /// Takes or renews the lease `name` for `holder` until `expires_at`, if it is
    /// free, lapsed (expired before `now`) or already `holder`'s.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError>;

    /// Namespaces that have entries (any state), in name order.
    async fn namespaces(&self) -> Result<Vec<String>, StoreError>;

    /// A namespace's committed entries, least recently used first.
    async fn eviction_candidates(&self, namespace: &str) -> Result<Vec<Candidate>, StoreError>;

    /// Committed entries of every namespace, least recently used first: the
    /// `limit` that come after `after` (last access, id) in that order. Pages
    /// through the whole store without holding it.
    async fn least_recently_used(
        &self,
        after: Option<(i64, i64)>,
        limit: i64,
    ) -> Result<Vec<Candidate>, StoreError>;

    /// Refreshes the query planner's statistics of the entries table. Passes
    /// call it first: on a table filled or emptied by the hundred thousand
    /// since it was last analyzed (or never, with autovacuum off), the planner
    /// guesses a few thousand rows and picks whole-table scans.
    async fn refresh_statistics(&self) -> Result<(), StoreError>;

    /// Bytes of committed entries: of one namespace, or of all with `None`.
    async fn usage(&self, namespace: Option<&str>) -> Result<u64, StoreError>;

    /// Committed entries and bytes of each namespace that has any, in name order.
    async fn usage_by_namespace(&self) -> Result<Vec<NamespaceUsage>, StoreError>;

    /// One page of a namespace's committed entries, and how many match in all.
    async fn catalog(
        &self,
        namespace: &str,
        query: &CatalogQuery,
    ) -> Result<(u64, Vec<Entry>), StoreError>;

    /// Deletes a namespace's committed entries named by `which`; returns them.
    async fn delete_entries(
        &self,
        namespace: &str,
        which: &Selection,
    ) -> Result<Vec<Entry>, StoreError>;

    /// Ok when the database answers and carries every migration this build
    /// knows (readiness).
    async fn check_ready(&self) -> Result<(), StoreError>;

    /// Deletes committed entries given as (id, last access when planned), unless
    /// used since (a restore between planning and deleting keeps its entry), and
    /// schedules each deleted entry's objects (`prefix_of(id)`) for deletion at
    /// `not_before`, in one transaction; returns the ids deleted.
    async fn delete_unused(
        &self,
        entries: &[(i64, i64)],
        prefix_of: &(dyn Fn(i64) -> String + Send + Sync),
        not_before: i64,
    ) -> Result<Vec<i64>, StoreError>;
}

/// Objects (bytes). Names are `/`-separated paths chosen by the service.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Streams `body` into a new object. Either the whole body is stored under `name`
    /// or nothing is. Returns the byte count.
    async fn put(&self, name: &str, body: ByteStream) -> Result<u64, BlobError>;

    /// Streams bytes `[start, end)` of an object.
    async fn get(&self, name: &str, start: u64, end: u64) -> Result<ByteStream, BlobError>;

    /// Ok when the store answers (readiness): a missing object is an answer.
    async fn probe(&self) -> Result<(), BlobError>;

    /// Deletes one object; a missing object is not an error.
    async fn delete(&self, name: &str) -> Result<(), BlobError>;

    /// Deletes every object whose name starts with `prefix/`.
    async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError>;

    /// Every object whose name starts with `prefix/`, in no particular order.
    fn list(&self, prefix: &str) -> ObjectList;

    /// A URL a client can GET the whole object from without going through hoard
    /// (a presigned object-storage URL), valid for `expires_in`; `None` where the
    /// store has no such thing.
    async fn direct_url(
        &self,
        _name: &str,
        _expires_in: std::time::Duration,
    ) -> Result<Option<String>, BlobError> {
        Ok(None)
    }
}
