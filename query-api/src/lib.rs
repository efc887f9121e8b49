//! # conflux-query-api — the read side over HTTP
//!
//! # Layout
//! - [`executions`]: an execution and its event log, folded from the store.
//! - [`metrics`]: `/metrics` in Prometheus text.
//! - [`ops`]: `/health` and `/ready`, the probes every deployment needs.
//!
//! Query routes, audit/replay, `/metrics` and the WebSocket status stream arrive with
//! the read side.

pub mod executions;
pub mod metrics;
pub mod ops;
