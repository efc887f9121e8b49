//! The fleet's registry: every agent's lifecycle, folded from the agent streams
//! (`agent-<id>`: `AgentRegistered`, then perhaps `AgentDrained` and
//! `AgentDeregistered`) that every server tails through one indexed read of the log.
//!
//! A server folds what it records itself at once, and what other servers recorded when
//! it next refreshes: before answering about an agent it does not know, and at most
//! every [`REFRESH_EVERY`] otherwise, so a drain or a deregistration on one server is
//! obeyed by every other within that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use conflux_schema::api::AgentState;
use conflux_schema::{Event, EventEnvelope, StreamType};
use uuid::Uuid;

use crate::store::{EventStore, StoreError};

/// How stale a server's view of the agents' lifecycles may be at most.
pub const REFRESH_EVERY: Duration = Duration::from_millis(250);

/// Events read per refresh step.
const PAGE: usize = 1000;

/// A registered agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    /// Its id.
    pub agent_id: Uuid,
    /// The tenant it was registered in: it takes that tenant's tasks only.
    pub tenant: String,
    /// Its name, for humans.
    pub name: String,
    /// The roles it polls.
    pub roles: Vec<String>,
    /// What it can do.
    pub capabilities: Vec<String>,
    /// How many tasks it runs at once.
    pub capacity: u32,
    /// What one of its tasks costs, as it declared it.
    pub cost: Option<f64>,
    /// When it registered.
    pub registered_at: DateTime<Utc>,
    /// Whether it takes work: active, draining, deregistered.
    pub state: AgentState,
}

#[derive(Default)]
struct Folded {
    /// The position of the last agent event folded.
    position: u64,
    agents: HashMap<Uuid, Agent>,
    refreshed: Option<Instant>,
}

impl Folded {
    fn apply(&mut self, e: &EventEnvelope) {
        self.position = self.position.max(e.position);
        match &e.event {
            Event::AgentRegistered {
                agent_id,
                name,
                roles,
                capabilities,
                capacity,
                cost,
            } => {
                self.agents.entry(*agent_id).or_insert_with(|| Agent {
                    agent_id: *agent_id,
                    tenant: e.metadata.tenant().to_owned(),
                    name: name.clone(),
                    roles: roles.clone(),
                    capabilities: capabilities.clone(),
                    capacity: *capacity,
                    cost: *cost,
                    registered_at: e.recorded_at,
                    state: AgentState::Active,
                });
            }
            Event::AgentDrained { agent_id } => self.set(*agent_id, AgentState::Draining),
            Event::AgentDeregistered { agent_id } => self.set(*agent_id, AgentState::Deregistered),
            _ => {}
        }
    }

    /// Moves an agent on in its lifecycle (never back: deregistered stays so).
    fn set(&mut self, agent_id: Uuid, state: AgentState) {
        if let Some(a) = self.agents.get_mut(&agent_id) {
            if a.state != AgentState::Deregistered {
                a.state = state;
            }
        }
    }
}

/// Registered agents, folded from their streams; clones share the fold.
#[derive(Clone, Default)]
pub(crate) struct AgentDirectory {
    folded: Arc<Mutex<Folded>>,
    /// Serialises refreshes, so that concurrent callers read the log once.
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

impl AgentDirectory {
    fn folded(&self) -> MutexGuard<'_, Folded> {
        // Every write is a whole `apply`: a panic cannot leave the map torn.
        self.folded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Folds the agent events recorded since the last refresh.
    pub(crate) async fn refresh(&self, store: &dyn EventStore) -> Result<(), StoreError> {
        let _one = self.refreshing.lock().await;
        loop {
            let after = self.folded().position;
            let events = store.read_all_of(&[StreamType::Agent], after, PAGE).await?;
            let mut folded = self.folded();
            for e in &events {
                folded.apply(e);
            }
            if events.len() < PAGE {
                folded.refreshed = Some(Instant::now());
                return Ok(());
            }
        }
    }

    /// Refreshes unless the fold is younger than [`REFRESH_EVERY`].
    async fn fresh(&self, store: &dyn EventStore) -> Result<(), StoreError> {
        let due = self
            .folded()
            .refreshed
            .is_none_or(|at| at.elapsed() >= REFRESH_EVERY);
        if due {
            self.refresh(store).await?;
        }
        Ok(())
    }

    /// The agent `id` in any tenant (deregistered ones included), or None if it was
    /// never registered. An id not known here is looked for in the log at once.
    pub(crate) async fn get(
        &self,
        store: &dyn EventStore,
        id: Uuid,
    ) -> Result<Option<Agent>, StoreError> {
        self.fresh(store).await?;
        if let Some(a) = self.folded().agents.get(&id) {
            return Ok(Some(a.clone()));
        }
        self.refresh(store).await?;
        Ok(self.folded().agents.get(&id).cloned())
    }

    /// Every agent of `tenant` that is not deregistered, oldest registration first.
    pub(crate) async fn of_tenant(
        &self,
        store: &dyn EventStore,
        tenant: &str,
    ) -> Result<Vec<Agent>, StoreError> {
        self.fresh(store).await?;
        let mut agents: Vec<Agent> = self
            .folded()
            .agents
            .values()
            .filter(|a| a.tenant == tenant && a.state != AgentState::Deregistered)
            .cloned()
            .collect();
        agents.sort_by_key(|a| (a.registered_at, a.agent_id));
        Ok(agents)
    }

    /// Folds events this process just recorded (it need not wait for a refresh). The
    /// fold's position stays: a refresh still reads every agent event after it, in order.
    pub(crate) fn remember(&self, events: &[EventEnvelope]) {
        let mut folded = self.folded();
        let position = folded.position;
        for e in events {
            folded.apply(e);
        }
        folded.position = position;
    }
}
