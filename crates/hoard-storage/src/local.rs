//! Objects as files under one directory. A put streams into a temporary file and
//! renames it into place, so an object is either whole or absent.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use hoard_core::store::{BlobError, BlobStore, ByteStream, ListedObject, ObjectList};
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Bytes gathered from the network before one batch of writes to disk: large
/// enough that per-batch overhead vanishes, small enough to keep memory per
/// upload bounded (a batch being written and one being gathered).
const WRITE_BATCH: usize = 512 * 1024;
/// Bytes read from disk per step of a download.
const READ_CHUNK: usize = 512 * 1024;
/// Chunks read ahead of the client: with `READ_CHUNK`, what a reader that
/// stopped reading pins (1 MiB, besides what the connection holds).
const READ_QUEUE: usize = 2;

pub struct LocalStore {
    root: PathBuf,
    tmp: PathBuf,
}

fn backend(context: &str, e: std::io::Error) -> BlobError {
    BlobError::Backend(format!("{context}: {e}"))
}

/// Runs bounded disk work on the blocking pool. Waits for the network never
/// happen in here, so a client that stops sending or reading holds no thread.
async fn on_disk<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| std::io::Error::other(format!("disk task: {e}")))?
}

impl LocalStore {
    /// Uses (and creates) `root`. Leftover temporary files of a crashed process are
    /// removed.
    pub async fn open(root: &Path) -> Result<LocalStore, BlobError> {
        let tmp = root.join("tmp");
        if tmp.exists() {
            tokio::fs::remove_dir_all(&tmp)
                .await
                .map_err(|e| backend("clearing temporary files", e))?;
        }
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|e| backend("creating the blob directory", e))?;
        Ok(LocalStore {
            root: root.to_path_buf(),
            tmp,
        })
    }

    /// The file of an object. Names are chosen by the service, but are still checked
    /// so no name can reach outside the root.
    fn path(&self, name: &str) -> Result<PathBuf, BlobError> {
        let rel = Path::new(name);
        let safe = !name.is_empty()
            && rel.components().all(|c| matches!(c, Component::Normal(_)))
            && !name.starts_with("tmp/");
        if !safe {
            return Err(BlobError::Backend(format!("invalid object name {name:?}")));
        }
        Ok(self.root.join("objects").join(rel))
    }
}

/// A temporary file that is removed unless it was moved into place: an upload
/// whose body fails, or whose request is dropped midway, leaves nothing.
struct TempFile {
    path: PathBuf,
    file: Arc<std::fs::File>,
    kept: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Waits for a batch of writes on the blocking pool, if one is under way.
async fn finished(
    writing: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
) -> Result<(), BlobError> {
    let Some(w) = writing else { return Ok(()) };
    w.await
        .map_err(|e| BlobError::Backend(format!("disk task: {e}")))?
        .map_err(|e| backend("writing", e))
}

/// Read-ahead advice to the kernel for the range about to be read. The bytes
/// land in the page cache, not in hoard's memory, so the disk has many reads in
/// flight (a cold read then runs near disk speed) while hoard holds one chunk.
fn advise(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the duration of the call; advice only
        // tunes caching, and a failure just means no read-ahead.
        unsafe {
            libc::posix_fadvise(
                file.as_raw_fd(),
                offset as i64,
                len as i64,
                libc::POSIX_FADV_WILLNEED,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// How far ahead of the reader the kernel is asked to fetch from disk.
const DISK_READ_AHEAD: u64 = 16 * 1024 * 1024;

/// One step of a download: up to `READ_CHUNK` bytes at `pos`, never fewer than
/// asked (a file shorter than its recorded size is an error, not an early end).
fn read_chunk(
    file: &std::fs::File,
    name: &str,
    pos: u64,
    want: usize,
    advise_from: Option<u64>,
) -> std::io::Result<Bytes> {
    use std::io::{Read, Seek};
    if let Some(from) = advise_from {
        advise(file, from, DISK_READ_AHEAD);
    }
    // One task reads a file, in order: seeking is safe, and read_to_end fills
    // spare capacity without zeroing it first.
    let mut reader = file;
    reader.seek(std::io::SeekFrom::Start(pos))?;
    let mut buf = Vec::with_capacity(want);
    reader.take(want as u64).read_to_end(&mut buf)?;
    if buf.len() < want {
        return Err(std::io::Error::new(
            ErrorKind::UnexpectedEof,
            format!("object {name} ended {} bytes early", want - buf.len()),
        ));
    }
    Ok(Bytes::from(buf))
}

/// Reads `r`'s range chunk by chunk on the blocking pool into `tx`, until the
/// end, an error, or the reader going away.
async fn read_ahead(mut r: Reading, tx: mpsc::Sender<std::io::Result<Bytes>>) {
    while r.pos < r.end {
        let want = (r.end - r.pos).min(READ_CHUNK as u64) as usize;
        // Ask for the next window whenever the reader gets within half a
        // window of what was asked for.
        let advise_from =
            (r.advised < r.end && r.advised - r.pos < DISK_READ_AHEAD / 2).then_some(r.advised);
        if advise_from.is_some() {
            r.advised = (r.advised + DISK_READ_AHEAD).min(r.end);
        }
        // Room in the queue first, then the read: a reader that stopped
        // reading pins the queued chunks, not one more held here.
        let Ok(room) = tx.reserve().await else {
            return;
        };
        let (file, name, pos) = (r.file.clone(), r.name.clone(), r.pos);
        let chunk = on_disk(move || read_chunk(&file, &name, pos, want, advise_from)).await;
        let failed = chunk.is_err();
        room.send(chunk);
        if failed {
            return;
        }
        r.pos += want as u64;
    }
}

/// Where a download stands between steps.
struct Reading {
    file: Arc<std::fs::File>,
    name: Arc<str>,
    pos: u64,
    end: u64,
    /// The kernel was asked to read ahead up to here.
    advised: u64,
}

#[async_trait]
impl BlobStore for LocalStore {
    async fn put(&self, name: &str, mut body: ByteStream) -> Result<u64, BlobError> {
        let dest = self.path(name)?;
        let path = self.tmp.join(uuid::Uuid::new_v4().simple().to_string());
        let create = path.clone();
        let file = on_disk(move || std::fs::File::create(create))
            .await
            .map_err(|e| backend("creating a temporary file", e))?;
        let mut tmp = TempFile {
            path,
            file: Arc::new(file),
            kept: false,
        };
        // Chunks are gathered here (as received, not copied) while the previous
        // batch is written on the blocking pool, so receiving overlaps writing;
        // the wait for the client is an await, never a parked thread.
        let mut size = 0u64;
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batched = 0usize;
        let mut writing: Option<tokio::task::JoinHandle<std::io::Result<()>>> = None;
        loop {
            let chunk = match body.next().await {
                Some(Ok(chunk)) => Some(chunk),
                Some(Err(e)) => return Err(BlobError::Body(e)),
                None => None,
            };
            let end = chunk.is_none();
            if let Some(chunk) = chunk {
                size += chunk.len() as u64;
                batched += chunk.len();
                batch.push(chunk);
            }
            if batched >= WRITE_BATCH || (end && batched > 0) {
                finished(writing.take()).await?;
                let chunks = std::mem::take(&mut batch);
                batched = 0;
                let file = tmp.file.clone();
                writing = Some(tokio::task::spawn_blocking(move || {
                    use std::io::Write;
                    chunks.iter().try_for_each(|c| (&*file).write_all(c))
                }));
            }
            if end {
                break;
            }
        }
        finished(writing.take()).await?;
        let from = tmp.path.clone();
        on_disk(move || {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(from, dest)
        })
        .await
        .map_err(|e| backend("moving the object into place", e))?;
        tmp.kept = true;
        Ok(size)
    }

    async fn probe(&self) -> Result<(), BlobError> {
        // The staging directory sits inside the store: both must be there.
        let tmp = self.tmp.clone();
        match on_disk(move || std::fs::metadata(tmp)).await {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(BlobError::Backend(format!(
                "{} is not a directory",
                self.tmp.display()
            ))),
            Err(e) => Err(backend("probing the store's directory", e)),
        }
    }

    async fn get(&self, name: &str, start: u64, end: u64) -> Result<ByteStream, BlobError> {
        let path = self.path(name)?;
        let opened = on_disk(move || {
            let file = std::fs::File::open(path)?;
            let len = file.metadata()?.len();
            // The kernel starts reading while the parts before this one stream.
            advise(&file, start, DISK_READ_AHEAD.min(end.saturating_sub(start)));
            Ok((file, len))
        })
        .await;
        let (file, len) = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(BlobError::NotFound(name.to_string()))
            }
            Err(e) => return Err(backend("opening", e)),
        };
        // A file shorter than the range is not what was stored: said before
        // the first byte, so the client gets a status instead of a short body.
        if len < end {
            return Err(BlobError::Corrupt(format!(
                "object {name} has {len} bytes, fewer than the {end} asked for"
            )));
        }
        let reading = Reading {
            file: Arc::new(file),
            name: Arc::from(name),
            pos: start,
            end,
            advised: (start + DISK_READ_AHEAD).min(end),
        };
        // A task reads chunks ahead of the client into a small queue; waiting
        // for room in the queue is an await, so a reader that stops reading
        // holds the queued chunks and no thread. The task starts when the
        // stream is first polled: parts opened ahead of their turn hold only a
        // file descriptor.
        Ok(futures::stream::once(async move {
            let (tx, rx) = mpsc::channel(READ_QUEUE);
            tokio::spawn(read_ahead(reading, tx));
            ReceiverStream::new(rx)
        })
        .flatten()
        .boxed())
    }

    async fn delete(&self, name: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path(name)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(backend("deleting", e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_dir_all(self.path(prefix)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(backend("deleting", e)),
        }
    }

    fn list(&self, prefix: &str) -> ObjectList {
        let objects = self.root.join("objects");
        let start = match self.path(prefix) {
            Ok(p) => p,
            Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
        };
        // A walk on a blocking thread, handed over a few names at a time: a
        // million objects never sit in memory together.
        let (tx, rx) = mpsc::channel(256);
        tokio::task::spawn_blocking(move || walk(&objects, start, &tx));
        ReceiverStream::new(rx).boxed()
    }
}

/// Sends every file under `dir` as an object named relative to `objects`.
fn walk(objects: &Path, dir: PathBuf, tx: &mpsc::Sender<Result<ListedObject, BlobError>>) {
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => {
                let _ = tx.blocking_send(Err(backend("listing", e)));
                return;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(rel) = path.strip_prefix(objects) else {
                continue;
            };
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let name = rel
                .to_string_lossy()
                .replace(std::path::MAIN_SEPARATOR, "/");
            if tx
                .blocking_send(Ok(ListedObject { name, modified }))
                .is_err()
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn body(parts: Vec<&'static [u8]>) -> ByteStream {
        futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p)))).boxed()
    }

    async fn read_all(s: ByteStream) -> Vec<u8> {
        use futures::TryStreamExt;
        s.try_fold(Vec::new(), |mut acc, b| async move {
            acc.extend_from_slice(&b);
            Ok(acc)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn put_get_ranges_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).await.unwrap();
        assert_eq!(
            s.put("entries/1/a", body(vec![b"hello ", b"world"]))
                .await
                .unwrap(),
            11
        );
        assert_eq!(
            read_all(s.get("entries/1/a", 0, 11).await.unwrap()).await,
            b"hello world"
        );
        assert_eq!(
            read_all(s.get("entries/1/a", 6, 9).await.unwrap()).await,
            b"wor"
        );
        // Asking past the end of a short file is an error, not a short body.
        assert!(matches!(
            s.get("entries/1/a", 0, 20).await,
            Err(BlobError::Corrupt(_))
        ));
        s.delete_prefix("entries/1").await.unwrap();
        assert!(matches!(
            s.get("entries/1/a", 0, 1).await,
            Err(BlobError::NotFound(_))
        ));
        s.delete("entries/1/a").await.unwrap();
    }

    #[tokio::test]
    async fn failed_body_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).await.unwrap();
        let bad: ByteStream = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"partial")),
            Err(std::io::Error::other("client went away")),
        ])
        .boxed();
        assert!(matches!(
            s.put("entries/2/a", bad).await,
            Err(BlobError::Body(_))
        ));
        assert!(matches!(
            s.get("entries/2/a", 0, 1).await,
            Err(BlobError::NotFound(_))
        ));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn names_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).await.unwrap();
        for bad in ["../x", "/etc/passwd", "", "a/../../b", "tmp/x"] {
            assert!(s.put(bad, body(vec![b"x"])).await.is_err(), "{bad}");
        }
    }
}
