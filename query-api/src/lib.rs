//! # conflux-query-api — the read side over HTTP
//!
//! # Layout
//! - [`audit`]: an execution's log (JSON pages or NDJSON), replay to any version, hash
//!   chain verification, and a workflow's merged log.
//! - [`executions`]: an execution, folded from its event log.
//! - [`live`]: `/ws/executions/{id}`: snapshot, then every later event once, resumable.
//! - [`metrics`]: `/metrics` in Prometheus text.
//! - [`workflows`]: a workflow's definition and status, folded from the log.
//! - [`ops`]: `/health` and `/ready`, the probes every deployment needs.
//!
//! Query routes (lists, `/status`) and the WebSocket status stream arrive with the read
//! side.

pub mod audit;
pub mod executions;
pub mod live;
pub mod metrics;
pub mod ops;
pub mod workflows;
