//! What can go wrong in the service, in the service's words. Each protocol surface
//! maps these onto its own errors (Twirp codes, Azure codes, HTTP statuses).

use crate::store::{BlobError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The request is well formed but a value is not acceptable.
    #[error("{0}")]
    InvalidArgument(String),
    /// The key and version are already reserved or saved in this scope.
    #[error("{0}")]
    AlreadyExists(String),
    /// The entry or upload does not exist (or is not visible to the caller).
    #[error("{0}")]
    NotFound(String),
    /// The operation does not fit the upload's state (e.g. finalize before commit).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The upload is finalized; its bytes can no longer change.
    #[error("{0}")]
    Immutable(String),
    /// A block list names a block that was never staged.
    #[error("{0}")]
    UnknownBlock(String),
    /// A body was larger than a limit allows.
    #[error("{0}")]
    TooLarge(String),
    /// The caller may not do this (e.g. write with a read-only token).
    #[error("{0}")]
    PermissionDenied(String),
    /// A limit on the namespace's uploads is reached; retry after this many
    /// seconds.
    #[error("{message}")]
    Exhausted {
        message: String,
        retry_after_secs: u64,
    },
    /// The client's body stream failed (disconnect, bad framing).
    #[error("the request body could not be read: {0}")]
    Body(String),
    #[error("metadata store: {0}")]
    Store(#[from] StoreError),
    #[error("blob store: {0}")]
    Blob(#[from] BlobError),
}
