-- Parts and staged blocks no longer cascade from entries: a foreign key fires a
-- check per deleted entry row, which made an eviction pass removing a million
-- entries spend most of its time there. Whoever deletes an entry deletes its rows
-- here too: at once for single deletes, after the delete grace period (with the
-- entry's objects) for an eviction pass. Entry ids are never reused, so a row left
-- behind for a while can never be taken for another entry's.
ALTER TABLE blocks DROP CONSTRAINT blocks_entry_id_fkey;
ALTER TABLE parts DROP CONSTRAINT parts_entry_id_fkey;
