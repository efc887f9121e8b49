-- Webhooks. A hook's definition lives in the log (`hook-<uuid>` streams: created,
-- deleted); the engine tails them through this small partial index (the predicate is
-- the one `read_all_of` writes).
CREATE INDEX IF NOT EXISTS events_hooks
    ON events (position) WHERE stream_type IN ('hook');

-- A hook's delivery state, outside the log: its signing secret (sealed: AES-256-GCM,
-- associated data binds it to its tenant and hook, never plaintext), the last log
-- position it handled (`last_position`), and the lease that lets exactly one process deliver
-- it at a time (`lease_owner` until `lease_until_ms`, Unix milliseconds). Times are
-- RFC 3339 UTC text.
CREATE TABLE IF NOT EXISTS hooks (
    hook_id        TEXT    PRIMARY KEY,
    tenant         TEXT    NOT NULL,
    sealed_secret  BLOB    NOT NULL,
    last_position  INTEGER NOT NULL,
    lease_owner    TEXT,
    lease_until_ms INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT    NOT NULL
);

-- Every event handed to a hook: its attempts, its state (`pending`, `delivered`,
-- `dead_lettered`) and how the latest attempt ended.
CREATE TABLE IF NOT EXISTS hook_deliveries (
    hook_id     TEXT    NOT NULL,
    position    INTEGER NOT NULL,
    event_id    TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    attempts    INTEGER NOT NULL,
    last_status INTEGER,
    last_error  TEXT,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    PRIMARY KEY (hook_id, position)
);
