-- The store's identity: one random id, created with the schema and never changed, so
-- that a bus (Redis prefix) can record which store its streams belong to. A database
-- restored from a backup or copied as a template keeps its id (the bus notices the
-- restore because its head is ahead of the store's); a new or recreated database gets
-- a new one.
CREATE TABLE IF NOT EXISTS store_identity (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    store_id   uuid        NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO store_identity DEFAULT VALUES ON CONFLICT DO NOTHING;
