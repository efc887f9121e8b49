-- Secrets every process of a store signs with (today: `stream-tokens`, the HMAC key of
-- the short-lived live-stream tokens). Each is 32 random bytes, written once by the
-- first process that needs it (INSERT OR IGNORE, then read back). Never logged.
CREATE TABLE IF NOT EXISTS signing_secrets (
    name       TEXT PRIMARY KEY,
    secret     BLOB NOT NULL CHECK (length(secret) = 32),
    created_at TEXT NOT NULL
);
