-- A redrive reopens a failed execution (`ExecutionRedriven`; its earlier
-- `ExecutionFailed` stays in the log). "Open executions" asks, for a stream with a
-- terminal event, for its latest redrive: this small partial index answers that without
-- reading the stream's other events.
CREATE INDEX IF NOT EXISTS events_redrives
    ON events (stream_id, version) WHERE event_type = 'ExecutionRedriven';
