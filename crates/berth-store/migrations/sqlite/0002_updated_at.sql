-- berth's SQLite schema v2: the record's `updated_at` as a column (unix nanoseconds, like the
-- other times), so "what changed since" is an index range instead of a scan of every record.

ALTER TABLE sandboxes ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;

-- Existing rows take the value from their JSON record ("2025-06-15T15:06:40.123456789Z", the
-- fraction 0 to 9 digits): whole seconds from SQLite's date functions, nanoseconds from the
-- fraction's digits padded to nine. A record without a readable value keeps its creation time,
-- the earliest it can have been updated.
UPDATE sandboxes SET updated_at = COALESCE(
    (
        SELECT CAST(strftime('%s', stamp) AS INTEGER) * 1000000000
            + CASE
                WHEN substr(stamp, 20, 1) = '.'
                THEN CAST(substr(substr(stamp, 21, length(stamp) - 21) || '000000000', 1, 9) AS INTEGER)
                ELSE 0
              END
        FROM (SELECT json_extract(record, '$.updated_at') AS stamp)
        WHERE stamp GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*Z'
    ),
    created_at
);

CREATE INDEX sandboxes_updated_at ON sandboxes (updated_at);
