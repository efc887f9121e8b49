-- Secrets a tenant's workflows reference as `${secrets.NAME}`. The value is stored
-- sealed (AES-256-GCM: a random 96-bit nonce, then the ciphertext and tag; associated
-- data binds it to its tenant and name), never in plaintext, never in the event log.
-- Times are RFC 3339 UTC text.
CREATE TABLE IF NOT EXISTS secrets (
    tenant     TEXT NOT NULL,
    name       TEXT NOT NULL,
    sealed     BLOB NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
);
