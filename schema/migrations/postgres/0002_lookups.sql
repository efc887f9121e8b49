-- Partial indexes for the few lookups the write side needs (each covers only the rows of
-- one event type, so appends of other events pay nothing for them).
CREATE INDEX IF NOT EXISTS events_started_by_workflow
    ON events ((data->>'workflow_id')) WHERE event_type = 'ExecutionStarted';
CREATE INDEX IF NOT EXISTS events_terminal
    ON events (stream_id) WHERE event_type IN ('ExecutionCompleted', 'ExecutionFailed', 'ExecutionCancelled');
CREATE INDEX IF NOT EXISTS events_lease
    ON events ((data->>'lease_id')) WHERE event_type = 'TaskStarted';
