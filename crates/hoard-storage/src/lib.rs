//! hoard's blob stores.

pub mod local;

pub use local::LocalStore;
