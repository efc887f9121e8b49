-- The store's identity: one random id, created with the schema and never changed, so
-- that a bus (Redis prefix) can record which store its streams belong to. A copied
-- file keeps its id (the bus notices a restore because its head is ahead of the
-- store's); a new file gets a new one.
CREATE TABLE IF NOT EXISTS store_identity (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    store_id   TEXT    NOT NULL,
    created_at TEXT    NOT NULL
);
INSERT OR IGNORE INTO store_identity (singleton, store_id, created_at)
VALUES (
    1,
    lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-' || hex(randomblob(2)) || '-'
          || hex(randomblob(2)) || '-' || hex(randomblob(6))),
    strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
);
