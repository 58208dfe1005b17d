-- Objects of deleted entries, kept until `not_before` (milliseconds since the
-- epoch) so downloads already streaming them finish whole; then deleted by
-- whichever replica's background work gets there first.
CREATE TABLE doomed_objects (
    prefix     TEXT   NOT NULL PRIMARY KEY,
    not_before BIGINT NOT NULL
);

CREATE INDEX doomed_objects_due ON doomed_objects (not_before);
