//! Reading stored bytes back, checked against what was acknowledged: each
//! piece must have exactly its recorded length, and a part read whole must hash
//! to its recorded sha256. A part's last chunk is held back until its hash is
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
/// is `size`, with its recorded digest (empty: unknown).
pub(crate) struct Piece {
    pub object: String,
    pub start: u64,
    pub end: u64,
    pub size: u64,
    pub sha256: String,
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
    let whole = piece.start == 0 && piece.end == piece.size && piece.sha256.len() == 64;
    Ok(checked(stream, piece, whole))
}

struct Check {
    stream: ByteStream,
    piece: Piece,
    hasher: Option<Sha256>,
    seen: u64,
    /// The chunk not yet handed on: released once the next one arrives, or
    /// at the end once the hash matches.
    held: Option<Bytes>,
    done: bool,
}

fn checked(stream: ByteStream, piece: Piece, hash: bool) -> ByteStream {
    let state = Check {
        stream,
        piece,
        hasher: hash.then(Sha256::new),
        seen: 0,
        held: None,
        done: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let expect = st.piece.end - st.piece.start;
            match st.stream.next().await {
                Some(Ok(chunk)) => {
                    st.seen += chunk.len() as u64;
                    if st.seen > expect {
                        st.done = true;
                        let why = format!("longer than its recorded {} bytes", st.piece.size);
                        return Some((Err(corrupt(&st.piece, why)), st));
                    }
                    let Some(hasher) = st.hasher.as_mut() else {
                        return Some((Ok(chunk), st));
                    };
                    hasher.update(&chunk);
                    if let Some(previous) = st.held.replace(chunk) {
                        return Some((Ok(previous), st));
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    let e = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        corrupt(&st.piece, e.to_string())
                    } else {
                        e
                    };
                    return Some((Err(e), st));
                }
                None => {
                    st.done = true;
                    if st.seen < expect {
                        let why = format!("{} bytes short of its recorded size", expect - st.seen);
                        return Some((Err(corrupt(&st.piece, why)), st));
                    }
                    if let Some(hasher) = st.hasher.take() {
                        let got = hex::encode(hasher.finalize());
                        if got != st.piece.sha256 {
                            let why = format!("sha256 {got}, stored as {}", st.piece.sha256);
                            return Some((Err(corrupt(&st.piece, why)), st));
                        }
                    }
                    let last = st.held.take()?;
                    return Some((Ok(last), st));
                }
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
        Piece {
            object: "o".into(),
            start,
            end,
            size,
            sha256: hex::encode(Sha256::digest(data)),
        }
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
    async fn whole_parts_pass_when_their_hash_matches() {
        let s = checked(
            stream_of(&[b"hello ", b"world"]),
            piece(b"hello world", 0, 11, 11),
            true,
        );
        let (bytes, err) = collect(s).await;
        assert_eq!(bytes, b"hello world");
        assert!(err.is_none());
    }

    #[tokio::test]
    async fn a_flipped_bit_never_reaches_the_end() {
        let p = piece(b"hello world", 0, 11, 11);
        let (bytes, err) = collect(checked(stream_of(&[b"hello ", b"worle"]), p, true)).await;
        // The last chunk was held back: the client got fewer bytes than the
        // length, then an error.
        assert_eq!(bytes, b"hello ");
        let err = err.expect("an error");
        assert!(
            matches!(Fault::of(&err), Some(Fault::Corrupt { .. })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn short_and_long_objects_are_corrupt() {
        let p = piece(b"hello world", 0, 11, 11);
        let (_, err) = collect(checked(stream_of(&[b"hello"]), p, true)).await;
        assert!(matches!(
            Fault::of(&err.unwrap()),
            Some(Fault::Corrupt { .. })
        ));
        // A range (no hash) still checks the length.
        let p = piece(b"hello world", 2, 5, 11);
        let (_, err) = collect(checked(stream_of(&[b"llo", b"!"]), p, false)).await;
        assert!(matches!(
            Fault::of(&err.unwrap()),
            Some(Fault::Corrupt { .. })
        ));
        let p = piece(b"hello world", 2, 5, 11);
        let (bytes, err) = collect(checked(stream_of(&[b"llo"]), p, false)).await;
        assert_eq!(bytes, b"llo");
        assert!(err.is_none());
    }
}
