//! The cache service: every decision of the protocol surfaces, over a MetaStore and
//! a BlobStore. Handlers translate wire types to these calls and errors back.

use crate::error::CoreError;
use crate::eviction::{Batch, EvictionPass};
use crate::limits::UploadRate;
use crate::model::{Caller, Entry, EntryState, Part, StoredObject};
use crate::now_millis;
use crate::policy::{Candidate, Policy, Reason};
use crate::reading::{self, Fault, Piece};
use crate::signing::{Operation, SignatureError, UrlSigner};
use crate::store::{
    BlobCommit, BlobError, BlobStore, ByteStream, Finalized, MetaStore, Reservation, Staged,
};
use crate::validate::NameLimits;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Tunables of the service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// How long a signed upload URL works.
    pub upload_url_ttl_secs: i64,
    /// How long a signed download URL works.
    pub download_url_ttl_secs: i64,
    /// An upload not finalized after this long is abandoned and reclaimed.
    pub pending_timeout_secs: i64,
    /// The largest block (or Put Blob body) accepted.
    pub max_block_bytes: u64,
    /// The most blocks one block list may name (Azure: 50,000).
    pub max_blocks: usize,
    /// Hand out the blob store's own presigned URL for single-object entries, so
    /// downloads skip hoard.
    pub direct_download: bool,
    /// A deleted entry's objects are kept this long, so downloads already
    /// streaming them finish whole.
    pub delete_grace_secs: i64,
    /// Budgets, retention and entry size limits.
    pub policy: Arc<Policy>,
    /// Longest keys and versions.
    pub names: NameLimits,
    /// Unfinished uploads a namespace may have open at once; `None`: no limit.
    pub max_open_uploads: Option<u64>,
    /// Uploads a namespace may start per minute (per replica); `None`: no limit.
    pub uploads_per_minute: Option<u32>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            upload_url_ttl_secs: 3600,
            download_url_ttl_secs: 600,
            pending_timeout_secs: 3600,
            max_block_bytes: 4000 * 1024 * 1024,
            max_blocks: 50_000,
            direct_download: false,
            delete_grace_secs: 900,
            policy: Arc::new(Policy::default()),
            names: NameLimits::default(),
            max_open_uploads: None,
            uploads_per_minute: None,
        }
    }
}

/// How long a client told that its namespace has too many open uploads should
/// wait: uploads of cache archives typically finish within seconds to minutes.
const OPEN_UPLOADS_RETRY_SECS: u64 = 30;

/// A signed reference to one entry for one operation; the server renders it as a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRef {
    pub entry_id: i64,
    pub op: Operation,
    pub expires: i64,
    pub signature: String,
}

pub struct CacheService {
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    signer: UrlSigner,
    config: ServiceConfig,
    rate: Option<UploadRate>,
    /// Last-access times not yet written: entry id -> millis.
    accesses: Mutex<HashMap<i64, i64>>,
    /// Namespaces that committed an entry since the last pressure check.
    pressure: Mutex<HashSet<String>>,
    pressure_notify: tokio::sync::Notify,
}

/// What one eviction pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    pub entries: usize,
    pub bytes: u64,
}

/// Opened for reading: the entry and its parts.
pub struct OpenBlob {
    pub entry: Entry,
    pub parts: Vec<Part>,
}

impl CacheService {
    pub fn new(
        meta: Arc<dyn MetaStore>,
        blobs: Arc<dyn BlobStore>,
        signer: UrlSigner,
        config: ServiceConfig,
    ) -> CacheService {
        CacheService {
            meta,
            blobs,
            signer,
            rate: config.uploads_per_minute.map(UploadRate::new),
            config,
            accesses: Mutex::new(HashMap::new()),
            pressure: Mutex::new(HashSet::new()),
            pressure_notify: tokio::sync::Notify::new(),
        }
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    pub(crate) fn meta(&self) -> &Arc<dyn MetaStore> {
        &self.meta
    }

    pub(crate) fn blobs(&self) -> Arc<dyn BlobStore> {
        self.blobs.clone()
    }

    fn signed(&self, op: Operation, entry_id: i64, ttl_secs: i64) -> SignedRef {
        let expires = now_millis() / 1000 + ttl_secs;
        SignedRef {
            entry_id,
            op,
            expires,
            signature: self.signer.sign(op, entry_id, expires),
        }
    }

    /// Checks a signed URL's parts.
    pub fn verify(
        &self,
        op: Operation,
        entry_id: i64,
        expires: i64,
        signature: &str,
    ) -> Result<(), SignatureError> {
        self.signer
            .verify(op, entry_id, expires, signature, now_millis() / 1000)
    }

    pub(crate) fn write_scope(caller: &Caller) -> Result<&str, CoreError> {
        caller.write_scope.as_deref().ok_or_else(|| {
            CoreError::PermissionDenied(
                "cache write denied: the token grants no writable scope".into(),
            )
        })
    }

    /// Refuses a new upload when the namespace is at its limits; takes one from
    /// its rate allowance otherwise.
    async fn admit_upload(&self, namespace: &str, stale_before: i64) -> Result<(), CoreError> {
        if let Some(max) = self.config.max_open_uploads {
            let open = self.meta.open_uploads(namespace, stale_before).await?;
            if open >= max {
                return Err(CoreError::Exhausted {
                    message: format!(
                        "namespace has {open} uploads in progress; at most {max} are allowed at once"
                    ),
                    retry_after_secs: OPEN_UPLOADS_RETRY_SECS,
                });
            }
        }
        if let Some(rate) = &self.rate {
            rate.take(namespace, std::time::Instant::now())
                .map_err(|secs| CoreError::Exhausted {
                    message: format!(
                        "too many cache uploads in this namespace: at most {} per minute",
                        self.config.uploads_per_minute.unwrap_or_default()
                    ),
                    retry_after_secs: secs,
                })?;
        }
        Ok(())
    }

    /// CreateCacheEntry: reserves key+version in the caller's write scope.
    pub async fn create(
        &self,
        caller: &Caller,
        key: &str,
        version: &str,
    ) -> Result<SignedRef, CoreError> {
        self.config.names.key(key)?;
        self.config.names.version(version)?;
        let scope = Self::write_scope(caller)?;
        let now = now_millis();
        let stale_before = now - self.config.pending_timeout_secs * 1000;
        self.admit_upload(&caller.namespace, stale_before).await?;
        match self
            .meta
            .reserve(&caller.namespace, scope, key, version, now, stale_before)
            .await?
        {
            Reservation::Created { id, replaced } => {
                if let Some(old) = replaced {
                    self.remove_objects(old).await;
                }
                tracing::info!(entry_id = id, namespace = %caller.namespace, scope, key, "upload reserved");
                Ok(self.signed(Operation::Upload, id, self.config.upload_url_ttl_secs))
            }
            Reservation::Taken => Err(CoreError::AlreadyExists(format!(
                "cache entry with key {key:?} and this version is already reserved or saved in scope {scope:?}"
            ))),
        }
    }

    /// FinalizeCacheEntryUpload: makes the upload visible if its size is right.
    pub async fn finalize(
        &self,
        caller: &Caller,
        key: &str,
        version: &str,
        size: i64,
    ) -> Result<i64, CoreError> {
        self.config.names.key(key)?;
        self.config.names.version(version)?;
        if size < 0 {
            return Err(CoreError::InvalidArgument("size_bytes is negative".into()));
        }
        let scope = Self::write_scope(caller)?;
        match self
            .meta
            .finalize(&caller.namespace, scope, key, version, size, now_millis())
            .await?
        {
            Finalized::Ok { id, unused } => {
                self.delete_objects(&unused).await;
                tracing::info!(entry_id = id, namespace = %caller.namespace, scope, key, size, "entry committed");
                self.note_pressure(&caller.namespace);
                Ok(id)
            }
            Finalized::SizeMismatch { expected } => Err(CoreError::InvalidArgument(format!(
                "size_bytes is {size} but {expected} bytes were uploaded"
            ))),
            Finalized::NoBlob => Err(CoreError::FailedPrecondition(
                "nothing has been uploaded for this entry yet (Put Blob or Put Block List first)"
                    .into(),
            )),
            Finalized::NotFound => Err(CoreError::NotFound(format!(
                "no upload of key {key:?} with this version was reserved in scope {scope:?}"
            ))),
        }
    }

    /// The entry a lookup restores, searching the caller's readable scopes in order.
    pub async fn lookup(
        &self,
        caller: &Caller,
        key: &str,
        restore_keys: &[String],
        version: &str,
    ) -> Result<Option<Entry>, CoreError> {
        self.config.names.lookup_keys(key, restore_keys)?;
        self.config.names.version(version)?;
        crate::validate::scopes(&caller.read_scopes)?;
        let mut keys: Vec<&str> = Vec::with_capacity(1 + restore_keys.len());
        keys.push(key);
        keys.extend(restore_keys.iter().map(String::as_str));
        // One query, whatever the number of scopes and keys.
        let found = self
            .meta
            .find_first(&caller.namespace, &caller.read_scopes, version, &keys)
            .await?;
        if let Some(e) = &found {
            self.record_access(e.id);
        }
        Ok(found)
    }

    /// A signed download reference for a committed entry.
    pub fn download_ref(&self, entry_id: i64) -> SignedRef {
        self.signed(
            Operation::Download,
            entry_id,
            self.config.download_url_ttl_secs,
        )
    }

    /// A presigned URL of the blob store for a found entry, where configured and
    /// the entry is one whole object; else `None` and the client downloads through
    /// hoard. Failing to presign is not an error: hoard's own URL still works.
    pub async fn direct_download_url(&self, entry: &Entry) -> Option<String> {
        if !self.config.direct_download {
            return None;
        }
        let parts = match self.meta.parts(entry.id).await {
            Ok(parts) => parts,
            Err(e) => {
                tracing::warn!(error = %e, "reading an entry's parts for a direct URL");
                return None;
            }
        };
        let [part] = parts.as_slice() else {
            return None;
        };
        if part.offset != 0 || part.size != entry.size {
            return None;
        }
        let ttl = Duration::from_secs(self.config.download_url_ttl_secs.max(1) as u64);
        match self.blobs.direct_url(&part.object, ttl).await {
            Ok(url) => url,
            Err(e) => {
                tracing::warn!(error = %e, "presigning a download URL");
                None
            }
        }
    }

    /// DeleteCacheEntry: removes the caller's committed entries with this key.
    pub async fn delete(&self, caller: &Caller, key: &str) -> Result<Vec<i64>, CoreError> {
        self.config.names.key(key)?;
        let scope = Self::write_scope(caller)?;
        let ids = self.meta.delete_key(&caller.namespace, scope, key).await?;
        self.remove_objects_later(&ids).await;
        Ok(ids)
    }

    /// ListCacheEntries: committed entries in the readable scopes whose key starts
    /// with the key or a restore key (all when both are empty).
    pub async fn list(
        &self,
        caller: &Caller,
        key: &str,
        restore_keys: &[String],
        limit: i64,
    ) -> Result<Vec<Entry>, CoreError> {
        self.config.names.list_keys(key, restore_keys)?;
        crate::validate::scopes(&caller.read_scopes)?;
        let mut prefixes: Vec<String> = Vec::new();
        if !key.is_empty() {
            prefixes.push(key.to_string());
        }
        prefixes.extend(restore_keys.iter().cloned());
        Ok(self
            .meta
            .list(&caller.namespace, &caller.read_scopes, &prefixes, limit)
            .await?)
    }

    /// An upload that still accepts bytes.
    pub(crate) async fn open_upload(&self, entry_id: i64) -> Result<Entry, CoreError> {
        match self.meta.entry(entry_id).await? {
            None => Err(CoreError::NotFound(
                "the upload does not exist or was reclaimed".into(),
            )),
            Some(e) if e.state == EntryState::Committed => Err(CoreError::Immutable(
                "the entry is finalized; its content cannot change".into(),
            )),
            Some(e) => Ok(e),
        }
    }

    /// Streams a body into a new object of an upload, hashing and counting it.
    pub(crate) async fn store_object(
        &self,
        upload: &Entry,
        kind: &str,
        body: ByteStream,
        max: u64,
    ) -> Result<StoredObject, CoreError> {
        let entry_id = upload.id;
        let name = format!(
            "{}/{kind}-{}",
            entry_prefix(entry_id),
            uuid::Uuid::new_v4().simple()
        );
        let state = Arc::new(Mutex::new((Sha256::new(), 0u64, crc64())));
        let tap = state.clone();
        let body = futures::stream::unfold(Some(body), move |inner| {
            let tap = tap.clone();
            async move {
                let mut inner = inner?;
                let chunk = match inner.next().await? {
                    Ok(chunk) => chunk,
                    Err(e) => return Some((Err(e), None)),
                };
                let over = {
                    let mut s = tap.lock().unwrap_or_else(|p| p.into_inner());
                    s.1 += chunk.len() as u64;
                    if s.1 <= max {
                        s.0.update(&chunk);
                        s.2.update(&chunk);
                    }
                    s.1 > max
                };
                if over {
                    // Read the rest of a modest body before refusing it, so
                    // a client still sending sees the 413, not a reset.
                    drain(&mut inner, DRAIN_AFTER_REFUSAL).await;
                    let e = std::io::Error::new(
                        std::io::ErrorKind::FileTooLarge,
                        format!("the body is larger than the limit of {max} bytes"),
                    );
                    return Some((Err(e), None));
                }
                Some((Ok(chunk), Some(inner)))
            }
        })
        .boxed();
        let size = self.blobs.put(&name, body).await.map_err(|e| match e {
            BlobError::Body(io) if io.kind() == std::io::ErrorKind::FileTooLarge => {
                CoreError::TooLarge(io.to_string())
            }
            BlobError::Body(io) => CoreError::Body(io.to_string()),
            other => CoreError::Blob(other),
        })?;
        let (hasher, _, crc) = std::mem::replace(
            &mut *state.lock().unwrap_or_else(|p| p.into_inner()),
            (Sha256::new(), 0, crc64()),
        );
        Ok(StoredObject {
            object: name,
            size: size as i64,
            sha256: hex::encode(hasher.finalize()),
            crc64: reading::crc64_hex(crc.finalize()),
        })
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
    async fn remove_objects_later(&self, entry_ids: &[i64]) {
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
            for prefix in &due {
                self.blobs.delete_prefix(prefix).await?;
                self.meta.forget_doom(prefix).await?;
            }
            total += due.len();
            if due.len() < 500 {
                return Ok(total);
            }
        }
    }

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

    /// Runs a pass to the end, removing as it goes. Under a lease (holder,
    /// length), renews it after each batch and stops if it was lost, so a long
    /// pass never overlaps another replica's.
    async fn run_pass(
        &self,
        mut pass: EvictionPass<'_>,
        lease: Option<(&str, i64)>,
    ) -> Result<Evicted, CoreError> {
        let mut done = Evicted::default();
        while let Some(batch) = pass.next_chunk(EVICT_CHUNK).await? {
            for (c, _) in self.evict(&batch).await? {
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
    async fn leader_pass(
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
        Ok(Some(self.run_pass(pass, Some((holder, lease_ms))).await?))
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

    fn note_pressure(&self, namespace: &str) {
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
            let one = self.run_pass(pass, None).await?;
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

    async fn delete_orphans(
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

    async fn remove_objects(&self, entry_id: i64) {
        if let Err(e) = self.blobs.delete_prefix(&entry_prefix(entry_id)).await {
            tracing::warn!(entry_id, error = %e, "could not delete an entry's objects; the orphan sweep will");
        }
    }

    /// The most bytes one more block of `upload` may have: staged bytes count
    /// as they arrive, against the entry's limit (all of this upload's blocks)
    /// and the namespace's budget (the blocks of all its unfinished uploads),
    /// so staging cannot hold more disk than the budgets allow.
    pub(crate) async fn block_room(
        &self,
        upload: &Entry,
        block_id: &str,
    ) -> Result<u64, CoreError> {
        let (in_namespace, in_upload) = self
            .meta
            .staged_bytes(&upload.namespace, upload.id, block_id)
            .await?;
        let limits = self.config.policy.limits(&upload.namespace);
        let mut room = self.config.max_block_bytes.min(
            self.entry_limit(&upload.namespace)
                .saturating_sub(in_upload),
        );
        if let Some(budget) = limits.budget_bytes {
            room = room.min(budget.saturating_sub(in_namespace));
        }
        if room == 0 {
            return Err(CoreError::TooLarge(format!(
                "{in_upload} bytes are staged for this upload and {in_namespace} in its namespace; \
                 no more fit in the namespace's limits"
            )));
        }
        Ok(room)
    }

    /// Put Block: stages one block of an upload. Retrying an id replaces the block.
    pub async fn put_block(
        &self,
        entry_id: i64,
        block_id: &str,
        body: ByteStream,
    ) -> Result<u64, CoreError> {
        let upload = self.open_upload(entry_id).await?;
        let max = self.block_room(&upload, block_id).await?;
        let stored = self.store_object(&upload, "block", body, max).await?;
        self.stage(entry_id, block_id, stored).await
    }

    /// Records a stored block of an upload (replacing an earlier one of the
    /// same id), or deletes it again when the upload no longer takes blocks.
    pub(crate) async fn stage(
        &self,
        entry_id: i64,
        block_id: &str,
        stored: StoredObject,
    ) -> Result<u64, CoreError> {
        match self.meta.stage_block(entry_id, block_id, &stored).await {
            Ok(Staged::Ok { replaced }) => {
                if let Some(old) = replaced {
                    self.delete_objects(&[old]).await;
                }
                Ok(stored.size as u64)
            }
            Ok(Staged::NotPending) => {
                self.delete_objects(&[stored.object]).await;
                // Tell the client why: finalized meanwhile, or reclaimed.
                self.open_upload(entry_id).await?;
                Err(CoreError::NotFound(
                    "the upload no longer accepts blocks".into(),
                ))
            }
            Err(e) => {
                self.delete_objects(&[stored.object]).await;
                Err(e.into())
            }
        }
    }

    /// Put Blob: the whole blob in one body.
    pub async fn put_blob(&self, entry_id: i64, body: ByteStream) -> Result<u64, CoreError> {
        let upload = self.open_upload(entry_id).await?;
        let max = self
            .config
            .max_block_bytes
            .min(self.entry_limit(&upload.namespace));
        let stored = self.store_object(&upload, "blob", body, max).await?;
        let outcome = self
            .meta
            .commit_single(entry_id, &stored, now_millis())
            .await;
        match outcome {
            Ok(BlobCommit::Ok { size, unused }) => {
                self.delete_objects(&unused).await;
                Ok(size as u64)
            }
            Ok(other) => {
                self.delete_objects(&[stored.object]).await;
                Err(commit_error(other))
            }
            Err(e) => {
                self.delete_objects(&[stored.object]).await;
                Err(e.into())
            }
        }
    }

    /// Put Block List: the listed staged blocks, in order, become the blob.
    pub async fn put_block_list(
        &self,
        entry_id: i64,
        block_ids: &[String],
    ) -> Result<u64, CoreError> {
        if block_ids.len() > self.config.max_blocks {
            return Err(CoreError::InvalidArgument(format!(
                "the block list names {} blocks; at most {} are allowed",
                block_ids.len(),
                self.config.max_blocks
            )));
        }
        // The namespace's entry limit; an unknown id gets no limit here and its
        // not-found answer from the commit.
        let limit = match self.meta.entry(entry_id).await? {
            Some(e) => self.entry_limit(&e.namespace),
            None => u64::MAX,
        };
        match self
            .meta
            .commit_block_list(
                entry_id,
                block_ids,
                i64::try_from(limit).unwrap_or(i64::MAX),
                now_millis(),
            )
            .await?
        {
            BlobCommit::Ok { size, unused } => {
                self.delete_objects(&unused).await;
                Ok(size as u64)
            }
            BlobCommit::AlreadyCommitted { size } => Ok(size as u64),
            other => Err(commit_error(other)),
        }
    }

    /// A committed entry and its parts, for reading.
    pub async fn open_blob(&self, entry_id: i64) -> Result<OpenBlob, CoreError> {
        let entry = match self.meta.entry(entry_id).await? {
            Some(e) if e.state == EntryState::Committed => e,
            _ => return Err(CoreError::NotFound("the blob does not exist".into())),
        };
        let parts = self.meta.parts(entry_id).await?;
        Ok(OpenBlob { entry, parts })
    }

    /// Streams bytes `[start, end)` of `entry`'s blob made of `parts`, checked
    /// against what was stored ([`crate::reading`]). Following parts are opened
    /// while the current one streams, to hide per-object latency: about
    /// `READ_AHEAD_BYTES` worth of them, so many small parts (BuildKit's 1 MiB
    /// blocks) are read ahead further than a few large ones, in bounded memory.
    ///
    /// The first bytes are read before this returns, so a blob store that is down
    /// is an error the client gets as a status, not a body cut short after `200`.
    /// Bytes found missing or corrupt drop the entry (lookups then miss and the
    /// next job saves it again): before the status as `NotFound`, later by
    /// failing the body short of its length.
    pub async fn read(
        &self,
        entry: &Entry,
        parts: Vec<Part>,
        start: u64,
        end: u64,
    ) -> Result<ByteStream, CoreError> {
        let blobs = self.blobs.clone();
        let pieces: Vec<Piece> = parts
            .into_iter()
            .filter_map(|p| {
                let (po, ps) = (p.offset as u64, p.size as u64);
                let s = start.max(po);
                let e = end.min(po + ps);
                (s < e).then(|| Piece {
                    object: p.object,
                    start: s - po,
                    end: e - po,
                    size: ps,
                    sha256: p.sha256,
                    crc64: p.crc64,
                    thorough: false,
                })
            })
            .collect();
        let average =
            pieces.iter().map(|p| p.end - p.start).sum::<u64>() / pieces.len().max(1) as u64;
        let ahead = (READ_AHEAD_BYTES / average.max(1)).clamp(2, 16) as usize;
        let mut stream = futures::stream::iter(pieces)
            .map(move |piece| reading::open(blobs.clone(), piece))
            .buffered(ahead)
            .try_flatten()
            .boxed();
        let first = match stream.next().await {
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                if let Some(fault) = Fault::of(&e) {
                    drop_unusable(self.meta.clone(), entry.id, fault.clone()).await;
                    return Err(CoreError::NotFound(
                        "the cache entry's stored bytes are missing or corrupt; it was dropped"
                            .into(),
                    ));
                }
                return Err(CoreError::Blob(BlobError::Backend(e.to_string())));
            }
            None => return Ok(futures::stream::empty().boxed()),
        };
        let meta = self.meta.clone();
        let entry_id = entry.id;
        let rest = stream.inspect(move |item| {
            if let Err(e) = item {
                if let Some(fault) = Fault::of(e) {
                    tokio::spawn(drop_unusable(meta.clone(), entry_id, fault.clone()));
                }
            }
        });
        Ok(futures::stream::once(async move { Ok(first) })
            .chain(rest)
            .boxed())
    }

    fn record_access(&self, entry_id: i64) {
        let mut map = self.accesses.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(entry_id, now_millis());
    }

    /// Writes the batched last-access times. Called on an interval and at shutdown.
    pub async fn flush_accesses(&self) -> Result<usize, CoreError> {
        let batch: Vec<(i64, i64)> = {
            let mut map = self.accesses.lock().unwrap_or_else(|p| p.into_inner());
            map.drain().collect()
        };
        if !batch.is_empty() {
            self.meta.touch(&batch).await?;
        }
        Ok(batch.len())
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

/// Drops an entry whose stored bytes are missing or corrupt: lookups stop
/// offering it (a miss, so the next job saves it again) and its objects are
/// scheduled for deletion.
pub(crate) async fn drop_unusable(meta: Arc<dyn MetaStore>, entry_id: i64, fault: Fault) {
    tracing::warn!(entry_id, %fault, "stored bytes do not match the entry; dropping the entry");
    let result = async {
        let Some(entry) = meta.entry(entry_id).await? else {
            return Ok(Vec::new());
        };
        meta.delete_unused(
            &[(entry.id, entry.last_accessed_at)],
            &entry_prefix,
            now_millis(),
        )
        .await
    }
    .await;
    match result {
        Ok(ids) if !ids.is_empty() => tracing::info!(entry_id, "unusable entry dropped"),
        Ok(_) => {}
        Err(e) => tracing::warn!(entry_id, error = %e, "could not drop an unusable entry"),
    }
}

/// The checksum recorded with every stored object and checked on download.
fn crc64() -> crc_fast::Digest {
    crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme)
}

/// Bytes of a refused body read (and dropped) before the refusal is answered.
pub(crate) const DRAIN_AFTER_REFUSAL: u64 = 64 * 1024 * 1024;

/// Reads and drops up to `limit` bytes of a body, stopping at its end or at
/// its first error.
pub async fn drain(body: &mut ByteStream, limit: u64) {
    let mut seen = 0u64;
    while let Some(Ok(chunk)) = body.next().await {
        seen += chunk.len() as u64;
        if seen > limit {
            break;
        }
    }
}

/// How many bytes of following parts a download opens ahead of the one it sends.
const READ_AHEAD_BYTES: u64 = 8 * 1024 * 1024;

/// All objects of one entry live under this prefix.
/// Where every entry's objects live: `entries/<id>/...`.
const ENTRIES: &str = "entries";

/// Objects checked against the database at a time by the orphan sweep.
const ORPHAN_BATCH: usize = 1000;

pub fn entry_prefix(entry_id: i64) -> String {
    format!("{ENTRIES}/{entry_id}")
}

/// The entry id an object name belongs to (`entries/<id>/...`).
fn owner_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix(ENTRIES)?.strip_prefix('/')?;
    rest.split('/').next()?.parse().ok()
}

/// Namespaces remembered for the pressure check at once; past that, the next
/// evictor tick covers the rest.
const MAX_PRESSURED: usize = 10_000;

/// Entries removed per transaction by a pass (a few namespaces' worth).
pub const EVICT_CHUNK: usize = 5000;

fn commit_error(outcome: BlobCommit) -> CoreError {
    match outcome {
        BlobCommit::Immutable => {
            CoreError::Immutable("the entry is finalized; its content cannot change".into())
        }
        BlobCommit::UnknownBlock(id) => {
            CoreError::UnknownBlock(format!("block {id:?} in the block list was never staged"))
        }
        BlobCommit::NotFound => {
            CoreError::NotFound("the upload does not exist or was reclaimed".into())
        }
        BlobCommit::TooLarge { size } => CoreError::TooLarge(format!(
            "the listed blocks add up to {size} bytes, more than this namespace allows for one entry"
        )),
        BlobCommit::Ok { .. } | BlobCommit::AlreadyCommitted { .. } => {
            CoreError::FailedPrecondition("unexpected commit outcome".into())
        }
    }
}
