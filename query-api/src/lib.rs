//! # conflux-query-api — the read side over HTTP
//!
//! # Layout
//! - [`ops`]: `/health` and `/ready`, the probes every deployment needs.
//!
//! Query routes, audit/replay, `/metrics` and the WebSocket status stream arrive with
//! the read side.

pub mod ops;
