//! Chunked uploads, as the v1 API makes them: a reservation by key and version
//! that answers an id, chunks written at byte offsets (in any order, in
//! parallel, retried), and a commit that names the total size.
//!
//! A chunk is staged as a block whose id is its offset, so a v1 upload ends as
//! the same entry, made of the same parts, as a v2 upload: no bytes are copied
//! on commit, and either API restores what the other saved.

use crate::error::CoreError;
use crate::model::{Caller, Entry, EntryState};
use crate::service::{drain, CacheService, DRAIN_AFTER_REFUSAL};
use crate::store::ByteStream;

/// Block ids of chunks: this prefix and the chunk's first byte offset. Azure
/// block ids are base64, which has no `@`, so the two never meet.
const CHUNK_ID_PREFIX: &str = "chunk@";

fn chunk_id(start: u64) -> String {
    format!("{CHUNK_ID_PREFIX}{start}")
}

fn chunk_start(block_id: &str) -> Option<u64> {
    block_id.strip_prefix(CHUNK_ID_PREFIX)?.parse().ok()
}

/// The chunks' block ids in offset order when the staged chunks (block id,
/// bytes) cover bytes `0..size` exactly once; otherwise what is wrong, in
/// words a client's log can show.
pub fn tile(staged: &[(String, i64)], size: u64) -> Result<Vec<String>, String> {
    let mut chunks: Vec<(u64, u64, &str)> = staged
        .iter()
        .filter_map(|(id, len)| Some((chunk_start(id)?, (*len).max(0) as u64, id.as_str())))
        .collect();
    chunks.sort_unstable();
    let mut next = 0u64;
    for &(start, len, _) in &chunks {
        if start > next {
            return Err(format!("bytes {next}-{} were never uploaded", start - 1));
        }
        if start < next {
            return Err(format!(
                "the chunk at byte {start} overlaps the one before it, which ends at byte {}",
                next - 1
            ));
        }
        next = start + len;
    }
    if next != size {
        return Err(format!(
            "{next} bytes were uploaded but the commit says {size}"
        ));
    }
    Ok(chunks
        .into_iter()
        .map(|(_, _, id)| id.to_string())
        .collect())
}

impl CacheService {
    /// Reserves key+version like [`CacheService::create`] and answers the new
    /// entry's id. `size`, where the client says it, is checked against the
    /// namespace's entry limit here: clients that only warn about a failed
    /// upload learn of a refusal only at reservation.
    pub async fn reserve(
        &self,
        caller: &Caller,
        key: &str,
        version: &str,
        size: Option<i64>,
    ) -> Result<i64, CoreError> {
        if let Some(n) = size {
            let limit = self.entry_limit(&caller.namespace);
            if n < 0 {
                return Err(CoreError::InvalidArgument("cacheSize is negative".into()));
            }
            if n as u64 > limit {
                return Err(CoreError::TooLarge(format!(
                    "the cache is {n} bytes; this namespace allows at most {limit} bytes for one entry"
                )));
            }
        }
        Ok(self.create(caller, key, version).await?.entry_id)
    }

    /// The caller's own unfinished upload `id`. Another namespace's or scope's
    /// upload is answered exactly as one that does not exist.
    async fn own_upload(&self, caller: &Caller, id: i64) -> Result<Entry, CoreError> {
        let scope = Self::write_scope(caller)?;
        let unknown = || CoreError::NotFound(format!("no cache upload with id {id}"));
        let entry = self.meta().entry(id).await?.ok_or_else(unknown)?;
        if entry.namespace != caller.namespace || entry.scope != scope {
            return Err(unknown());
        }
        if entry.state == EntryState::Committed {
            return Err(CoreError::Immutable(format!(
                "cache {id} is already committed; its content cannot change"
            )));
        }
        Ok(entry)
    }

    /// Stores bytes `start..=end` of upload `id`. The body must hold exactly
    /// those bytes. Sending the same range again replaces the chunk.
    pub async fn put_chunk(
        &self,
        caller: &Caller,
        id: i64,
        start: u64,
        end: u64,
        mut body: ByteStream,
    ) -> Result<u64, CoreError> {
        let block_id = chunk_id(start);
        let len = end - start + 1;
        let upload = match self.chunk_room(caller, id, start, end).await {
            Ok(upload) => upload,
            Err(e) => {
                // Read (and drop) the chunk first, so a client still sending
                // sees the refusal instead of a reset connection.
                drain(&mut body, len.min(DRAIN_AFTER_REFUSAL)).await;
                return Err(e);
            }
        };
        let stored = match self.store_object(&upload, "chunk", body, len).await {
            Err(CoreError::TooLarge(_)) => {
                return Err(CoreError::InvalidArgument(format!(
                    "the body is longer than the {len} bytes of Content-Range bytes {start}-{end}"
                )))
            }
            other => other?,
        };
        if stored.size as u64 != len {
            let got = stored.size;
            self.delete_objects(&[stored.object]).await;
            return Err(CoreError::InvalidArgument(format!(
                "the body has {got} bytes but Content-Range bytes {start}-{end} says {len}"
            )));
        }
        self.stage(id, &block_id, stored).await
    }

    /// The caller's upload `id`, if a chunk of bytes `start..=end` fits the
    /// namespace's limits.
    async fn chunk_room(
        &self,
        caller: &Caller,
        id: i64,
        start: u64,
        end: u64,
    ) -> Result<Entry, CoreError> {
        let upload = self.own_upload(caller, id).await?;
        let limit = self.entry_limit(&upload.namespace);
        if end >= limit {
            return Err(CoreError::TooLarge(format!(
                "the chunk ends at byte {end}; entries of this namespace may have at most {limit} bytes"
            )));
        }
        let len = end - start + 1;
        let room = self.block_room(&upload, &chunk_id(start)).await?;
        if len > room {
            return Err(CoreError::TooLarge(format!(
                "the chunk has {len} bytes; only {room} more fit in this namespace's limits"
            )));
        }
        Ok(upload)
    }

    /// Commits upload `id` as `size` bytes: its chunks must cover exactly
    /// those bytes. On success the entry is visible; on any refusal nothing
    /// changes and the chunks stay staged.
    pub async fn commit_chunks(
        &self,
        caller: &Caller,
        id: i64,
        size: i64,
    ) -> Result<i64, CoreError> {
        if size < 0 {
            return Err(CoreError::InvalidArgument("size is negative".into()));
        }
        let upload = self.own_upload(caller, id).await?;
        let staged = self.meta().staged_blocks(id).await?;
        let ids = tile(&staged, size as u64).map_err(|why| {
            CoreError::InvalidArgument(format!("cache {id} cannot be committed: {why}"))
        })?;
        match self.put_block_list(id, &ids).await {
            Ok(_) => {}
            // Committed by a commit racing this one.
            Err(CoreError::Immutable(_)) => {
                return Err(CoreError::Immutable(format!(
                    "cache {id} is already committed"
                )))
            }
            Err(e) => return Err(e),
        }
        self.finalize(caller, &upload.key, &upload.version, size)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(list: &[(u64, i64)]) -> Vec<(String, i64)> {
        list.iter().map(|(s, n)| (chunk_id(*s), *n)).collect()
    }

    #[test]
    fn chunks_in_any_order_tile_the_blob() {
        let staged = chunks(&[(64, 10), (0, 32), (32, 32)]);
        assert_eq!(
            tile(&staged, 74).unwrap(),
            vec![chunk_id(0), chunk_id(32), chunk_id(64)]
        );
    }

    #[test]
    fn gaps_overlaps_and_wrong_sizes_are_refused() {
        let gap = tile(&chunks(&[(0, 10), (20, 10)]), 30).unwrap_err();
        assert!(gap.contains("bytes 10-19 were never uploaded"), "{gap}");
        let start = tile(&chunks(&[(5, 10)]), 15).unwrap_err();
        assert!(start.contains("bytes 0-4"), "{start}");
        let overlap = tile(&chunks(&[(0, 10), (5, 10)]), 15).unwrap_err();
        assert!(overlap.contains("overlaps"), "{overlap}");
        let short = tile(&chunks(&[(0, 10)]), 11).unwrap_err();
        assert!(
            short.contains("10 bytes were uploaded but the commit says 11"),
            "{short}"
        );
        let long = tile(&chunks(&[(0, 10)]), 9).unwrap_err();
        assert!(long.contains("10 bytes"), "{long}");
        assert_eq!(tile(&[], 0).unwrap(), Vec::<String>::new());
        assert!(tile(&[], 1).is_err());
    }

    #[test]
    fn blocks_of_other_uploads_are_not_chunks() {
        let mut staged = chunks(&[(0, 4)]);
        staged.push(("AAAA".into(), 100));
        assert_eq!(tile(&staged, 4).unwrap(), vec![chunk_id(0)]);
    }
}
