-- Parts and staged blocks no longer cascade from entries: a foreign key fires a
-- check per deleted entry row, which made an eviction pass removing a million
-- entries spend most of its time there. Whoever deletes an entry deletes its rows
-- here too: at once for single deletes, after the delete grace period (with the
-- entry's objects) for an eviction pass. Entry ids are never reused
-- (AUTOINCREMENT), so a row left behind for a while can never be taken for
-- another entry's. SQLite cannot drop a constraint: both tables are rebuilt.
CREATE TABLE blocks_new (
    entry_id INTEGER NOT NULL,
    block_id TEXT    NOT NULL,
    object   TEXT    NOT NULL,
    size     INTEGER NOT NULL,
    sha256   TEXT    NOT NULL,
    crc64    TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (entry_id, block_id)
) WITHOUT ROWID;
INSERT INTO blocks_new (entry_id, block_id, object, size, sha256, crc64)
    SELECT entry_id, block_id, object, size, sha256, crc64 FROM blocks;
DROP TABLE blocks;
ALTER TABLE blocks_new RENAME TO blocks;

CREATE TABLE parts_new (
    entry_id INTEGER NOT NULL,
    idx      INTEGER NOT NULL,
    -- NULL for a blob written whole with Put Blob.
    block_id TEXT,
    start    INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    object   TEXT    NOT NULL,
    sha256   TEXT    NOT NULL,
    crc64    TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (entry_id, idx)
) WITHOUT ROWID;
INSERT INTO parts_new (entry_id, idx, block_id, start, size, object, sha256, crc64)
    SELECT entry_id, idx, block_id, start, size, object, sha256, crc64 FROM parts;
DROP TABLE parts;
ALTER TABLE parts_new RENAME TO parts;
