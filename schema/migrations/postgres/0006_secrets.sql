-- Secrets a tenant's workflows reference as `${secrets.NAME}`. The value is stored
-- sealed (AES-256-GCM: a random 96-bit nonce, then the ciphertext and tag; associated
-- data binds it to its tenant and name), never in plaintext, never in the event log.
-- Kept outside the log on purpose: a rotated or deleted value is gone, not history.
CREATE TABLE IF NOT EXISTS secrets (
    tenant     text        NOT NULL,
    name       text        NOT NULL,
    sealed     bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, name)
);
