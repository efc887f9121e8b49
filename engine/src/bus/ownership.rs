//! Which store a bus belongs to, and what a process does when it is not its own.
//!
//! Redis is only the transport; Postgres (or SQLite) is the system of record. A Redis
//! prefix that holds another store's stream — a new database on an old Redis, a
//! restored backup, a recreated development database, two environments on one Redis —
//! used to stall every execution silently: its head was ahead of every position the
//! store would write, so the relay thought the events published and the engine never
//! heard of them. Here every process checks, on start and every second, that
//! - the bus's recorded owner ([`BusOwner`]) is this store ([`EventStore::store_id`]);
//! - the bus's newest entry is not ahead of the store's committed head, and is the very
//!   event the store holds at that position (a restored store has another event there,
//!   or none).
//!
//! The verdict is a pure function ([`judge`]). While the bus is not this store's, the
//! [`BusGuard`] publishes [`BusStatus::Refused`] with a reason that names the prefix and
//! the remedy: `/ready` answers 503, the relay, engine and projector do not start, and
//! an error is logged once a minute. `conflux bus reset` ([`reset_bus`]) — or the guard
//! itself with `CONFLUX_BUS_RESET_ON_MISMATCH=true` — clears the prefix and records this
//! store as its owner with a new generation; roles watch the generation and start
//! afresh (nothing remembered of the old stream survives a reset), and the relay
//! republishes from the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{BusError, BusOwner, EventBus};
use crate::queue::{QueueError, TaskQueue};
use crate::store::{EventStore, StoreError};

/// How often every process checks the bus (the relay's head re-read interval).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often a refused bus is logged again.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// What a process may do with its bus, as last checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusStatus {
    /// Not checked yet: nothing consumes or publishes.
    Checking,
    /// The bus is this store's; roles run. A new `generation` means the bus was reset.
    Owned {
        /// The owner record's generation.
        generation: Uuid,
    },
    /// The bus holds another store's events (or a restored store's future); roles
    /// stay stopped until it is reset.
    Refused {
        /// For operators: what was found and what to do.
        reason: String,
    },
}

/// What [`judge`] found, before any claim or reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The bus is this store's.
    Owned(BusOwner),
    /// Nobody owns the bus and nothing on it contradicts this store: claim it.
    Unclaimed,
    /// Another store is recorded as the owner.
    OtherStore {
        /// The recorded owner.
        owner: Uuid,
    },
    /// The bus holds positions the store has not committed (a restored or recreated
    /// store, or another store's stream).
    AheadOfStore {
        /// The bus's newest position.
        bus_head: u64,
        /// The store's committed head.
        store_head: u64,
    },
    /// The event at the bus's head is not the store's event at that position.
    Diverged {
        /// The position compared.
        position: u64,
    },
}

/// Decides whose bus this is, from what the bus and the store say. `head` is the bus's
/// newest entry (position, event id); `store_event_at_head` the store's event id at that
/// position, if it has one.
pub fn judge(
    store_id: Uuid,
    owner: Option<BusOwner>,
    head: Option<(u64, Uuid)>,
    store_head: u64,
    store_event_at_head: Option<Uuid>,
) -> Verdict {
    if let Some(owner) = owner {
        if owner.store_id != store_id {
            return Verdict::OtherStore {
                owner: owner.store_id,
            };
        }
    }
    if let Some((bus_head, event_id)) = head {
        if bus_head > store_head {
            return Verdict::AheadOfStore {
                bus_head,
                store_head,
            };
        }
        if store_event_at_head != Some(event_id) {
            return Verdict::Diverged { position: bus_head };
        }
    }
    match owner {
        Some(owner) => Verdict::Owned(owner),
        None => Verdict::Unclaimed,
    }
}

/// Why a check could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The bus did not answer.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The store did not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The task queues could not be cleared.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// What a reset did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetReport {
    /// The new owner record.
    pub owner: BusOwner,
    /// Agent task queues cleared.
    pub queues_cleared: u64,
}

/// Clears everything `bus` and `queue` hold under their prefix (events, consumer
/// groups, agent tickets) and records `store_id` as the bus's owner with a new
/// generation. What the store holds is untouched; the relay republishes it, and an
/// engine that starts afresh re-queues the agent tasks its store has dispatched.
pub async fn reset_bus(
    store_id: Uuid,
    bus: &dyn EventBus,
    queue: &dyn TaskQueue,
) -> Result<ResetReport, GuardError> {
    let queues_cleared = queue.clear().await?;
    let owner = bus.reset(store_id).await?;
    Ok(ResetReport {
        owner,
        queues_cleared,
    })
}

/// Checks a process's bus against its store and publishes the [`BusStatus`].
/// Cloning shares the status.
#[derive(Clone)]
pub struct BusGuard {
    store: Arc<dyn EventStore>,
    bus: Arc<dyn EventBus>,
    queue: Arc<dyn TaskQueue>,
    store_id: Uuid,
    reset_on_mismatch: bool,
    status: Arc<watch::Sender<BusStatus>>,
}

impl BusGuard {
    /// A guard for `store`'s process; with `reset_on_mismatch` (development only) a bus
    /// that is not the store's is reset instead of refused.
    pub fn new(
        store: Arc<dyn EventStore>,
        bus: Arc<dyn EventBus>,
        queue: Arc<dyn TaskQueue>,
        store_id: Uuid,
        reset_on_mismatch: bool,
    ) -> Self {
        Self {
            store,
            bus,
            queue,
            store_id,
            reset_on_mismatch,
            status: Arc::new(watch::channel(BusStatus::Checking).0),
        }
    }

    /// The status, updated by every check.
    pub fn status(&self) -> watch::Receiver<BusStatus> {
        self.status.subscribe()
    }

    /// One check: reads the owner, the bus head and the store, claims an unclaimed bus,
    /// resets a foreign one if configured to, and publishes the status. An error leaves
    /// the last status in place (a bus that stops answering is `/ready`'s ping to report).
    pub async fn check(&self) -> Result<BusStatus, GuardError> {
        let mut verdict = self.verdict().await?;
        if verdict == Verdict::Unclaimed {
            let owner = self.bus.claim(self.store_id).await?;
            tracing::info!(bus = %self.bus.describe(), store = %self.store_id, "claimed the bus for this store");
            verdict = if owner.store_id == self.store_id {
                // Re-judge: the head may have moved while claiming.
                self.verdict().await?
            } else {
                Verdict::OtherStore {
                    owner: owner.store_id,
                }
            };
        }
        let status = match verdict {
            Verdict::Owned(owner) => BusStatus::Owned {
                generation: owner.generation,
            },
            Verdict::Unclaimed => BusStatus::Checking,
            refused if self.reset_on_mismatch => {
                let reason = self.reason(&refused);
                tracing::warn!(%reason, "CONFLUX_BUS_RESET_ON_MISMATCH is set: resetting the bus");
                let report = reset_bus(self.store_id, &*self.bus, &*self.queue).await?;
                BusStatus::Owned {
                    generation: report.owner.generation,
                }
            }
            refused => BusStatus::Refused {
                reason: self.reason(&refused),
            },
        };
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status.clone();
            changed
        });
        Ok(status)
    }

    async fn verdict(&self) -> Result<Verdict, GuardError> {
        // The bus first: a relay may publish between the two reads, and an event on
        // the bus is always committed in the store before, never after.
        let owner = self.bus.owner().await?;
        let head = self.bus.head_event().await?;
        let store_head = self.store.head_position().await?;
        let at_head = match head {
            Some((p, _)) if p <= store_head && p > 0 => self
                .store
                .read_all(p - 1, 1)
                .await?
                .first()
                .filter(|e| e.position == p)
                .map(|e| e.event_id),
            _ => None,
        };
        Ok(judge(self.store_id, owner, head, store_head, at_head))
    }

    fn reason(&self, verdict: &Verdict) -> String {
        let bus = self.bus.describe();
        let found = match verdict {
            Verdict::OtherStore { owner } => format!(
                "{bus} holds the events of another store (store id {owner}; this store is {})",
                self.store_id
            ),
            Verdict::AheadOfStore {
                bus_head,
                store_head,
            } => format!(
                "{bus} holds events up to position {bus_head} but this store has committed \
                 only up to {store_head} (was the database restored, recreated or replaced?)"
            ),
            Verdict::Diverged { position } => format!(
                "{bus} holds at position {position} an event this store does not have \
                 (another store's stream, or a restored database)"
            ),
            Verdict::Owned(_) | Verdict::Unclaimed => format!("{bus} is this store's"),
        };
        format!(
            "{found}; nothing is consumed or published until it is cleared: run \
             `conflux bus reset --yes` with this server's DATABASE_URL, REDIS_URL and \
             CONFLUX_REDIS_PREFIX (clears the prefix and republishes from this store), \
             or give this server a prefix of its own (CONFLUX_REDIS_PREFIX)"
        )
    }

    /// Checks every [`CHECK_EVERY`] until `shutdown`; logs a refused bus at once and
    /// then once a minute, and a failed check when it starts failing.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut logged: Option<(Instant, BusStatus)> = None;
        let mut failing = false;
        loop {
            match self.check().await {
                Ok(status) => {
                    failing = false;
                    let due = match &logged {
                        Some((at, last)) => *last != status || at.elapsed() >= LOG_EVERY,
                        None => true,
                    };
                    match &status {
                        BusStatus::Refused { reason } if due => {
                            tracing::error!(%reason, "the bus is not this store's");
                            logged = Some((Instant::now(), status.clone()));
                        }
                        BusStatus::Owned { .. } if logged.is_some() => {
                            tracing::info!(bus = %self.bus.describe(), "the bus is this store's again; roles start");
                            logged = None;
                        }
                        _ => {}
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "checking the bus's owner failed; retrying");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(store_id: Uuid) -> Option<BusOwner> {
        Some(BusOwner {
            store_id,
            generation: Uuid::now_v7(),
        })
    }

    #[test]
    fn an_empty_unowned_bus_is_claimed() {
        assert_eq!(
            judge(Uuid::now_v7(), None, None, 0, None),
            Verdict::Unclaimed
        );
        assert_eq!(
            judge(Uuid::now_v7(), None, None, 500, None),
            Verdict::Unclaimed
        );
    }

    #[test]
    fn an_unowned_stream_of_this_store_is_claimed() {
        // A stream written before owners were recorded: its head is this store's event.
        let event = Uuid::now_v7();
        let id = Uuid::now_v7();
        assert_eq!(
            judge(id, None, Some((40, event)), 50, Some(event)),
            Verdict::Unclaimed
        );
    }

    #[test]
    fn another_owner_is_refused_whatever_the_heads() {
        let (me, them) = (Uuid::now_v7(), Uuid::now_v7());
        let e = Uuid::now_v7();
        for (head, at) in [(None, None), (Some((3, e)), Some(e)), (Some((9, e)), None)] {
            assert_eq!(
                judge(me, owner(them), head, 5, at),
                Verdict::OtherStore { owner: them }
            );
        }
    }

    #[test]
    fn a_bus_ahead_of_the_store_is_refused() {
        // The operator's report: a stream at 10,884 over a fresh store.
        let me = Uuid::now_v7();
        assert_eq!(
            judge(me, None, Some((10_884, Uuid::now_v7())), 0, None),
            Verdict::AheadOfStore {
                bus_head: 10_884,
                store_head: 0
            }
        );
        // A restore: the bus is this store's but ahead of the restored head.
        assert_eq!(
            judge(me, owner(me), Some((90, Uuid::now_v7())), 60, None),
            Verdict::AheadOfStore {
                bus_head: 90,
                store_head: 60
            }
        );
    }

    #[test]
    fn a_head_that_is_not_the_stores_event_is_refused() {
        let me = Uuid::now_v7();
        assert_eq!(
            judge(
                me,
                owner(me),
                Some((30, Uuid::now_v7())),
                60,
                Some(Uuid::now_v7())
            ),
            Verdict::Diverged { position: 30 }
        );
        assert_eq!(
            judge(me, None, Some((30, Uuid::now_v7())), 60, None),
            Verdict::Diverged { position: 30 }
        );
    }

    #[test]
    fn the_stores_own_bus_is_owned() {
        let me = Uuid::now_v7();
        let e = Uuid::now_v7();
        let o = owner(me);
        assert_eq!(
            judge(me, o, Some((60, e)), 60, Some(e)),
            Verdict::Owned(o.expect("o"))
        );
        assert_eq!(judge(me, o, None, 60, None), Verdict::Owned(o.expect("o")));
    }
}
