//! How much one replica does at once for its clients, and how long it waits on
//! them: uploads and downloads in flight are bounded (the excess is refused
//! with a protocol answer and Retry-After, never left hanging), buffered block
//! lists are bounded in bytes, and a request body that stops arriving fails
//! after an idle timeout.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use hoard_core::ByteStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a client told to come back later should wait, in seconds.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Bounds on work in flight, per replica.
#[derive(Debug, Clone, Copy)]
pub struct FlowLimits {
    /// Request bodies of Put Blob / Put Block streaming at once.
    pub uploads_in_flight: usize,
    /// Get Blob bodies streaming at once.
    pub downloads_in_flight: usize,
    /// Bytes of block-list bodies held in memory at once.
    pub block_list_bytes: usize,
    /// A request body with no bytes for this long fails.
    pub body_idle_timeout: Duration,
}

impl Default for FlowLimits {
    fn default() -> Self {
        FlowLimits {
            uploads_in_flight: 1024,
            downloads_in_flight: 1024,
            block_list_bytes: 32 * 1024 * 1024,
            body_idle_timeout: Duration::from_secs(30),
        }
    }
}

/// The permits behind [`FlowLimits`].
pub struct InFlight {
    uploads: Arc<Semaphore>,
    downloads: Arc<Semaphore>,
    block_lists: Arc<Semaphore>,
    pub limits: FlowLimits,
}

impl InFlight {
    pub fn new(limits: FlowLimits) -> InFlight {
        InFlight {
            uploads: Arc::new(Semaphore::new(limits.uploads_in_flight)),
            downloads: Arc::new(Semaphore::new(limits.downloads_in_flight)),
            block_lists: Arc::new(Semaphore::new(limits.block_list_bytes)),
            limits,
        }
    }

    /// A place for one upload body, if one is free.
    pub fn upload(&self) -> Option<OwnedSemaphorePermit> {
        self.uploads.clone().try_acquire_owned().ok()
    }

    /// Whether every upload place is taken (new uploads are then refused
    /// before they start).
    pub fn uploads_full(&self) -> bool {
        self.uploads.available_permits() == 0
    }

    /// Upload and download bodies streaming now.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.limits
                .uploads_in_flight
                .saturating_sub(self.uploads.available_permits()),
            self.limits
                .downloads_in_flight
                .saturating_sub(self.downloads.available_permits()),
        )
    }

    /// A place for one download body, if one is free.
    pub fn download(&self) -> Option<OwnedSemaphorePermit> {
        self.downloads.clone().try_acquire_owned().ok()
    }

    /// Room for `bytes` of block list in memory, if there is that much.
    pub fn block_list(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(bytes.max(1)).ok()?;
        self.block_lists.clone().try_acquire_many_owned(n).ok()
    }
}

/// A request body that fails with `TimedOut` when no bytes arrive for `idle`:
/// a client that stops sending frees its upload place instead of holding it
/// for ever.
pub fn idle_body<S>(body: S, idle: Duration) -> ByteStream
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    futures::stream::unfold(Some(Box::pin(body)), move |state| async move {
        let mut body = state?;
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(item)) => Some((item, Some(body))),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no bytes of the request body arrived for {} s",
                        idle.as_secs()
                    ),
                )),
                None,
            )),
        }
    })
    .boxed()
}

/// A download body that gives its place back once the client has asked for no
/// bytes for `idle`. Over HTTP/2 a stream whose reader stopped is never polled
/// again (flow control), so its place cannot wait for the body to be dropped;
/// the body then holds at most the one chunk it already handed out.
pub struct Download {
    inner: ByteStream,
    shared: Arc<DownloadShared>,
}

struct DownloadShared {
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    /// Milliseconds since `start` of the last poll.
    last_poll: AtomicI64,
    start: Instant,
}

impl Download {
    pub fn new(inner: ByteStream, permit: OwnedSemaphorePermit, idle: Duration) -> Download {
        let shared = Arc::new(DownloadShared {
            permit: Mutex::new(Some(permit)),
            last_poll: AtomicI64::new(0),
            start: Instant::now(),
        });
        let watched = Arc::downgrade(&shared);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(idle / 2).await;
                let Some(s) = watched.upgrade() else { return };
                let quiet =
                    s.start.elapsed().as_millis() as i64 - s.last_poll.load(Ordering::Relaxed);
                if quiet >= idle.as_millis() as i64 {
                    s.permit.lock().unwrap_or_else(|p| p.into_inner()).take();
                    tracing::debug!("a download's reader stopped reading; its place is freed");
                    return;
                }
            }
        });
        Download { inner, shared }
    }
}

impl Stream for Download {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let s = &self.shared;
        s.last_poll
            .store(s.start.elapsed().as_millis() as i64, Ordering::Relaxed);
        self.inner.poll_next_unpin(cx)
    }
}

/// A refused oversized body is read this much further (and dropped) before
/// the answer, so a client still sending sees the error, not a reset.
const SMALL_BODY_DRAIN_BYTES: usize = 4 * 1024 * 1024;

/// A small request body (an API call's JSON or protobuf), read whole: at most
/// `max` bytes, failing when no bytes arrive for the idle timeout. The error
/// is a message for the client.
pub async fn small_body(
    app: &crate::AppState,
    body: axum::body::Body,
    max: usize,
) -> Result<bytes::Bytes, String> {
    use futures::TryStreamExt;
    let idle = app.in_flight.limits.body_idle_timeout;
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let mut body = idle_body(stream, idle);
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("the request body could not be read: {e}"))?;
        seen += chunk.len();
        if seen <= max {
            buf.extend_from_slice(&chunk);
        } else if seen > max + SMALL_BODY_DRAIN_BYTES {
            break;
        }
    }
    if seen > max {
        return Err(format!(
            "the request body could not be read or is larger than {max} bytes"
        ));
    }
    Ok(buf.freeze())
}

/// An upload's body as the service reads it: failing once no bytes arrive for
/// the idle timeout.
pub fn upload_body(app: &crate::AppState, request: axum::extract::Request) -> ByteStream {
    use futures::TryStreamExt;
    let body = request
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    idle_body(body, app.in_flight.limits.body_idle_timeout)
}
