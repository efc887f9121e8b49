//! # conflux-command-api — the write side over HTTP
//!
//! # Layout
//! - [`error`]: the one error body (`{"error": {"code", "message", "details"}}`) every
//!   route of every Conflux router answers with, and the mapping of typed errors to it.
//!
//! The write routes of API.md (workflows, executions, agents) arrive with the runtime.
//! **Architecture invariant:** this crate never talks to SQL or Redis directly; it goes
//! through the engine's `EventStore`/`EventBus` traits.

pub mod error;
