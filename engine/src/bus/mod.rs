//! The event bus: the transport that carries committed events from the relay to every
//! consumer group (engine, projector). Never the only copy of an event: whatever the bus
//! loses, the relay republishes from the store.
//!
//! Entries are keyed by the event's global position, so publishing is idempotent (an
//! event at or below the bus head is ignored) and the bus head tells the relay exactly
//! what the bus already holds. Delivery is at-least-once within a consumer group: an
//! entry stays pending until acked, and a dead consumer's pending entries can be claimed
//! by another ([`Subscription::claim_stale`], XAUTOCLAIM on Redis).

pub mod local;
pub mod ownership;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use conflux_schema::EventEnvelope;
use uuid::Uuid;

/// What can go wrong on the bus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The transport cannot be reached.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    /// The transport answered with an error.
    #[error("event bus error: {0}")]
    Backend(String),
}

/// One event delivered to one consumer of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The entry's position (the event's global position).
    pub position: u64,
    /// The event.
    pub envelope: EventEnvelope,
}

/// Which store a bus belongs to, as recorded on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusOwner {
    /// The store whose events the bus carries ([`crate::store::EventStore::store_id`]).
    pub store_id: Uuid,
    /// Changes on every claim and reset, so a process notices that the bus was reset
    /// under it (and drops what it remembered of the old stream).
    pub generation: Uuid,
}

/// The transport. Implementations guarantee: entries are ordered by position; each entry
/// is delivered to one consumer per group and stays pending until acked.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes events given in increasing position order; events at or below the
    /// current head are skipped.
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), BusError>;

    /// The highest position the bus holds (0 when empty, e.g. after a flush).
    async fn head(&self) -> Result<u64, BusError>;

    /// Joins consumer group `group` as `consumer`. A new group starts from the oldest
    /// entry the bus holds.
    async fn subscribe(
        &self,
        group: &str,
        consumer: &str,
    ) -> Result<Box<dyn Subscription>, BusError>;

    /// Succeeds when the transport answers (readiness).
    async fn ping(&self) -> Result<(), BusError>;

    /// The store recorded as this bus's owner (None: nobody claimed it yet).
    async fn owner(&self) -> Result<Option<BusOwner>, BusError>;

    /// Records `store_id` as the owner if nobody is; returns the owner now recorded
    /// (another store's, if it claimed first).
    async fn claim(&self, store_id: Uuid) -> Result<BusOwner, BusError>;

    /// Deletes everything the bus holds (events, consumer groups, pending entries) and
    /// records `store_id` as its owner with a new generation. The relay then
    /// republishes from the store.
    async fn reset(&self, store_id: Uuid) -> Result<BusOwner, BusError>;

    /// The newest entry's position and event id (None when the bus is empty).
    async fn head_event(&self) -> Result<Option<(u64, Uuid)>, BusError>;

    /// Where the bus lives, for operators' messages (e.g. `Redis prefix "conflux:"`).
    fn describe(&self) -> String;
}

/// One consumer's view of a group.
#[async_trait]
pub trait Subscription: Send {
    /// Entries not yet delivered to the group, up to `max`, waiting up to `wait` for the
    /// first one. Returned entries are pending for this consumer until acked.
    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError>;

    /// Acknowledges entries: they will not be delivered again.
    async fn ack(&mut self, positions: &[u64]) -> Result<(), BusError>;

    /// Takes over entries pending (delivered, not acked) for at least `min_idle`, from
    /// any consumer of the group, e.g. one that died.
    async fn claim_stale(
        &mut self,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, BusError>;
}
