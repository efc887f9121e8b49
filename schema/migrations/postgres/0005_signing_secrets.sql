-- Secrets every server of a store signs with (today: `stream-tokens`, the HMAC key of
-- the short-lived live-stream tokens). Each is 32 random bytes, written once by the
-- first server that needs it (INSERT … ON CONFLICT DO NOTHING, then read back), so every
-- server of a cluster verifies what any other signed. Never logged; a restored database
-- keeps its secrets.
CREATE TABLE IF NOT EXISTS signing_secrets (
    name       text        PRIMARY KEY,
    secret     bytea       NOT NULL CHECK (length(secret) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
