-- The embedded event log: same columns and semantics as the Postgres one.
-- SQLite has one writer at a time, so positions are assigned in commit order.
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id      TEXT    NOT NULL,
    stream_type    TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    event_id       TEXT    NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    data           TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    recorded_at    TEXT    NOT NULL,
    hash           BLOB    NOT NULL,
    UNIQUE (stream_id, version)
);

CREATE TABLE IF NOT EXISTS outbox (
    position INTEGER PRIMARY KEY
);
