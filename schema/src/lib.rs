//! # conflux-schema — the contract
//!
//! Everything two parts of Conflux must agree on, and nothing that does I/O.
//!
//! # Layout
//! - [`ids`]: validated newtypes for identifiers (`TaskId`, `WorkflowName`, `StreamId`).
//! - [`canonical`]: canonical JSON bytes, the input of the hash chain.
//! - [`concurrency`]: workflows' concurrency keys: their limit and strategy.
//! - [`condition`]: the CEL expressions of `when` and switch cases: checking and evaluating.
//! - [`event`]: the event envelope, the closed set of event types, and the hash chain.
//! - [`event_types`]: the names of every event type (what webhooks filter on).
//! - [`definition`]: the workflow definition a client posts (API.md "Workflows").
//! - [`kind`]: the task kinds, one module each, and the table that says how each runs.
//! - [`validate`]: turning a definition into a `ValidatedWorkflow` (petgraph), or a typed 422 error.
//! - [`patterns`]: orchestration patterns (supervisor, handoff, …) expanded into definitions.
//! - [`payload`]: which fields of an event are the customer's data, and their sealed and redacted forms.
//! - [`quota`]: the per-tenant quotas, their names and limits.
//! - [`rate_limit`]: task rate limits: their keys and the GCRA arithmetic.
//! - [`routing`]: capability-scored routing's weights and the record of each choice.
//! - [`schedule`]: schedules' overlap and catch-up policies, statuses and tick outcomes.
//! - [`status`]: the statuses of executions and tasks, as API.md spells them.
//! - [`api`]: the HTTP bodies of API.md as types — handlers build them, tests parse
//!   them, and the OpenAPI document is derived from them.
//!
//! SQL migrations live beside this crate in `schema/migrations/` and are embedded by the
//! engine's stores, so the contract and the tables that hold it change together.

pub mod access;
pub mod api;
pub mod canonical;
pub mod concurrency;
pub mod condition;
pub mod definition;
pub mod event;
pub mod event_types;
pub mod ids;
pub mod kind;
pub mod patterns;
pub mod payload;
pub mod quota;
pub mod rate_limit;
pub mod reference;
pub mod routing;
pub mod schedule;
pub mod status;
pub mod task_hooks;
pub mod usage;
pub mod validate;

pub use event::{Event, EventEnvelope, EventMetadata, NewEvent, ParentLink};
pub use ids::{StreamId, StreamType, TaskId, WorkflowName};
