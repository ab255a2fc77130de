-- berth's SQLite schema v1: one row per sandbox (indexed columns + the whole record as JSON)
-- and one row per user label, so label filters are index lookups instead of JSON scans.
-- Times are unix nanoseconds (INTEGER), which sort correctly and match the list cursor.

CREATE TABLE sandboxes (
    id              TEXT    NOT NULL PRIMARY KEY,
    status          TEXT    NOT NULL,
    owner           TEXT    NOT NULL,
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    ended_at        INTEGER,
    record          TEXT    NOT NULL
);

-- List order, and the pagination cursor `(created_at, id)`.
CREATE INDEX sandboxes_created_at_id ON sandboxes (created_at, id);
CREATE INDEX sandboxes_status_created_at_id ON sandboxes (status, created_at, id);
CREATE INDEX sandboxes_owner_created_at_id ON sandboxes (owner, created_at, id);
CREATE UNIQUE INDEX sandboxes_owner_idempotency_key
    ON sandboxes (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX sandboxes_ended_at ON sandboxes (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX sandboxes_expires_at ON sandboxes (expires_at);

CREATE TABLE sandbox_labels (
    sandbox_id TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (sandbox_id, key)
);

-- Selective label lookups ("which sandboxes carry team=red").
CREATE INDEX sandbox_labels_key_value ON sandbox_labels (key, value, sandbox_id);
