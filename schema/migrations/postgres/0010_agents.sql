-- Agents' lifecycles live in the log (`agent-<uuid>` streams: registered, drained,
-- deregistered). Every server's fleet directory tails them through this small partial
-- index instead of reading every event (the predicate is the one `read_all_of` writes).
CREATE INDEX IF NOT EXISTS events_agents
    ON events (position) WHERE stream_type IN ('agent');
