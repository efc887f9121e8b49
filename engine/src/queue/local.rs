//! The in-process task queue, for the embedded mode and single-process deployments: the
//! same semantics as the Redis queue (per-role FIFO, oldest first across roles, a taken
//! ticket is gone) held in memory. Waiting pollers sleep on a [`Notify`] and wake when a
//! ticket is enqueued, so an idle long-poll costs nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{QueueError, TaskQueue, Ticket};

/// Tickets kept per role at most, as with the Redis queue's `MAXLEN ~`: past it the
/// oldest are dropped (their attempts time out in the event log and are retried).
const MAX_PER_ROLE: usize = 1_000_000;

#[derive(Default)]
struct Queues {
    /// Waiting tickets per (tenant, role), each with its enqueue sequence number.
    roles: HashMap<(String, String), VecDeque<(u64, Ticket)>>,
    next_seq: u64,
    /// When each agent was last heard from, per tenant.
    seen: HashMap<String, HashMap<uuid::Uuid, chrono::DateTime<chrono::Utc>>>,
    /// Each agent's held slots (reservations and leases) and when they expire.
    slots: HashMap<uuid::Uuid, HashMap<String, chrono::DateTime<chrono::Utc>>>,
    /// Each agent's results.
    stats: HashMap<uuid::Uuid, super::AgentStats>,
    /// Rate-limit buckets, by tenant and bucket name.
    buckets: HashMap<String, conflux_schema::rate_limit::Buckets>,
    /// The agents waiting for work in a poll, per tenant, and until when.
    waiting: HashMap<String, HashMap<uuid::Uuid, chrono::DateTime<chrono::Utc>>>,
    /// The queues with required capabilities of each (tenant, role).
    requiring: HashMap<(String, String), std::collections::BTreeSet<String>>,
}

impl Queues {
    /// Pops up to `max` tickets from `roles`, always the front of highest effective
    /// priority among them (the oldest among equals), so the result is in that order
    /// overall (hence oldest first per queue).
    fn pop(&mut self, tenant: &str, roles: &[String], max: usize) -> Vec<Ticket> {
        let keys: Vec<(String, String)> = roles
            .iter()
            .map(|r| (tenant.to_owned(), r.clone()))
            .collect();
        let now = chrono::Utc::now();
        let mut out = Vec::new();
        while out.len() < max {
            let oldest = keys
                .iter()
                .filter_map(|k| {
                    let (seq, ticket) = self.roles.get(k)?.front()?;
                    let rank = super::effective_priority(&k.1, ticket.enqueued_at, now);
                    Some((rank, *seq, k))
                })
                .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
                .map(|(_, _, k)| k);
            let Some(key) = oldest else { break };
            let Some(queue) = self.roles.get_mut(key) else {
                break;
            };
            if let Some((_, ticket)) = queue.pop_front() {
                out.push(ticket);
            }
            if queue.is_empty() {
                self.roles.remove(key);
            }
        }
        out
    }
}

struct Shared {
    queues: Mutex<Queues>,
    enqueued: Notify,
}

/// The in-process [`TaskQueue`]; clones share the same queues.
#[derive(Clone)]
pub struct LocalTaskQueue {
    shared: Arc<Shared>,
}

impl Default for LocalTaskQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalTaskQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                queues: Mutex::new(Queues::default()),
                enqueued: Notify::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queues> {
        // Every mutation under the lock is a single push or pop, so a panic elsewhere
        // cannot leave the queues inconsistent: recover from poisoning.
        self.shared
            .queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl TaskQueue for LocalTaskQueue {
    async fn enqueue(&self, ticket: &Ticket) -> Result<(), QueueError> {
        {
            let mut queues = self.lock();
            let seq = queues.next_seq;
            queues.next_seq += 1;
            let key = (ticket.tenant.clone(), ticket.role.clone());
            let queue = queues.roles.entry(key).or_default();
            queue.push_back((seq, ticket.clone()));
            if queue.len() > MAX_PER_ROLE {
                queue.pop_front();
                tracing::warn!(role = %ticket.role, "task queue full: dropped the oldest ticket");
            }
        }
        self.shared.enqueued.notify_waiters();
        Ok(())
    }

    async fn take(
        &self,
        tenant: &str,
        roles: &[String],
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Ticket>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register for the wake-up before looking, so an enqueue between the look
            // and the wait is not missed.
            let enqueued = self.shared.enqueued.notified();
            tokio::pin!(enqueued);
            enqueued.as_mut().enable();
            let taken = self.lock().pop(tenant, roles, max);
            if !taken.is_empty() {
                return Ok(taken);
            }
            if tokio::time::timeout_at(deadline, enqueued).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn depth(&self, tenant: &str, role: &str) -> Result<u64, QueueError> {
        let key = (tenant.to_owned(), role.to_owned());
        Ok(self.lock().roles.get(&key).map_or(0, |q| q.len() as u64))
    }

    async fn clear(&self) -> Result<u64, QueueError> {
        let mut queues = self.lock();
        let n = queues.roles.len() as u64;
        queues.roles.clear();
        Ok(n)
    }

    async fn agent_seen(
        &self,
        tenant: &str,
        agent: uuid::Uuid,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), QueueError> {
        let mut queues = self.lock();
        let seen = queues.seen.entry(tenant.to_owned()).or_default();
        let last = seen.entry(agent).or_insert(at);
        *last = (*last).max(at);
        Ok(())
    }

    async fn agents_seen(
        &self,
        tenant: &str,
    ) -> Result<HashMap<uuid::Uuid, chrono::DateTime<chrono::Utc>>, QueueError> {
        Ok(self.lock().seen.get(tenant).cloned().unwrap_or_default())
    }

    async fn reserve_slots(
        &self,
        agent: uuid::Uuid,
        capacity: u32,
        want: u32,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, QueueError> {
        let now = chrono::Utc::now();
        let mut queues = self.lock();
        let slots = queues.slots.entry(agent).or_default();
        slots.retain(|_, expiry| *expiry > now);
        let free = (capacity as usize).saturating_sub(slots.len());
        let batch = uuid::Uuid::new_v4().simple().to_string();
        let reserved: Vec<String> = (0..free.min(want as usize))
            .map(|i| format!("r:{batch}:{i}"))
            .collect();
        for r in &reserved {
            slots.insert(r.clone(), until);
        }
        Ok(reserved)
    }

    async fn hold_leases(
        &self,
        agent: uuid::Uuid,
        reserved: &[String],
        leases: &[(uuid::Uuid, chrono::DateTime<chrono::Utc>)],
    ) -> Result<(), QueueError> {
        let mut queues = self.lock();
        let slots = queues.slots.entry(agent).or_default();
        for r in reserved {
            slots.remove(r);
        }
        for (lease, until) in leases {
            slots.insert(lease.to_string(), *until);
        }
        Ok(())
    }

    async fn free_lease(
        &self,
        agent: uuid::Uuid,
        lease: uuid::Uuid,
        until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), QueueError> {
        let mut queues = self.lock();
        let Some(slots) = queues.slots.get_mut(&agent) else {
            return Ok(());
        };
        match until {
            None => {
                slots.remove(&lease.to_string());
            }
            Some(until) => {
                if let Some(expiry) = slots.get_mut(&lease.to_string()) {
                    *expiry = until;
                }
            }
        }
        Ok(())
    }

    async fn take_token(
        &self,
        tenant: &str,
        bucket: &str,
        interval: Duration,
        burst: u32,
    ) -> Result<Option<Duration>, QueueError> {
        let now = u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0);
        let interval = u64::try_from(interval.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut queues = self.lock();
        let buckets = queues.buckets.entry(tenant.to_owned()).or_default();
        Ok(buckets
            .take(bucket, now, interval, burst)
            .err()
            .map(Duration::from_micros))
    }

    async fn agent_waiting(
        &self,
        tenant: &str,
        agent: uuid::Uuid,
        until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), QueueError> {
        let mut queues = self.lock();
        let waiting = queues.waiting.entry(tenant.to_owned()).or_default();
        match until {
            Some(until) => waiting.insert(agent, until),
            None => waiting.remove(&agent),
        };
        Ok(())
    }

    async fn agents_waiting(&self, tenant: &str) -> Result<Vec<uuid::Uuid>, QueueError> {
        let now = chrono::Utc::now();
        let mut queues = self.lock();
        let Some(waiting) = queues.waiting.get_mut(tenant) else {
            return Ok(Vec::new());
        };
        waiting.retain(|_, until| *until > now);
        let mut agents: Vec<uuid::Uuid> = waiting.keys().copied().collect();
        agents.sort();
        Ok(agents)
    }

    async fn forget_agent(&self, agent: uuid::Uuid) -> Result<(), QueueError> {
        self.lock().slots.remove(&agent);
        Ok(())
    }

    async fn note_queue(&self, tenant: &str, role: &str, queue: &str) -> Result<(), QueueError> {
        self.lock()
            .requiring
            .entry((tenant.to_owned(), role.to_owned()))
            .or_default()
            .insert(queue.to_owned());
        Ok(())
    }

    async fn queues_of(&self, tenant: &str, role: &str) -> Result<Vec<String>, QueueError> {
        let key = (tenant.to_owned(), role.to_owned());
        Ok(self
            .lock()
            .requiring
            .get(&key)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn agent_finished(
        &self,
        agent: uuid::Uuid,
        ok: bool,
        took: Duration,
    ) -> Result<(), QueueError> {
        let mut queues = self.lock();
        let stats = queues.stats.entry(agent).or_default();
        if ok {
            stats.completed += 1;
        } else {
            stats.failed += 1;
        }
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        stats.recent_ms.insert(0, ms);
        stats.recent_ms.truncate(super::RECENT_DURATIONS);
        Ok(())
    }

    async fn agent_stats(&self, agent: uuid::Uuid) -> Result<super::AgentStats, QueueError> {
        let now = chrono::Utc::now();
        let queues = self.lock();
        let held = queues.slots.get(&agent).map_or(0, |s| {
            s.iter()
                .filter(|(slot, expiry)| **expiry > now && !slot.starts_with("r:"))
                .count() as u64
        });
        Ok(super::AgentStats {
            held,
            ..queues.stats.get(&agent).cloned().unwrap_or_default()
        })
    }
}
