-- berth's SQLite schema v3: templates, and the warm pools of sandboxes made from them.
-- A template is one row per (name, tag) with the whole record as JSON, like a sandbox; times are
-- unix nanoseconds (INTEGER) like the sandboxes table's.

CREATE TABLE templates (
    name       TEXT    NOT NULL,
    tag        TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    record     TEXT    NOT NULL,
    PRIMARY KEY (name, tag)
);

-- `name:tag` of the pool a sandbox waits in, ready and unclaimed; NULL for every other sandbox
-- (all rows written before pools existed included).
ALTER TABLE sandboxes ADD COLUMN pool TEXT;

-- A claim takes a pool's oldest sandbox: an index range over the few pooled rows only. `id`
-- completes the claim's order `(created_at, id)`, so the index answers it without a sort; without
-- it SQLite's planner prefers the status index, which spans every running sandbox.
CREATE INDEX sandboxes_pool_created_at ON sandboxes (pool, created_at, id) WHERE pool IS NOT NULL;
