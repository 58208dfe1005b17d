//! hoard's blob stores: a local directory, and object storage through
//! object_store.

pub mod local;
pub mod object;
pub mod open;

pub use local::LocalStore;
pub use object::ObjectStorage;
pub use open::{open, StorageOptions};
