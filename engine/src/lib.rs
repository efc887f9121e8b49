//! # conflux-engine — the write model
//!
//! # Layout
//! - [`store`]: the `EventStore` trait (the system of record) with its Postgres and
//!   embedded SQLite backends, sharing one group-commit append pipeline.
//! - [`bus`]: the `EventBus` trait (the transport) with Redis Streams and in-process
//!   backends: consumer groups, acks, claiming a dead consumer's entries.
//! - [`relay`]: publishes committed events from the store's outbox to the bus, in
//!   position order, and republishes whatever the bus lost.
//! - [`subscriber`]: delivery with effectively-once application: skips what a consumer
//!   already applied and fills per-stream gaps from the store.
//!
//! The pure execution core (`decide`/`evolve`) and the scheduler arrive with the
//! runtime; they will depend on nothing here but `conflux-schema`.

pub mod bus;
pub mod relay;
pub mod store;
pub mod subscriber;
pub mod testing;
