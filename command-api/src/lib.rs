//! # conflux-command-api — the write side over HTTP
//!
//! Validates input, turns requests into commands against the engine's event store, and
//! returns ids. Commands never wait for the engine: they append and answer.
//!
//! # Layout
//! - [`workflows`]: create (versioned by name), execute (idempotent), pause/resume all.
//! - [`executions`]: pause, resume, cancel one execution.
//! - [`signals`]: a signal for an execution's `signal` tasks; [`approvals`]: approve or
//!   reject an `approval` task (the rules are the execution core's).
//! - [`agents`]: register, long-poll leases, complete/fail/heartbeat by lease (the rules
//!   are the engine's agent service; these routes translate HTTP).
//! - [`access`]: tenants (create, list) and API keys (create, list, revoke).
//! - [`dead_letters`]: redrive (retry) or acknowledge a dead letter.
//! - [`patterns`]: an orchestration pattern expanded into workflows (and created).
//! - [`hooks`]: create and delete a webhook.
//! - [`schedules`]: create, pause, resume, delete a schedule (a workflow on a cron).
//! - [`secrets`]: the tenant's secrets (create, list names, rotate, delete).
//! - [`tenants`]: a tenant's policy (egress allowlist, quota limits) and its usage.
//!
//! Every route that records something a quota limits asks [`conflux_engine::quota`]
//! first: over a quota, nothing is written.
//!
//! The error body and the extractors every route uses are the HTTP layer both APIs
//! share: `conflux-http`.
//!
//! **Architecture invariant:** this crate never talks to SQL or Redis directly; it goes
//! through the engine's store, catalog and agent service. It does not depend on
//! `conflux-query-api`, nor that crate on this one.

pub mod access;
pub mod agents;
pub mod approvals;
pub mod dead_letters;
pub mod erasure;
pub mod executions;
pub mod hooks;
pub mod patterns;
pub mod schedules;
pub mod secrets;
pub mod signals;
pub mod tenants;
pub mod workflows;

use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;
use conflux_engine::commands::ExecutionCommands;

/// What the write routes need.
#[derive(Clone)]
pub struct CommandContext {
    /// Loads executions and records commands.
    pub commands: ExecutionCommands,
    /// Agent registration, leases and results.
    pub agents: conflux_engine::agents::Agents,
    /// Tenants and API keys.
    pub access: conflux_engine::access::Access,
    /// Erasure of tenants' and executions' payloads.
    pub erasure: conflux_engine::crypto::erasure::Erasure,
    /// The tenants' secrets.
    pub secrets: conflux_engine::secrets::Secrets,
    /// The tenants' quotas.
    pub quotas: conflux_engine::quota::Quotas,
    /// Schedules.
    pub schedules: conflux_engine::schedules::Schedules,
    /// Webhooks.
    pub hooks: conflux_engine::hooks::Hooks,
}

/// Every write route of API.md, with request bodies limited to `max_body_bytes` (413).
pub fn router(ctx: CommandContext, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/api/v1/workflows", post(workflows::create))
        .route("/api/v1/workflows/{id}/execute", post(workflows::execute))
        .route("/api/v1/workflows/{id}/pause", post(workflows::pause))
        .route("/api/v1/workflows/{id}/resume", post(workflows::resume))
        .route("/api/v1/executions/{id}/pause", post(executions::pause))
        .route("/api/v1/executions/{id}/resume", post(executions::resume))
        .route("/api/v1/executions/{id}/cancel", post(executions::cancel))
        .route(
            "/api/v1/executions/{id}/signals/{signal}",
            post(signals::send),
        )
        .route(
            "/api/v1/executions/{id}/tasks/{task_id}/approve",
            post(approvals::approve),
        )
        .route(
            "/api/v1/executions/{id}/tasks/{task_id}/reject",
            post(approvals::reject),
        )
        .route("/api/v1/agents", post(agents::register).get(agents::list))
        .route(
            "/api/v1/agents/{id}",
            axum::routing::get(agents::get).delete(agents::deregister),
        )
        .route(
            "/api/v1/agents/{id}/heartbeat",
            post(agents::heartbeat_agent),
        )
        .route("/api/v1/agents/{id}/drain", post(agents::drain))
        .route("/api/v1/agents/{id}/poll", post(agents::poll))
        .route("/api/v1/tasks/{id}/complete", post(agents::complete))
        .route("/api/v1/tasks/{id}/fail", post(agents::fail))
        .route("/api/v1/tasks/{id}/heartbeat", post(agents::heartbeat))
        .route(
            "/api/v1/keys",
            post(access::create_key).get(access::list_keys),
        )
        .route(
            "/api/v1/keys/{key_id}",
            axum::routing::delete(access::revoke_key),
        )
        .route(
            "/api/v1/tenants",
            post(access::create_tenant).get(access::list_tenants),
        )
        .route(
            "/api/v1/tenants/{tenant}/policy",
            axum::routing::put(tenants::set_policy).get(tenants::get_policy),
        )
        .route(
            "/api/v1/tenants/{tenant}/usage",
            axum::routing::get(tenants::usage),
        )
        .route(
            "/api/v1/tenants/{tenant}/data",
            axum::routing::delete(erasure::erase_tenant),
        )
        .route(
            "/api/v1/executions/{id}/data",
            axum::routing::delete(erasure::erase_execution),
        )
        .route("/api/v1/patterns/{pattern}", post(patterns::expand))
        .route("/api/v1/hooks", post(hooks::create))
        .route("/api/v1/hooks/{id}", axum::routing::delete(hooks::delete))
        .route("/api/v1/schedules", post(schedules::create))
        .route(
            "/api/v1/schedules/{id}",
            axum::routing::delete(schedules::delete),
        )
        .route("/api/v1/schedules/{id}/pause", post(schedules::pause))
        .route("/api/v1/schedules/{id}/resume", post(schedules::resume))
        .route(
            "/api/v1/dead-letters/{id}",
            axum::routing::delete(dead_letters::acknowledge),
        )
        .route("/api/v1/dead-letters/{id}/retry", post(dead_letters::retry))
        .route("/api/v1/secrets", post(secrets::create).get(secrets::list))
        .route(
            "/api/v1/secrets/{name}",
            axum::routing::put(secrets::rotate).delete(secrets::delete),
        )
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(ctx)
}
