-- Webhooks. A hook's definition lives in the log (`hook-<uuid>` streams: created,
-- deleted); every engine tails them through this small partial index (the predicate is
-- the one `read_all_of` writes).
CREATE INDEX IF NOT EXISTS events_hooks
    ON events (position) WHERE stream_type IN ('hook');

-- A hook's delivery state, outside the log: its signing secret (sealed: AES-256-GCM,
-- associated data binds it to its tenant and hook, never plaintext), the last log
-- position it handled (`last_position`), and the lease that lets exactly one process deliver
-- it at a time (`lease_owner` until `lease_until_ms`, Unix milliseconds).
CREATE TABLE IF NOT EXISTS hooks (
    hook_id        uuid        PRIMARY KEY,
    tenant         text        NOT NULL,
    sealed_secret  bytea       NOT NULL,
    last_position  bigint      NOT NULL,
    lease_owner    uuid,
    lease_until_ms bigint      NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL
);

-- Every event handed to a hook: its attempts, its state (`pending`, `delivered`,
-- `dead_lettered`) and how the latest attempt ended.
CREATE TABLE IF NOT EXISTS hook_deliveries (
    hook_id     uuid        NOT NULL,
    position    bigint      NOT NULL,
    event_id    uuid        NOT NULL,
    event_type  text        NOT NULL,
    state       text        NOT NULL,
    attempts    integer     NOT NULL,
    last_status integer,
    last_error  text,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (hook_id, position)
);
