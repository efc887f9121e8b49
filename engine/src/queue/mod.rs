//! The agent task queue: how a dispatched agent-task attempt reaches an external agent.
//!
//! The engine enqueues one [`Ticket`] per attempt in its role's queue; an agent's
//! long-poll (`POST /api/v1/agents/{agent_id}/poll`, [`crate::agents`]) takes tickets
//! from any of the roles it serves. The queue is transport only: the event log is the
//! truth, and the poll checks each ticket against the execution's state and drops stale
//! ones (an attempt that timed out, was cancelled or already finished). So a ticket may be
//! delivered more than once, or be lost with its backend; the attempt's timeout in the
//! event log recovers it, never the queue.
//!
//! A ticket is acknowledged as it is taken: once taken it is gone for every other poller,
//! because the lease the poll records in the event log protects the attempt
//! from then on.
//!
//! Backends: [`redis::RedisTaskQueue`] (one Redis Stream per role, shared by every engine
//! process) and [`local::LocalTaskQueue`] (in memory, for the embedded mode and tests).

pub mod local;
pub mod redis;
mod redis_fleet;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One agent-task attempt waiting for an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    /// The execution the task belongs to.
    pub execution_id: Uuid,
    /// The execution's tenant: queues are per tenant and role, so an agent of one
    /// tenant never takes another tenant's task. (Tickets enqueued before tenants
    /// existed belong to `default`.)
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// The task within the execution's workflow.
    pub task_id: String,
    /// The attempt number (1 for the first run).
    pub attempt: u32,
    /// Whether this attempt runs the task's compensation rather than the task.
    #[serde(default)]
    pub compensation: bool,
    /// The role an agent must serve to take the ticket (the queue it waits in).
    pub role: String,
    /// The task's resolved input.
    pub input: serde_json::Value,
    /// When the engine enqueued the ticket (for schedule-to-start metrics).
    pub enqueued_at: DateTime<Utc>,
    /// The task's rate limit: the lease takes a token before it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<conflux_schema::rate_limit::RateLimit>,
    /// Set when a poll routed the ticket to another, better scored agent: the ticket
    /// then waits in that agent's [`mailbox_of`], and its lease records this choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<conflux_schema::routing::Routing>,
    /// For a routed ticket: the queue it was taken from, where it goes back if its agent
    /// stops before taking it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed_from: Option<String>,
}

impl Ticket {
    /// The ticket of agent-task attempt `task` of `execution_id` (in `tenant`), waiting
    /// in `role`'s queue with its resolved `input`, enqueued now.
    pub fn for_attempt(
        execution_id: Uuid,
        tenant: &str,
        task: &crate::execution::TaskRef,
        role: String,
        input: serde_json::Value,
    ) -> Self {
        Self {
            execution_id,
            tenant: tenant.to_owned(),
            task_id: task.task.as_str().to_owned(),
            attempt: task.attempt,
            compensation: task.compensation,
            role,
            input,
            enqueued_at: Utc::now(),
            rate_limit: None,
            routing: None,
            routed_from: None,
        }
    }
}

/// The queue of tickets routed to one agent ([`Ticket::routing`]): only that agent's
/// polls read it. Its name starts with a control character, which no role may contain,
/// so it never collides with a role's queue.
pub fn mailbox_of(agent: Uuid) -> String {
    format!("{MAILBOXES}{}", agent.simple())
}

/// The agent whose mailbox `queue` is, if it is one.
pub fn mailbox_agent(queue: &str) -> Option<Uuid> {
    Uuid::parse_str(queue.strip_prefix(MAILBOXES)?).ok()
}

/// The start of every mailbox's name, and the pseudo-role under which the mailboxes
/// holding tickets are noted ([`TaskQueue::note_queue`]).
pub const MAILBOXES: &str = "\u{1d}agent:";

/// How long a ticket waits to gain one level of effective priority: a ticket of
/// priority 1 competes as a fresh one of priority 10 after 90 s, so no priority starves.
pub const AGING_PER_LEVEL: Duration = Duration::from_secs(10);

/// The priority a ticket waiting in `queue` ([`conflux_schema::kind::queue_at`]) since
/// `enqueued_at` competes with at `now`: its priority plus one level per
/// [`AGING_PER_LEVEL`] waited. `take` hands out the highest first, the oldest among
/// equals.
pub fn effective_priority(queue: &str, enqueued_at: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    let waited = (now - enqueued_at).num_milliseconds().max(0) as f64 / 1000.0;
    f64::from(conflux_schema::kind::priority_of(queue)) + waited / AGING_PER_LEVEL.as_secs_f64()
}

fn default_tenant() -> String {
    conflux_schema::access::DEFAULT_TENANT.to_owned()
}

/// What can go wrong with the task queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The backend cannot be reached or did not answer in time.
    #[error("task queue unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with an error.
    #[error("task queue error: {0}")]
    Backend(String),
}

/// Per-tenant, per-role queues of tickets. Implementations guarantee: a ticket is taken
/// only by a `take` naming its tenant and role; tickets of one role are taken oldest
/// first, and a ticket is handed to at most one `take` (unless its backend loses
/// track of a take that died, in which case it is handed out again).
/// How many durations of an agent's results are kept for its median.
pub const RECENT_DURATIONS: usize = 100;

/// An agent's work as the queue backend counts it ([`TaskQueue::agent_stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentStats {
    /// Leases held now (a poll's reservations of free slots do not count).
    pub held: u64,
    /// Results recorded as completed.
    pub completed: u64,
    /// Results recorded as failed.
    pub failed: u64,
    /// The durations (lease → result) of its latest results, in milliseconds, newest
    /// first, at most [`RECENT_DURATIONS`].
    pub recent_ms: Vec<u64>,
}

impl AgentStats {
    /// The fraction of its results that completed (None before its first result).
    pub fn success_rate(&self) -> Option<f64> {
        let results = self.completed + self.failed;
        (results > 0).then(|| self.completed as f64 / results as f64)
    }

    /// The median of its recent durations, in milliseconds (the lower middle of an even
    /// count; None before its first result).
    pub fn median_ms(&self) -> Option<u64> {
        let mut recent = self.recent_ms.clone();
        recent.sort_unstable();
        recent.get(recent.len().checked_sub(1)? / 2).copied()
    }
}

#[async_trait]
pub trait TaskQueue: Send + Sync + 'static {
    /// Adds a ticket to its tenant's queue of its role.
    async fn enqueue(&self, ticket: &Ticket) -> Result<(), QueueError>;

    /// Takes up to `max` tickets from any of `tenant`'s queues of `roles`, highest
    /// [`effective_priority`] first (oldest first among equals, hence per queue), waiting up
    /// to `wait` for the first one. A taken ticket is removed for every other poller (it
    /// is acknowledged as it is taken: the lease, recorded in the event log, is what
    /// protects it afterwards). Returns an empty list when nothing came within `wait`;
    /// with `max == 0` it returns at once, with no roles it waits out `wait`.
    async fn take(
        &self,
        tenant: &str,
        roles: &[String],
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Ticket>, QueueError>;

    /// How many tickets wait in `tenant`'s queue of `role` (for metrics and tests).
    async fn depth(&self, tenant: &str, role: &str) -> Result<u64, QueueError>;

    /// Drops every ticket of every role (a bus reset: the engine re-queues what its
    /// store still has dispatched when it recovers). Returns how many queues it cleared.
    async fn clear(&self) -> Result<u64, QueueError>;

    /// Records that agent `agent` of `tenant` was heard from at `at` (a poll or a
    /// heartbeat); a later time replaces an earlier one, never the other way round.
    /// Every server of the store sees it: this is the fleet's liveness, which the event
    /// log does not keep (it would record every poll).
    async fn agent_seen(
        &self,
        tenant: &str,
        agent: uuid::Uuid,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), QueueError>;

    /// Reserves up to `want` of agent `agent`'s free lease slots, `capacity` in all:
    /// slots held past their expiry are freed first (an attempt that timed out or was
    /// cancelled without its agent reporting). The reservations expire at `until`.
    /// Returns the reserved slots' names (none when the agent is full). Atomic: two
    /// polls of one agent never reserve the same free slot.
    async fn reserve_slots(
        &self,
        agent: uuid::Uuid,
        capacity: u32,
        want: u32,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, QueueError>;

    /// Replaces the reservations `reserved` of `agent` by the leases it got, each held
    /// until its attempt's deadline; reservations without a lease are freed.
    async fn hold_leases(
        &self,
        agent: uuid::Uuid,
        reserved: &[String],
        leases: &[(uuid::Uuid, chrono::DateTime<chrono::Utc>)],
    ) -> Result<(), QueueError>;

    /// Frees the slot of lease `lease` of `agent` (reported, stale, released); or, with
    /// `until`, moves its expiry (a heartbeat moved the attempt's deadline).
    async fn free_lease(
        &self,
        agent: uuid::Uuid,
        lease: uuid::Uuid,
        until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), QueueError>;

    /// Remembers that `tenant`'s queue `queue` (a role with required capabilities,
    /// [`conflux_schema::kind::queue_of`]) exists for `role`, so that pollers of the role
    /// holding those capabilities read it too.
    async fn note_queue(&self, tenant: &str, role: &str, queue: &str) -> Result<(), QueueError>;

    /// Every queue with required capabilities noted for `tenant`'s `role`.
    async fn queues_of(&self, tenant: &str, role: &str) -> Result<Vec<String>, QueueError>;

    /// Counts a result of `agent` (`ok`: completed, else failed) that took `took` from
    /// its lease; the last [`RECENT_DURATIONS`] durations are kept.
    async fn agent_finished(
        &self,
        agent: uuid::Uuid,
        ok: bool,
        took: std::time::Duration,
    ) -> Result<(), QueueError>;

    /// `agent`'s counters: leases held now, results so far, recent durations.
    async fn agent_stats(&self, agent: uuid::Uuid) -> Result<AgentStats, QueueError>;

    /// Records that `agent` of `tenant` waits for work in a poll until `until`, or, with
    /// None, that it no longer does. Every server of the store sees it: routing scores
    /// the agents waiting when a ticket is taken.
    async fn agent_waiting(
        &self,
        tenant: &str,
        agent: uuid::Uuid,
        until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), QueueError>;

    /// Takes a token of `tenant`'s rate-limit bucket `bucket`, whose tokens come
    /// `interval` apart with at most `burst` banked ([`conflux_schema::rate_limit::gcra`]):
    /// None when granted, else how long until one is. Shared by every server of the
    /// store, on one clock (Redis's).
    async fn take_token(
        &self,
        tenant: &str,
        bucket: &str,
        interval: Duration,
        burst: u32,
    ) -> Result<Option<Duration>, QueueError>;

    /// The agents of `tenant` waiting for work now.
    async fn agents_waiting(&self, tenant: &str) -> Result<Vec<uuid::Uuid>, QueueError>;

    /// The counters of each of `agents`, in their order ([`TaskQueue::agent_stats`]).
    async fn agents_stats(&self, agents: &[uuid::Uuid]) -> Result<Vec<AgentStats>, QueueError> {
        let mut out = Vec::with_capacity(agents.len());
        for agent in agents {
            out.push(self.agent_stats(*agent).await?);
        }
        Ok(out)
    }

    /// Frees every slot of `agent` (it was deregistered).
    async fn forget_agent(&self, agent: uuid::Uuid) -> Result<(), QueueError>;

    /// When each agent of `tenant` was last heard from (agents never heard from are
    /// absent).
    async fn agents_seen(
        &self,
        tenant: &str,
    ) -> Result<std::collections::HashMap<uuid::Uuid, chrono::DateTime<chrono::Utc>>, QueueError>;
}
