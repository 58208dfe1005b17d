-- Store-wide least-recently-used order for the evictor's global pass, read a
-- page at a time (keyset pagination) instead of sorting every entry per pass.
CREATE INDEX entries_lru ON entries (last_accessed_at, id) WHERE state = 'committed';

-- One namespace's entries in that order, for the namespace phase and usage
-- sums. Without it, a planner without statistics (a freshly filled table)
-- combined entries_lru with the unique index and read all of entries_lru for
-- each namespace.
CREATE INDEX entries_namespace_lru ON entries (namespace, last_accessed_at, id)
    WHERE state = 'committed';

-- The unfinished-uploads index covers only unfinished uploads: on (state, ...)
-- it also offered itself for "state = 'committed'", and without statistics
-- SQLite took it for per-namespace reads, scanning every committed entry.
DROP INDEX entries_unfinished;
CREATE INDEX entries_unfinished ON entries (created_at) WHERE state IN ('pending', 'uploaded');
