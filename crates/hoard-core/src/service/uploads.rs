//! Saves: reserving an entry, storing blocks and single bodies as they
//! stream in (hashed, counted against the namespace's limits), committing a
//! block list, and finalizing the entry so lookups find it.

use super::*;

impl CacheService {
    /// Refuses a new upload when the namespace is at its limits; takes one from
    /// its rate allowance otherwise.
    pub(super) async fn admit_upload(
        &self,
        namespace: &str,
        stale_before: i64,
    ) -> Result<(), CoreError> {
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
            rate.take(namespace).map_err(|secs| CoreError::Exhausted {
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
                self.queue_compaction(id);
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
}
