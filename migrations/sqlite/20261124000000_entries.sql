-- Cache entries and their uploads. An entry is reserved ('pending'), gets its blob
-- ('uploaded'), then is finalized ('committed'); only committed entries are visible.
CREATE TABLE entries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace        TEXT    NOT NULL,
    scope            TEXT    NOT NULL,
    -- Keys are compared byte for byte (prefix lookups are byte ranges), so BLOB.
    key              BLOB    NOT NULL,
    version          TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'uploaded', 'committed')),
    size             INTEGER NOT NULL DEFAULT 0,
    hash             TEXT    NOT NULL DEFAULT '',
    -- Milliseconds since the epoch. Reservation time, replaced by commit time.
    created_at       INTEGER NOT NULL,
    last_accessed_at INTEGER NOT NULL,
    UNIQUE (namespace, scope, version, key)
);

CREATE INDEX entries_unfinished ON entries (state, created_at);

-- Blocks staged for an upload (Put Block). Retrying a block id replaces the row.
CREATE TABLE blocks (
    entry_id INTEGER NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    block_id TEXT    NOT NULL,
    object   TEXT    NOT NULL,
    size     INTEGER NOT NULL,
    sha256   TEXT    NOT NULL,
    PRIMARY KEY (entry_id, block_id)
) WITHOUT ROWID;

-- The committed blob of an entry: objects in order (a manifest; see ADR 0001).
CREATE TABLE parts (
    entry_id INTEGER NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    idx      INTEGER NOT NULL,
    -- NULL for a blob written whole with Put Blob.
    block_id TEXT,
    start    INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    object   TEXT    NOT NULL,
    sha256   TEXT    NOT NULL,
    PRIMARY KEY (entry_id, idx)
) WITHOUT ROWID;
