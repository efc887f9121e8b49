-- Per-tenant counters for quotas, kept by the append statement itself (same
-- transaction, after the commit-order lock), so they always match the log.
CREATE TABLE IF NOT EXISTS tenant_usage (
    tenant             text   PRIMARY KEY,
    running_executions bigint NOT NULL DEFAULT 0,
    executions_started bigint NOT NULL DEFAULT 0,
    definitions        bigint NOT NULL DEFAULT 0,
    agents             bigint NOT NULL DEFAULT 0,
    payload_bytes      bigint NOT NULL DEFAULT 0
);

-- Appends wait while the counters of what is already recorded are computed, so no
-- event is counted twice or missed (the lock of the append statement).
SELECT pg_advisory_xact_lock(18981343395083640);  -- COMMIT_ORDER_LOCK, 0x00436f6e666c7578

-- Counters of what was recorded before this table existed. payload_bytes of those
-- events is the size of their jsonb text (new events count their canonical JSON).
INSERT INTO tenant_usage (tenant, running_executions, executions_started, definitions, agents, payload_bytes)
SELECT coalesce(metadata->>'tenant_id', 'default'),
       count(*) FILTER (WHERE event_type = 'ExecutionStarted')
         - count(*) FILTER (WHERE event_type IN ('ExecutionCompleted', 'ExecutionFailed', 'ExecutionCancelled')),
       count(*) FILTER (WHERE event_type = 'ExecutionStarted'),
       count(*) FILTER (WHERE event_type = 'WorkflowCreated'),
       count(*) FILTER (WHERE event_type = 'AgentRegistered'),
       coalesce(sum(octet_length(data::text)), 0)
FROM events
GROUP BY 1
ON CONFLICT (tenant) DO NOTHING;

-- Executions a tenant started recently (executions_per_minute).
CREATE INDEX IF NOT EXISTS events_started_by_tenant
    ON events ((coalesce(metadata->>'tenant_id', 'default')), recorded_at)
    WHERE event_type = 'ExecutionStarted';

-- Distinct agent names per tenant (the agents quota).
CREATE INDEX IF NOT EXISTS events_agents_by_tenant
    ON events ((coalesce(metadata->>'tenant_id', 'default')), (data->>'name'))
    WHERE event_type = 'AgentRegistered';
