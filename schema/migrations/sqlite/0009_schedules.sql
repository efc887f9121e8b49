-- Schedules live in the log (`schedule-<uuid>` streams); the ticker and the schedule
-- routes tail them through this partial index (the predicate `read_all_of` writes).
CREATE INDEX IF NOT EXISTS events_schedules
    ON events (position) WHERE stream_type IN ('schedule');

-- Schedules per tenant (the schedules quota): created minus deleted.
CREATE INDEX IF NOT EXISTS events_schedules_by_tenant
    ON events (coalesce(json_extract(metadata, '$.tenant_id'), 'default'))
    WHERE event_type IN ('ScheduleCreated', 'ScheduleDeleted');
