//! Objects as files under one directory. A put streams into a temporary file and
//! renames it into place, so an object is either whole or absent.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use hoard_core::store::{BlobError, BlobStore, ByteStream, ListedObject, ObjectList};
use std::io::{ErrorKind, Read, Seek, Write as _};
use std::path::{Component, Path, PathBuf};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Write and read buffer size: large enough that per-call overhead vanishes, small
/// enough to keep memory per request bounded.
const IO_BUFFER: usize = 1024 * 1024;
/// Chunks (as received, usually 16-64 KiB) queued for the writer thread.
const WRITE_QUEUE: usize = 4;
/// Chunks of `IO_BUFFER` read ahead of the client: at most this many MiB per read.
const READ_AHEAD: usize = 2;

pub struct LocalStore {
    root: PathBuf,
    tmp: PathBuf,
}

fn backend(context: &str, e: std::io::Error) -> BlobError {
    BlobError::Backend(format!("{context}: {e}"))
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

/// What the async side hands the writer thread.
enum Write {
    Data(Bytes),
    /// The body ended cleanly: keep the file.
    End,
}

/// Writes one object on a blocking thread: chunks arrive over `rx`; the file is
/// renamed into place only after `Write::End`, and removed otherwise.
fn write_object(tmp: &Path, dest: &Path, mut rx: mpsc::Receiver<Write>) -> Result<(), BlobError> {
    let file = std::fs::File::create(tmp).map_err(|e| backend("creating a temporary file", e))?;
    let mut out = std::io::BufWriter::with_capacity(IO_BUFFER, file);
    let result = (|| {
        loop {
            match rx.blocking_recv() {
                Some(Write::Data(chunk)) => {
                    out.write_all(&chunk).map_err(|e| backend("writing", e))?
                }
                Some(Write::End) => break,
                // The body failed; the async side reports why.
                None => return Err(BlobError::Backend("upload abandoned".into())),
            }
        }
        out.flush().map_err(|e| backend("writing", e))?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| backend("creating a directory", e))?;
        }
        std::fs::rename(tmp, dest).map_err(|e| backend("moving the object into place", e))
    })();
    if result.is_err() {
        drop(out);
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// How far ahead of the reader the kernel is asked to fetch from disk. The bytes
/// land in the page cache, not in hoard's memory, so the disk has many reads in
/// flight (a cold read then runs near disk speed) while the process holds only
/// `READ_AHEAD` chunks.
const DISK_READ_AHEAD: u64 = 16 * 1024 * 1024;

/// Read-ahead advice to the kernel: `sequential` for the whole file, or
/// `will_need(offset, len)` for the range about to be read.
fn advise(file: &std::fs::File, offset: u64, len: u64, sequential: bool) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let advice = if sequential {
            libc::POSIX_FADV_SEQUENTIAL
        } else {
            libc::POSIX_FADV_WILLNEED
        };
        // SAFETY: the descriptor is open for the duration of the call; advice only
        // tunes caching, and a failure just means no read-ahead.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), offset as i64, len as i64, advice);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len, sequential);
}

/// Streams `[start, end)` of a file into `tx` on a blocking thread, in chunks of
/// at most `IO_BUFFER`; stops early when the reader goes away.
fn read_object(
    path: &Path,
    name: &str,
    start: u64,
    end: u64,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
) {
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::open(path)?;
        advise(&file, 0, 0, true);
        file.seek(std::io::SeekFrom::Start(start))?;
        let mut left = end.saturating_sub(start);
        let mut pos = start;
        // The range up to here has been asked for; ask for the next half window
        // whenever the reader gets within half a window of its end.
        let mut advised = start;
        while left > 0 {
            if advised < end && advised - pos < DISK_READ_AHEAD / 2 {
                let len = (DISK_READ_AHEAD / 2).min(end - advised);
                advise(&file, advised, len, false);
                advised += len;
            }
            let want = left.min(IO_BUFFER as u64) as usize;
            // read_to_end fills spare capacity without zeroing it first.
            let mut buf = Vec::with_capacity(want);
            (&mut file).take(want as u64).read_to_end(&mut buf)?;
            if buf.len() < want {
                // Shorter than its recorded size: fail, never end early.
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!(
                        "object {name} ended {} bytes early",
                        left - buf.len() as u64
                    ),
                ));
            }
            let buf = Bytes::from(buf);
            left -= want as u64;
            pos += want as u64;
            if tx.blocking_send(Ok(buf)).is_err() {
                return Ok(());
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = tx.blocking_send(Err(e));
    }
}

#[async_trait]
impl BlobStore for LocalStore {
    async fn put(&self, name: &str, mut body: ByteStream) -> Result<u64, BlobError> {
        let dest = self.path(name)?;
        let tmp = self.tmp.join(uuid::Uuid::new_v4().simple().to_string());
        // Disk writes run on their own thread, so receiving the next chunk from
        // the network overlaps writing the last one.
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let writer = tokio::task::spawn_blocking(move || write_object(&tmp, &dest, rx));
        let mut size = 0u64;
        let mut failure = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    size += chunk.len() as u64;
                    if tx.send(Write::Data(chunk)).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    failure = Some(BlobError::Body(e));
                    break;
                }
            }
        }
        if failure.is_none() {
            let _ = tx.send(Write::End).await;
        }
        drop(tx);
        let written = writer
            .await
            .map_err(|e| BlobError::Backend(format!("writer thread: {e}")))?;
        match failure {
            Some(e) => Err(e),
            None => written.map(|()| size),
        }
    }

    async fn get(&self, name: &str, start: u64, end: u64) -> Result<ByteStream, BlobError> {
        let path = self.path(name)?;
        match tokio::fs::metadata(&path).await {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(BlobError::NotFound(name.to_string()))
            }
            Err(e) => return Err(backend("opening", e)),
        }
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let object = name.to_string();
        tokio::task::spawn_blocking(move || read_object(&path, &object, start, end, tx));
        Ok(ReceiverStream::new(rx).boxed())
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
        let short = s.get("entries/1/a", 0, 20).await.unwrap();
        let all: Vec<_> = short.collect().await;
        assert!(all.last().unwrap().is_err());
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
