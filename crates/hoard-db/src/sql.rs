//! The metadata store on SQL: the embedded SQLite file (the default) or a shared
//! PostgreSQL server (many replicas). One implementation over sqlx's Any driver;
//! the few places the engines differ ask [`Dialect`].
//!
//! One long file on purpose: every statement of the store sits here next to the
//! others that touch the same tables, so a schema change is reviewed against all
//! of its queries at once.
//!
//! Statements use numbered placeholders (`$1`), which both engines accept. sqlx's
//! QueryBuilder writes `?` for the Any driver, so multi-row statements are built
//! with [`values`] instead.

use crate::keys::prefix_upper_bound;
use async_trait::async_trait;
use hoard_core::catalog::{CatalogQuery, CatalogSort, NamespaceUsage, Selection};
use hoard_core::model::{blob_hash, Entry, EntryState, Part, StoredObject};
use hoard_core::policy::Candidate;
use hoard_core::store::{BlobCommit, Finalized, MetaStore, Reservation, Staged, StoreError};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Row lock for read-then-write steps of one upload. SQLite needs none: its
    /// writes all go through one connection, one transaction at a time.
    fn lock(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }
}

pub struct SqlStore {
    dialect: Dialect,
    write: AnyPool,
    read: AnyPool,
}

pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    if is_disk_full(&e) && !DISK_FULL.swap(true, Ordering::Relaxed) {
        tracing::error!(error = %e, "the database's disk is full: writes answer 503 until space is freed; reads go on");
    }
    StoreError::Backend(e.to_string())
}

/// Set while the database reports a full disk, so the cause is logged once
/// when it starts and once when it ends, not once per refused write.
static DISK_FULL: AtomicBool = AtomicBool::new(false);

/// SQLite's `SQLITE_FULL` (13) and PostgreSQL's `disk_full` (53100).
fn is_disk_full(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "13" || c == "53100")
}

/// Commits a write transaction; a success after a full disk says writes work
/// again.
async fn commit(tx: Tx<'_>) -> Result<(), StoreError> {
    tx.commit().await.map_err(backend)?;
    if DISK_FULL.swap(false, Ordering::Relaxed) {
        tracing::info!("the database accepts writes again");
    }
    Ok(())
}

const ENTRY_COLUMNS: &str =
    "id, namespace, scope, key, version, state, size, hash, created_at, last_accessed_at";

fn entry_from_row(row: &AnyRow) -> Result<Entry, StoreError> {
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

/// Rows of a multi-row statement; keeps well under both engines' parameter limits.
const INSERT_CHUNK: usize = 500;
/// Rows per statement of two-column deletes and schedules (4,000 parameters,
/// well inside SQLite's 32,766 and PostgreSQL's 65,535).
const DELETE_CHUNK: usize = 2000;

/// `($1, $2), ($3, $4), ...`: placeholders for `rows` rows of `columns` values,
/// numbered from `$first`.
fn values(rows: usize, columns: usize, first: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..columns {
            if c > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(first + r * columns + c).to_string());
        }
        out.push(')');
    }
    out
}

impl SqlStore {
    pub(crate) fn new(dialect: Dialect, write: AnyPool, read: AnyPool) -> SqlStore {
        SqlStore {
            dialect,
            write,
            read,
        }
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// The shared setting `name`; when no replica has set it yet, `proposed`
    /// becomes its value. Every replica gets the same answer.
    pub async fn setting_or_init(&self, name: &str, proposed: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(proposed)
        .execute(&self.write)
        .await
        .map_err(backend)?;
        sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(&self.write)
            .await
            .map_err(backend)
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
             VALUES ($1, $2, $3, $4, 'committed', $5, '', $6, $6) RETURNING id",
        )
        .bind(namespace)
        .bind(scope)
        .bind(key.as_bytes())
        .bind(version)
        .bind(size)
        .bind(created_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "INSERT INTO parts (entry_id, idx, block_id, start, size, object, sha256)
             VALUES ($1, 0, NULL, 0, $2, $3, '')",
        )
        .bind(id)
        .bind(size)
        .bind(object)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await?;
        Ok(id)
    }

    /// Inserts many committed entries (metadata only, no parts) in one
    /// transaction: benchmarks seed large databases with it.
    pub async fn insert_committed_bulk(&self, entries: &[SeedEntry]) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        for chunk in entries.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO entries (namespace, scope, key, version, state, size, hash, created_at, last_accessed_at)
                 VALUES {}",
                values(chunk.len(), 9, 1)
            );
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q
                    .bind(e.namespace.as_str())
                    .bind(e.scope.as_str())
                    .bind(e.key.as_bytes())
                    .bind(e.version.as_str())
                    .bind("committed")
                    .bind(e.size)
                    .bind("")
                    .bind(e.last_accessed_at)
                    .bind(e.last_accessed_at);
            }
            q.execute(&mut *tx).await.map_err(backend)?;
        }
        commit(tx).await?;
        Ok(())
    }
}

/// A committed entry to seed with [`SqlStore::insert_committed_bulk`]; created
/// and last used at `last_accessed_at`.
#[derive(Debug, Clone)]
pub struct SeedEntry {
    pub namespace: String,
    pub scope: String,
    pub key: String,
    pub version: String,
    pub size: i64,
    pub last_accessed_at: i64,
}

/// An entry as the evictor reads it: id, namespace, scope, key, size, last access.
type CandidateRow = (i64, String, String, Vec<u8>, i64, i64);

fn candidate(row: CandidateRow) -> Candidate {
    let (id, namespace, scope, key, size, last_accessed_at) = row;
    Candidate {
        id,
        namespace,
        scope,
        key: String::from_utf8_lossy(&key).into_owned(),
        size: size.max(0) as u64,
        last_accessed_at,
    }
}

/// A staged block as read back for a commit.
struct BlockRow {
    object: String,
    size: i64,
    sha256: String,
    crc64: String,
}

type Tx<'a> = sqlx::Transaction<'a, Any>;

/// Schedules the objects under `prefixes` for deletion at `not_before`.
async fn doom_in(tx: &mut Tx<'_>, prefixes: &[String], not_before: i64) -> Result<(), StoreError> {
    for chunk in prefixes.chunks(DELETE_CHUNK) {
        let sql = format!(
            "INSERT INTO doomed_objects (prefix, not_before) VALUES {}
             ON CONFLICT (prefix) DO UPDATE SET not_before = excluded.not_before",
            values(chunk.len(), 2, 1)
        );
        let mut q = sqlx::query(&sql);
        for prefix in chunk {
            q = q.bind(prefix.as_str()).bind(not_before);
        }
        q.execute(&mut **tx).await.map_err(backend)?;
    }
    Ok(())
}

async fn insert_parts(
    tx: &mut Tx<'_>,
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
        let sql = format!(
            "INSERT INTO parts (entry_id, idx, block_id, start, size, object, sha256, crc64) VALUES {}",
            values(chunk.len(), 8, 1)
        );
        let mut q = sqlx::query(&sql);
        for (idx, block_id, start, b) in chunk {
            q = q
                .bind(entry_id)
                .bind(*idx)
                .bind(*block_id)
                .bind(*start)
                .bind(b.size)
                .bind(b.object.as_str())
                .bind(b.sha256.as_str())
                .bind(b.crc64.as_str());
        }
        q.execute(&mut **tx).await.map_err(backend)?;
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

/// Runs a statement that takes the entry id as its only parameter.
async fn by_entry(tx: &mut Tx<'_>, sql: &str, entry_id: i64) -> Result<(), StoreError> {
    sqlx::query(sql)
        .bind(entry_id)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    Ok(())
}

/// Deletes the parts and staged blocks of `entry_ids` (no foreign key cascades
/// them: see the migration `parts_without_cascade`).
async fn delete_rows_of(tx: &mut Tx<'_>, entry_ids: &[i64]) -> Result<(), StoreError> {
    for chunk in entry_ids.chunks(INSERT_CHUNK) {
        for table in ["parts", "blocks"] {
            let sql = format!(
                "DELETE FROM {table} WHERE entry_id IN {}",
                values(1, chunk.len(), 1)
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut **tx).await.map_err(backend)?;
        }
    }
    Ok(())
}

/// Deletes entries with a statement that returns their ids, and their rows in
/// `parts` and `blocks`, in one transaction.
async fn delete_with_rows<'q>(
    pool: &AnyPool,
    query: sqlx::query::QueryScalar<'q, Any, i64, sqlx::any::AnyArguments<'q>>,
) -> Result<Vec<i64>, StoreError> {
    let mut tx = pool.begin().await.map_err(backend)?;
    let ids = query.fetch_all(&mut *tx).await.map_err(backend)?;
    delete_rows_of(&mut tx, &ids).await?;
    commit(tx).await?;
    Ok(ids)
}

async fn object_names(
    tx: &mut Tx<'_>,
    sql: &str,
    entry_id: i64,
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(sql)
        .bind(entry_id)
        .fetch_all(&mut **tx)
        .await
        .map_err(backend)
}

impl SqlStore {
    /// The entry (in any state) a namespace, scope, version and key name, locked
    /// for this transaction: (id, state, created_at, size).
    async fn entry_by_identity(
        &self,
        tx: &mut Tx<'_>,
        namespace: &str,
        scope: &str,
        version: &str,
        key: &str,
    ) -> Result<Option<(i64, String, i64, i64)>, StoreError> {
        let sql = format!(
            "SELECT id, state, created_at, size FROM entries
             WHERE namespace = $1 AND scope = $2 AND version = $3 AND key = $4{}",
            self.dialect.lock()
        );
        sqlx::query_as(&sql)
            .bind(namespace)
            .bind(scope)
            .bind(version)
            .bind(key.as_bytes())
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)
    }

    /// An entry's state and size, locked for this transaction.
    async fn entry_state(
        &self,
        tx: &mut Tx<'_>,
        entry_id: i64,
    ) -> Result<Option<(EntryState, i64)>, StoreError> {
        let sql = format!(
            "SELECT state, size FROM entries WHERE id = $1{}",
            self.dialect.lock()
        );
        let row: Option<(String, i64)> = sqlx::query_as(&sql)
            .bind(entry_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?;
        Ok(row.and_then(|(s, size)| EntryState::parse(&s).map(|s| (s, size))))
    }

    /// Records an upload's blob as `parts` and moves it to 'uploaded'.
    async fn set_blob(
        &self,
        tx: &mut Tx<'_>,
        entry_id: i64,
        parts: &[(Option<&str>, &BlockRow)],
    ) -> Result<i64, StoreError> {
        by_entry(tx, "DELETE FROM parts WHERE entry_id = $1", entry_id).await?;
        let (size, hash) = insert_parts(tx, entry_id, parts).await?;
        sqlx::query("UPDATE entries SET state = 'uploaded', size = $1, hash = $2 WHERE id = $3")
            .bind(size)
            .bind(&hash)
            .bind(entry_id)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
        Ok(size)
    }
}

#[async_trait]
impl MetaStore for SqlStore {
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
        let existing = self
            .entry_by_identity(&mut tx, namespace, scope, version, key)
            .await?;
        let mut replaced = None;
        if let Some((id, state, created_at, _)) = existing {
            if state == EntryState::Committed.as_str() || created_at >= stale_before {
                return Ok(Reservation::Taken);
            }
            by_entry(&mut tx, "DELETE FROM entries WHERE id = $1", id).await?;
            delete_rows_of(&mut tx, &[id]).await?;
            replaced = Some(id);
        }
        // Another replica may reserve the same key between the read above and this
        // insert; the unique key decides, and the loser is told the key is taken.
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO entries (namespace, scope, key, version, state, created_at, last_accessed_at)
             VALUES ($1, $2, $3, $4, 'pending', $5, $5)
             ON CONFLICT (namespace, scope, version, key) DO NOTHING RETURNING id",
        )
        .bind(namespace)
        .bind(scope)
        .bind(key.as_bytes())
        .bind(version)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(id) = id else {
            return Ok(Reservation::Taken);
        };
        commit(tx).await?;
        Ok(Reservation::Created { id, replaced })
    }

    async fn open_uploads(&self, namespace: &str, since: i64) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM entries
             WHERE namespace = $1 AND state IN ('pending', 'uploaded') AND created_at >= $2",
        )
        .bind(namespace)
        .bind(since)
        .fetch_one(&self.write)
        .await
        .map_err(backend)?;
        Ok(n.max(0) as u64)
    }

    async fn entry(&self, id: i64) -> Result<Option<Entry>, StoreError> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn staged_bytes(
        &self,
        namespace: &str,
        entry_id: i64,
        block_id: &str,
    ) -> Result<(u64, u64), StoreError> {
        let (all, this): (i64, i64) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN b.entry_id = $2 THEN b.size ELSE 0 END), 0) AS BIGINT)
             FROM blocks b JOIN entries e ON e.id = b.entry_id
             WHERE e.namespace = $1 AND e.state IN ('pending', 'uploaded')
               AND NOT (b.entry_id = $2 AND b.block_id = $3)",
        )
        .bind(namespace)
        .bind(entry_id)
        .bind(block_id)
        .fetch_one(&self.read)
        .await
        .map_err(backend)?;
        Ok((all.max(0) as u64, this.max(0) as u64))
    }

    async fn staged_blocks(&self, entry_id: i64) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as("SELECT block_id, size FROM blocks WHERE entry_id = $1")
            .bind(entry_id)
            .fetch_all(&self.read)
            .await
            .map_err(backend)
    }

    async fn committed_objects(
        &self,
        entry_ids: &[i64],
    ) -> Result<Vec<(i64, Option<String>)>, StoreError> {
        let mut found = Vec::new();
        for chunk in entry_ids.chunks(INSERT_CHUNK) {
            let sql = format!(
                "SELECT e.id, p.object FROM entries e LEFT JOIN parts p ON p.entry_id = e.id
                 WHERE e.id IN {} AND e.state = 'committed'",
                values(1, chunk.len(), 1)
            );
            let mut q = sqlx::query_as::<_, (i64, Option<String>)>(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            found.extend(q.fetch_all(&self.read).await.map_err(backend)?);
        }
        Ok(found)
    }

    async fn stage_block(
        &self,
        entry_id: i64,
        block_id: &str,
        stored: &StoredObject,
    ) -> Result<Staged, StoreError> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        match self.entry_state(&mut tx, entry_id).await? {
            Some((EntryState::Pending | EntryState::Uploaded, _)) => {}
            _ => return Ok(Staged::NotPending),
        }
        // The object this block id had, and whether a committed (not yet
        // finalized) block list still uses it.
        let old: Option<(String, i64)> = sqlx::query_as(
            "SELECT b.object,
                    CASE WHEN EXISTS (SELECT 1 FROM parts p WHERE p.entry_id = b.entry_id AND p.object = b.object)
                         THEN 1 ELSE 0 END
             FROM blocks b WHERE b.entry_id = $1 AND b.block_id = $2",
        )
        .bind(entry_id)
        .bind(block_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "INSERT INTO blocks (entry_id, block_id, object, size, sha256, crc64) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (entry_id, block_id) DO UPDATE
             SET object = excluded.object, size = excluded.size, sha256 = excluded.sha256,
                 crc64 = excluded.crc64",
        )
        .bind(entry_id)
        .bind(block_id)
        .bind(&stored.object)
        .bind(stored.size)
        .bind(&stored.sha256)
        .bind(&stored.crc64)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await?;
        let replaced = old.and_then(|(object, in_use)| (in_use == 0).then_some(object));
        Ok(Staged::Ok { replaced })
    }

    async fn commit_block_list(
        &self,
        entry_id: i64,
        block_ids: &[String],
        max_size: i64,
        _now: i64,
    ) -> Result<BlobCommit, StoreError> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        match self.entry_state(&mut tx, entry_id).await? {
            None => return Ok(BlobCommit::NotFound),
            Some((EntryState::Committed, size)) => {
                let committed: Vec<Option<String>> = sqlx::query_scalar(
                    "SELECT block_id FROM parts WHERE entry_id = $1 ORDER BY idx",
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
        let staged: Vec<(String, String, i64, String, String)> = sqlx::query_as(
            "SELECT block_id, object, size, sha256, crc64 FROM blocks WHERE entry_id = $1",
        )
        .bind(entry_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let staged: HashMap<String, BlockRow> = staged
            .into_iter()
            .map(|(id, object, size, sha256, crc64)| {
                (
                    id,
                    BlockRow {
                        object,
                        size,
                        sha256,
                        crc64,
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
        let total: i64 = parts.iter().map(|(_, b)| b.size).sum();
        if total > max_size {
            return Ok(BlobCommit::TooLarge { size: total });
        }
        let old_parts = object_names(
            &mut tx,
            "SELECT object FROM parts WHERE entry_id = $1",
            entry_id,
        )
        .await?;
        let size = self.set_blob(&mut tx, entry_id, &parts).await?;
        // Blocks left out of the list are discarded, as Azure does.
        let listed: HashSet<&str> = block_ids.iter().map(String::as_str).collect();
        let mut dropped = Vec::new();
        for (id, b) in &staged {
            if !listed.contains(id.as_str()) {
                sqlx::query("DELETE FROM blocks WHERE entry_id = $1 AND block_id = $2")
                    .bind(entry_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                dropped.push(b.object.clone());
            }
        }
        commit(tx).await?;
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
        match self.entry_state(&mut tx, entry_id).await? {
            None => return Ok(BlobCommit::NotFound),
            Some((EntryState::Committed, _)) => return Ok(BlobCommit::Immutable),
            Some(_) => {}
        }
        let mut unused = object_names(
            &mut tx,
            "SELECT object FROM parts WHERE entry_id = $1",
            entry_id,
        )
        .await?;
        unused.extend(
            object_names(
                &mut tx,
                "SELECT object FROM blocks WHERE entry_id = $1",
                entry_id,
            )
            .await?,
        );
        by_entry(&mut tx, "DELETE FROM blocks WHERE entry_id = $1", entry_id).await?;
        let row = BlockRow {
            object: stored.object.clone(),
            size: stored.size,
            sha256: stored.sha256.clone(),
            crc64: stored.crc64.clone(),
        };
        let size = self.set_blob(&mut tx, entry_id, &[(None, &row)]).await?;
        commit(tx).await?;
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
        let row = self
            .entry_by_identity(&mut tx, namespace, scope, version, key)
            .await?;
        let Some((id, state, _, stored_size)) = row else {
            return Ok(Finalized::NotFound);
        };
        match EntryState::parse(&state) {
            Some(EntryState::Pending) | None => Ok(Finalized::NoBlob),
            Some(_) if stored_size != size => Ok(Finalized::SizeMismatch {
                expected: stored_size,
            }),
            Some(EntryState::Committed) => Ok(Finalized::Ok {
                id,
                unused: Vec::new(),
            }),
            Some(EntryState::Uploaded) => {
                // Blocks staged after the last block list: no part uses them.
                let unused = object_names(
                    &mut tx,
                    "SELECT object FROM blocks WHERE entry_id = $1
                       AND object NOT IN (SELECT object FROM parts WHERE entry_id = $1)",
                    id,
                )
                .await?;
                sqlx::query(
                    "UPDATE entries SET state = 'committed', created_at = $1, last_accessed_at = $1
                     WHERE id = $2",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                by_entry(&mut tx, "DELETE FROM blocks WHERE entry_id = $1", id).await?;
                commit(tx).await?;
                Ok(Finalized::Ok { id, unused })
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
             WHERE namespace = $1 AND scope = $2 AND version = $3 AND key = $4 AND state = 'committed'"
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
             WHERE namespace = $1 AND scope = $2 AND version = $3 AND key >= $4 {}
               AND state = 'committed'
             ORDER BY created_at DESC, id DESC LIMIT 1",
            if upper.is_some() { "AND key < $5" } else { "" }
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

    async fn find_first(
        &self,
        namespace: &str,
        scopes: &[String],
        version: &str,
        keys: &[&str],
    ) -> Result<Option<Entry>, StoreError> {
        if scopes.is_empty() || keys.is_empty() {
            return Ok(None);
        }
        // The rule ranks (scope i, key j, exact before prefix) as
        // 2 * (i * keys + j) + (0 exact, 1 prefix); the lowest rank found wins.
        let first = |list: &[&str], x: &str| list.iter().position(|y| *y == x);
        let scope_list: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let rank = |scope: &str, key: &str| -> Option<usize> {
            Some(2 * (first(&scope_list, scope)? * keys.len() + first(keys, key)?))
        };

        // One statement for every exact pair: index probes on the unique key.
        let mut n = 2;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        let scope_params: Vec<String> = scopes.iter().map(|_| next()).collect();
        let key_params: Vec<String> = keys.iter().map(|_| next()).collect();
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries
             WHERE namespace = $1 AND version = $2 AND state = 'committed'
               AND scope IN ({}) AND key IN ({})",
            scope_params.join(", "),
            key_params.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(namespace).bind(version);
        for s in scopes {
            q = q.bind(s.as_str());
        }
        for k in keys {
            q = q.bind(k.as_bytes());
        }
        let mut best: Option<(usize, Entry)> = None;
        for row in q.fetch_all(&self.read).await.map_err(backend)? {
            let e = entry_from_row(&row)?;
            if let Some(r) = rank(&e.scope, &e.key) {
                if best.as_ref().is_none_or(|(b, _)| r < *b) {
                    best = Some((r, e));
                }
            }
        }
        // The primary key saved in the first scope: nothing can rank higher.
        let limit = best.as_ref().map_or(usize::MAX, |(r, _)| *r);
        if limit == 0 {
            return Ok(best.map(|(_, e)| e));
        }

        // One more statement for the prefix pairs ranked before that hit:
        // the newest entry under each prefix, one probe each. SQLite allows
        // 500 members in a compound SELECT: 16 scopes x 10 keys stay inside.
        let mut n = 2;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        let mut members = Vec::new();
        let mut binds: Vec<(String, Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        for (si, scope) in scopes.iter().enumerate() {
            for (ki, key) in keys.iter().enumerate() {
                let r = 2 * (si * keys.len() + ki) + 1;
                if r > limit {
                    continue;
                }
                let upper = prefix_upper_bound(key.as_bytes());
                let (sp, kp) = (next(), next());
                let below = upper
                    .as_ref()
                    .map(|_| format!(" AND key < {}", next()))
                    .unwrap_or_default();
                members.push(format!(
                    "SELECT * FROM (SELECT {ENTRY_COLUMNS}, {r} AS pick FROM entries
                     WHERE namespace = $1 AND scope = {sp} AND version = $2
                       AND state = 'committed' AND key >= {kp}{below}
                     ORDER BY created_at DESC, id DESC LIMIT 1) AS m{r}"
                ));
                binds.push((scope.clone(), key.as_bytes().to_vec(), upper));
            }
        }
        if members.is_empty() {
            return Ok(best.map(|(_, e)| e));
        }
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM ({}) AS found ORDER BY pick LIMIT 1",
            members.join(" UNION ALL ")
        );
        let mut q = sqlx::query(&sql).bind(namespace).bind(version);
        for (scope, lower, upper) in binds {
            q = q.bind(scope).bind(lower);
            if let Some(u) = upper {
                q = q.bind(u);
            }
        }
        match q.fetch_optional(&self.read).await.map_err(backend)? {
            Some(row) => Ok(Some(entry_from_row(&row)?)),
            None => Ok(best.map(|(_, e)| e)),
        }
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
        // Parameters in order: namespace, scopes, each prefix's bounds, limit.
        let mut n = 1;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        let scope_params: Vec<String> = scopes.iter().map(|_| next()).collect();
        let mut sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE state = 'committed' AND namespace = $1
             AND scope IN ({})",
            scope_params.join(", ")
        );
        let bounds: Vec<(Vec<u8>, Option<Vec<u8>>)> = prefixes
            .iter()
            .map(|p| (p.as_bytes().to_vec(), prefix_upper_bound(p.as_bytes())))
            .collect();
        if !bounds.is_empty() {
            let ranges: Vec<String> = bounds
                .iter()
                .map(|(_, upper)| match upper {
                    Some(_) => format!("(key >= {} AND key < {})", next(), next()),
                    None => format!("(key >= {})", next()),
                })
                .collect();
            sql.push_str(&format!(" AND ({})", ranges.join(" OR ")));
        }
        sql.push_str(&format!(
            " ORDER BY created_at DESC, id DESC LIMIT {}",
            next()
        ));
        let mut q = sqlx::query(&sql).bind(namespace);
        for s in scopes {
            q = q.bind(s.as_str());
        }
        for (lower, upper) in bounds {
            q = q.bind(lower);
            if let Some(u) = upper {
                q = q.bind(u);
            }
        }
        let rows = q.bind(limit).fetch_all(&self.read).await.map_err(backend)?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn parts(&self, entry_id: i64) -> Result<Vec<Part>, StoreError> {
        let rows: Vec<(i64, i64, String, String, String)> = sqlx::query_as(
            "SELECT start, size, object, sha256, crc64 FROM parts WHERE entry_id = $1 ORDER BY idx",
        )
        .bind(entry_id)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(offset, size, object, sha256, crc64)| Part {
                offset,
                size,
                object,
                sha256,
                crc64,
            })
            .collect())
    }

    async fn delete_key(
        &self,
        namespace: &str,
        scope: &str,
        key: &str,
    ) -> Result<Vec<i64>, StoreError> {
        let query = sqlx::query_scalar(
            "DELETE FROM entries
             WHERE namespace = $1 AND scope = $2 AND key = $3 AND state = 'committed'
             RETURNING id",
        )
        .bind(namespace)
        .bind(scope)
        .bind(key.as_bytes());
        delete_with_rows(&self.write, query).await
    }

    async fn stale_uploads(&self, before: i64, limit: i64) -> Result<Vec<Entry>, StoreError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries
             WHERE state IN ('pending', 'uploaded') AND created_at < $1
             ORDER BY created_at LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.read)
            .await
            .map_err(backend)?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn delete_stale_uploads(&self, before: i64, limit: i64) -> Result<Vec<i64>, StoreError> {
        let query = sqlx::query_scalar(
            "DELETE FROM entries WHERE id IN (
                SELECT id FROM entries
                WHERE state IN ('pending', 'uploaded') AND created_at < $1 LIMIT $2
             ) RETURNING id",
        )
        .bind(before)
        .bind(limit);
        delete_with_rows(&self.write, query).await
    }

    async fn touch(&self, accesses: &[(i64, i64)]) -> Result<(), StoreError> {
        // One statement per chunk, not per entry: a busy server flushes tens of
        // thousands of accesses at once, and the writer must stay free for uploads.
        // Each chunk commits alone and in id order, so two replicas flushing at
        // once hold few row locks, briefly.
        let mut sorted = accesses.to_vec();
        sorted.sort_unstable();
        for chunk in sorted.chunks(INSERT_CHUNK) {
            let sql = format!(
                "WITH seen (id, at) AS (VALUES {})
                 UPDATE entries SET last_accessed_at =
                     CASE WHEN seen.at > entries.last_accessed_at THEN seen.at
                          ELSE entries.last_accessed_at END
                 FROM seen WHERE entries.id = seen.id",
                values(chunk.len(), 2, 1)
            );
            let mut q = sqlx::query(&sql);
            for (id, at) in chunk {
                q = q.bind(*id).bind(*at);
            }
            q.execute(&self.write).await.map_err(backend)?;
        }
        Ok(())
    }

    async fn doom(&self, prefixes: &[String], not_before: i64) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        doom_in(&mut tx, prefixes, not_before).await?;
        commit(tx).await
    }

    async fn due_dooms(&self, now: i64, limit: i64) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT prefix FROM doomed_objects WHERE not_before <= $1 ORDER BY not_before LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.read)
        .await
        .map_err(backend)
    }

    async fn forget_dooms(&self, done: &[(String, Option<i64>)]) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        let owners: Vec<i64> = done.iter().filter_map(|(_, owner)| *owner).collect();
        delete_rows_of(&mut tx, &owners).await?;
        for chunk in done.chunks(INSERT_CHUNK) {
            let sql = format!(
                "DELETE FROM doomed_objects WHERE prefix IN {}",
                values(1, chunk.len(), 1)
            );
            let mut q = sqlx::query(&sql);
            for (prefix, _) in chunk {
                q = q.bind(prefix.as_str());
            }
            q.execute(&mut *tx).await.map_err(backend)?;
        }
        commit(tx).await
    }

    async fn replace_parts(
        &self,
        entry_id: i64,
        old: &[String],
        whole: &StoredObject,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        match self.entry_state(&mut tx, entry_id).await? {
            Some((EntryState::Committed, size)) if size == whole.size => {}
            _ => return Ok(false),
        }
        let current = object_names(
            &mut tx,
            "SELECT object FROM parts WHERE entry_id = $1 ORDER BY idx",
            entry_id,
        )
        .await?;
        if current != old {
            return Ok(false);
        }
        by_entry(&mut tx, "DELETE FROM parts WHERE entry_id = $1", entry_id).await?;
        // The entry's hash stays: it names the content, which is the same.
        let row = BlockRow {
            object: whole.object.clone(),
            size: whole.size,
            sha256: whole.sha256.clone(),
            crc64: whole.crc64.clone(),
        };
        insert_parts(&mut tx, entry_id, &[(None, &row)]).await?;
        commit(tx).await?;
        Ok(true)
    }

    async fn multi_part_entries(&self, after: i64, limit: i64) -> Result<Vec<i64>, StoreError> {
        sqlx::query_scalar(
            "SELECT e.id FROM entries e
             WHERE e.id > $1 AND e.state = 'committed'
               AND (SELECT count(*) FROM parts p WHERE p.entry_id = e.id) > 1
             ORDER BY e.id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await
        .map_err(backend)
    }

    async fn existing_entries(&self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        let mut found = Vec::new();
        for chunk in ids.chunks(INSERT_CHUNK) {
            let sql = format!(
                "SELECT id FROM entries WHERE id IN {}",
                values(1, chunk.len(), 1)
            );
            let mut q = sqlx::query_scalar::<_, i64>(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            found.extend(q.fetch_all(&self.read).await.map_err(backend)?);
        }
        Ok(found)
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        // One statement: of two replicas asking at once, the row lock (or
        // SQLite's single writer) lets one update and the other see its lease.
        let taken: Option<String> = sqlx::query_scalar(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.expires_at < $4 OR leases.holder = excluded.holder
             RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(expires_at)
        .bind(now)
        .fetch_optional(&self.write)
        .await
        .map_err(backend)?;
        Ok(taken.is_some())
    }

    async fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        // One index probe per namespace (a skip scan on the unique index's
        // first column) instead of reading every entry. Namespaces with only
        // unfinished uploads come too; their passes find nothing to plan.
        sqlx::query_scalar(
            "WITH RECURSIVE ns (name) AS (
                 SELECT MIN(namespace) FROM entries
                 UNION ALL
                 SELECT (SELECT MIN(namespace) FROM entries WHERE namespace > ns.name)
                 FROM ns WHERE ns.name IS NOT NULL
             )
             SELECT name FROM ns WHERE name IS NOT NULL ORDER BY name",
        )
        .fetch_all(&self.read)
        .await
        .map_err(backend)
    }

    async fn eviction_candidates(&self, namespace: &str) -> Result<Vec<Candidate>, StoreError> {
        let rows: Vec<CandidateRow> = sqlx::query_as(
            "SELECT id, namespace, scope, key, size, last_accessed_at FROM entries
             WHERE namespace = $1 AND state = 'committed'
             ORDER BY last_accessed_at, id",
        )
        .bind(namespace)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(candidate).collect())
    }

    async fn least_recently_used(
        &self,
        after: Option<(i64, i64)>,
        limit: i64,
    ) -> Result<Vec<Candidate>, StoreError> {
        // Keyset pagination on the entries_lru index: each page is a short read,
        // so lookups and writes go on between pages.
        let (at, id) = after.unwrap_or((i64::MIN, i64::MIN));
        let rows: Vec<CandidateRow> = sqlx::query_as(
            "SELECT id, namespace, scope, key, size, last_accessed_at FROM entries
             WHERE state = 'committed'
               AND (last_accessed_at, id) > ($1, $2)
             ORDER BY last_accessed_at, id LIMIT $3",
        )
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(candidate).collect())
    }

    async fn refresh_statistics(&self) -> Result<(), StoreError> {
        let sql = match self.dialect {
            // Samples a bounded number of rows per index: fast at any size.
            Dialect::Sqlite => "PRAGMA analysis_limit = 1000; ANALYZE entries",
            Dialect::Postgres => "ANALYZE entries",
        };
        sqlx::raw_sql(sql)
            .execute(&self.write)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn usage(&self, namespace: Option<&str>) -> Result<u64, StoreError> {
        // SUM over no rows is NULL; integer sums come back as BIGINT (SQLite) or
        // NUMERIC (PostgreSQL), so the cast keeps one type for the Any driver.
        let total: i64 = match namespace {
            Some(ns) => sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM entries
                 WHERE namespace = $1 AND state = 'committed'",
            )
            .bind(ns)
            .fetch_one(&self.read)
            .await,
            None => sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM entries WHERE state = 'committed'",
            )
            .fetch_one(&self.read)
            .await,
        }
        .map_err(backend)?;
        Ok(total.max(0) as u64)
    }

    async fn usage_by_namespace(&self) -> Result<Vec<NamespaceUsage>, StoreError> {
        let rows = sqlx::query(
            "SELECT namespace, COUNT(*) AS entries, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes
             FROM entries WHERE state = 'committed' GROUP BY namespace ORDER BY namespace",
        )
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let entries: i64 = r.try_get("entries").map_err(backend)?;
                let bytes: i64 = r.try_get("bytes").map_err(backend)?;
                Ok(NamespaceUsage {
                    namespace: r.try_get("namespace").map_err(backend)?,
                    entries: entries.max(0) as u64,
                    bytes: bytes.max(0) as u64,
                })
            })
            .collect()
    }

    async fn catalog(
        &self,
        namespace: &str,
        query: &CatalogQuery,
    ) -> Result<(u64, Vec<Entry>), StoreError> {
        let filter = CatalogFilter::new(namespace, query);
        let count_sql = format!("SELECT COUNT(*) AS n FROM entries WHERE {}", filter.sql);
        let total: i64 = filter
            .bind(sqlx::query(&count_sql))
            .fetch_one(&self.read)
            .await
            .map_err(backend)?
            .try_get("n")
            .map_err(backend)?;
        let column = match query.sort {
            CatalogSort::CreatedAt => "created_at",
            CatalogSort::LastAccessedAt => "last_accessed_at",
            CatalogSort::Size => "size",
        };
        let direction = if query.descending { "DESC" } else { "ASC" };
        let page_sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE {} ORDER BY {column} {direction}, id {direction}
             LIMIT ${} OFFSET ${}",
            filter.sql,
            filter.params + 1,
            filter.params + 2
        );
        let rows = filter
            .bind(sqlx::query(&page_sql))
            .bind(query.limit)
            .bind(query.offset)
            .fetch_all(&self.read)
            .await
            .map_err(backend)?;
        let entries = rows.iter().map(entry_from_row).collect::<Result<_, _>>()?;
        Ok((total.max(0) as u64, entries))
    }

    async fn delete_entries(
        &self,
        namespace: &str,
        which: &Selection,
    ) -> Result<Vec<Entry>, StoreError> {
        let by = match which {
            Selection::Id(_) => "id = $2",
            Selection::Key { scope: None, .. } => "key = $2",
            Selection::Key { scope: Some(_), .. } => "key = $2 AND scope = $3",
        };
        let sql = format!(
            "DELETE FROM entries WHERE namespace = $1 AND state = 'committed' AND {by}
             RETURNING {ENTRY_COLUMNS}"
        );
        let q = sqlx::query(&sql).bind(namespace);
        let q = match which {
            Selection::Id(id) => q.bind(*id),
            Selection::Key { key, scope } => {
                let q = q.bind(key.as_bytes());
                match scope {
                    Some(scope) => q.bind(scope.as_str()),
                    None => q,
                }
            }
        };
        let mut tx = self.write.begin().await.map_err(backend)?;
        let rows = q.fetch_all(&mut *tx).await.map_err(backend)?;
        let entries: Vec<Entry> = rows.iter().map(entry_from_row).collect::<Result<_, _>>()?;
        let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
        delete_rows_of(&mut tx, &ids).await?;
        commit(tx).await?;
        Ok(entries)
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        let expected = crate::open::migrator(self.dialect)
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0);
        let applied: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM _sqlx_migrations",
        )
        .fetch_one(&self.read)
        .await
        .map_err(backend)?;
        if applied < expected {
            return Err(StoreError::Backend(format!(
                "the database schema is at migration {applied}, this build needs {expected}"
            )));
        }
        Ok(())
    }

    async fn delete_unused(
        &self,
        entries: &[(i64, i64)],
        prefix_of: &(dyn Fn(i64) -> String + Send + Sync),
        not_before: i64,
    ) -> Result<Vec<i64>, StoreError> {
        // One transaction for the whole batch: entries and their scheduled
        // deletions go together, and a pass commits (and on PostgreSQL syncs)
        // once per batch rather than per statement. Their parts and blocks
        // rows go with their objects, after the grace period (`forget_dooms`):
        // the pass removes only what lookups see.
        let mut tx = self.write.begin().await.map_err(backend)?;
        let mut deleted = Vec::new();
        for chunk in entries.chunks(DELETE_CHUNK) {
            // Driven from the planned rows (a primary-key probe each). A
            // row-value `(id, last_accessed_at) IN (VALUES ...)` matched nothing
            // on the bundled SQLite once the entries_lru index existed.
            let sql = format!(
                "WITH planned (id, at) AS (VALUES {})
                 DELETE FROM entries WHERE id IN (
                     SELECT e.id FROM planned JOIN entries e
                       ON e.id = planned.id AND e.last_accessed_at = planned.at
                     WHERE e.state = 'committed'
                 ) RETURNING id",
                values(chunk.len(), 2, 1)
            );
            let mut q = sqlx::query_scalar::<_, i64>(&sql);
            for (id, at) in chunk {
                q = q.bind(*id).bind(*at);
            }
            deleted.extend(q.fetch_all(&mut *tx).await.map_err(backend)?);
        }
        let prefixes: Vec<String> = deleted.iter().map(|id| prefix_of(*id)).collect();
        doom_in(&mut tx, &prefixes, not_before).await?;
        commit(tx).await?;
        Ok(deleted)
    }

    async fn doomed_among(&self, prefixes: &[String]) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        for chunk in prefixes.chunks(INSERT_CHUNK) {
            let sql = format!(
                "SELECT prefix FROM doomed_objects WHERE prefix IN {}",
                values(1, chunk.len(), 1)
            );
            let mut q = sqlx::query_scalar::<_, String>(&sql);
            for p in chunk {
                q = q.bind(p.as_str());
            }
            found.extend(q.fetch_all(&self.read).await.map_err(backend)?);
        }
        Ok(found)
    }
}

/// The WHERE clause of a catalog page and its parameters, bound the same way
/// to the count and to the page.
struct CatalogFilter<'a> {
    sql: String,
    /// Placeholders used, `$1` to `$params`.
    params: usize,
    namespace: &'a str,
    bounds: Option<(Vec<u8>, Option<Vec<u8>>)>,
    scope: Option<&'a str>,
}

impl<'a> CatalogFilter<'a> {
    fn new(namespace: &'a str, query: &'a CatalogQuery) -> CatalogFilter<'a> {
        let mut sql = String::from("namespace = $1 AND state = 'committed'");
        let mut params = 1;
        let bounds = query
            .key_prefix
            .as_deref()
            .map(|p| (p.as_bytes().to_vec(), prefix_upper_bound(p.as_bytes())));
        if let Some((_, upper)) = &bounds {
            params += 1;
            sql.push_str(&format!(" AND key >= ${params}"));
            if upper.is_some() {
                params += 1;
                sql.push_str(&format!(" AND key < ${params}"));
            }
        }
        if query.scope.is_some() {
            params += 1;
            sql.push_str(&format!(" AND scope = ${params}"));
        }
        CatalogFilter {
            sql,
            params,
            namespace,
            bounds,
            scope: query.scope.as_deref(),
        }
    }

    fn bind<'q>(
        &self,
        mut q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
        q = q.bind(self.namespace.to_string());
        if let Some((lower, upper)) = &self.bounds {
            q = q.bind(lower.clone());
            if let Some(upper) = upper {
                q = q.bind(upper.clone());
            }
        }
        if let Some(scope) = self.scope {
            q = q.bind(scope.to_string());
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::values;

    #[test]
    fn placeholders_are_numbered_row_by_row() {
        assert_eq!(values(2, 3, 1), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values(1, 2, 4), "($4, $5)");
    }
}
