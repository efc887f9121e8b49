//! The fleet: listing agents with their liveness, heartbeats, drains and
//! deregistrations.
//!
//! Liveness is how recently an agent was heard from — its last poll or heartbeat — kept
//! beside the task queues ([`crate::queue::TaskQueue::agent_seen`]) rather than in the
//! log, which would otherwise record every poll. Lifecycle changes are events on the
//! agent's stream: `AgentDrained` (it takes nothing new) and `AgentDeregistered` (it is
//! gone, and the attempts it held are failed, retryable, so that their retry policy
//! gives them to another agent and its leases answer `409 stale_attempt`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use conflux_schema::api::{AgentChanged, AgentState, AgentStatus, AgentView};
use conflux_schema::{Event, NewEvent, StreamId};
use uuid::Uuid;

use super::directory::Agent;
use super::{AgentError, Agents, Caller};
use crate::commands::CommandError;
use crate::execution::{Command, ExecutionState, TaskRef, TaskStatus};
use crate::queue::AgentStats;
use crate::store::{StoreError, StreamQuery};

/// When an agent not heard from counts as `stale`, then `offline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Past this since its last poll or heartbeat, an agent is `stale` (default 30 s).
    pub stale_after: Duration,
    /// Past this, it is `offline` (default 90 s).
    pub offline_after: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            stale_after: Duration::from_secs(30),
            offline_after: Duration::from_secs(90),
        }
    }
}

impl Liveness {
    /// The status of an agent last heard from at `seen` (None: never), at `now`.
    pub fn status(&self, seen: Option<DateTime<Utc>>, now: DateTime<Utc>) -> AgentStatus {
        let Some(seen) = seen else {
            return AgentStatus::Offline;
        };
        let quiet = (now - seen).to_std().unwrap_or(Duration::ZERO);
        if quiet <= self.stale_after {
            AgentStatus::Online
        } else if quiet <= self.offline_after {
            AgentStatus::Stale
        } else {
            AgentStatus::Offline
        }
    }
}

/// Which agents `GET /api/v1/agents` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFilter {
    /// Only agents that poll this role.
    pub role: Option<String>,
    /// Only agents with this status.
    pub status: Option<AgentStatus>,
}

/// How many times a lifecycle change is appended again after a version conflict.
const APPEND_ATTEMPTS: usize = 5;

impl Agents {
    /// The tenant's agents (deregistered ones left out) that match `filter`, oldest
    /// registration first, each with its status at this moment.
    pub async fn list(
        &self,
        tenant: &str,
        filter: &AgentFilter,
    ) -> Result<Vec<AgentView>, AgentError> {
        let agents = self
            .directory
            .of_tenant(&**self.commands.store(), tenant)
            .await?;
        let seen = self.seen_in(tenant).await?;
        let now = Utc::now();
        let mut views = Vec::new();
        for a in agents {
            if filter.role.as_ref().is_some_and(|r| !a.roles.contains(r)) {
                continue;
            }
            let status = self.liveness.status(seen.get(&a.agent_id).copied(), now);
            if filter.status.is_some_and(|s| s != status) {
                continue;
            }
            let stats = self.stats_of(a.agent_id).await?;
            views.push(self.view_of(&a, seen.get(&a.agent_id).copied(), now, stats));
        }
        Ok(views)
    }

    /// Agent `agent_id` of `tenant`, with its status; [`AgentError::NotFound`] for an
    /// unknown, deregistered or other tenant's agent.
    pub async fn view(&self, tenant: &str, agent_id: Uuid) -> Result<AgentView, AgentError> {
        let agent = self.known(tenant, agent_id).await?;
        let seen = self.seen_in(tenant).await?.get(&agent_id).copied();
        let stats = self.stats_of(agent_id).await?;
        Ok(self.view_of(&agent, seen, Utc::now(), stats))
    }

    /// `POST /api/v1/agents/{id}/heartbeat`: the agent is alive (as a poll says).
    pub async fn heartbeat_agent(
        &self,
        agent_id: Uuid,
        caller: &Caller,
    ) -> Result<AgentChanged, AgentError> {
        let agent = self.steerable(agent_id, caller).await?;
        self.heard_from(&agent).await;
        Ok(changed(&agent, agent.state, 0))
    }

    /// `POST /api/v1/agents/{id}/drain`: the agent takes nothing new from now on (its
    /// polls answer no task); what it holds it still reports. Draining a draining agent
    /// changes nothing.
    pub async fn drain(&self, agent_id: Uuid, caller: &Caller) -> Result<AgentChanged, AgentError> {
        let agent = self.steerable(agent_id, caller).await?;
        if agent.state == AgentState::Active {
            self.record(agent_id, Event::AgentDrained { agent_id }, caller)
                .await?;
        }
        self.return_routed(&agent).await;
        Ok(changed(&agent, AgentState::Draining, 0))
    }

    /// `DELETE /api/v1/agents/{id}`: the agent is gone — its polls and reports are
    /// refused from now on — and every attempt it holds is failed at once (retryable,
    /// naming the agent), so that the task's retry policy runs it again on another agent.
    /// Returns how many attempts were released.
    pub async fn deregister(
        &self,
        agent_id: Uuid,
        caller: &Caller,
    ) -> Result<AgentChanged, AgentError> {
        let agent = self.steerable(agent_id, caller).await?;
        self.record(agent_id, Event::AgentDeregistered { agent_id }, caller)
            .await?;
        let released = self.release_held(&agent, caller).await?;
        self.return_routed(&agent).await;
        if let Err(e) = self.queue.forget_agent(agent_id).await {
            tracing::warn!(agent = %agent_id, error = %e, "forgetting a deregistered agent's lease slots failed; they expire on their own");
        }
        Ok(changed(&agent, AgentState::Deregistered, released))
    }

    /// Sends the tickets routed to `agent` and not yet taken back to their queues; a
    /// failure is logged (an idle poll of the tenant returns them later).
    async fn return_routed(&self, agent: &Agent) {
        if let Err(e) = self.return_mailbox(&agent.tenant, agent.agent_id).await {
            tracing::warn!(agent = %agent.agent_id, error = %e, "returning the tickets routed to an agent failed; an idle poll returns them later");
        }
    }

    /// Records that `agent` was heard from now; a failure is logged, never fatal (the
    /// agent's work does not depend on its liveness being recorded).
    pub(super) async fn heard_from(&self, agent: &Agent) {
        if let Err(e) = self
            .queue
            .agent_seen(&agent.tenant, agent.agent_id, Utc::now())
            .await
        {
            tracing::warn!(agent = %agent.agent_id, error = %e, "recording an agent's liveness failed");
        }
    }

    /// The caller's agent `agent_id`, if the caller may act for it (an agent key must
    /// serve every one of its roles).
    async fn steerable(&self, agent_id: Uuid, caller: &Caller) -> Result<Agent, AgentError> {
        let agent = self.known(caller.tenant(), agent_id).await?;
        caller.may_serve_all(&agent.roles)?;
        Ok(agent)
    }

    async fn known(&self, tenant: &str, agent_id: Uuid) -> Result<Agent, AgentError> {
        self.agent(tenant, agent_id)
            .await?
            .ok_or_else(|| AgentError::NotFound(format!("agent {agent_id} not found")))
    }

    async fn seen_in(
        &self,
        tenant: &str,
    ) -> Result<std::collections::HashMap<Uuid, DateTime<Utc>>, AgentError> {
        self.queue
            .agents_seen(tenant)
            .await
            .map_err(|e| AgentError::Unavailable(e.to_string()))
    }

    /// `agent`'s leases held (beside the queues) and results: from the read model
    /// folded from the log when this service has one ([`Agents::with_result_counts`]),
    /// else as the queue backend counted them.
    async fn stats_of(&self, agent: Uuid) -> Result<AgentStats, AgentError> {
        let live = self
            .queue
            .agent_stats(agent)
            .await
            .map_err(|e| AgentError::Unavailable(e.to_string()))?;
        let Some(results) = &self.results else {
            return Ok(live);
        };
        let folded = results
            .results_of(agent)
            .await
            .map_err(AgentError::Unavailable)?;
        Ok(AgentStats {
            held: live.held,
            ..folded
        })
    }

    fn view_of(
        &self,
        a: &Agent,
        seen: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        stats: AgentStats,
    ) -> AgentView {
        AgentView {
            agent_id: a.agent_id,
            name: a.name.clone(),
            roles: a.roles.clone(),
            capabilities: a.capabilities.clone(),
            capacity: a.capacity,
            cost: a.cost,
            leases_held: stats.held,
            completed: stats.completed,
            failed: stats.failed,
            success_rate: stats.success_rate(),
            p50_duration_ms: stats.median_ms(),
            state: a.state,
            status: self.liveness.status(seen, now),
            last_seen_at: seen,
            registered_at: a.registered_at,
        }
    }

    /// Appends `event` to the agent's stream (after whatever it holds) and folds it in.
    async fn record(
        &self,
        agent_id: Uuid,
        event: Event,
        caller: &Caller,
    ) -> Result<(), AgentError> {
        let store = self.commands.store();
        let stream = StreamId::agent(agent_id);
        for _ in 0..APPEND_ATTEMPTS {
            let version = store.stream_version(&stream).await?;
            let new = vec![NewEvent::new(event.clone(), caller.metadata.clone())];
            match store.append(&stream, version, new).await {
                Ok(recorded) => {
                    self.directory.remember(&recorded);
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AgentError::Unavailable(format!(
            "agent {agent_id} kept changing; try again"
        )))
    }

    /// Fails (retryable) every attempt `agent` holds in an open execution of its tenant.
    /// Reads every open execution: deregistration is rare, and the log is the only
    /// complete record of who holds what.
    async fn release_held(&self, agent: &Agent, caller: &Caller) -> Result<u32, AgentError> {
        let open = self
            .commands
            .store()
            .find_streams(&StreamQuery::OpenExecutions, usize::MAX)
            .await?;
        let error = format!("agent {} was deregistered", agent.agent_id);
        let mut released = 0;
        for stream in open {
            let execution = stream.uuid();
            let held = match self.commands.load_in(&agent.tenant, execution).await {
                Ok(Some((state, _))) => held_by(&state, agent.agent_id),
                Ok(None) | Err(CommandError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            for task in held {
                let fail = Command::FailTask {
                    task,
                    error: error.clone(),
                    retryable: true,
                    usage: None,
                };
                match self
                    .commands
                    .record(execution, caller.metadata.clone(), |_, _| Ok(fail.clone()))
                    .await
                {
                    Ok(_) => released += 1,
                    Err(CommandError::Rejected(_)) | Err(CommandError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(released)
    }
}

fn changed(agent: &Agent, state: AgentState, released: u32) -> AgentChanged {
    AgentChanged {
        agent_id: agent.agent_id,
        state,
        released,
    }
}

/// The running attempts (of tasks, items and compensations) leased to `agent`.
fn held_by(state: &ExecutionState, agent: Uuid) -> Vec<TaskRef> {
    let workflow = state.workflow();
    let items = state.items().map(|(_, id)| id);
    let mut held = Vec::new();
    for id in workflow.task_ids().iter().chain(items) {
        let tracks = [
            (state.task(id.as_str()), false),
            (state.compensation(id.as_str()), true),
        ];
        for (track, compensation) in tracks {
            if let Some(t) =
                track.filter(|t| t.status == TaskStatus::Running && t.agent_id == Some(agent))
            {
                held.push(TaskRef {
                    task: id.clone(),
                    attempt: t.attempt,
                    compensation,
                });
            }
        }
    }
    held
}
