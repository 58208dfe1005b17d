//! hoard's metadata store on sqlx: SQLite (embedded default) and PostgreSQL.

mod keys;
pub mod open;
pub mod sql;

pub use open::{open, sqlite_url, PoolConfig};
pub use sql::{Dialect, SeedEntry, SqlStore};
