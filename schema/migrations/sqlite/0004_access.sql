-- Tenants and API keys live in the log like everything else; every server tails them
-- (to learn of new and revoked keys within a second) through this small partial index
-- instead of reading every event.
CREATE INDEX IF NOT EXISTS events_access
    ON events (position) WHERE stream_type IN ('tenant', 'key');
