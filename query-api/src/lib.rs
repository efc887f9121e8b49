//! # conflux-query-api — the read side over HTTP
//!
//! # Layout
//! - [`audit`]: an execution's log (JSON pages or NDJSON), replay to any version, hash
//!   chain verification, and a workflow's merged log.
//! - [`executions`]: an execution, from the read model (or its log, until projected).
//! - [`live`]: `/ws/executions/{id}`: snapshot, then every later event once, resumable.
//! - [`metrics`]: `/metrics` in Prometheus text.
//! - [`openapi`]: `/api/v1/openapi.json`, this API as an OpenAPI 3 document.
//! - [`workflows`]: the workflow list, a definition and its status, from the read models.
//! - [`reads`]: the state the read routes share and the read-model error mapping.
//! - [`ops`]: `/health` and `/ready`, the probes every deployment needs.

pub mod audit;
pub mod executions;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod reads;
pub mod workflows;
