-- Work that one replica at a time may do (the evictor): held by `holder` until
-- `expires_at` (milliseconds since the epoch); a crashed holder's lease lapses.
CREATE TABLE leases (
    name       TEXT   NOT NULL PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
