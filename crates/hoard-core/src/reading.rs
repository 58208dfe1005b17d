//! Reading stored bytes back, checked against what was acknowledged: each
//! piece must have exactly its recorded length, and a part read whole must
//! match its recorded CRC-64 (downloads; cheap enough for every byte) or
//! sha256 (`hoard verify`, and parts stored before hoard recorded CRCs). A part's last chunk is sent only once its hash is
//! checked, so a client never receives every byte of a corrupt part: the
//! response fails short of its Content-Length and no client takes it as whole.

use crate::store::{BlobError, BlobStore, ByteStream};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Why stored bytes cannot be served: the object is gone or not what was
/// stored. Carried inside the `io::Error` of a body stream, so whoever sees
/// the failure can tell it from an unreachable store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("object {0} is missing")]
    Missing(String),
    #[error("object {object} is corrupt: {why}")]
    Corrupt { object: String, why: String },
}

impl Fault {
    fn into_io(self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, self)
    }

    /// The fault inside an error of a body stream, if it is one.
    pub fn of(e: &std::io::Error) -> Option<&Fault> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Fault>())
    }
}

/// One piece of a read: bytes `[start, end)` of an object whose whole length
/// is `size`, with its recorded digests (empty: unknown).
pub(crate) struct Piece {
    pub object: String,
    pub start: u64,
    pub end: u64,
    pub size: u64,
    pub sha256: String,
    pub crc64: String,
    /// Check the sha256 even where a CRC is recorded.
    pub thorough: bool,
}

/// How a CRC-64 is written down: 16 lower-case hex digits.
pub fn crc64_hex(crc: u64) -> String {
    format!("{crc:016x}")
}

/// Opens a piece; a missing object is a [`Fault`], anything else a store error.
pub(crate) async fn open(
    blobs: Arc<dyn BlobStore>,
    piece: Piece,
) -> Result<ByteStream, std::io::Error> {
    let stream = match blobs.get(&piece.object, piece.start, piece.end).await {
        Ok(s) => s,
        Err(BlobError::NotFound(_)) => return Err(Fault::Missing(piece.object).into_io()),
        Err(BlobError::Corrupt(why)) => {
            return Err(Fault::Corrupt {
                object: piece.object,
                why,
            }
            .into_io())
        }
        Err(e) => return Err(std::io::Error::other(e.to_string())),
    };
    let whole = piece.start == 0 && piece.end == piece.size;
    let verify = if !whole {
        Verify::Length
    } else if !piece.crc64.is_empty() && !piece.thorough {
        Verify::Crc(Box::new(crc_fast::Digest::new(
            crc_fast::CrcAlgorithm::Crc64Nvme,
        )))
    } else if piece.sha256.len() == 64 {
        Verify::Sha(Hashing::start())
    } else {
        Verify::Length
    };
    Ok(checked(stream, piece, verify))
}

/// A part's sha256, computed by a task of its own while the bytes go on to
/// the client, so hashing runs beside the sending instead of before it.
struct Hashing {
    chunks: tokio::sync::mpsc::Sender<Bytes>,
    digest: tokio::task::JoinHandle<String>,
}

impl Hashing {
    fn start() -> Hashing {
        let (chunks, mut rx) = tokio::sync::mpsc::channel::<Bytes>(HASH_QUEUE);
        let digest = tokio::spawn(async move {
            let mut h = Sha256::new();
            while let Some(chunk) = rx.recv().await {
                h.update(&chunk);
            }
            hex::encode(h.finalize())
        });
        Hashing { chunks, digest }
    }

    async fn finish(self) -> String {
        drop(self.chunks);
        self.digest.await.unwrap_or_default()
    }
}

/// Chunks queued for the hashing task (shared with the body, not copied).
const HASH_QUEUE: usize = 8;

/// What a piece is checked against besides its length.
enum Verify {
    Length,
    Crc(Box<crc_fast::Digest>),
    Sha(Hashing),
}

impl Verify {
    async fn add(&mut self, chunk: &Bytes) {
        match self {
            Verify::Length => {}
            Verify::Crc(d) => d.update(chunk),
            // A failed hashing task shows as a wrong digest at the end.
            Verify::Sha(h) => {
                let _ = h.chunks.send(chunk.clone()).await;
            }
        }
    }

    /// `Err(why)` when the bytes are not the recorded ones.
    async fn finish(self, piece: &Piece) -> Result<(), String> {
        let (got, want, name) = match self {
            Verify::Length => return Ok(()),
            Verify::Crc(d) => (crc64_hex(d.finalize()), &piece.crc64, "CRC-64"),
            Verify::Sha(h) => (h.finish().await, &piece.sha256, "sha256"),
        };
        if &got == want {
            Ok(())
        } else {
            Err(format!("{name} {got}, stored as {want}"))
        }
    }
}

struct Check {
    stream: ByteStream,
    piece: Piece,
    verify: Option<Verify>,
    seen: u64,
    done: bool,
}

fn checked(stream: ByteStream, piece: Piece, verify: Verify) -> ByteStream {
    let state = Check {
        stream,
        piece,
        verify: Some(verify),
        seen: 0,
        done: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let expect = st.piece.end - st.piece.start;
        match st.stream.next().await {
            Some(Ok(chunk)) => {
                st.seen += chunk.len() as u64;
                if st.seen > expect {
                    st.done = true;
                    let why = format!("longer than its recorded {} bytes", st.piece.size);
                    return Some((Err(corrupt(&st.piece, why)), st));
                }
                if let Some(v) = st.verify.as_mut() {
                    v.add(&chunk).await;
                }
                if st.seen < expect {
                    return Some((Ok(chunk), st));
                }
                // The part's last chunk goes out only once the whole part
                // checked right: a corrupt part always ends short.
                if let Some(v) = st.verify.take() {
                    if let Err(why) = v.finish(&st.piece).await {
                        st.done = true;
                        return Some((Err(corrupt(&st.piece, why)), st));
                    }
                }
                Some((Ok(chunk), st))
            }
            Some(Err(e)) => {
                st.done = true;
                let e = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    corrupt(&st.piece, e.to_string())
                } else {
                    e
                };
                Some((Err(e), st))
            }
            None => {
                st.done = true;
                if st.seen < expect {
                    let why = format!("{} bytes short of its recorded size", expect - st.seen);
                    return Some((Err(corrupt(&st.piece, why)), st));
                }
                None
            }
        }
    })
    .boxed()
}

fn corrupt(piece: &Piece, why: String) -> std::io::Error {
    Fault::Corrupt {
        object: piece.object.clone(),
        why,
    }
    .into_io()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(chunks: &[&'static [u8]]) -> ByteStream {
        let items: Vec<std::io::Result<Bytes>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        futures::stream::iter(items).boxed()
    }

    fn piece(data: &[u8], start: u64, end: u64, size: u64) -> Piece {
        let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme);
        crc.update(data);
        Piece {
            object: "o".into(),
            start,
            end,
            size,
            sha256: hex::encode(Sha256::digest(data)),
            crc64: crc64_hex(crc.finalize()),
            thorough: false,
        }
    }

    fn sha() -> Verify {
        Verify::Sha(Hashing::start())
    }

    fn crc() -> Verify {
        Verify::Crc(Box::new(crc_fast::Digest::new(
            crc_fast::CrcAlgorithm::Crc64Nvme,
        )))
    }

    async fn collect(s: ByteStream) -> (Vec<u8>, Option<std::io::Error>) {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    #[tokio::test]
    async fn whole_parts_pass_when_their_digest_matches() {
        for verify in [sha(), crc()] {
            let s = checked(
                stream_of(&[b"hello ", b"world"]),
                piece(b"hello world", 0, 11, 11),
                verify,
            );
            let (bytes, err) = collect(s).await;
            assert_eq!(bytes, b"hello world");
            assert!(err.is_none());
        }
    }

    #[tokio::test]
    async fn a_flipped_bit_never_reaches_the_end() {
        for verify in [sha(), crc()] {
            let p = piece(b"hello world", 0, 11, 11);
            let (bytes, err) = collect(checked(stream_of(&[b"hello ", b"worle"]), p, verify)).await;
            // The last chunk was never sent: the client got fewer bytes than
            // the length, then an error.
            assert_eq!(bytes, b"hello ");
            let err = err.expect("an error");
            assert!(
                matches!(Fault::of(&err), Some(Fault::Corrupt { .. })),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn short_and_long_objects_are_corrupt() {
        let p = piece(b"hello world", 0, 11, 11);
        let (_, err) = collect(checked(stream_of(&[b"hello"]), p, crc())).await;
        assert!(matches!(
            Fault::of(&err.unwrap()),
            Some(Fault::Corrupt { .. })
        ));
        // A range (no digest) still checks the length.
        let p = piece(b"hello world", 2, 5, 11);
        let (_, err) = collect(checked(stream_of(&[b"llo", b"!"]), p, Verify::Length)).await;
        assert!(matches!(
            Fault::of(&err.unwrap()),
            Some(Fault::Corrupt { .. })
        ));
        let p = piece(b"hello world", 2, 5, 11);
        let (bytes, err) = collect(checked(stream_of(&[b"llo"]), p, Verify::Length)).await;
        assert_eq!(bytes, b"llo");
        assert!(err.is_none());
    }
}
