-- Per-tenant counters for quotas, kept in the append transaction itself, so they
-- always match the log.
CREATE TABLE IF NOT EXISTS tenant_usage (
    tenant             TEXT    PRIMARY KEY,
    running_executions INTEGER NOT NULL DEFAULT 0,
    executions_started INTEGER NOT NULL DEFAULT 0,
    definitions        INTEGER NOT NULL DEFAULT 0,
    agents             INTEGER NOT NULL DEFAULT 0,
    payload_bytes      INTEGER NOT NULL DEFAULT 0
);

INSERT OR IGNORE INTO tenant_usage (tenant, running_executions, executions_started, definitions, agents, payload_bytes)
SELECT coalesce(json_extract(metadata, '$.tenant_id'), 'default'),
       sum(event_type = 'ExecutionStarted')
         - sum(event_type IN ('ExecutionCompleted', 'ExecutionFailed', 'ExecutionCancelled')),
       sum(event_type = 'ExecutionStarted'),
       sum(event_type = 'WorkflowCreated'),
       sum(event_type = 'AgentRegistered'),
       coalesce(sum(length(CAST(data AS BLOB))), 0)
FROM events
GROUP BY 1;

CREATE INDEX IF NOT EXISTS events_started_by_tenant
    ON events (coalesce(json_extract(metadata, '$.tenant_id'), 'default'), recorded_at)
    WHERE event_type = 'ExecutionStarted';

CREATE INDEX IF NOT EXISTS events_agents_by_tenant
    ON events (coalesce(json_extract(metadata, '$.tenant_id'), 'default'), json_extract(data, '$.name'))
    WHERE event_type = 'AgentRegistered';
