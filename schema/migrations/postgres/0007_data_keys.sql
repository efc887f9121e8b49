-- Data keys for payload encryption at rest (CONFLUX_MASTER_KEY). Two levels:
-- * tenant_keys: one active AES-256 key per tenant, stored wrapped (AES-256-GCM) by the
--   master key named in master_kid. `conflux keys rotate-master` re-wraps these rows.
-- * execution_keys: one AES-256 key per execution, wrapped by its tenant's key. Event
--   payloads of an execution are sealed with it.
-- Erasure (crypto-shredding) sets `wrapped` to NULL and `erased_at`: the key is gone, so
-- the ciphertext in the append-only log can never be read again, while the log itself,
-- and its hash chain, stay untouched. Rows are never deleted, so the count of erased
-- rows only grows: every server polls it to drop keys it holds in memory.
CREATE TABLE IF NOT EXISTS tenant_keys (
    key_id     uuid        PRIMARY KEY,
    tenant     text        NOT NULL,
    master_kid text        NOT NULL,
    wrapped    bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at  timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS tenant_keys_active ON tenant_keys (tenant) WHERE erased_at IS NULL;
CREATE INDEX IF NOT EXISTS tenant_keys_erased ON tenant_keys (key_id) WHERE erased_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS execution_keys (
    execution_id  uuid        PRIMARY KEY,
    tenant        text        NOT NULL,
    tenant_key_id uuid        NOT NULL,
    wrapped       bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    erased_at     timestamptz
);
CREATE INDEX IF NOT EXISTS execution_keys_tenant ON execution_keys (tenant);
CREATE INDEX IF NOT EXISTS execution_keys_erased ON execution_keys (execution_id) WHERE erased_at IS NOT NULL;
