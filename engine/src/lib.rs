//! # conflux-engine — the write model
//!
//! # Layout
//! - [`access`]: tenants and API keys (event-sourced), the token format, and who a
//!   bearer token is (a `Principal`), refreshed from the log within a second.
//! - [`catalog`]: workflow definitions, versioned per name, validated once per process.
//! - [`commands`]: load an execution, decide a command, append it; retried on conflict.
//! - [`agents`]: agent registration, long-poll leases and results by lease: the agent
//!   aggregate's service, with the tenant and agent-key checks.
//! - [`executor`]: the engine role: consumes the bus, decides, appends, performs effects.
//! - [`hooks`]: webhooks — a tenant's events POSTed, signed, at least once and in log
//!   order, from the log by a leased loop per hook in every engine process.
//! - [`store`]: the `EventStore` trait (the system of record) with its Postgres and
//!   embedded SQLite backends, sharing one group-commit append pipeline.
//! - [`bus`]: the `EventBus` trait (the transport) with Redis Streams and in-process
//!   backends: consumer groups, acks, claiming a dead consumer's entries.
//! - [`queue`]: the `TaskQueue` of agent-task tickets per tenant and role (Redis
//!   Streams or in memory) that agents' long-polls take from; transport only, the log is the truth.
//! - [`quota`]: per-tenant quotas, their limits and admissions, counted by the store.
//! - [`relay`]: publishes committed events from the store's outbox to the bus, in
//!   position order, and republishes whatever the bus lost.
//! - [`subscriber`]: delivery with effectively-once application: skips what a consumer
//!   already applied and fills per-stream gaps from the store.
//! - [`execution`]: the pure execution state machine (`decide`/`evolve`, no I/O).
//! - [`schedules`]: workflows started on a cron in a time zone, exactly once per tick
//!   across engines (the tick derives the execution id); the ticker every engine runs.
//! - [`secrets`]: tenants' secrets, stored sealed (a `SecretCipher`), referenced as
//!   `${secrets.NAME}` and revealed only in memory, at the moment a request or a lease
//!   needs them.
//! - [`runner`]: runs built-in tasks (`noop`, `sleep`, `http`) in-process, with a
//!   circuit breaker per downstream host.
//!
//! The pure core ([`execution`]) depends on nothing here but `conflux-schema`; every
//! other module is the I/O shell around it.

pub mod access;
pub mod agents;
pub mod bus;
pub mod catalog;
pub mod commands;
pub mod concurrency;
pub mod crypto;
pub mod execution;
pub mod executor;
pub mod hooks;
pub mod queue;
pub mod quota;
pub mod rate;
mod redis_conn;
pub mod relay;
pub mod runner;
pub mod schedules;
pub mod secrets;
pub mod store;
pub mod subscriber;
pub mod task_hooks;
pub mod testing;
