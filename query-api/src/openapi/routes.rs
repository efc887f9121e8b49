//! The route tables: each route of API.md declared once, with its parameters, its
//! success answers and the failures it can answer with.

use serde_json::json;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::HttpMethod::{Delete, Get, Post, Put};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::Ref;
use utoipa::ToSchema;

use conflux_projector::rows::WORKFLOW_STATUSES;

use super::shapes::*;
use super::spec::*;
use super::PATH;
use crate::stream_tokens::{MintStreamToken, StreamTokenMinted};

// The route declarations below keep one call per line, like a table; rustfmt would
// split most of them over four lines.
#[rustfmt::skip]
pub(super) fn workflows(s: &mut Spec) {
    let op = tagged("workflows");
    let definition = s.schema::<WorkflowDefinition>();
    let input = ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .description(Some("The execution's input, with `?execute=true`."));
    let create = extended(definition.clone(), ObjectBuilder::new().property("input", input));
    op(Post, "/api/v1/workflows", "createWorkflow", "Create a workflow")
        .describe("A second workflow with the same `name` is version 2, 3, … with a new id.")
        .query("execute", boolean(false), "Also start an execution with the body's `input`.")
        .body(create, true)
        .ok(201, "The workflow was created.", s.schema::<WorkflowCreated>())
        .fails(&[BAD_QUERY, INVALID_WORKFLOW, CONFLICT, OVER_QUOTA, OVER_SIZE_QUOTA])
        .add(s);
    op(Get, "/api/v1/workflows", "listWorkflows", "List workflows, newest first")
        .query("status", words(&WORKFLOW_STATUSES), "Only workflows with this status.")
        .query("name", string(), "Only the versions of this name.")
        .query("limit", integer(1, Some(1000), Some(50)), "Page size.")
        .query("cursor", string(), "The `next_cursor` of the previous page.")
        .ok(200, "A page of workflows.", s.schema::<WorkflowList>())
        .fails(&[BAD_QUERY])
        .add(s);
    let stored = extended(
        definition,
        ObjectBuilder::new()
            .property("workflow_id", string().format(Some(known(KnownFormat::Uuid))))
            .property("version", integer(1, None, None))
            .property("created_at", string().format(Some(known(KnownFormat::DateTime))))
            .required("workflow_id")
            .required("version")
            .required("created_at"),
    );
    op(Get, "/api/v1/workflows/{id}", "getWorkflow", "A workflow's definition")
        .ok(200, "The definition, with `workflow_id`, `version`, `created_at`.", stored)
        .add(s);
    op(Get, "/api/v1/workflows/{id}/status", "getWorkflowStatus", "A workflow's status")
        .describe("Executions by status and the latest one; `position`: the last event reflected.")
        .ok(200, "The workflow's status.", s.schema::<WorkflowStatus>())
        .add(s);
}

#[rustfmt::skip]
pub(super) fn executions(s: &mut Spec) {
    let op = tagged("executions");
    let accepted = s.schema::<ExecutionAccepted>();
    let key = string().min_length(Some(1)).max_length(Some(255));
    op(Post, "/api/v1/workflows/{id}/execute", "executeWorkflow", "Start an execution")
        .header("Idempotency-Key", key, "A repeat of a key answers 200 with the same execution.")
        .body(s.schema::<ExecuteRequest>(), false)
        .ok(202, "The execution started.", accepted.clone())
        .ok(200, "The key was used before: that execution; nothing started.", accepted)
        .fails(&[CONFLICT, OVER_QUOTA, OVER_SIZE_QUOTA])
        .add(s);
    let changed = s.schema::<WorkflowControlled>();
    for (verb, id, summary) in [
        ("pause", "pauseWorkflow", "Pause every active execution of a workflow"),
        ("resume", "resumeWorkflow", "Resume every paused execution of a workflow"),
    ] {
        op(Post, &format!("/api/v1/workflows/{{id}}/{verb}"), id, summary)
            .describe("Executions already in that state (or finished meanwhile) are skipped.")
            .ok(202, "The executions that changed, with their status.", changed.clone())
            .fails(&[CONFLICT])
            .add(s);
    }
    op(Get, "/api/v1/executions/{id}", "getExecution", "An execution")
        .describe("From the read model, or folded from its log if the projector is behind.")
        .ok(200, "The execution.", s.schema::<Execution>())
        .add(s);
    let changed = s.schema::<ExecutionControlled>();
    let cancel = s.schema::<CancelRequest>();
    for (verb, id, summary, about) in [
        ("pause", "pauseExecution", "Pause an execution", PAUSE),
        ("resume", "resumeExecution", "Resume a paused execution", ""),
        ("cancel", "cancelExecution", "Cancel an execution", ""),
    ] {
        let op = op(Post, &format!("/api/v1/executions/{{id}}/{verb}"), id, summary)
            .describe(about)
            .ok(202, "The command was recorded.", changed.clone())
            .fails(&[CONFLICT]);
        if verb == "cancel" { op.body(cancel.clone(), false) } else { op }.add(s);
    }
}

const PAUSE: &str = "Nothing new is dispatched; running attempts may finish and are recorded.";

#[rustfmt::skip]
pub(super) fn audit(s: &mut Spec) {
    let op = tagged("audit");
    let limit = || integer(1, Some(10_000), Some(1000));
    let events = [
        ("application/json", s.schema::<EventPage>()),
        ("application/x-ndjson", s.schema::<Envelope>()),
    ];
    op(Get, "/api/v1/executions/{id}/events", "getExecutionEvents", "An execution's log")
        .describe(NDJSON)
        .query("after_version", integer(0, None, Some(0)), "Only events after this version.")
        .query("limit", limit(), "Page size (JSON only).")
        .query("format", words(&["json", "ndjson"]).default(Some(json!("json"))), "Format.")
        .answer(200, "A page of events, or the whole log as NDJSON.", events)
        .fails(&[BAD_QUERY])
        .add(s);
    op(Get, "/api/v1/executions/{id}/replay", "replayExecution", "Replay an execution")
        .describe("The execution as it stood after event N, folded from the log (no read model).")
        .query("to_version", integer(1, None, None), "The last event folded (default: all).")
        .ok(200, "The state after `to_version`.", s.schema::<Replay>())
        .fails(&[BAD_QUERY])
        .add(s);
    op(Get, "/api/v1/executions/{id}/verify", "verifyExecution", "Verify the hash chain")
        .describe("Recomputes every hash of the stored log from its raw columns.")
        .ok(200, "The outcome.", s.schema::<ChainVerification>())
        .add(s);
    op(Get, "/api/v1/workflows/{id}/events", "getWorkflowEvents", "A workflow's log")
        .describe("The events of the workflow's stream and all its executions, by position.")
        .query("after_position", integer(0, None, Some(0)), "Only events after this position.")
        .query("limit", limit(), "Page size.")
        .ok(200, "A page of events.", s.schema::<WorkflowEventPage>())
        .fails(&[BAD_QUERY])
        .add(s);
}

const NDJSON: &str = "`format=json` (default): a page of `limit` events after `after_version`. \
    `format=ndjson`: the whole log streamed as `application/x-ndjson`, one envelope a line.";

#[rustfmt::skip]
pub(super) fn agents(s: &mut Spec) {
    let op = tagged("agents");
    op(Post, "/api/v1/agents", "registerAgent", "Register an agent")
        .body(s.schema::<RegisterAgent>(), true)
        .ok(201, "The agent is registered.", s.schema::<AgentRegistered>())
        .fails(&[OVER_QUOTA, OVER_SIZE_QUOTA])
        .add(s);
    op(Get, "/api/v1/agents", "listAgents", "List the tenant's agents")
        .describe("Every agent not deregistered, oldest registration first, with its lifecycle `state` and its `status` from its last poll or heartbeat: `online` (within `CONFLUX_AGENT_STALE_AFTER_SECONDS`, 30), `stale` (within `CONFLUX_AGENT_OFFLINE_AFTER_SECONDS`, 90), `offline`.")
        .query("role", string(), "Only agents that poll this role.")
        .query("status", words(&["online", "stale", "offline"]), "Only agents with this status.")
        .ok(200, "The agents.", s.schema::<AgentList>())
        .fails(&[BAD_QUERY])
        .add(s);
    op(Get, "/api/v1/agents/{agent_id}", "getAgent", "An agent with its status")
        .ok(200, "The agent.", s.schema::<AgentView>())
        .add(s);
    op(Delete, "/api/v1/agents/{agent_id}", "deregisterAgent", "Deregister an agent")
        .describe("Records `AgentDeregistered`: its polls and reports are refused from now on (404), and every attempt it holds is failed at once (retryable, naming the agent), so its retry policy runs it on another agent; its leases answer `409 stale_attempt`. `released` counts them.")
        .ok(200, "Deregistered.", s.schema::<AgentChanged>())
        .add(s);
    op(Post, "/api/v1/agents/{agent_id}/heartbeat", "heartbeatAgent", "Say the agent is alive")
        .describe("What a poll also does: the agent's status is `online` for the next 30 s.")
        .ok(200, "Recorded.", s.schema::<AgentChanged>())
        .add(s);
    op(Post, "/api/v1/agents/{agent_id}/drain", "drainAgent", "Drain an agent")
        .describe("Records `AgentDrained` (once): its polls answer no task from now on; what it holds it still completes, fails or heartbeats.")
        .ok(200, "Draining.", s.schema::<AgentChanged>())
        .add(s);
    op(Post, "/api/v1/agents/{agent_id}/poll", "pollTasks", "Long-poll for tasks")
        .describe("Leases tasks of the agent's roles; an empty list when `wait_ms` passes.")
        .query("max", integer(1, Some(100), Some(10)), "The most tasks to lease.")
        .query("wait_ms", integer(0, None, Some(20_000)), "Longest wait, ms (at most 60000).")
        .ok(200, "The leased tasks.", s.schema::<PollAnswer>())
        .fails(&[BAD_QUERY])
        .add(s);
    let recorded = s.schema::<LeaseRecorded>();
    let (complete, fail) = (s.schema::<CompleteTask>(), s.schema::<FailTask>());
    for (verb, id, summary, body) in [
        ("complete", "completeTask", "Complete a leased attempt", Some((complete, false))),
        ("fail", "failTask", "Fail a leased attempt", Some((fail, true))),
        ("heartbeat", "heartbeatTask", "Extend a leased attempt's deadline", None),
    ] {
        let mut op = op(Post, &format!("/api/v1/tasks/{{lease_id}}/{verb}"), id, summary)
            .ok(200, "Recorded.", recorded.clone())
            .fails(&[STALE]);
        if let Some((schema, required)) = body {
            op = op.body(schema, required).fails(&[OVER_SIZE_QUOTA]);
        }
        op.add(s);
    }
}

#[rustfmt::skip]
pub(super) fn keys(s: &mut Spec) {
    let op = tagged("keys");
    op(Post, "/api/v1/keys", "createKey", "Issue an API key")
        .describe("An `admin` issues keys in its own tenant; the system administrator in any.")
        .body(s.schema::<CreateKey>(), true)
        .ok(201, "The key, with its token (shown only in this answer).", s.schema::<KeyCreated>())
        .fails(&[BAD_BODY])
        .add(s);
    op(Get, "/api/v1/keys", "listKeys", "List API keys")
        .ok(200, "The keys (never their secrets).", s.schema::<KeyList>())
        .add(s);
    op(Delete, "/api/v1/keys/{key_id}", "revokeKey", "Revoke an API key")
        .answer(204, "Revoked; live streams opened with it close with 4401.", [])
        .add(s);
}

#[rustfmt::skip]
pub(super) fn secrets(s: &mut Spec) {
    let op = tagged("secrets");
    op(Post, "/api/v1/secrets", "createSecret", "Create a secret")
        .describe("`admin` and `developer`, in the caller's tenant. Workflows reference it as `${secrets.NAME}` in an `http` task's url, headers and body and in an agent task's input; its value is put in only when the request is sent or the lease handed out, and is never shown again. `409 conflict` if the name exists.")
        .body(s.schema::<CreateSecret>(), true)
        .ok(201, "The secret's name and times (never its value).", s.schema::<Secret>())
        .fails(&[BAD_BODY, CONFLICT])
        .add(s);
    op(Get, "/api/v1/secrets", "listSecrets", "List secrets")
        .ok(200, "The tenant's secrets, sorted by name (never their values).", s.schema::<SecretList>())
        .add(s);
    op(Put, "/api/v1/secrets/{name}", "rotateSecret", "Rotate a secret")
        .describe("A new value, used from the next attempt that needs it.")
        .body(s.schema::<RotateSecret>(), true)
        .ok(200, "The secret's name and times.", s.schema::<Secret>())
        .fails(&[BAD_BODY])
        .add(s);
    op(Delete, "/api/v1/secrets/{name}", "deleteSecret", "Delete a secret")
        .describe("An attempt that needs it afterwards fails for good, naming it.")
        .answer(204, "Deleted.", [])
        .add(s);
}

#[rustfmt::skip]
pub(super) fn patterns(s: &mut Spec) {
    let op = tagged("workflows");
    let params = ObjectBuilder::new()
        .description(Some(PATTERN_PARAMETERS))
        .property("name", string().description(Some("The main workflow's name; the others add a suffix (at most 120 characters).")))
        .required("name");
    s.schema::<ParameterError>();
    op(Post, "/api/v1/patterns/{pattern}", "expandPattern", "Expand an orchestration pattern into workflows")
        .describe(PATTERN)
        .query("create", boolean(false), "Also create every workflow it expands to.")
        .body(params.into(), true)
        .ok(200, "The definitions it expands to, in creation order (the main one last).", s.schema::<PatternExpansion>())
        .ok(201, "The workflows created, the main one (to execute) apart.", s.schema::<PatternCreated>())
        .fails(&[BAD_BODY, BAD_QUERY, INVALID_PARAMETERS, INVALID_WORKFLOW, OVER_QUOTA, OVER_SIZE_QUOTA])
        .add(s);
}

const PATTERN: &str = "Compiles a pattern into ordinary workflow definitions (agent, switch, map, workflow and signal tasks), each marked with `pattern`. Loops are unrolled into bounded chains of sub-workflows. Without `create` nothing is recorded; with it the workflows are created children first. Bad parameters are `422 invalid_parameters` whose `details.errors` lists every one as `{field, reason}`; nothing is created.";

const PATTERN_PARAMETERS: &str = "The pattern's parameters. supervisor: `name`, `supervisor`, `worker`, `max_rounds` (1-5), `max_steps`, `max_parallel`, `timeout_seconds`. hierarchical: those and `depth` (1-4), `branches` (1-5). handoff: `name`, `roles` (1-8), `start`, `max_hops` (1-10), `timeout_seconds`. swarm: `name`, `agents` (2-32 roles), `aggregate` (`vote` | `merge`), `aggregator`, `timeout_seconds`. network: `name`, `agents` (2-8 roles), `max_rounds` (1-5), `timeout_seconds`.";

#[rustfmt::skip]
pub(super) fn schedules(s: &mut Spec) {
    let op = tagged("schedules");
    let schedule = s.schema::<Schedule>();
    op(Post, "/api/v1/schedules", "createSchedule", "Create a schedule")
        .describe(SCHEDULE)
        .body(s.schema::<CreateSchedule>(), true)
        .ok(201, "The schedule.", schedule.clone())
        .fails(&[INVALID_SCHEDULE, UNKNOWN_WORKFLOW, OVER_QUOTA, OVER_SIZE_QUOTA])
        .add(s);
    op(Get, "/api/v1/schedules", "listSchedules", "List schedules, newest first")
        .query("limit", integer(1, Some(1000), Some(50)), "Page size.")
        .query("cursor", string(), "The `next_cursor` of the previous page.")
        .ok(200, "A page of the tenant's schedules.", s.schema::<ScheduleList>())
        .fails(&[BAD_QUERY])
        .add(s);
    op(Get, "/api/v1/schedules/{id}", "getSchedule", "A schedule")
        .ok(200, "The schedule, with its next and latest tick.", schedule.clone())
        .add(s);
    for (verb, id, summary, about) in [
        ("pause", "pauseSchedule", "Pause a schedule", "Its ticks start nothing until it is resumed. `409 conflict` if it is paused."),
        ("resume", "resumeSchedule", "Resume a paused schedule", "Ticks after now start executions again; those it missed while paused never do. `409 conflict` if it is active."),
    ] {
        op(Post, &format!("/api/v1/schedules/{{id}}/{verb}"), id, summary)
            .describe(about)
            .ok(200, "The schedule.", schedule.clone())
            .fails(&[CONFLICT])
            .add(s);
    }
    op(Delete, "/api/v1/schedules/{id}", "deleteSchedule", "Delete a schedule")
        .describe("It never ticks again; executions it started go on.")
        .answer(204, "Deleted.", [])
        .add(s);
}

const SCHEDULE: &str = "Starts `workflow` at every tick of `cron` (5 fields, or 6 with seconds first) read in `timezone` (IANA, default `UTC`), with `input`. Each tick starts exactly one execution however many servers run (its id is derived from the schedule and the tick, and `metadata.actor` is `schedule:<id>`). `overlap` (while the previous execution runs): `skip` (default), `allow`, `cancel_previous`. `catch_up` (ticks missed by more than 30 s, e.g. while no engine ran): `none`, `latest` (default), `all` (at most 100).";

#[rustfmt::skip]
pub(super) fn hooks(s: &mut Spec) {
    let op = tagged("hooks");
    let hook = s.schema::<Hook>();
    op(Post, "/api/v1/hooks", "createHook", "Create a webhook")
        .describe(HOOK)
        .body(s.schema::<CreateHook>(), true)
        .ok(201, "The hook, with its signing secret (shown only in this answer).", s.schema::<HookCreated>())
        .fails(&[BAD_BODY, INVALID_HOOK])
        .add(s);
    op(Get, "/api/v1/hooks", "listHooks", "List webhooks, newest first")
        .query("limit", integer(1, Some(1000), Some(50)), "Page size.")
        .query("cursor", string(), "The `next_cursor` of the previous page.")
        .ok(200, "A page of the tenant's hooks (never their secrets).", s.schema::<HookList>())
        .fails(&[BAD_QUERY])
        .add(s);
    op(Get, "/api/v1/hooks/{id}", "getHook", "A webhook")
        .ok(200, "The hook (never its secret).", hook)
        .add(s);
    op(Delete, "/api/v1/hooks/{id}", "deleteHook", "Delete a webhook")
        .describe("Nothing more is delivered to it; its secret and its delivery records are forgotten. Recorded as `HookDeleted`.")
        .answer(204, "Deleted.", [])
        .add(s);
    op(Get, "/api/v1/hooks/{id}/deliveries", "listHookDeliveries", "A webhook's deliveries, latest first")
        .describe("One record per event handed to the hook: `pending` (being retried), `delivered` (a 2xx answer) or `dead_lettered` (every attempt failed; the hook moved on).")
        .query("limit", integer(1, Some(1000), Some(50)), "Page size.")
        .query("cursor", string(), "The `next_cursor` of the previous page.")
        .ok(200, "A page of the hook's deliveries.", s.schema::<HookDeliveryList>())
        .fails(&[BAD_QUERY])
        .add(s);
}

const HOOK: &str = "`admin` and `developer`, in the caller's tenant. Every event of the tenant recorded after the hook is created whose type is in `events` (`[\"*\"]`: every type) is POSTed to `url` as the envelope `GET /api/v1/executions/{id}/events` serves, in log order, at least once, with the headers `Conflux-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>`, `Conflux-Hook-Id`, `Conflux-Event-Id` and `Conflux-Delivery-Attempt`. A 2xx answer is a success; failures are retried with exponential backoff, then dead-lettered. Recorded as `HookCreated`; the secret is never in the log.";

#[rustfmt::skip]
pub(super) fn tenants(s: &mut Spec) {
    let op = tagged("tenants");
    op(Post, "/api/v1/tenants", "createTenant", "Create a tenant")
        .describe("The system administrator only. `409 conflict` if it exists (`default` always does).")
        .body(s.schema::<CreateTenant>(), true)
        .ok(201, "The tenant.", s.schema::<Tenant>())
        .fails(&[BAD_BODY, CONFLICT])
        .add(s);
    op(Get, "/api/v1/tenants", "listTenants", "List tenants")
        .describe("The system administrator only; `default` first.")
        .ok(200, "The tenants.", s.schema::<TenantList>())
        .add(s);
    op(Put, "/api/v1/tenants/{tenant}/policy", "setTenantPolicy", "Set a tenant's policy")
        .describe("The system administrator only. Replaces the tenant's whole policy: its own egress allowlist (added to the operator's `CONFLUX_EGRESS_ALLOW` for its `http` tasks) and its own quota limits (a quota left out takes the configured default, `CONFLUX_QUOTA_*`). Recorded as `TenantPolicySet`; every server applies it within a second.")
        .body(s.schema::<SetTenantPolicy>(), true)
        .ok(200, "The policy in force.", s.schema::<TenantPolicy>())
        .fails(&[BAD_BODY, NOT_FOUND])
        .add(s);
    op(Get, "/api/v1/tenants/{tenant}/policy", "getTenantPolicy", "A tenant's policy")
        .describe("The system administrator only. `updated_at` is null while the defaults apply.")
        .ok(200, "The policy in force.", s.schema::<TenantPolicy>())
        .fails(&[NOT_FOUND])
        .add(s);
    op(Get, "/api/v1/tenants/{tenant}/usage", "getTenantUsage", "A tenant's use of its quotas")
        .describe("The system administrator for any tenant; a tenant's `admin` for its own (another tenant is `404`). Counted by the store in the same transaction as the events counted, so the figures match the log.")
        .ok(200, "Every quota: what is used and its limit (null: none).", s.schema::<TenantUsage>())
        .fails(&[NOT_FOUND])
        .add(s);
    let erasure = tagged("erasure");
    erasure(Delete, "/api/v1/tenants/{tenant}/data", "eraseTenantData", "Erase a tenant's data")
        .describe(ERASE_TENANT)
        .body(s.schema::<EraseTenantData>(), true)
        .ok(200, "What was destroyed.", s.schema::<DataErased>())
        .fails(&[BAD_BODY, NOT_FOUND, ERASE_REFUSED])
        .add(s);
    erasure(Delete, "/api/v1/executions/{id}/data", "eraseExecutionData", "Erase an execution's data")
        .describe(ERASE_EXECUTION)
        .ok(200, "What was destroyed.", s.schema::<DataErased>())
        .fails(&[NOT_FOUND, ERASE_REFUSED])
        .add(s);
}

const ERASE_TENANT: &str =
    "The system administrator only; `confirm` must repeat the tenant's name. \
Destroys the tenant's data keys (crypto-shredding): every payload of the tenant — inputs, outputs, \
errors, HTTP requests — reads as `{\"redacted\": \"erased\"}` from then on, everywhere (API, live \
streams, replay, exports, read models). The events' structure and every hash chain stay \
(`verify` stays valid); `TenantDataErased` records it. Cannot be undone. Needs encryption at rest \
(`CONFLUX_MASTER_KEY`).";
const ERASE_EXECUTION: &str = "A tenant's `admin`. Destroys a finished execution's data key: its \
payloads read as `{\"redacted\": \"erased\"}` from then on; `ExecutionDataErased` records it. \
Cannot be undone. Needs encryption at rest (`CONFLUX_MASTER_KEY`).";
const ERASE_REFUSED: Failure = Failure(
    409,
    "encryption at rest is off (`encryption_off`), the execution has not finished (`execution_running`), or it was recorded before encryption at rest was on (`not_sealed`)",
    &["encryption_off", "execution_running", "not_sealed"],
);

#[rustfmt::skip]
pub(super) fn live(s: &mut Spec) {
    let frames = json!({"$ref": Ref::from_schema_name(LiveFrame::name()).ref_location});
    s.schema::<LiveFrame>();
    for (what, id) in [("workflow", "watchWorkflow"), ("execution", "watchExecution")] {
        let mut op = Op::new(Get, &format!("/ws/{what}s/{{id}}"), id, "Watch live", "live")
            .describe(LIVE)
            .query("after", integer(0, None, None), "Resume after this position (no snapshot).")
            .answer(101, "Switching protocols: a WebSocket of `LiveFrame` frames.", [])
            .fails(&[BAD_QUERY, NOT_UPGRADE, UPGRADE_IMPOSSIBLE])
            .stateless();
        let frames = ExtensionsBuilder::new().add("x-websocket-frames", frames.clone());
        op.builder = op.builder.extensions(Some(frames.build()));
        op.add(s);
    }
    let unknown = Failure(404, "the path's execution or workflow is unknown, or another tenant's", &["not_found"]);
    Op::new(Post, crate::stream_tokens::PATH, "mintStreamToken", "Mint a token for one live stream", "live")
        .describe(STREAM_TOKEN)
        .body(s.schema::<MintStreamToken>(), true)
        .ok(201, "The token, the stream it opens and when it expires.", s.schema::<StreamTokenMinted>())
        .fails(&[unknown])
        .add(s);
}

const STREAM_TOKEN: &str = "A short-lived token (60 s unless configured otherwise) that opens the \
one live stream `path` names, as `?access_token=<token>` (or a bearer token) on its upgrade, so \
long-lived keys stay out of URLs. The stream acts exactly as the caller (tenant, role, actor). \
The token is `401` on any other path or route, after it expires, and once the caller's key is \
revoked or expires; an open stream closes with 4401 then. A `path` that is not \
`/ws/executions/{id}` or `/ws/workflows/{id}` is `400 invalid_request` with `details.field` \
`path`; an id of another tenant is `404`, exactly as an unknown one.";

const LIVE: &str = "Upgrade to a WebSocket. Server → client text frames, JSON (`LiveFrame`):\n\
1. `{\"type\": \"snapshot\", \"position\": P, \"status\": <body>}` first, where the body is \
what `GET /api/v1/executions/{id}` or `GET /api/v1/workflows/{id}/status` answers; \
omitted when `after` is given.\n\
2. Then every event after P (or after `after`) in position order, exactly once: \
`{\"type\": \"event\", \"event\": <envelope>}`.\n\
3. `{\"type\": \"lagged\", \"position\": <last sent>}` then close (1008) if the client \
cannot keep up; it reconnects with `?after=<position>`.\n\n\
The server pings every 15 s. An unknown id is no HTTP 404: the socket opens and is \
closed with code 4404. A browser, which cannot set headers on an upgrade, passes a token \
minted for this path (`POST /api/v1/stream-tokens`) as `?access_token=`.";

#[rustfmt::skip]
pub(super) fn operations(s: &mut Spec) {
    let op = tagged("operations");
    let unavailable = |when| Failure(503, when, &["unavailable"]);
    op(Get, "/health", "health", "Liveness")
        .stateless()
        .ok(200, "The process runs.", s.schema::<Health>())
        .add(s);
    op(Get, "/ready", "ready", "Readiness: the event store and the bus answer, and the bus belongs to this store")
        .stateless()
        .ok(200, "Ready.", s.schema::<Ready>())
        .fails(&[unavailable("the store or the bus did not answer, or the bus (Redis prefix) holds another store's events or events ahead of this store (details: mode, store, bus — the reason and the remedy, `conflux bus reset --yes`)")])
        .add(s);
    let text = [("text/plain; version=0.0.4", string().into())];
    op(Get, "/metrics", "metrics", "Prometheus metrics")
        .stateless()
        .answer(200, "Prometheus text exposition format 0.0.4.", text)
        .fails(&[unavailable("the metrics recorder is not installed")])
        .add(s);
    let object = ObjectBuilder::new().schema_type(Type::Object).into();
    op(Get, PATH, "openapi", "This document")
        .stateless()
        .ok(200, "The OpenAPI 3 document.", object)
        .add(s);
}
