-- berth's SQLite schema v4: AEnvironment env-services. One row per service with the whole record
-- as JSON, like templates; `revision` is the record's write counter, so an update replaces only
-- the record it read (a controller's status write never undoes a concurrent API change).
-- Times are unix nanoseconds (INTEGER) like the other tables'.

CREATE TABLE services (
    id         TEXT    NOT NULL PRIMARY KEY,
    revision   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    record     TEXT    NOT NULL
);
