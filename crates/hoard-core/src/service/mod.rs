//! The cache service: every decision of the protocol surfaces, over a MetaStore and
//! a BlobStore. Handlers translate wire types to these calls and errors back.

mod catalog;
mod compaction;
mod downloads;
mod evicting;
mod housekeeping;
mod uploads;

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
    /// Rewrite entries committed as several objects as one, in the background
    /// (so direct downloads cover them too).
    pub compact: bool,
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
            compact: false,
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
    /// Committed entries to compact, oldest first.
    compaction: Mutex<std::collections::VecDeque<i64>>,
    compaction_notify: tokio::sync::Notify,
    stats: crate::stats::Stats,
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
            compaction: Mutex::new(std::collections::VecDeque::new()),
            compaction_notify: tokio::sync::Notify::new(),
            stats: crate::stats::Stats::default(),
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
