//! # conflux-projector — read models
//!
//! Will own the read side's tables: it consumes the bus (consumer group `projector`),
//! maintains executions, task states and workflow summaries in Postgres (or the embedded
//! store), writes each projection's checkpoint in the same transaction as its rows, and
//! rebuilds every read model from position 0 (`conflux projector rebuild`).
//!
//! **Architecture invariant:** read models never influence the write side; the engine
//! and the command API never read these tables.
