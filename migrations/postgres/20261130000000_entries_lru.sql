-- Store-wide least-recently-used order for the evictor's global pass, read a
-- page at a time (keyset pagination) instead of sorting every entry per pass.
CREATE INDEX entries_lru ON entries (last_accessed_at, id) WHERE state = 'committed';
