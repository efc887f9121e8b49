-- Data keys for payload encryption at rest (see the Postgres migration of the same
-- number for the design): tenant keys wrapped by the master key, execution keys wrapped
-- by their tenant's key; erasure nulls `wrapped` and sets `erased_at`; rows are never
-- deleted. Times are RFC 3339 text, uuids their hyphenated text.
CREATE TABLE IF NOT EXISTS tenant_keys (
    key_id     TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    master_kid TEXT NOT NULL,
    wrapped    BLOB,
    created_at TEXT NOT NULL,
    erased_at  TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS tenant_keys_active ON tenant_keys (tenant) WHERE erased_at IS NULL;
CREATE INDEX IF NOT EXISTS tenant_keys_erased ON tenant_keys (key_id) WHERE erased_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS execution_keys (
    execution_id  TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    tenant_key_id TEXT NOT NULL,
    wrapped       BLOB,
    created_at    TEXT NOT NULL,
    erased_at     TEXT
);
CREATE INDEX IF NOT EXISTS execution_keys_tenant ON execution_keys (tenant);
CREATE INDEX IF NOT EXISTS execution_keys_erased ON execution_keys (execution_id) WHERE erased_at IS NOT NULL;
