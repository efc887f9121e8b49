//! The raw limits Conflux is measured against: what this machine's Postgres and Redis
//! do with no Conflux code in the way. A store rate means little alone ("4,000
//! events/s" is fast on a laptop with `fsync` on and slow on a server with it off);
//! as a fraction of the raw rate on the same hardware, in the same run, it says how
//! much the store itself costs.
//!
//! Postgres probes insert into `raw_events`, created `LIKE events INCLUDING ALL` after
//! running the store's own migrations, so it has exactly the columns, types, primary
//! key (identity `position`) and `(stream_id, version)` unique constraint of `events`,
//! and keeps them if a migration changes. Rows carry the same JSON as the store's.
//! Multi-row inserts use `unnest` over one array per column: one prepared statement
//! whatever the row count, and the shape the store itself uses, so the comparison
//! isolates what the store adds (commit-order lock, outbox row, hashing, the writer).
//!
//! Redis probes XADD a serialised event envelope, as the bus does, with `MAXLEN ~`
//! [`REDIS_STREAM_MAXLEN`] so memory stays bounded, and `*` ids (the bus sets the id
//! from the position; the cost is the same).

mod postgres;
mod redis_stream;

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::payload::envelope_json;
use crate::runner::Probe;
use crate::sandbox::Sandbox;

pub use postgres::{PgInsert, PgRoundTrip};
pub use redis_stream::{RedisRoundTrip, RedisXadd};

/// Entries each Redis benchmark stream keeps (approximate trim).
pub const REDIS_STREAM_MAXLEN: usize = 100_000;

/// Rows per statement in the multi-row INSERT, and XADDs per Redis pipeline.
pub const BATCH: usize = 100;

/// Creates the store's tables in the sandbox database, then `raw_events` as a copy of
/// `events`.
pub async fn prepare(sandbox: &Sandbox) -> Result<()> {
    conflux_engine::store::postgres::migrate(sandbox.pool())
        .await
        .context("running the store's migrations in the sandbox database")?;
    sqlx::query("CREATE TABLE raw_events (LIKE events INCLUDING ALL)")
        .execute(sandbox.pool())
        .await
        .context("creating raw_events")?;
    Ok(())
}

/// Every raw probe, in the order the `limits` subcommand runs them.
pub fn all_probes(sandbox: &Sandbox) -> Result<Vec<Box<dyn Probe>>> {
    let pool = sandbox.pool();
    let mut probes: Vec<Box<dyn Probe>> = Vec::new();
    for connections in [1, 8] {
        probes.push(Box::new(PgInsert::new(pool.clone(), connections, 1)));
        probes.push(Box::new(PgInsert::new(pool.clone(), connections, BATCH)));
    }
    probes.extend(redis_probes(sandbox)?);
    probes.extend(round_trip_probes(sandbox));
    Ok(probes)
}

/// XADD single and pipelined, with 1 and 8 connections.
pub fn redis_probes(sandbox: &Sandbox) -> Result<Vec<Box<dyn Probe>>> {
    let payload: Arc<str> = envelope_json()?.into();
    let mut probes: Vec<Box<dyn Probe>> = Vec::new();
    for pipeline in [1, BATCH] {
        for connections in [1, 8] {
            probes.push(Box::new(RedisXadd::new(
                sandbox.redis().clone(),
                sandbox.key_prefix().to_owned(),
                connections,
                pipeline,
                payload.clone(),
            )));
        }
    }
    Ok(probes)
}

/// Postgres `SELECT 1` and Redis `PING`, one at a time.
pub fn round_trip_probes(sandbox: &Sandbox) -> Vec<Box<dyn Probe>> {
    vec![
        Box::new(PgRoundTrip(sandbox.pool().clone())),
        Box::new(RedisRoundTrip(sandbox.redis().clone())),
    ]
}
