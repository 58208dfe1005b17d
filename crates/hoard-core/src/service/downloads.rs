//! Restores: finding the entry a lookup names, signing its download, and
//! streaming its parts back, each checked against what was stored.

use super::*;

impl CacheService {
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

    pub(super) fn record_access(&self, entry_id: i64) {
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
}
