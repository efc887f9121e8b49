//! Capability-scored routing, the I/O part: a poll that took tickets scores the agents
//! waiting for work ([`super::routing::choose`]) and hands each ticket a better agent
//! should have to that agent's mailbox queue ([`crate::queue::mailbox_of`]), which only
//! its polls read and which they read first.
//!
//! A ticket is routed once: a ticket taken from a mailbox keeps the choice it carries,
//! and its lease records it. A mailbox can outlive its agent's interest (the agent was
//! drained, deregistered, or stopped polling between being scored and taking the
//! ticket): drain and deregistration send its tickets back to their queues at once, and
//! any idle poll of the tenant sends back those of an agent that is no longer active or
//! no longer heard from (stale).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use conflux_schema::api::{AgentState, AgentStatus};
use conflux_schema::kind::split_queue;
use conflux_schema::routing::RoutingWeights;
use uuid::Uuid;

use super::routing::{choose, eligible, Candidate};
use super::{Agent, AgentError, Agents};
use crate::queue::{mailbox_agent, mailbox_of, AgentStats, QueueError, Ticket, MAILBOXES};

/// How old a candidate's counters may be when routing reads them (availability,
/// success rate, speed): fresh enough to spread a burst, cheap enough not to read 50
/// agents' counters for every ticket.
pub const STATS_FRESH: Duration = Duration::from_millis(100);

/// How often this process looks for abandoned mailboxes of one tenant, at most.
pub const ABANDONED_EVERY: Duration = Duration::from_secs(2);

/// Per tenant, when this process last looked for abandoned mailboxes.
pub(super) type LookedAt = Arc<Mutex<HashMap<String, Instant>>>;

/// The mailboxes this process noted (tenant, agent).
pub(super) type Noted = Arc<Mutex<std::collections::HashSet<(String, Uuid)>>>;

/// Cached counters of agents, with when they were read.
pub(super) type StatsCache = Arc<Mutex<HashMap<Uuid, (Instant, AgentStats)>>>;

/// Where the weights of each tenant's routing come from (its policy).
pub type WeightsOf = Arc<dyn Fn(&str) -> RoutingWeights + Send + Sync>;

fn unavailable(e: QueueError) -> AgentError {
    AgentError::Unavailable(e.to_string())
}

impl Agents {
    /// Routes the tickets `agent`'s poll took: returns those it should lease, each with
    /// the routing its lease records, and hands the others to the mailbox of the agent
    /// that scored best. Tickets from its own mailbox were routed already.
    pub(super) async fn route(
        &self,
        agent: &Agent,
        tickets: Vec<Ticket>,
    ) -> Result<Vec<Ticket>, AgentError> {
        if tickets.iter().all(|t| t.routing.is_some()) {
            return Ok(tickets);
        }
        let tenant = agent.tenant.as_str();
        let mut waiting = self
            .queue
            .agents_waiting(tenant)
            .await
            .map_err(unavailable)?;
        if !waiting.contains(&agent.agent_id) {
            waiting.push(agent.agent_id);
        }
        let fleet: HashMap<Uuid, Agent> = self
            .directory
            .of_tenant(&**self.commands.store(), tenant)
            .await?
            .into_iter()
            .filter(|a| a.state == AgentState::Active && waiting.contains(&a.agent_id))
            .map(|a| (a.agent_id, a))
            .collect();
        let ids: Vec<Uuid> = fleet.keys().copied().collect();
        let mut stats = self.recent_stats(&ids).await?;
        let weights = (self.weights)(tenant);
        let mut kept = Vec::new();
        for mut ticket in tickets {
            if ticket.routing.is_some() {
                kept.push(ticket);
                continue;
            }
            let (role, requires) = split_queue(&ticket.role);
            let requires: Vec<String> = requires.into_iter().map(str::to_owned).collect();
            let candidates: Vec<Candidate<'_>> = fleet
                .values()
                .filter(|a| eligible(a, role, &requires))
                .map(|a| Candidate {
                    agent: a,
                    stats: stats.get(&a.agent_id).cloned().unwrap_or_default(),
                })
                .collect();
            let routing = choose(&requires, &candidates, weights, agent.agent_id);
            let best = routing
                .candidates
                .first()
                .map_or(agent.agent_id, |s| s.agent_id);
            // What it takes now counts against its availability for the next ticket.
            if let Some(s) = stats.get_mut(&best) {
                s.held += 1;
            }
            ticket.routing = Some(routing);
            if best == agent.agent_id {
                kept.push(ticket);
                continue;
            }
            ticket.routed_from = Some(std::mem::replace(&mut ticket.role, mailbox_of(best)));
            // Noted once per process: the set is only read to find abandoned mailboxes.
            let first = self
                .noted_mailboxes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((tenant.to_owned(), best));
            if first {
                self.queue
                    .note_queue(tenant, MAILBOXES, &ticket.role)
                    .await
                    .map_err(unavailable)?;
            }
            self.queue.enqueue(&ticket).await.map_err(unavailable)?;
            metrics::counter!("conflux_tasks_routed_elsewhere_total").increment(1);
        }
        Ok(kept)
    }

    /// The counters of `ids`, each read at most [`STATS_FRESH`] ago: read in one
    /// round trip for those older, so that routing a burst does not read every
    /// candidate's counters for every ticket.
    async fn recent_stats(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, AgentStats>, AgentError> {
        let now = Instant::now();
        let mut out = HashMap::with_capacity(ids.len());
        let mut stale = Vec::new();
        {
            let cache = self.stats_cache.lock().unwrap_or_else(|p| p.into_inner());
            for id in ids {
                match cache.get(id) {
                    Some((at, s)) if now.duration_since(*at) < STATS_FRESH => {
                        out.insert(*id, s.clone());
                    }
                    _ => stale.push(*id),
                }
            }
        }
        if stale.is_empty() {
            return Ok(out);
        }
        let read = self.queue.agents_stats(&stale).await.map_err(unavailable)?;
        let mut cache = self.stats_cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        for (id, s) in stale.into_iter().zip(read) {
            cache.insert(id, (now, s.clone()));
            out.insert(id, s);
        }
        Ok(out)
    }

    /// Sends the tickets waiting in `agent`'s mailbox back to the queues they were
    /// routed from, to be routed afresh; returns how many.
    pub(super) async fn return_mailbox(
        &self,
        tenant: &str,
        agent: Uuid,
    ) -> Result<usize, AgentError> {
        let mailbox = [mailbox_of(agent)];
        let mut returned = 0;
        loop {
            let tickets = self
                .queue
                .take(tenant, &mailbox, 100, std::time::Duration::ZERO)
                .await
                .map_err(unavailable)?;
            if tickets.is_empty() {
                return Ok(returned);
            }
            for mut ticket in tickets {
                let Some(queue) = ticket.routed_from.take() else {
                    continue;
                };
                ticket.role = queue;
                ticket.routing = None;
                self.queue.enqueue(&ticket).await.map_err(unavailable)?;
                returned += 1;
            }
        }
    }

    /// Sends back the tickets of every mailbox of `tenant` whose agent no longer takes
    /// work: not active, or not heard from for longer than the stale threshold. At most
    /// once per [`ABANDONED_EVERY`] per tenant in this process (every idle poll step
    /// asks; one look serves them all).
    pub(super) async fn return_abandoned(&self, tenant: &str) -> Result<(), AgentError> {
        {
            let now = Instant::now();
            let mut looked = self
                .abandoned_looked
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if looked
                .get(tenant)
                .is_some_and(|at| now.duration_since(*at) < ABANDONED_EVERY)
            {
                return Ok(());
            }
            looked.insert(tenant.to_owned(), now);
        }
        let mailboxes = self
            .queue
            .queues_of(tenant, MAILBOXES)
            .await
            .map_err(unavailable)?;
        if mailboxes.is_empty() {
            return Ok(());
        }
        let seen = self.queue.agents_seen(tenant).await.map_err(unavailable)?;
        let now = Utc::now();
        for agent in mailboxes.iter().filter_map(|m| mailbox_agent(m)) {
            let active = self
                .agent(tenant, agent)
                .await?
                .is_some_and(|a| a.state == AgentState::Active);
            let online =
                self.liveness.status(seen.get(&agent).copied(), now) == AgentStatus::Online;
            if !(active && online) {
                let n = self.return_mailbox(tenant, agent).await?;
                if n > 0 {
                    tracing::info!(%agent, tickets = n, "returned the tickets routed to an agent that stopped taking work");
                }
            }
        }
        Ok(())
    }
}
