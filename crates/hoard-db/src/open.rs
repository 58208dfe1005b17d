//! Opening a database from its URL: connection pools tuned per engine, and
//! migrations applied before anything else touches the schema.

use crate::sql::{backend, Dialect, SqlStore};
use hoard_core::store::StoreError;
use sqlx::any::AnyPoolOptions;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::{Any, AnyConnection, Connection, Executor, Pool};
use std::path::Path;
use std::time::Duration;

/// Pool sizes and timeouts, from configuration.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Connections per replica to PostgreSQL.
    pub max_connections: u32,
    /// How long a request waits for a connection (or for the server to answer a
    /// connect) before failing with a clear error instead of hanging.
    pub acquire_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// SQLite read connections: enough that 64 concurrent lookups rarely queue for one.
const SQLITE_READERS: u32 = 8;

/// The URL of a SQLite file; the path is percent-encoded the way sqlx decodes it.
pub fn sqlite_url(path: &Path) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
    const PATH: &AsciiSet = &CONTROLS.add(b' ').add(b'%').add(b'?').add(b'#');
    format!(
        "sqlite://{}",
        utf8_percent_encode(&path.to_string_lossy(), PATH)
    )
}

/// Opens `sqlite://...` or `postgres://...` and applies that engine's migrations.
/// Several replicas may do this at once: PostgreSQL migrations run under an
/// advisory lock, so one applies them and the others wait and then find them done.
pub async fn open(url: &str, pool: &PoolConfig) -> Result<SqlStore, StoreError> {
    sqlx::any::install_default_drivers();
    if url.starts_with("sqlite:") {
        open_sqlite(url).await
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        open_postgres(url, pool).await
    } else {
        Err(StoreError::Backend(
            "database URL must start with sqlite:// or postgres://".into(),
        ))
    }
}

/// A connection goes back into the pool only when it is outside every
/// transaction; otherwise it is closed and the pool opens a fresh one.
///
/// An error inside a transaction can end it in the database without sqlx
/// noticing: SQLite rolls back by itself on `SQLITE_FULL`, sqlx's own ROLLBACK
/// then fails and its transaction depth stays at 1, so every later `begin` only
/// makes a savepoint inside a transaction that no longer exists and no later
/// write on that connection is ever committed. The ping first runs the rollback
/// sqlx queued when the transaction was dropped.
fn discard_if_in_transaction(
    conn: &mut AnyConnection,
    _meta: PoolConnectionMetadata,
) -> futures::future::BoxFuture<'_, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        conn.ping().await?;
        let clean = !conn.is_in_transaction();
        if !clean {
            tracing::warn!(
                "a database connection was left inside a failed transaction; replacing it"
            );
        }
        Ok(clean)
    })
}

async fn open_sqlite(url: &str) -> Result<SqlStore, StoreError> {
    let base = url.split('?').next().unwrap_or(url);
    // All writes go through one connection: SQLite has one writer anyway, and this
    // avoids lock-upgrade failures between connections.
    let write = AnyPoolOptions::new()
        .max_connections(1)
        .after_release(discard_if_in_transaction)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                )
                .await
                .map(|_| ())
            })
        })
        .connect(&format!("{base}?mode=rwc"))
        .await
        .map_err(backend)?;
    migrate(&write, Dialect::Sqlite).await?;
    // The OS page cache holds the database file too; a small cache per reader keeps
    // memory flat as the database grows.
    let read = AnyPoolOptions::new()
        .max_connections(SQLITE_READERS)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA busy_timeout = 10000; PRAGMA cache_size = -1024;")
                    .await
                    .map(|_| ())
            })
        })
        .connect(&format!("{base}?mode=ro"))
        .await
        .map_err(backend)?;
    Ok(SqlStore::new(Dialect::Sqlite, write, read))
}

async fn open_postgres(url: &str, pool: &PoolConfig) -> Result<SqlStore, StoreError> {
    let conn = AnyPoolOptions::new()
        .max_connections(pool.max_connections)
        .acquire_timeout(pool.acquire_timeout)
        .after_release(discard_if_in_transaction)
        .connect(url)
        .await
        .map_err(|e| StoreError::Backend(format!("connecting to PostgreSQL: {e}")))?;
    migrate(&conn, Dialect::Postgres).await?;
    Ok(SqlStore::new(Dialect::Postgres, conn.clone(), conn))
}

/// The migrations this build carries for an engine.
pub(crate) fn migrator(dialect: Dialect) -> sqlx::migrate::Migrator {
    match dialect {
        Dialect::Sqlite => sqlx::migrate!("../../migrations/sqlite"),
        Dialect::Postgres => sqlx::migrate!("../../migrations/postgres"),
    }
}

async fn migrate(pool: &Pool<Any>, dialect: Dialect) -> Result<(), StoreError> {
    migrator(dialect)
        .run(pool)
        .await
        .map_err(|e| StoreError::Backend(format!("migrations: {e}")))
}
