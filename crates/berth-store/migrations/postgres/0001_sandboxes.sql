-- berth's PostgreSQL schema v1, the SQLite schema's twin: one row per sandbox (indexed columns
-- + the whole record as JSON text, decoded by berth exactly as SQLite's) and one row per user
-- label, so label filters are index lookups instead of JSON scans.
-- Times are unix nanoseconds (BIGINT), which sort correctly and match the list cursor.
-- Ids compare bytewise (COLLATE "C") like SQLite's, whatever the database's locale, so the
-- `(created_at, id)` list order and cursor mean the same on both backends.

CREATE TABLE sandboxes (
    id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    status          TEXT   NOT NULL,
    owner           TEXT   NOT NULL,
    idempotency_key TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    ended_at        BIGINT,
    record          TEXT   NOT NULL
);

-- List order, and the pagination cursor `(created_at, id)`.
CREATE INDEX sandboxes_created_at_id ON sandboxes (created_at, id);
CREATE INDEX sandboxes_status_created_at_id ON sandboxes (status, created_at, id);
CREATE INDEX sandboxes_owner_created_at_id ON sandboxes (owner, created_at, id);
-- Its name contains `idempotency_key`: that is how a violation is told from the primary key's.
CREATE UNIQUE INDEX sandboxes_owner_idempotency_key
    ON sandboxes (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX sandboxes_ended_at ON sandboxes (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX sandboxes_expires_at ON sandboxes (expires_at);
-- "What changed since": other processes sharing the database catch up through it.
CREATE INDEX sandboxes_updated_at ON sandboxes (updated_at);

CREATE TABLE sandbox_labels (
    sandbox_id TEXT COLLATE "C" NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (sandbox_id, key)
);

-- Selective label lookups ("which sandboxes carry team=red").
CREATE INDEX sandbox_labels_key_value ON sandbox_labels (key, value, sandbox_id);
