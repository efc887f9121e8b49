CREATE INDEX IF NOT EXISTS events_started_by_workflow
    ON events (json_extract(data, '$.workflow_id')) WHERE event_type = 'ExecutionStarted';
CREATE INDEX IF NOT EXISTS events_terminal
    ON events (stream_id) WHERE event_type IN ('ExecutionCompleted', 'ExecutionFailed', 'ExecutionCancelled');
CREATE INDEX IF NOT EXISTS events_lease
    ON events (json_extract(data, '$.lease_id')) WHERE event_type = 'TaskStarted';
