//! The outbox relay: makes the bus hold every committed event, in position order.
//!
//! Each append writes an outbox row in its own transaction. The relay publishes events
//! from the bus head up to the newest outbox row, then deletes the rows it covered. It
//! never trusts its own memory over the bus: it re-reads the bus head on every error and
//! at least once a second, so after a relay crash (between commit and publish) or a Redis
//! FLUSHALL it republishes from whatever the bus last holds. Publishing is idempotent
//! (entries are keyed by position), so two relays never duplicate an entry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::bus::{BusError, EventBus};
use crate::store::{EventStore, StoreError};

/// Why a relay step failed; the run loop logs it and retries.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Publishing failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Tuning for [`Relay`].
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Events read and published per round trip.
    pub batch_size: usize,
    /// How often to look for work committed by other processes.
    pub poll_interval: Duration,
    /// How often to re-read the bus head to notice lost data.
    pub head_check_interval: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            poll_interval: Duration::from_millis(50),
            head_check_interval: Duration::from_secs(1),
        }
    }
}

/// Publishes committed events from a store to a bus.
pub struct Relay {
    store: Arc<dyn EventStore>,
    bus: Arc<dyn EventBus>,
    options: RelayOptions,
    /// What the bus holds, as last read (None: read it before trusting it).
    bus_head: Option<u64>,
    checked_at: Instant,
}

impl Relay {
    /// A relay from `store` to `bus`.
    pub fn new(store: Arc<dyn EventStore>, bus: Arc<dyn EventBus>, options: RelayOptions) -> Self {
        Self {
            store,
            bus,
            options,
            bus_head: None,
            checked_at: Instant::now(),
        }
    }

    /// One round: brings the bus up to the newest committed event. Returns how many
    /// events were published.
    pub async fn step(&mut self) -> Result<usize, RelayError> {
        let result = self.publish_pending().await;
        if result.is_err() {
            self.bus_head = None;
        }
        result
    }

    async fn publish_pending(&mut self) -> Result<usize, RelayError> {
        let mut rewound = false;
        if self.bus_head.is_none() || self.checked_at.elapsed() >= self.options.head_check_interval
        {
            let head = self.bus.head().await?;
            if self.bus_head.is_some_and(|known| head < known) {
                tracing::warn!(
                    bus_head = head,
                    known = self.bus_head,
                    "the bus lost events; republishing from the store"
                );
            }
            rewound = self.bus_head.is_none_or(|known| head < known);
            self.bus_head = Some(head);
            self.checked_at = Instant::now();
        }
        let mut cursor = self.bus_head.unwrap_or(0);
        let pending = self.store.outbox_pending().await?;
        let target = match (pending, rewound) {
            (_, true) => self.store.head_position().await?,
            (Some(p), false) => p,
            (None, false) => return Ok(0),
        };
        let mut published = 0;
        while cursor < target {
            let events = self.store.read_all(cursor, self.options.batch_size).await?;
            let Some(last) = events.last().map(|e| e.position) else {
                break;
            };
            self.bus.publish(&events).await?;
            published += events.len();
            cursor = last;
            self.bus_head = Some(cursor);
        }
        if let Some(p) = pending {
            if p <= cursor {
                self.store.outbox_done(p).await?;
            }
        }
        Ok(published)
    }

    /// Runs until `shutdown` is cancelled: a step after every local commit, and at
    /// least every `poll_interval` for commits made by other processes.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut commits = self.store.commits();
        let mut failures: u32 = 0;
        loop {
            match self.step().await {
                Ok(n) => {
                    if failures > 0 {
                        tracing::info!("relay recovered");
                    }
                    failures = 0;
                    if n > 0 {
                        tracing::trace!(published = n, "relay published");
                        continue;
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 || failures % 100 == 0 {
                        tracing::warn!(error = %e, failures, "relay step failed; retrying");
                    }
                }
            }
            let wait = if failures == 0 {
                self.options.poll_interval
            } else {
                Duration::from_millis(100 * u64::from(failures.min(20)))
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = commits.changed(), if failures == 0 => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // Publish what is committed before stopping, best effort.
        let _ = self.step().await;
    }
}
