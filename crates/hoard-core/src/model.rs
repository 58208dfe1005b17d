//! The nouns of the domain.

/// Where an entry is in its life. Only `Committed` entries are visible to lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Reserved by CreateCacheEntry; blocks may be staged.
    Pending,
    /// The blob is committed (Put Blob or Put Block List); waiting for Finalize.
    Uploaded,
    /// Finalized: visible, immutable.
    Committed,
}

impl EntryState {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::Pending => "pending",
            EntryState::Uploaded => "uploaded",
            EntryState::Committed => "committed",
        }
    }

    pub fn parse(s: &str) -> Option<EntryState> {
        match s {
            "pending" => Some(EntryState::Pending),
            "uploaded" => Some(EntryState::Uploaded),
            "committed" => Some(EntryState::Committed),
            _ => None,
        }
    }
}

/// A cache entry (or an upload that will become one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub namespace: String,
    pub scope: String,
    pub key: String,
    pub version: String,
    pub state: EntryState,
    /// Bytes of the committed blob; 0 until the blob is committed.
    pub size: i64,
    /// `sha256:<hex>` of the content for one-part entries, `sha256-parts:<hex>` (the
    /// sha256 of the parts' digests in order) for multi-part ones; see ADR 0001.
    pub hash: String,
    /// Reservation time; replaced by the finalize time on commit ("newest" is by it).
    pub created_at: i64,
    pub last_accessed_at: i64,
}

/// One stored object of a committed blob, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Byte offset of the part inside the blob.
    pub offset: i64,
    pub size: i64,
    /// Object name in the blob store.
    pub object: String,
    /// Hex sha256 of the object's bytes, as hashed when it was stored.
    pub sha256: String,
    /// Hex CRC-64/NVME of the object's bytes; empty for objects stored before
    /// hoard recorded it.
    pub crc64: String,
}

/// A staged block or whole blob, as written to the blob store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub object: String,
    pub size: i64,
    /// Hex sha256 of the object's bytes.
    pub sha256: String,
    /// Hex CRC-64/NVME of the object's bytes, checked on every download.
    pub crc64: String,
}

/// Who is asking, as established by authentication: the namespace the request is
/// confined to, the scopes it may read (in search order) and the one it may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub namespace: String,
    pub read_scopes: Vec<String>,
    pub write_scope: Option<String>,
}

/// The hash recorded for a blob made of parts with these hex sha256 digests, in
/// order: the content's own sha256 for one part, else the sha256 of the parts'
/// digests (so commit never re-reads the bytes). See ADR 0001.
pub fn blob_hash(part_digests: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    match part_digests {
        [one] => format!("sha256:{one}"),
        many => {
            let mut h = Sha256::new();
            for d in many {
                // Digests come from our own hashing; fall back to the text if not hex.
                match hex::decode(d) {
                    Ok(raw) => h.update(raw),
                    Err(_) => h.update(d.as_bytes()),
                }
            }
            format!("sha256-parts:{}", hex::encode(h.finalize()))
        }
    }
}
