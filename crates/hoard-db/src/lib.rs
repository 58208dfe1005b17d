//! hoard's metadata store on sqlx.

mod keys;
pub mod sqlite;

pub use sqlite::SqliteStore;
