-- berth's SQLite schema v5: who may call berth. API keys (the secret's SHA-256, never the secret;
-- the immutable fields as JSON; revocation and last use as columns that one statement each sets),
-- per-owner quotas (JSON), and the audit log (one JSON entry per mutating request or refused
-- authentication, in append order). Times are unix nanoseconds (INTEGER) like the other tables'.

CREATE TABLE api_keys (
    id           TEXT    NOT NULL PRIMARY KEY,
    hash         TEXT    NOT NULL UNIQUE,
    owner        TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    record       TEXT    NOT NULL
);

CREATE TABLE quotas (
    owner  TEXT NOT NULL PRIMARY KEY,
    record TEXT NOT NULL
);

CREATE TABLE audit_log (
    seq    INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    owner  TEXT,
    record TEXT    NOT NULL
);

CREATE INDEX audit_log_at ON audit_log (at);
