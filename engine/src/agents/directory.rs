//! Registered agents, read from their streams (`agent-<id>`, whose first event is
//! `AgentRegistered`) and cached: an agent never changes once registered, so a cached
//! entry is never stale, and each process reads an agent's stream at most once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use conflux_schema::{Event, StreamId};
use uuid::Uuid;

use crate::store::{EventStore, StoreError};

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// Its id.
    pub agent_id: Uuid,
    /// The tenant it was registered in: it takes that tenant's tasks only.
    pub tenant: String,
    /// The roles it polls.
    pub roles: Vec<String>,
}

/// Registered agents, loaded from their streams and cached; clones share the cache.
#[derive(Clone, Default)]
pub(crate) struct AgentDirectory {
    cache: Arc<Mutex<HashMap<Uuid, Agent>>>,
}

impl AgentDirectory {
    fn cache(&self) -> MutexGuard<'_, HashMap<Uuid, Agent>> {
        // Every write is one insert: a panic cannot leave the map torn.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The agent `id` in any tenant, or None if it was never registered.
    pub(crate) async fn get(
        &self,
        store: &dyn EventStore,
        id: Uuid,
    ) -> Result<Option<Agent>, StoreError> {
        if let Some(a) = self.cache().get(&id) {
            return Ok(Some(a.clone()));
        }
        let events = store.read_stream(&StreamId::agent(id), 0, 1).await?;
        let agent = events.into_iter().find_map(|e| match e.event {
            Event::AgentRegistered {
                agent_id, roles, ..
            } => Some(Agent {
                agent_id,
                tenant: e.metadata.tenant().to_owned(),
                roles,
            }),
            _ => None,
        });
        if let Some(a) = &agent {
            self.remember(a.clone());
        }
        Ok(agent)
    }

    /// Caches an agent this process just registered.
    pub(crate) fn remember(&self, agent: Agent) {
        self.cache().insert(agent.agent_id, agent);
    }
}
