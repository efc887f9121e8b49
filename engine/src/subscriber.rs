//! At-least-once delivery, effectively-once application.
//!
//! The bus may deliver an event twice (a redelivery after a crash, a republish after a
//! flush) or to a consumer that has not seen the stream's previous events (another
//! member of the group took them). A [`Subscriber`] asks its [`Consumer`] which version
//! of each stream it has applied, skips what is at or below it, fills a gap from the
//! store, and acks only after applying. A consumer's `apply` must still record the
//! version atomically with its effect (e.g. in the same transaction), which is what
//! makes the whole effectively-once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use conflux_schema::{EventEnvelope, StreamId};

use crate::bus::{BusError, Subscription};
use crate::store::{EventStore, StoreError};

/// A consumer's own failure, with its message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ConsumerError(pub String);

/// What a subscriber step can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SubscriberError {
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// Reading a gap from the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The consumer failed to apply an event.
    #[error("consumer failed: {0}")]
    Consumer(#[from] ConsumerError),
}

/// Something that applies events, per stream, in version order.
#[async_trait]
pub trait Consumer: Send {
    /// The highest version of `stream` this consumer has applied (0: none).
    async fn applied_version(&mut self, stream: &StreamId) -> Result<u64, ConsumerError>;

    /// Applies `event`, whose version is exactly `applied_version + 1`.
    async fn apply(&mut self, event: &EventEnvelope) -> Result<(), ConsumerError>;
}

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Entries the bus delivered.
    pub delivered: usize,
    /// Events applied (including gap fills).
    pub applied: usize,
    /// Deliveries skipped as already applied.
    pub skipped: usize,
}

/// Drives a [`Consumer`] from a bus subscription.
pub struct Subscriber<C> {
    subscription: Box<dyn Subscription>,
    store: Arc<dyn EventStore>,
    consumer: C,
    /// Entries pending this long for a consumer are taken over.
    claim_after: Duration,
    last_claim: Instant,
}

impl<C: Consumer> Subscriber<C> {
    /// A subscriber that takes over other consumers' entries idle for `claim_after`.
    pub fn new(
        subscription: Box<dyn Subscription>,
        store: Arc<dyn EventStore>,
        consumer: C,
        claim_after: Duration,
    ) -> Self {
        Self {
            subscription,
            store,
            consumer,
            claim_after,
            last_claim: Instant::now(),
        }
    }

    /// The consumer.
    pub fn consumer(&self) -> &C {
        &self.consumer
    }

    /// The consumer, mutably.
    pub fn consumer_mut(&mut self) -> &mut C {
        &mut self.consumer
    }

    /// Fetches up to `max` deliveries (waiting up to `wait`), plus any stale entries of
    /// dead consumers, applies what is new, and acks them all.
    pub async fn step(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<StepReport, SubscriberError> {
        let mut deliveries = Vec::new();
        if self.last_claim.elapsed() >= self.claim_after {
            self.last_claim = Instant::now();
            deliveries = self.subscription.claim_stale(self.claim_after, max).await?;
        }
        if deliveries.is_empty() {
            deliveries = self.subscription.next(max, wait).await?;
        }
        let mut report = StepReport {
            delivered: deliveries.len(),
            ..StepReport::default()
        };
        let mut acks = Vec::with_capacity(deliveries.len());
        for delivery in &deliveries {
            let event = &delivery.envelope;
            let applied = self.consumer.applied_version(&event.stream_id).await?;
            if event.version <= applied {
                report.skipped += 1;
            } else {
                if event.version > applied + 1 {
                    report.applied += self
                        .fill_gap(&event.stream_id, applied, event.version - 1)
                        .await?;
                }
                self.consumer.apply(event).await?;
                report.applied += 1;
            }
            acks.push(delivery.position);
        }
        self.subscription.ack(&acks).await?;
        Ok(report)
    }

    async fn fill_gap(
        &mut self,
        stream: &StreamId,
        applied: u64,
        upto: u64,
    ) -> Result<usize, SubscriberError> {
        let mut after = applied;
        let mut n = 0;
        while after < upto {
            let events = self
                .store
                .read_stream(stream, after, (upto - after).min(1000) as usize)
                .await?;
            let Some(last) = events.last().map(|e| e.version) else {
                break;
            };
            for e in events.iter().filter(|e| e.version <= upto) {
                self.consumer.apply(e).await?;
                n += 1;
            }
            after = last;
        }
        Ok(n)
    }
}
