-- berth's PostgreSQL schema v3, the SQLite schema v4's twin: AEnvironment env-services. One row
-- per service with the whole record as JSON text, like templates; `revision` is the record's write
-- counter, so an update replaces only the record it read. Times are unix nanoseconds (BIGINT);
-- ids compare bytewise (COLLATE "C") like SQLite's.

CREATE TABLE services (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    revision   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    record     TEXT   NOT NULL
);
