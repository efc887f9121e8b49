//! # conflux-projector — read models
//!
//! Owns the read side's tables: it consumes the bus (consumer group `projector`),
//! maintains executions, task states and workflow summaries in Postgres (or a SQLite
//! file in embedded mode), writes its checkpoint in the same transaction as its rows,
//! and rebuilds every read model from position 0 (`conflux projector rebuild`).
//!
//! **Architecture invariant:** read models never influence the write side; the engine
//! and the command API never read these tables.
//!
//! # Layout
//! - [`fold`]: the pure core: events in, changed rows out, with the engine's `evolve`.
//! - [`rows`]: the rows and the API bodies made from them.
//! - [`db`]: the tables in Postgres or SQLite, the checkpointed commit, the queries.
//! - [`runner`]: the process: tail the store, fold, commit, publish the lag.
//! - [`rebuild`]: drop every read model and replay the whole log.

pub mod db;
pub mod fold;
pub mod rebuild;
pub mod rows;
pub mod runner;

pub use db::{ReadModelError, ReadModels};
pub use runner::{Projector, ProjectorError};
