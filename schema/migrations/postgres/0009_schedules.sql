-- Schedules live in the log (`schedule-<uuid>` streams). Every engine's ticker and the
-- schedule routes tail them through this small partial index instead of reading every
-- event (the predicate is the one `read_all_of` writes).
CREATE INDEX IF NOT EXISTS events_schedules
    ON events (position) WHERE stream_type IN ('schedule');

-- Schedules per tenant (the schedules quota): created minus deleted.
CREATE INDEX IF NOT EXISTS events_schedules_by_tenant
    ON events ((coalesce(metadata->>'tenant_id', 'default')))
    WHERE event_type IN ('ScheduleCreated', 'ScheduleDeleted');
