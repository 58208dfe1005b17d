//! The embedded default: SQLite in WAL mode. All writes go through one connection
//! (SQLite has one writer anyway; this avoids lock-upgrade failures), reads through
//! a pool.

use crate::keys::prefix_upper_bound;
use async_trait::async_trait;
use hoard_core::model::{blob_hash, Entry, EntryState, Part, StoredObject};
use hoard_core::store::{BlobCommit, Finalized, MetaStore, Reservation, Staged, StoreError};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
}

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

const ENTRY_COLUMNS: &str =
    "id, namespace, scope, key, version, state, size, hash, created_at, last_accessed_at";

fn entry_from_row(row: &SqliteRow) -> Result<Entry, StoreError> {
    let key: Vec<u8> = row.try_get("key").map_err(backend)?;
    let state: String = row.try_get("state").map_err(backend)?;
    Ok(Entry {
        id: row.try_get("id").map_err(backend)?,
        namespace: row.try_get("namespace").map_err(backend)?,
        scope: row.try_get("scope").map_err(backend)?,
        key: String::from_utf8(key).map_err(|e| StoreError::Backend(e.to_string()))?,
        version: row.try_get("version").map_err(backend)?,
        state: EntryState::parse(&state)
            .ok_or_else(|| StoreError::Backend(format!("unknown entry state {state:?}")))?,
        size: row.try_get("size").map_err(backend)?,
        hash: row.try_get("hash").map_err(backend)?,
        created_at: row.try_get("created_at").map_err(backend)?,
        last_accessed_at: row.try_get("last_accessed_at").map_err(backend)?,
    })
}

/// Read connections: enough that 64 concurrent lookups rarely queue for one.
const READERS: u32 = 8;

/// Rows of a multi-row INSERT per statement; keeps under SQLite's variable limit.
const INSERT_CHUNK: usize = 500;

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        Self::connect(options).await
    }

    /// Opens a database from a `sqlite://` URL.
    pub async fn open_url(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(backend)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        Self::connect(options).await
    }

    async fn connect(options: SqliteConnectOptions) -> Result<SqliteStore, StoreError> {
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(backend)?;
        sqlx::migrate!("../../migrations/sqlite")
            .run(&write)
            .await
            .map_err(|e| StoreError::Backend(format!("migrations: {e}")))?;
        // The OS page cache holds the database file too; a small cache per reader
        // keeps memory flat as the database grows.
        let read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.read_only(true).pragma("cache_size", "-1024"))
            .await
            .map_err(backend)?;
        Ok(SqliteStore { write, read })
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Inserts a committed entry directly (benchmarks and tests seed with it).
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_committed(
        &self,
        namespace: &str,
        scope: &str,
        key: &str,
        version: &str,
        created_at: i64,
        object: &str,
        size: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO entries (namespace, scope, key, version, state, size, hash, created_at, last_accessed_at)
             VALUES (?, ?, ?, ?, 'committed', ?, '', ?, ?) RETURNING id",
        )
        .bind(namespace)
        .bind(scope)
        .bind(key.as_bytes())
        .bind(version)
        .bind(size)
        .bind(created_at)
        .bind(created_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "INSERT INTO parts (entry_id, idx, block_id, start, size, object, sha256) VALUES (?, 0, NULL, 0, ?, ?, '')",
        )
        .bind(id)
        .bind(size)
        .bind(object)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(id)
    }
}

impl SqliteStore {
    /// Inserts many committed one-part entries in one transaction (benchmarks and
    /// tests seed large databases with it). `entries` are (key, created_at).
    pub async fn insert_committed_bulk(
        &self,
        entries: Vec<(String, i64)>,
        namespace: &str,
        scope: &str,
        version: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        for chunk in entries.chunks(INSERT_CHUNK) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO entries (namespace, scope, key, version, state, size, hash, created_at, last_accessed_at) ",
            );
            qb.push_values(chunk, |mut r, (key, created)| {
                r.push_bind(namespace)
                    .push_bind(scope)
                    .push_bind(key.as_bytes())
                    .push_bind(version)
                    .push_bind("committed")
                    .push_bind(0i64)
                    .push_bind("")
                    .push_bind(*created)
                    .push_bind(*created);
            });
            qb.build().execute(&mut *tx).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(())
    }
}

/// A staged block as read back for a commit.
struct BlockRow {
    object: String,
    size: i64,
    sha256: String,
}

async fn insert_parts(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    entry_id: i64,
    parts: &[(Option<&str>, &BlockRow)],
) -> Result<(i64, String), StoreError> {
    let mut start = 0i64;
    let mut rows = Vec::with_capacity(parts.len());
    for (idx, (block_id, b)) in parts.iter().enumerate() {
        rows.push((idx as i64, *block_id, start, *b));
        start += b.size;
    }
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO parts (entry_id, idx, block_id, start, size, object, sha256) ",
        );
        qb.push_values(chunk, |mut r, (idx, block_id, start, b)| {
            r.push_bind(entry_id)
                .push_bind(*idx)
                .push_bind(*block_id)
                .push_bind(*start)
                .push_bind(b.size)
                .push_bind(b.object.as_str())
                .push_bind(b.sha256.as_str());
        });
        qb.build().execute(&mut **tx).await.map_err(backend)?;
    }
    let digests: Vec<&str> = parts.iter().map(|(_, b)| b.sha256.as_str()).collect();
    let hash = if digests.is_empty() {
        // The empty blob: sha256 of nothing.
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_string()
    } else {
        blob_hash(&digests)
    };
    Ok((start, hash))
}

/// The entry (in any state) a namespace, scope, version and key name:
/// (id, state, created_at, size).
async fn entry_by_identity(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    namespace: &str,
    scope: &str,
    version: &str,
    key: &str,
) -> Result<Option<(i64, String, i64, i64)>, StoreError> {
    sqlx::query_as(
        "SELECT id, state, created_at, size FROM entries
         WHERE namespace = ? AND scope = ? AND version = ? AND key = ?",
    )
    .bind(namespace)
    .bind(scope)
    .bind(version)
    .bind(key.as_bytes())
    .fetch_optional(&mut **tx)
    .await
    .map_err(backend)
}

async fn entry_state(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    entry_id: i64,
) -> Result<Option<(EntryState, i64)>, StoreError> {
    let row: Option<(String, i64)> = sqlx::query_as("SELECT state, size FROM entries WHERE id = ?")
        .bind(entry_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
    Ok(row.and_then(|(s, size)| EntryState::parse(&s).map(|s| (s, size))))
}

async fn object_names(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    sql: &str,
    entry_id: i64,
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(sql)
        .bind(entry_id)
        .fetch_all(&mut **tx)
        .await
        .map_err(backend)
}

#[async_trait]
impl MetaStore for SqliteStore {
    async fn reserve(
        &self,
        namespace: &str,
        scope: &str,
        key: &str,
        version: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<Reservation, StoreError> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        let existing = entry_by_identity(&mut tx, namespace, scope, version, key).await?;
        let mut replaced = None;
        if let Some((id, state, created_at, _)) = existing {
            if state == EntryState::Committed.as_str() || created_at >= stale_before {
                return Ok(Reservation::Taken);
            }
            sqlx::query("DELETE FROM entries WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            replaced = Some(id);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO entries (namespace, scope, key, version, state, created_at, last_accessed_at)
             VALUES (?, ?, ?, ?, 'pending', ?, ?) RETURNING id",
        )
        .bind(namespace)
        .bind(scope)
        .bind(key.as_bytes())
        .bind(version)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Reservation::Created { id, replaced })
    }

    async fn entry(&self, id: i64) -> Result<Option<Entry>, StoreError> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn stage_block(
        &self,
        entry_id: i64,
        block_id: &str,
        stored: &StoredObject,
    ) -> Result<Staged, StoreError> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        // The upload's state, the object this block id had, and whether a committed
        // (not yet finalized) block list still uses it: one round trip.
        let row: Option<(String, Option<String>, bool)> = sqlx::query_as(
            "SELECT e.state, b.object,
                    EXISTS (SELECT 1 FROM parts p WHERE p.entry_id = e.id AND p.object = b.object)
             FROM entries e LEFT JOIN blocks b ON b.entry_id = e.id AND b.block_id = ?
             WHERE e.id = ?",
        )
        .bind(block_id)
        .bind(entry_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let (old, in_use) = match row {
            Some((state, old, in_use)) if state != EntryState::Committed.as_str() => (old, in_use),
            _ => return Ok(Staged::NotPending),
        };
        sqlx::query(
            "INSERT INTO blocks (entry_id, block_id, object, size, sha256) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (entry_id, block_id) DO UPDATE
             SET object = excluded.object, size = excluded.size, sha256 = excluded.sha256",
        )
        .bind(entry_id)
        .bind(block_id)
        .bind(&stored.object)
        .bind(stored.size)
        .bind(&stored.sha256)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let replaced = old.filter(|_| !in_use);
        tx.commit().await.map_err(backend)?;
        Ok(Staged::Ok { replaced })
    }

    async fn commit_block_list(
        &self,
        entry_id: i64,
        block_ids: &[String],
        _now: i64,
    ) -> Result<BlobCommit, StoreError> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        match entry_state(&mut tx, entry_id).await? {
            None => return Ok(BlobCommit::NotFound),
            Some((EntryState::Committed, size)) => {
                let committed: Vec<Option<String>> = sqlx::query_scalar(
                    "SELECT block_id FROM parts WHERE entry_id = ? ORDER BY idx",
                )
                .bind(entry_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
                let same = committed.len() == block_ids.len()
                    && committed
                        .iter()
                        .zip(block_ids)
                        .all(|(c, b)| c.as_deref() == Some(b.as_str()));
                return Ok(if same {
                    BlobCommit::AlreadyCommitted { size }
                } else {
                    BlobCommit::Immutable
                });
            }
            Some(_) => {}
        }
        let staged: Vec<(String, String, i64, String)> =
            sqlx::query_as("SELECT block_id, object, size, sha256 FROM blocks WHERE entry_id = ?")
                .bind(entry_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
        let staged: HashMap<String, BlockRow> = staged
            .into_iter()
            .map(|(id, object, size, sha256)| {
                (
                    id,
                    BlockRow {
                        object,
                        size,
                        sha256,
                    },
                )
            })
            .collect();
        let mut parts = Vec::with_capacity(block_ids.len());
        for id in block_ids {
            match staged.get(id) {
                Some(b) => parts.push((Some(id.as_str()), b)),
                None => return Ok(BlobCommit::UnknownBlock(id.clone())),
            }
        }
        let old_parts = object_names(
            &mut tx,
            "SELECT object FROM parts WHERE entry_id = ?",
            entry_id,
        )
        .await?;
        sqlx::query("DELETE FROM parts WHERE entry_id = ?")
            .bind(entry_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let (size, hash) = insert_parts(&mut tx, entry_id, &parts).await?;
        // Blocks left out of the list are discarded, as Azure does.
        let listed: HashSet<&str> = block_ids.iter().map(String::as_str).collect();
        let mut dropped = Vec::new();
        for (id, b) in &staged {
            if !listed.contains(id.as_str()) {
                sqlx::query("DELETE FROM blocks WHERE entry_id = ? AND block_id = ?")
                    .bind(entry_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                dropped.push(b.object.clone());
            }
        }
        sqlx::query("UPDATE entries SET state = 'uploaded', size = ?, hash = ? WHERE id = ?")
            .bind(size)
            .bind(&hash)
            .bind(entry_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        let used: HashSet<&str> = parts.iter().map(|(_, b)| b.object.as_str()).collect();
        let mut unused: Vec<String> = old_parts
            .into_iter()
            .chain(dropped)
            .filter(|o| !used.contains(o.as_str()))
            .collect();
        unused.sort();
        unused.dedup();
        Ok(BlobCommit::Ok { size, unused })
    }

    async fn commit_single(
        &self,
        entry_id: i64,
        stored: &StoredObject,
        _now: i64,
    ) -> Result<BlobCommit, StoreError> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        match entry_state(&mut tx, entry_id).await? {
            None => return Ok(BlobCommit::NotFound),
            Some((EntryState::Committed, _)) => return Ok(BlobCommit::Immutable),
            Some(_) => {}
        }
        let mut unused = object_names(
            &mut tx,
            "SELECT object FROM parts WHERE entry_id = ?",
            entry_id,
        )
        .await?;
        unused.extend(
            object_names(
                &mut tx,
                "SELECT object FROM blocks WHERE entry_id = ?",
                entry_id,
            )
            .await?,
        );
        for table in [
            "DELETE FROM parts WHERE entry_id = ?",
            "DELETE FROM blocks WHERE entry_id = ?",
        ] {
            sqlx::query(table)
                .bind(entry_id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        let row = BlockRow {
            object: stored.object.clone(),
            size: stored.size,
            sha256: stored.sha256.clone(),
        };
        let (size, hash) = insert_parts(&mut tx, entry_id, &[(None, &row)]).await?;
        sqlx::query("UPDATE entries SET state = 'uploaded', size = ?, hash = ? WHERE id = ?")
            .bind(size)
            .bind(&hash)
            .bind(entry_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        unused.sort();
        unused.dedup();
        unused.retain(|o| o != &stored.object);
        Ok(BlobCommit::Ok { size, unused })
    }

    async fn finalize(
        &self,
        namespace: &str,
        scope: &str,
        key: &str,
        version: &str,
        size: i64,
        now: i64,
    ) -> Result<Finalized, StoreError> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        let row = entry_by_identity(&mut tx, namespace, scope, version, key).await?;
        let Some((id, state, _, stored_size)) = row else {
            return Ok(Finalized::NotFound);
        };
        match EntryState::parse(&state) {
            Some(EntryState::Pending) | None => Ok(Finalized::NoBlob),
            Some(_) if stored_size != size => Ok(Finalized::SizeMismatch {
                expected: stored_size,
            }),
            Some(EntryState::Committed) => Ok(Finalized::Ok(id)),
            Some(EntryState::Uploaded) => {
                sqlx::query(
                    "UPDATE entries SET state = 'committed', created_at = ?, last_accessed_at = ? WHERE id = ?",
                )
                .bind(now)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                sqlx::query("DELETE FROM blocks WHERE entry_id = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                tx.commit().await.map_err(backend)?;
                Ok(Finalized::Ok(id))
            }
        }
    }

    async fn find_exact(
        &self,
        namespace: &str,
        scope: &str,
        version: &str,
        key: &str,
    ) -> Result<Option<Entry>, StoreError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries
             WHERE namespace = ? AND scope = ? AND version = ? AND key = ? AND state = 'committed'"
        );
        let row = sqlx::query(&sql)
            .bind(namespace)
            .bind(scope)
            .bind(version)
            .bind(key.as_bytes())
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn find_newest_with_prefix(
        &self,
        namespace: &str,
        scope: &str,
        version: &str,
        prefix: &str,
    ) -> Result<Option<Entry>, StoreError> {
        let upper = prefix_upper_bound(prefix.as_bytes());
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries
             WHERE namespace = ? AND scope = ? AND version = ? AND key >= ? {}
               AND state = 'committed'
             ORDER BY created_at DESC, id DESC LIMIT 1",
            if upper.is_some() { "AND key < ?" } else { "" }
        );
        let mut q = sqlx::query(&sql)
            .bind(namespace)
            .bind(scope)
            .bind(version)
            .bind(prefix.as_bytes());
        if let Some(u) = upper {
            q = q.bind(u);
        }
        let row = q.fetch_optional(&self.read).await.map_err(backend)?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn list(
        &self,
        namespace: &str,
        scopes: &[String],
        prefixes: &[String],
        limit: i64,
    ) -> Result<Vec<Entry>, StoreError> {
        if scopes.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE state = 'committed' AND namespace = "
        ));
        qb.push_bind(namespace);
        qb.push(" AND scope IN (");
        let mut sep = qb.separated(", ");
        for s in scopes {
            sep.push_bind(s.as_str());
        }
        qb.push(")");
        if !prefixes.is_empty() {
            qb.push(" AND (");
            for (i, p) in prefixes.iter().enumerate() {
                if i > 0 {
                    qb.push(" OR ");
                }
                qb.push("(key >= ").push_bind(p.as_bytes().to_vec());
                if let Some(u) = prefix_upper_bound(p.as_bytes()) {
                    qb.push(" AND key < ").push_bind(u);
                }
                qb.push(")");
            }
            qb.push(")");
        }
        qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(limit);
        let rows = qb.build().fetch_all(&self.read).await.map_err(backend)?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn parts(&self, entry_id: i64) -> Result<Vec<Part>, StoreError> {
        let rows: Vec<(i64, i64, String)> =
            sqlx::query_as("SELECT start, size, object FROM parts WHERE entry_id = ? ORDER BY idx")
                .bind(entry_id)
                .fetch_all(&self.read)
                .await
                .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(offset, size, object)| Part {
                offset,
                size,
                object,
            })
            .collect())
    }

    async fn delete_key(
        &self,
        namespace: &str,
        scope: &str,
        key: &str,
    ) -> Result<Vec<i64>, StoreError> {
        sqlx::query_scalar(
            "DELETE FROM entries WHERE namespace = ? AND scope = ? AND key = ? AND state = 'committed'
             RETURNING id",
        )
        .bind(namespace)
        .bind(scope)
        .bind(key.as_bytes())
        .fetch_all(&self.write)
        .await
        .map_err(backend)
    }

    async fn delete_stale_uploads(&self, before: i64, limit: i64) -> Result<Vec<i64>, StoreError> {
        sqlx::query_scalar(
            "DELETE FROM entries WHERE id IN (
                SELECT id FROM entries WHERE state IN ('pending', 'uploaded') AND created_at < ? LIMIT ?
             ) RETURNING id",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.write)
        .await
        .map_err(backend)
    }

    async fn touch(&self, accesses: &[(i64, i64)]) -> Result<(), StoreError> {
        // One statement per chunk, not per entry: a busy server flushes tens of
        // thousands of accesses at once, and the writer must stay free for uploads.
        let mut tx = self.write.begin().await.map_err(backend)?;
        for chunk in accesses.chunks(INSERT_CHUNK) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("WITH seen (id, at) AS (");
            qb.push_values(chunk, |mut r, (id, at)| {
                r.push_bind(*id).push_bind(*at);
            });
            qb.push(
                ") UPDATE entries SET last_accessed_at = max(entries.last_accessed_at, seen.at)
                 FROM seen WHERE entries.id = seen.id",
            );
            qb.build().execute(&mut *tx).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(())
    }
}
