//! Objects as files under one directory. A put streams into a temporary file and
//! renames it into place, so an object is either whole or absent.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use hoard_core::store::{BlobError, BlobStore, ByteStream};
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};
use tokio_util::io::ReaderStream;

/// Write and read buffer size: large enough that per-call overhead vanishes, small
/// enough to keep memory per request bounded.
const IO_BUFFER: usize = 1024 * 1024;

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

#[async_trait]
impl BlobStore for LocalStore {
    async fn put(&self, name: &str, mut body: ByteStream) -> Result<u64, BlobError> {
        let path = self.path(name)?;
        let tmp = self.tmp.join(uuid::Uuid::new_v4().simple().to_string());
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| backend("creating a temporary file", e))?;
        let mut out = BufWriter::with_capacity(IO_BUFFER, file);
        let mut size = 0u64;
        let result: Result<(), BlobError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(BlobError::Body)?;
                size += chunk.len() as u64;
                out.write_all(&chunk)
                    .await
                    .map_err(|e| backend("writing", e))?;
            }
            out.flush().await.map_err(|e| backend("writing", e))?;
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| backend("creating a directory", e))?;
            }
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(|e| backend("moving the object into place", e))
        }
        .await;
        if result.is_err() {
            drop(out);
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result.map(|()| size)
    }

    async fn get(&self, name: &str, start: u64, end: u64) -> Result<ByteStream, BlobError> {
        let path = self.path(name)?;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(BlobError::NotFound(name.to_string()))
            }
            Err(e) => return Err(backend("opening", e)),
        };
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| backend("seeking", e))?;
        }
        let want = end.saturating_sub(start);
        let reader = tokio::io::AsyncReadExt::take(file, want);
        // A file shorter than its recorded size must fail the stream, not end it
        // early: a reader gets the whole range or an error, never a short body.
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        let object = name.to_string();
        let stream = ReaderStream::with_capacity(reader, IO_BUFFER)
            .map_ok(move |chunk| {
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                chunk
            })
            .chain(futures::stream::once(async move {
                let got = seen.load(Ordering::Relaxed);
                if got < want {
                    Err(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        format!("object {object} ended after {got} of {want} bytes"),
                    ))
                } else {
                    Ok(bytes::Bytes::new())
                }
            }))
            .try_filter(|b| futures::future::ready(!b.is_empty()));
        Ok(stream.boxed())
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn body(parts: Vec<&'static [u8]>) -> ByteStream {
        futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p)))).boxed()
    }

    async fn read_all(s: ByteStream) -> Vec<u8> {
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
