//! The in-process bus, for the embedded mode and single-process deployments: the same
//! semantics as the Redis bus (ordered by position, consumer groups, pending entries,
//! claiming) held in memory. Entries every group has consumed and acked are trimmed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use conflux_schema::EventEnvelope;
use tokio::sync::watch;

use uuid::Uuid;

use super::{BusError, BusOwner, Delivery, EventBus, Subscription};

/// Entries kept at most, as with Redis' MAXLEN.
const MAX_ENTRIES: usize = 1_000_000;

#[derive(Default)]
struct Group {
    /// Absolute index of the next entry to deliver.
    cursor: u64,
    /// Delivered, unacked entries by absolute index: (consumer, delivered at).
    pending: BTreeMap<u64, (String, Instant)>,
}

#[derive(Default)]
struct Log {
    /// Absolute index of `entries[0]`.
    base: u64,
    entries: VecDeque<Arc<EventEnvelope>>,
    head: u64,
    groups: HashMap<String, Group>,
    /// The store this bus carries events of (an in-process bus only ever carries its
    /// own process's store, but records it like Redis does).
    owner: Option<BusOwner>,
}

impl Log {
    fn end(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    fn get(&self, index: u64) -> Option<&Arc<EventEnvelope>> {
        index
            .checked_sub(self.base)
            .and_then(|i| self.entries.get(i as usize))
    }

    fn index_of(&self, position: u64) -> Option<u64> {
        let i = self
            .entries
            .binary_search_by_key(&position, |e| e.position)
            .ok()?;
        Some(self.base + i as u64)
    }

    fn trim(&mut self) {
        let consumed = self
            .groups
            .values()
            .map(|g| {
                g.pending
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or(g.cursor)
                    .min(g.cursor)
            })
            .min();
        let keep_from = match consumed {
            Some(c) => c.max(self.end().saturating_sub(MAX_ENTRIES as u64)),
            None => self.end().saturating_sub(MAX_ENTRIES as u64),
        };
        while self.base < keep_from && !self.entries.is_empty() {
            self.entries.pop_front();
            self.base += 1;
        }
    }
}

/// The in-process [`EventBus`]; clones share the same log.
#[derive(Clone)]
pub struct LocalBus {
    log: Arc<Mutex<Log>>,
    published: watch::Sender<u64>,
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self {
            log: Arc::new(Mutex::new(Log::default())),
            published: watch::channel(0).0,
        }
    }

    /// Drops every entry and group, as a Redis FLUSHALL would; used to prove the relay
    /// refills a bus that lost its data.
    pub fn simulate_data_loss(&self) {
        let mut log = lock(&self.log);
        let owner = log.owner;
        *log = Log {
            owner,
            ..Log::default()
        };
    }
}

fn lock(log: &Mutex<Log>) -> MutexGuard<'_, Log> {
    // A panic while holding the lock cannot leave the log half-updated in a way that
    // breaks its invariants (every mutation is a single push/pop/insert), so recover.
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl EventBus for LocalBus {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), BusError> {
        let head = {
            let mut log = lock(&self.log);
            for e in events {
                if e.position > log.head {
                    log.head = e.position;
                    log.entries.push_back(Arc::new(e.clone()));
                }
            }
            log.trim();
            log.head
        };
        self.published.send_replace(head);
        Ok(())
    }

    async fn head(&self) -> Result<u64, BusError> {
        Ok(lock(&self.log).head)
    }

    async fn subscribe(
        &self,
        group: &str,
        consumer: &str,
    ) -> Result<Box<dyn Subscription>, BusError> {
        {
            let mut log = lock(&self.log);
            let base = log.base;
            log.groups.entry(group.to_owned()).or_insert_with(|| Group {
                cursor: base,
                ..Group::default()
            });
        }
        Ok(Box::new(LocalSubscription {
            log: self.log.clone(),
            published: self.published.subscribe(),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
        }))
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }

    async fn owner(&self) -> Result<Option<BusOwner>, BusError> {
        Ok(lock(&self.log).owner)
    }

    async fn claim(&self, store_id: Uuid) -> Result<BusOwner, BusError> {
        let mut log = lock(&self.log);
        Ok(*log.owner.get_or_insert(BusOwner {
            store_id,
            generation: Uuid::now_v7(),
        }))
    }

    async fn reset(&self, store_id: Uuid) -> Result<BusOwner, BusError> {
        let owner = BusOwner {
            store_id,
            generation: Uuid::now_v7(),
        };
        *lock(&self.log) = Log {
            owner: Some(owner),
            ..Log::default()
        };
        self.published.send_replace(0);
        Ok(owner)
    }

    async fn head_event(&self) -> Result<Option<(u64, Uuid)>, BusError> {
        Ok(lock(&self.log)
            .entries
            .back()
            .map(|e| (e.position, e.event_id)))
    }

    fn describe(&self) -> String {
        "the in-process bus".to_owned()
    }
}

struct LocalSubscription {
    log: Arc<Mutex<Log>>,
    published: watch::Receiver<u64>,
    group: String,
    consumer: String,
}

impl LocalSubscription {
    fn take(&self, max: usize) -> Vec<Delivery> {
        let mut log = lock(&self.log);
        let (base, end) = (log.base, log.end());
        let log = &mut *log;
        let group = log
            .groups
            .entry(self.group.clone())
            .or_insert_with(|| Group {
                cursor: base,
                ..Group::default()
            });
        group.cursor = group.cursor.max(base);
        let mut out = Vec::new();
        let now = Instant::now();
        while group.cursor < end && out.len() < max {
            let index = group.cursor;
            if let Some(e) = index
                .checked_sub(log.base)
                .and_then(|i| log.entries.get(i as usize))
            {
                out.push(Delivery {
                    position: e.position,
                    envelope: (**e).clone(),
                });
                group.pending.insert(index, (self.consumer.clone(), now));
            }
            group.cursor += 1;
        }
        out
    }
}

#[async_trait]
impl Subscription for LocalSubscription {
    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.published.borrow_and_update();
            let got = self.take(max);
            if !got.is_empty() {
                return Ok(got);
            }
            match tokio::time::timeout_at(deadline, self.published.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Ok(Vec::new()),
            }
        }
    }

    async fn ack(&mut self, positions: &[u64]) -> Result<(), BusError> {
        let mut log = lock(&self.log);
        let indices: Vec<u64> = positions.iter().filter_map(|p| log.index_of(*p)).collect();
        if let Some(group) = log.groups.get_mut(&self.group) {
            for i in indices {
                group.pending.remove(&i);
            }
        }
        log.trim();
        Ok(())
    }

    async fn claim_stale(
        &mut self,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let mut log = lock(&self.log);
        let now = Instant::now();
        let stale: Vec<u64> = match log.groups.get(&self.group) {
            Some(g) => g
                .pending
                .iter()
                .filter(|(_, (_, at))| now.duration_since(*at) >= min_idle)
                .map(|(i, _)| *i)
                .take(max)
                .collect(),
            None => return Ok(Vec::new()),
        };
        let mut out = Vec::with_capacity(stale.len());
        for index in stale {
            if let Some(e) = log.get(index) {
                out.push(Delivery {
                    position: e.position,
                    envelope: (**e).clone(),
                });
            }
            if let Some(g) = log.groups.get_mut(&self.group) {
                g.pending.insert(index, (self.consumer.clone(), now));
            }
        }
        Ok(out)
    }
}
