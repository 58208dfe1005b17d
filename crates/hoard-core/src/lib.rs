//! hoard's domain: cache entries and their uploads, matching, signed URLs, and the
//! storage traits the service runs on. Nothing here knows HTTP or a wire format.

pub mod catalog;
pub mod chunked;
pub mod error;
pub mod eviction;
pub mod limits;
pub mod matching;
pub mod model;
pub mod policy;
pub mod reading;
pub mod scrub;
pub mod service;
pub mod signing;
pub mod stats;
pub mod store;
pub mod tasks;
pub mod validate;

pub use error::CoreError;
pub use model::{Caller, Entry, EntryState, Part};
pub use service::{CacheService, ServiceConfig};
pub use store::{BlobError, BlobStore, ByteStream, MetaStore, StoreError};

/// Milliseconds since the Unix epoch; the one clock hoard stores.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
