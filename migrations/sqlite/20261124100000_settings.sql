-- Values every replica must share, created once by whichever replica starts first
-- (the URL signing key when the configuration does not set one).
CREATE TABLE settings (
    name  TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);
