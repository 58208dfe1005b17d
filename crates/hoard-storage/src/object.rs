//! Objects in object storage (S3 and S3-compatible servers, GCS, Azure) through
//! the `object_store` crate.
//!
//! object_store sends only bodies held in memory, so an upload is cut into parts
//! of `part_size` bytes: a body that fits in one part is one PUT, a longer one a
//! multipart upload of equal parts (S3 wants parts >= 5 MiB but the last, at
//! most 10,000 of them; R2 wants them equal). Memory is bounded per replica, not
//! only per request: every part held in memory, filling or uploading, holds a
//! permit of one shared semaphore, so 8 clients x 8 blocks in flight wait for
//! buffers instead of multiplying them.
//!
//! A part's permit is taken only once its first `SMALL` bytes have arrived;
//! until then the bytes are counted one by one against a smaller pool. A client
//! that sends a little and stops (or a BuildKit block of 1 MiB) so holds what it
//! sent, not a whole part, and cannot take the part buffers from everyone else.
//! No upload waits for buffers longer than `BUFFER_WAIT`: then it is refused as
//! busy, and the client retries.

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use hoard_core::store::{BlobError, BlobStore, ByteStream, ListedObject, ObjectList};
use object_store::path::Path;
use object_store::signer::{Method, Signer};
use object_store::{GetOptions, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// Parts of one upload in flight at once: enough to overlap the network round
/// trips, few enough that one request cannot take every buffer.
const PARTS_IN_FLIGHT: usize = 2;

/// Bytes of a part counted byte by byte before it takes a whole part's permit.
const SMALL: usize = 1024 * 1024;
/// How long an upload waits for buffer space before it is refused as busy.
const BUFFER_WAIT: Duration = Duration::from_secs(10);

pub struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    signer: Option<Arc<dyn Signer>>,
    prefix: String,
    part_size: usize,
    /// One permit per part buffer.
    buffers: Arc<Semaphore>,
    /// Bytes of parts still under `SMALL`, one permit per byte.
    small: Arc<Semaphore>,
}

fn backend(context: &str, e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { path, .. } => BlobError::NotFound(path),
        e => BlobError::Backend(format!("object storage, {context}: {e}")),
    }
}

impl ObjectStorage {
    /// Stores objects under `prefix` (no leading or trailing `/`) of `store`.
    /// At most `buffer_bytes` of upload data are held in memory at once, in parts
    /// of `part_size` bytes.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        signer: Option<Arc<dyn Signer>>,
        prefix: &str,
        part_size: usize,
        buffer_bytes: usize,
    ) -> ObjectStorage {
        let parts = (buffer_bytes / part_size.max(1)).max(1);
        // A quarter of the budget again, at least a few small parts' worth.
        let small = (buffer_bytes / 4).clamp(4 * SMALL, u32::MAX as usize);
        ObjectStorage {
            store,
            signer,
            prefix: prefix.trim_matches('/').to_string(),
            part_size: part_size.max(1),
            buffers: Arc::new(Semaphore::new(parts)),
            small: Arc::new(Semaphore::new(small)),
        }
    }

    fn path(&self, name: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(name)
        } else {
            Path::from(format!("{}/{name}", self.prefix))
        }
    }

    /// A whole part's buffer, waiting at most `BUFFER_WAIT`.
    async fn buffer(&self) -> Result<OwnedSemaphorePermit, BlobError> {
        waited(self.buffers.clone().acquire_owned()).await
    }

    /// Room for `n` bytes of a part still under `SMALL`.
    async fn small_bytes(&self, n: usize) -> Result<OwnedSemaphorePermit, BlobError> {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        waited(self.small.clone().acquire_many_owned(n)).await
    }

    /// Adds a chunk of the body to the part being filled, sending each part that
    /// fills up (the first one starts the multipart upload).
    async fn absorb(
        &self,
        path: &Path,
        filling: &mut Filling,
        multipart: &mut Option<Multipart>,
        mut rest: Bytes,
    ) -> Result<(), BlobError> {
        while !rest.is_empty() {
            let room = self.part_size - filling.buf.len();
            let head = rest.split_to(room.min(rest.len()));
            filling.count(self, head.len()).await?;
            filling.extend(&head, self.part_size);
            if filling.buf.len() < self.part_size {
                continue;
            }
            let (part, held) = filling.take();
            let m = match multipart {
                Some(m) => m,
                None => {
                    let upload = self
                        .store
                        .put_multipart_opts(path, Default::default())
                        .await
                        .map_err(|e| backend("starting an upload", e))?;
                    multipart.insert(Multipart {
                        upload,
                        in_flight: JoinSet::new(),
                    })
                }
            };
            m.send(part, held).await?;
        }
        Ok(())
    }
}

async fn waited(
    acquire: impl std::future::Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>>,
) -> Result<OwnedSemaphorePermit, BlobError> {
    match tokio::time::timeout(BUFFER_WAIT, acquire).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) => Err(BlobError::Backend("object storage is shutting down".into())),
        Err(_) => Err(BlobError::Busy(format!(
            "no upload buffer became free within {} s",
            BUFFER_WAIT.as_secs()
        ))),
    }
}

/// The permits behind a part's bytes: per byte while it is small, then one
/// whole part's.
#[derive(Default)]
struct Held {
    small: Option<OwnedSemaphorePermit>,
    part: Option<OwnedSemaphorePermit>,
}

/// A part being filled from the request body, and the permits for its bytes.
///
/// The body's chunks are copied into one buffer of the part's size rather than
/// kept: a kept chunk pins the whole receive buffer it was cut from, and small
/// heap blocks freed out of order fragment the heap, so memory would exceed the
/// budget by half again. A part-sized buffer is mapped and unmapped whole (its
/// pages are touched only as bytes arrive), and costs one memcpy per byte, small
/// beside the network.
struct Filling {
    buf: Vec<u8>,
    held: Held,
}

impl Filling {
    /// Takes permits for `n` more bytes: byte by byte while the part stays
    /// under `SMALL`, else a whole part's buffer (which then covers it all).
    async fn count(&mut self, storage: &ObjectStorage, n: usize) -> Result<(), BlobError> {
        if self.held.part.is_some() {
            return Ok(());
        }
        if self.buf.len() + n <= SMALL {
            let more = storage.small_bytes(n).await?;
            match &mut self.held.small {
                Some(p) => p.merge(more),
                None => self.held.small = Some(more),
            }
            return Ok(());
        }
        self.held.part = Some(storage.buffer().await?);
        self.held.small = None;
        Ok(())
    }

    fn extend(&mut self, bytes: &[u8], part_size: usize) {
        if self.buf.capacity() == 0 {
            self.buf = Vec::with_capacity(part_size);
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Takes the bytes and their permits, leaving an empty part.
    fn take(&mut self) -> (PutPayload, Held) {
        (
            PutPayload::from(Bytes::from(std::mem::take(&mut self.buf))),
            std::mem::take(&mut self.held),
        )
    }
}

/// One multipart upload, its parts in flight each holding its buffer's permit.
struct Multipart {
    upload: Box<dyn MultipartUpload>,
    in_flight: JoinSet<Result<(), object_store::Error>>,
}

impl Multipart {
    async fn send(&mut self, part: PutPayload, held: Held) -> Result<(), BlobError> {
        let upload = self.upload.put_part(part);
        self.in_flight.spawn(async move {
            let result = upload.await;
            drop(held);
            result
        });
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.wait_one().await?;
        }
        Ok(())
    }

    async fn wait_one(&mut self) -> Result<(), BlobError> {
        match self.in_flight.join_next().await {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(backend("uploading a part", e)),
            Some(Err(e)) => Err(BlobError::Backend(format!("part upload task: {e}"))),
        }
    }

    async fn finish(mut self) -> Result<(), BlobError> {
        while !self.in_flight.is_empty() {
            if let Err(e) = self.wait_one().await {
                self.abort().await;
                return Err(e);
            }
        }
        if let Err(e) = self.upload.complete().await {
            self.abort().await;
            return Err(backend("completing an upload", e));
        }
        Ok(())
    }

    /// Best effort: a failed abort leaves parts the bucket's lifecycle rules or
    /// the orphan sweep remove; the caller reports the original error.
    async fn abort(mut self) {
        self.in_flight.abort_all();
        if let Err(e) = self.upload.abort().await {
            tracing::warn!(error = %e, "aborting a multipart upload failed");
        }
    }
}

#[async_trait]
impl BlobStore for ObjectStorage {
    async fn put(&self, name: &str, mut body: ByteStream) -> Result<u64, BlobError> {
        let path = self.path(name);
        // Nothing is reserved before the first byte arrives.
        let mut filling = Filling {
            buf: Vec::new(),
            held: Held::default(),
        };
        let mut multipart: Option<Multipart> = None;
        let mut size = 0u64;
        let failure = loop {
            let rest = match body.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => break Some(BlobError::Body(e)),
                None => break None,
            };
            size += rest.len() as u64;
            if let Err(e) = self.absorb(&path, &mut filling, &mut multipart, rest).await {
                break Some(e);
            }
        };
        let (last, held) = filling.take();
        let result = match (failure, multipart) {
            (Some(e), Some(m)) => {
                m.abort().await;
                Err(e)
            }
            (Some(e), None) => Err(e),
            (None, None) => self
                .store
                .put(&path, last)
                .await
                .map(|_| ())
                .map_err(|e| backend("storing an object", e)),
            (None, Some(mut m)) => {
                let sent = match last.content_length() {
                    0 => Ok(()),
                    _ => m.send(last, held).await,
                };
                match sent {
                    Ok(()) => m.finish().await,
                    Err(e) => {
                        m.abort().await;
                        Err(e)
                    }
                }
            }
        };
        result.map(|()| size)
    }

    async fn probe(&self) -> Result<(), BlobError> {
        match self.store.head(&self.path("_hoard/probe")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend("probing", e)),
        }
    }

    async fn get(&self, name: &str, start: u64, end: u64) -> Result<ByteStream, BlobError> {
        let path = self.path(name);
        if end <= start {
            // A zero-length range is not a valid Range header; the object's
            // existence still decides between empty and missing.
            self.store
                .head(&path)
                .await
                .map_err(|e| backend("reading", e))?;
            return Ok(futures::stream::empty().boxed());
        }
        let options = GetOptions {
            range: Some((start..end).into()),
            ..Default::default()
        };
        let result = self
            .store
            .get_opts(&path, options)
            .await
            .map_err(|e| backend("reading", e))?;
        // An object shorter than the range is not what was stored: said before
        // the first byte.
        if result.meta.size < end || result.range.end < end {
            return Err(BlobError::Corrupt(format!(
                "object {name} has {} bytes, fewer than the {end} asked for",
                result.meta.size
            )));
        }
        Ok(result
            .into_stream()
            .map_err(|e| std::io::Error::other(format!("object storage, reading: {e}")))
            .boxed())
    }

    async fn delete(&self, name: &str) -> Result<(), BlobError> {
        match self.store.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend("deleting", e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError> {
        // list() follows continuation tokens, so this works past one page of keys.
        let dir = self.path(prefix);
        let locations = self
            .store
            .list(Some(&dir))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = self.store.delete_stream(locations);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(backend("deleting", e)),
            }
        }
        Ok(())
    }

    fn list(&self, prefix: &str) -> ObjectList {
        // list() follows continuation tokens: every page, however many.
        let strip = match self.prefix.as_str() {
            "" => String::new(),
            p => format!("{p}/"),
        };
        self.store
            .list(Some(&self.path(prefix)))
            .map(move |meta| match meta {
                Ok(meta) => {
                    let full = meta.location.to_string();
                    Ok(ListedObject {
                        name: full.strip_prefix(&strip).unwrap_or(&full).to_string(),
                        modified: meta.last_modified.timestamp_millis(),
                    })
                }
                Err(e) => Err(backend("listing", e)),
            })
            .boxed()
    }

    async fn direct_url(
        &self,
        name: &str,
        expires_in: Duration,
    ) -> Result<Option<String>, BlobError> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let url = signer
            .signed_url(Method::GET, &self.path(name), expires_in)
            .await
            .map_err(|e| backend("signing a URL", e))?;
        Ok(Some(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    //! The cutting into parts, against object_store's in-memory store; the real
    //! S3 path is driven end to end by the black-box tests on an S3 server.
    use super::*;
    use object_store::memory::InMemory;

    const PART: usize = 5 << 20;

    fn body(data: &[u8], chunk: usize) -> ByteStream {
        let chunks: Vec<std::io::Result<Bytes>> = data
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(chunks).boxed()
    }

    async fn read(s: &ObjectStorage, name: &str, start: u64, end: u64) -> Vec<u8> {
        let stream = s.get(name, start, end).await.unwrap();
        let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
        chunks.concat()
    }

    #[tokio::test]
    async fn bodies_of_every_size_round_trip() {
        let s = ObjectStorage::new(Arc::new(InMemory::new()), None, "pre", PART, 2 * PART);
        for (i, len) in [0, 1, PART - 1, PART, PART + 1, 3 * PART + 3]
            .into_iter()
            .enumerate()
        {
            let data: Vec<u8> = (0..len).map(|x| (x % 251) as u8).collect();
            let name = format!("entries/1/o{i}");
            // Chunks that do not divide the part size.
            let stored = s.put(&name, body(&data, 70_001)).await.unwrap();
            assert_eq!(stored, len as u64);
            assert!(read(&s, &name, 0, len as u64).await == data, "len {len}");
            if len > 10 {
                assert!(read(&s, &name, 3, len as u64 - 2).await == data[3..len - 2]);
            }
        }
        assert!(matches!(
            s.get("entries/1/missing", 0, 1).await,
            Err(BlobError::NotFound(_))
        ));
        s.delete_prefix("entries/1").await.unwrap();
        assert!(matches!(
            s.get("entries/1/o1", 0, 1).await,
            Err(BlobError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn uploads_share_a_budget_of_one_part_without_deadlock() {
        let s = ObjectStorage::new(Arc::new(InMemory::new()), None, "", PART, PART);
        let data: Vec<u8> = (0..3 * PART + 17).map(|x| (x % 13) as u8).collect();
        let puts = (0..4).map(|i| s.put_named(i, &data));
        for stored in futures::future::join_all(puts).await {
            assert_eq!(stored.unwrap(), data.len() as u64);
        }
        assert_eq!(s.buffers.available_permits(), 1, "every buffer returned");
    }

    #[tokio::test]
    async fn a_failing_body_stores_nothing() {
        let s = ObjectStorage::new(Arc::new(InMemory::new()), None, "", PART, 2 * PART);
        let chunks = vec![
            Ok(Bytes::from(vec![1u8; PART + 10])),
            Err(std::io::Error::other("client went away")),
        ];
        let result = s.put("broken", futures::stream::iter(chunks).boxed()).await;
        assert!(matches!(result, Err(BlobError::Body(_))));
        assert!(matches!(
            s.get("broken", 0, 1).await,
            Err(BlobError::NotFound(_))
        ));
    }

    impl ObjectStorage {
        async fn put_named(&self, i: usize, data: &[u8]) -> Result<u64, BlobError> {
            self.put(&format!("o{i}"), body(data, 65_536)).await
        }
    }
}
