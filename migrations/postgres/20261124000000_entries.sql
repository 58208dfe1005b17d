-- Cache entries and their uploads. An entry is reserved ('pending'), gets its blob
-- ('uploaded'), then is finalized ('committed'); only committed entries are visible.
-- The same schema as migrations/sqlite, in PostgreSQL's types.
CREATE TABLE entries (
    id               BIGSERIAL PRIMARY KEY,
    namespace        TEXT   NOT NULL,
    scope            TEXT   NOT NULL,
    -- Keys are compared byte for byte (prefix lookups are byte ranges), so bytea.
    key              BYTEA  NOT NULL,
    version          TEXT   NOT NULL,
    state            TEXT   NOT NULL CHECK (state IN ('pending', 'uploaded', 'committed')),
    size             BIGINT NOT NULL DEFAULT 0,
    hash             TEXT   NOT NULL DEFAULT '',
    -- Milliseconds since the epoch. Reservation time, replaced by commit time.
    created_at       BIGINT NOT NULL,
    last_accessed_at BIGINT NOT NULL,
    UNIQUE (namespace, scope, version, key)
);

CREATE INDEX entries_unfinished ON entries (state, created_at);

-- Blocks staged for an upload (Put Block). Retrying a block id replaces the row.
CREATE TABLE blocks (
    entry_id BIGINT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    block_id TEXT   NOT NULL,
    object   TEXT   NOT NULL,
    size     BIGINT NOT NULL,
    sha256   TEXT   NOT NULL,
    PRIMARY KEY (entry_id, block_id)
);

-- The committed blob of an entry: objects in order (a manifest; see ADR 0001).
CREATE TABLE parts (
    entry_id BIGINT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    idx      BIGINT NOT NULL,
    -- NULL for a blob written whole with Put Blob.
    block_id TEXT,
    start    BIGINT NOT NULL,
    size     BIGINT NOT NULL,
    object   TEXT   NOT NULL,
    sha256   TEXT   NOT NULL,
    PRIMARY KEY (entry_id, idx)
);
