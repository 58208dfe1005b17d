-- A CRC-64/NVME of each stored object, computed with its sha256 while it is
-- uploaded: downloads verify it at a tiny fraction of sha256's cost (ADR 0009).
-- Empty for objects stored before it existed; those are verified by sha256.
ALTER TABLE blocks ADD COLUMN crc64 TEXT NOT NULL DEFAULT '';
ALTER TABLE parts ADD COLUMN crc64 TEXT NOT NULL DEFAULT '';
