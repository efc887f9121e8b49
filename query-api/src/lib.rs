//! # conflux-query-api — the read side over HTTP
//!
//! # Layout
//! - [`audit`]: an execution's log (JSON pages or NDJSON), replay to any version, hash
//!   chain verification, and a workflow's merged log.
//! - [`dead_letters`]: the tenant's dead letters (tasks that failed their execution).
//! - [`executions`]: an execution, from the read model (or its log, until projected).
//! - [`live`]: `/ws/executions/{id}`: snapshot, then every later event once, resumable.
//! - [`openapi`]: `/api/v1/openapi.json`, this API as an OpenAPI 3 document.
//! - [`workflows`]: the workflow list, a definition and its status, from the read models.
//! - [`hooks`]: the tenant's webhooks, one webhook, and its deliveries.
//! - [`schedules`]: the tenant's schedules and one schedule, folded from their streams.
//! - [`reads`]: the state the read routes share and the read-model error mapping.
//! - [`stream_tokens`]: `POST /api/v1/stream-tokens`, short-lived tokens that open one
//!   live stream.
//!
//! The error body, the extractors, `/health`, `/ready` and `/metrics` are the HTTP layer
//! both APIs share: `conflux-http`. **Architecture invariant:** this crate does not
//! depend on `conflux-command-api`, nor it on this one.

pub mod audit;
pub mod dead_letters;
pub mod executions;
pub mod hooks;
pub mod live;
pub mod openapi;
pub mod reads;
pub mod schedules;
pub mod stream_tokens;
pub mod workflows;
