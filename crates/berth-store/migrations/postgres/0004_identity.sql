-- berth's PostgreSQL schema v4, the SQLite schema v5's twin: who may call berth. API keys (the
-- secret's SHA-256, never the secret; the immutable fields as JSON text; revocation and last use
-- as columns that one statement each sets), per-owner quotas (JSON text), and the audit log (one
-- JSON entry per mutating request or refused authentication, in append order). Times are unix
-- nanoseconds (BIGINT); ids compare bytewise (COLLATE "C") like SQLite's.

CREATE TABLE api_keys (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    hash         TEXT COLLATE "C" NOT NULL UNIQUE,
    owner        TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    last_used_at BIGINT,
    record       TEXT   NOT NULL
);

CREATE TABLE quotas (
    owner  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    record TEXT NOT NULL
);

CREATE TABLE audit_log (
    seq    BIGSERIAL PRIMARY KEY,
    at     BIGINT NOT NULL,
    owner  TEXT,
    record TEXT   NOT NULL
);

CREATE INDEX audit_log_at ON audit_log (at);
