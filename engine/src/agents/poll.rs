//! The long-poll: tickets from an agent's role queues become leases.
//!
//! A ticket is only transport (see [`crate::queue`]); the lease is what the log records:
//! `TaskStarted` with the agent, a new lease id and the attempt's deadline, decided
//! against the execution's current state. A ticket whose attempt is no longer current
//! (it timed out, was cancelled or already finished) or whose execution is gone is
//! dropped, so a redelivered or late ticket never starts anything twice.

use std::time::Duration;

use chrono::{DateTime, Utc};
use conflux_schema::reference::secret_names;
use conflux_schema::{Event, EventEnvelope, EventMetadata, TaskId};
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use super::{AgentError, Agents, Caller};
use crate::commands::CommandError;
use crate::execution::{Command, TaskRef};
use crate::queue::Ticket;
use crate::secrets::{unescape, RevealError};

/// The most leases one poll hands out.
pub const MAX_LEASES_PER_POLL: usize = 100;
/// The leases one poll hands out when the caller does not say.
pub const DEFAULT_LEASES_PER_POLL: usize = 10;
/// The longest one poll waits for a first ticket.
pub const MAX_POLL_WAIT: Duration = Duration::from_secs(60);
/// How long a poll waits when the caller does not say.
pub const DEFAULT_POLL_WAIT: Duration = Duration::from_secs(20);

/// How long one step of a poll waits for tickets. Each step records the agent as heard
/// from (well inside the default 30 s after which an agent counts as stale), sees a
/// drain, and reads the queues of required capabilities afresh, so a queue first used
/// while the poll waits is read within this time.
const STEP: Duration = Duration::from_secs(2);

/// How long an agent whose step of a poll ended empty still counts as waiting: time for
/// its next step to begin.
const BETWEEN_STEPS: Duration = Duration::from_secs(1);

/// How long a poll's slot reservations outlive its wait (time to record the leases).
const RESERVED_FOR: Duration = Duration::from_secs(30);

/// How often a poll of a full agent looks for a freed slot.
const FULL_RECHECK: Duration = Duration::from_millis(200);

/// How long the slot of a lease whose attempt has no deadline is held (the attempt's
/// result or staleness frees it sooner).
const UNBOUNDED_LEASE: Duration = Duration::from_secs(3600);

/// How much one poll takes and how long it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollOptions {
    /// Most leases to hand out (taken as `1..=`[`MAX_LEASES_PER_POLL`]).
    pub max: usize,
    /// How long to wait for a first ticket (capped to [`MAX_POLL_WAIT`]).
    pub wait: Duration,
}

impl Default for PollOptions {
    fn default() -> Self {
        Self {
            max: DEFAULT_LEASES_PER_POLL,
            wait: DEFAULT_POLL_WAIT,
        }
    }
}

/// One attempt leased to an agent: an API body, defined with the others in
/// `conflux-schema`.
pub use conflux_schema::api::Lease;

impl Agents {
    /// Long-polls for agent `agent_id`: waits up to `options.wait` for tickets of its
    /// roles and leases up to `options.max` of them, returning as soon as at least one is
    /// leased, or with none when the wait is over. The agent must be the caller's
    /// tenant's ([`AgentError::NotFound`] otherwise, as for an unknown id) and the
    /// caller's agent key must serve every role of the agent
    /// ([`AgentError::RolesNotServed`]). [`AgentError::Unavailable`] while the bus is not
    /// this store's or the queue cannot be reached. The events are recorded with actor
    /// `agent:<agent_id>`.
    pub async fn poll(
        &self,
        agent_id: Uuid,
        options: PollOptions,
        caller: &Caller,
    ) -> Result<Vec<Lease>, AgentError> {
        self.serving()?;
        let agent = self
            .agent(caller.tenant(), agent_id)
            .await?
            .ok_or_else(|| AgentError::NotFound(format!("agent {agent_id} not found")))?;
        caller.may_serve_all(&agent.roles)?;
        let max = options.max.clamp(1, MAX_LEASES_PER_POLL);
        let deadline = Instant::now() + options.wait.min(MAX_POLL_WAIT);
        let meta = EventMetadata {
            actor: Some(format!("agent:{agent_id}")),
            ..caller.metadata.clone()
        };
        loop {
            // Heard from at every step (a step waits at most `STEP`), so a long
            // poll keeps its agent online; a drain (here or on another server) ends it.
            self.heard_from(&agent).await;
            let now_state = self
                .agent(caller.tenant(), agent_id)
                .await?
                .map(|a| a.state);
            if now_state != Some(conflux_schema::api::AgentState::Active) {
                return Ok(Vec::new());
            }
            let remaining = deadline.saturating_duration_since(Instant::now()).min(STEP);
            // Never more leases than its capacity: reserve free slots first.
            let until = Utc::now() + remaining + RESERVED_FOR;
            let want = u32::try_from(max).unwrap_or(u32::MAX);
            let reserved = self
                .queue
                .reserve_slots(agent_id, agent.capacity, want, until)
                .await
                .map_err(|e| AgentError::Unavailable(e.to_string()))?;
            if reserved.is_empty() {
                // Full: wait a little for a slot, as long as the poll may wait.
                if Instant::now() >= deadline {
                    return Ok(Vec::new());
                }
                tokio::time::sleep(remaining.min(FULL_RECHECK)).await;
                continue;
            }
            let queues = self.queues_for(&agent).await?;
            let last = Instant::now() + remaining >= deadline;
            let tickets = match self
                .wait_for_tickets(&agent, &queues, reserved.len(), remaining, last)
                .await
            {
                Ok(tickets) => tickets,
                Err(e) => {
                    self.hold(agent_id, &reserved, &[]).await;
                    return Err(e);
                }
            };
            let mut leases = Vec::new();
            for ticket in tickets {
                let Ok(task_id) = TaskId::parse(&ticket.task_id) else {
                    continue;
                };
                let task = TaskRef {
                    task: task_id,
                    attempt: ticket.attempt,
                    compensation: ticket.compensation,
                };
                match self.lease(ticket, task, agent_id, &meta).await {
                    Ok(Some(lease)) => leases.push(lease),
                    Ok(None) => {}
                    Err(e) => {
                        self.hold(agent_id, &reserved, &leases).await;
                        return Err(e);
                    }
                }
            }
            self.hold(agent_id, &reserved, &leases).await;
            if !leases.is_empty() || Instant::now() >= deadline {
                return Ok(leases);
            }
        }
    }

    /// Takes up to `max` tickets from `queues` for `agent`, waiting up to `wait`, while
    /// recorded as waiting for work; then routes them ([`Agents::route`]): what it
    /// returns is what `agent` should lease. A wait that ends empty keeps the agent
    /// recorded as waiting a little longer, unless it is the poll's `last` step (the
    /// next step follows at once, so it is not passed over in between), and sends back
    /// the tickets of the tenant's abandoned mailboxes.
    async fn wait_for_tickets(
        &self,
        agent: &super::Agent,
        queues: &[String],
        max: usize,
        wait: Duration,
        last: bool,
    ) -> Result<Vec<Ticket>, AgentError> {
        let (tenant, id) = (agent.tenant.as_str(), agent.agent_id);
        let until = Utc::now() + wait + BETWEEN_STEPS;
        let unavailable = |e: crate::queue::QueueError| AgentError::Unavailable(e.to_string());
        self.queue
            .agent_waiting(tenant, id, Some(until))
            .await
            .map_err(unavailable)?;
        let taken = self.queue.take(tenant, queues, max, wait).await;
        if last || !matches!(&taken, Ok(t) if t.is_empty()) {
            // Off the path from ticket to lease: the poll goes on at once. (Routing
            // counts this agent among the candidates either way.)
            let queue = self.queue.clone();
            let tenant = tenant.to_owned();
            tokio::spawn(async move {
                if let Err(e) = queue.agent_waiting(&tenant, id, None).await {
                    tracing::debug!(agent = %id, error = %e, "recording that an agent stopped waiting failed; it expires");
                }
            });
        }
        let tickets = taken.map_err(unavailable)?;
        if tickets.is_empty() {
            if let Err(e) = self.return_abandoned(tenant).await {
                tracing::warn!(error = %e, "returning the tickets of abandoned mailboxes failed");
            }
            return Ok(tickets);
        }
        self.route(agent, tickets).await
    }

    /// The queues `agent` reads: its mailbox (tickets routed to it), each of its roles,
    /// and each queue of those roles whose required capabilities it all has.
    async fn queues_for(&self, agent: &super::Agent) -> Result<Vec<String>, AgentError> {
        let mut queues = vec![crate::queue::mailbox_of(agent.agent_id)];
        queues.extend(agent.roles.iter().cloned());
        for role in &agent.roles {
            let requiring = self
                .queue
                .queues_of(&agent.tenant, role)
                .await
                .map_err(|e| AgentError::Unavailable(e.to_string()))?;
            queues.extend(requiring.into_iter().filter(|q| {
                let (_, requires) = conflux_schema::kind::split_queue(q);
                requires
                    .iter()
                    .all(|c| agent.capabilities.iter().any(|h| h == c))
            }));
        }
        Ok(queues)
    }

    /// Turns the poll's reservations into the leases it handed out (freeing the rest);
    /// a failure is logged: the reservations then expire on their own.
    async fn hold(&self, agent_id: Uuid, reserved: &[String], leases: &[Lease]) {
        let held: Vec<(Uuid, DateTime<Utc>)> = leases
            .iter()
            .map(|l| {
                let until = l.deadline.unwrap_or_else(|| Utc::now() + UNBOUNDED_LEASE);
                (l.lease_id, until)
            })
            .collect();
        if let Err(e) = self.queue.hold_leases(agent_id, reserved, &held).await {
            tracing::warn!(agent = %agent_id, error = %e, "recording an agent's leases failed; its reserved slots expire on their own");
        }
    }

    /// The input an agent receives for `ticket`: its template read back, with the
    /// secret values of `tenant` put in (in memory: this answer only).
    async fn reveal(&self, tenant: &str, ticket: &Ticket) -> Result<Value, RevealError> {
        match &self.secrets {
            Some(secrets) => secrets.reveal(tenant, &ticket.input).await.map(|(v, _)| v),
            None => {
                if let Some(name) = secret_names(&ticket.input)
                    .map_err(RevealError::Template)?
                    .into_iter()
                    .next()
                {
                    return Err(RevealError::Missing(name));
                }
                unescape(&ticket.input)
            }
        }
    }

    /// Records `TaskStarted` for `ticket`'s attempt `task` under a new lease; None when
    /// the attempt is no longer current or its execution is gone (the ticket is dropped),
    /// or when a secret its input references no longer exists: the attempt then fails
    /// for good, naming the secret.
    async fn lease(
        &self,
        ticket: Ticket,
        task: TaskRef,
        agent_id: Uuid,
        meta: &EventMetadata,
    ) -> Result<Option<Lease>, AgentError> {
        let execution_id = ticket.execution_id;
        // With encryption at rest the queue holds the input sealed.
        let mut ticket = ticket;
        if let Err(e) = self.codec.open_json(execution_id, &mut ticket.input).await {
            return Err(AgentError::Unavailable(e.to_string()));
        }
        // A rate-limited task starts once it has its token; a key that cannot be
        // computed fails the attempt for good, as an input that cannot be revealed does.
        let gate = match &ticket.rate_limit {
            Some(limit) => {
                crate::rate::await_token(&*self.queue, meta.tenant(), limit, &ticket.input).await
            }
            None => Ok(()),
        };
        let input = match gate {
            Err(e) => Err(e),
            Ok(()) => match self.reveal(meta.tenant(), &ticket).await {
                Ok(input) => Ok(input),
                Err(e) if e.retryable() => return Err(AgentError::Unavailable(e.to_string())),
                Err(e) => Err(e.to_string()),
            },
        };
        let lease_id = Uuid::now_v7();
        let command = Command::StartTask {
            task: task.clone(),
            agent_id: Some(agent_id),
            lease_id: Some(lease_id),
            routing: ticket.routing.clone(),
        };
        let mut scheduled_at = None;
        let started = self
            .commands
            .record(execution_id, meta.clone(), |_, log| {
                scheduled_at = scheduled_time(log, &task);
                Ok(command.clone())
            })
            .await;
        let recorded = match started {
            Ok(recorded) => recorded,
            // The attempt moved on (timed out, cancelled, done): drop the ticket.
            Err(CommandError::Rejected(_)) | Err(CommandError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if let (Some(at), Some(started)) = (scheduled_at, recorded.events.first()) {
            let secs = (started.recorded_at - at)
                .num_microseconds()
                .unwrap_or(0)
                .max(0) as f64
                / 1e6;
            metrics::histogram!("conflux_task_schedule_to_start_seconds").record(secs);
        }
        let input = match input {
            Ok(input) => input,
            Err(error) => {
                let fail = Command::FailTask {
                    task: task.clone(),
                    error,
                    retryable: false,
                    usage: None,
                };
                match self
                    .commands
                    .record(execution_id, meta.clone(), |_, _| Ok(fail.clone()))
                    .await
                {
                    Ok(_) | Err(CommandError::Rejected(_)) | Err(CommandError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                return Ok(None);
            }
        };
        let state = &recorded.state;
        let track = if task.compensation {
            state.compensation(task.task.as_str())
        } else {
            state.task(task.task.as_str())
        };
        Ok(Some(Lease {
            lease_id,
            execution_id,
            task_id: task.task.as_str().to_owned(),
            attempt: task.attempt,
            compensation: task.compensation,
            input,
            deadline: track.and_then(|t| t.deadline),
        }))
    }
}

/// When the attempt `task` was scheduled, from the execution's log.
fn scheduled_time(log: &[EventEnvelope], task: &TaskRef) -> Option<DateTime<Utc>> {
    log.iter().rev().find_map(|e| match &e.event {
        Event::TaskScheduled {
            task_id,
            attempt,
            compensation,
            ..
        } if *task_id == task.task
            && *attempt == task.attempt
            && *compensation == task.compensation =>
        {
            Some(e.recorded_at)
        }
        _ => None,
    })
}
