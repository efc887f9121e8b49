//! # conflux-http — the HTTP layer both APIs share
//!
//! The write side (`conflux-command-api`) and the read side (`conflux-query-api`) answer
//! with the same error body, read requests with the same extractors and are served
//! behind the same operations routes. That shared plumbing lives here, below both, so
//! neither API crate depends on the other.
//!
//! # Layout
//! - [`error`]: the one error body (`{"error": {"code", "message", "details"}}`) every
//!   route of every Conflux router answers with, and the mapping of typed errors to it.
//! - [`extract`]: JSON, query-string and path extractors whose rejections are that body;
//!   every router reads its query parameters with [`extract::QueryParams`].
//! - [`auth`]: bearer-token authentication and the route → permission table (deny by
//!   default).
//! - [`live_path`]: the live streams' paths, the scope a stream token is good for.
//! - [`context`]: the request context (today its request id) handlers are given, and
//!   the metadata of the events a request causes.
//! - [`ops`]: `/health` and `/ready`, the probes every deployment needs.
//! - [`metrics`]: `/metrics` in Prometheus text, and the process's metric recorder.
//! - [`layers`]: what every router is served in: request ids, a tracing span and the
//!   HTTP metrics per request, unread bodies drained, and the JSON 404 and 405 fallbacks.
//! - [`drain`]: request bodies a handler left unread are read on, within bounds, so its
//!   answer (a `413`) reaches a client that is still sending.
//!
//! **Architecture invariant:** this crate knows HTTP and the engine's types, never an
//! API crate; it talks to SQL and Redis only through the engine's store and bus traits.

pub mod auth;
pub mod context;
pub mod drain;
pub mod error;
pub mod extract;
pub mod layers;
pub mod live_path;
pub mod metrics;
pub mod ops;
