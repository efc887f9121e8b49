//! Agents, the external workers that run `agent` tasks: their registration, the
//! long-poll that turns queued tickets into leases, and their results by lease.
//!
//! This is the agent aggregate's service, as [`crate::commands`] is the execution's. It
//! exists so that the rules of agent work — tenancy, what an agent key may serve, stale
//! leases, never taking another store's tickets — are decided (and tested) in one place
//! without HTTP; the command API's agent routes only parse requests into these calls
//! and map [`AgentError`] to the JSON error body.
//!
//! - **Registration** appends `AgentRegistered` to stream `agent-<id>`, in the caller's
//!   tenant; the agent takes that tenant's tasks only.
//! - **A poll** takes tickets from the agent's role queues and turns each into a lease by
//!   recording `TaskStarted` (with the agent, a new lease id and the attempt's deadline)
//!   against the execution; a ticket whose attempt is no longer current is dropped. The
//!   lease's input is the ticket's template read back, with the tenant's secret values
//!   put in: they exist in the poll answer only.
//! - **A report** (complete, fail, heartbeat) names a lease; the lease's attempt is read
//!   from the execution's log, so a report for an attempt that timed out, was cancelled
//!   or already finished is [`AgentError::StaleLease`] and records nothing.
//!
//! Nothing is served while the bus is not this store's: the task queues live under the
//! same prefix, and a ticket of another store must never be taken (and dropped) here.
//!
//! - **The fleet** (`GET /api/v1/agents…`): each agent's lifecycle (active, draining,
//!   deregistered) is folded from its stream; how recently it was heard from (its last
//!   poll or heartbeat) is kept beside the task queues, shared by every server, and
//!   gives its status (`online`, `stale`, `offline`). Deregistering fails the attempts
//!   it holds (retryable) so that their retry policy moves them to another agent.
//!
//! # Layout
//! - `directory`: the agents' lifecycles, folded from their streams.
//! - `fleet`: listing, liveness, heartbeat, drain and deregistration.
//! - `poll`: leases from tickets, and the schedule-to-start metric.
//! - `report`: results and heartbeats by lease, with the agent key's role check.
//! - `routing`: capability-scored routing's arithmetic (pure); `route`: scoring the
//!   waiting agents when a poll takes tickets, and the mailboxes of routed tickets.
//! - `error`: [`AgentError`].

mod directory;
mod error;
mod fleet;
mod poll;
mod report;
mod route;
pub mod routing;

use std::sync::Arc;

use conflux_schema::api::AgentState;
use conflux_schema::{Event, EventMetadata, NewEvent, StreamId};
use tokio::sync::watch;
use uuid::Uuid;

pub use directory::{Agent, REFRESH_EVERY};
pub use error::AgentError;
pub use fleet::{AgentFilter, Liveness};
pub use poll::{
    Lease, PollOptions, DEFAULT_LEASES_PER_POLL, DEFAULT_POLL_WAIT, MAX_LEASES_PER_POLL,
    MAX_POLL_WAIT,
};
pub use report::{Report, Reported};
pub use route::WeightsOf;

use crate::access::Principal;
use crate::bus::ownership::BusStatus;
use crate::commands::ExecutionCommands;
use crate::queue::TaskQueue;
pub(crate) use directory::AgentDirectory;

/// Who makes an agent call, as far as the rules need to know.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The authenticated caller; None on a router served without authentication, which
    /// may serve every agent role of its tenant.
    pub principal: Option<Principal>,
    /// Metadata of the events the call causes. Its tenant is the tenant the caller acts
    /// in: every agent, lease and execution the call names must be that tenant's.
    pub metadata: EventMetadata,
}

impl Caller {
    /// The tenant the caller acts in (that of its metadata).
    pub fn tenant(&self) -> &str {
        self.metadata.tenant()
    }

    /// `Ok` when the caller may serve every one of `roles`; an agent key serves only
    /// the agent roles on it ([`AgentError::RolesNotServed`] names the others).
    fn may_serve_all(&self, roles: &[String]) -> Result<(), AgentError> {
        let Some(who) = &self.principal else {
            return Ok(());
        };
        let refused: Vec<String> = roles
            .iter()
            .filter(|r| !who.may_serve(r))
            .cloned()
            .collect();
        if refused.is_empty() {
            return Ok(());
        }
        Err(AgentError::RolesNotServed {
            refused,
            allowed: who.agent_roles.clone(),
        })
    }
}

/// An agent to register.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// For humans; not empty.
    pub name: String,
    /// The agent roles whose queues it polls; at least one, none empty.
    pub roles: Vec<String>,
    /// What it can do.
    pub capabilities: Vec<String>,
    /// How many tasks it runs at once; at least 1.
    pub capacity: u32,
    /// What one of its tasks costs, if it says (finite, at least 0).
    pub cost: Option<f64>,
}

/// Agent registration, leasing and results; cheap to clone (clones share the cache of
/// registered agents).
#[derive(Clone)]
pub struct Agents {
    commands: ExecutionCommands,
    queue: Arc<dyn TaskQueue>,
    directory: AgentDirectory,
    bus: watch::Receiver<BusStatus>,
    codec: crate::crypto::PayloadCodec,
    /// Where the secrets a lease's input references are read (None: none exist).
    secrets: Option<crate::secrets::Secrets>,
    /// When an agent not heard from counts as stale, then offline.
    liveness: Liveness,
    /// Each tenant's routing weights.
    weights: WeightsOf,
    /// Where the agent body's result counters are read (None: the queue backend's).
    results: Option<Arc<dyn ResultCounts>>,
    /// Routing's recently read counters of candidates.
    stats_cache: route::StatsCache,
    /// Mailboxes this process noted already.
    noted_mailboxes: route::Noted,
    /// When this process last looked for abandoned mailboxes, per tenant.
    abandoned_looked: route::LookedAt,
    /// Calls tasks' `post` hooks (under the egress policy) before a success is
    /// recorded.
    hooks: crate::runner::BuiltinRunner,
}

/// Agents' results as a read model folded from the event log counts them (the
/// projector's `rm_agent_results`): what the agent body shows, rebuilt with the other
/// read models. Routing keeps using the queue backend's live counters (hot path).
#[async_trait::async_trait]
pub trait ResultCounts: Send + Sync + 'static {
    /// `agent`'s completed and failed results and latest durations (`held` is 0).
    async fn results_of(&self, agent: Uuid) -> Result<crate::queue::AgentStats, String>;
}

impl Agents {
    /// Agent work over `commands`' store and `queue`, served only while `bus` says the
    /// bus is this store's.
    pub fn new(
        commands: ExecutionCommands,
        queue: Arc<dyn TaskQueue>,
        bus: watch::Receiver<BusStatus>,
    ) -> Self {
        Self {
            commands,
            queue,
            directory: AgentDirectory::default(),
            bus,
            codec: crate::crypto::PayloadCodec::off(),
            secrets: None,
            liveness: Liveness::default(),
            weights: std::sync::Arc::new(|_| conflux_schema::routing::RoutingWeights::default()),
            results: None,
            stats_cache: Default::default(),
            noted_mailboxes: Default::default(),
            abandoned_looked: Default::default(),
            hooks: crate::runner::BuiltinRunner::default(),
        }
    }

    /// The same service, calling tasks' `post` hooks through `runner` (the process's
    /// built-in runner: its egress policy and tenants' allowlists).
    pub fn with_hook_runner(mut self, runner: crate::runner::BuiltinRunner) -> Self {
        self.hooks = runner;
        self
    }

    /// The same service, showing agents' result counters from `results` (a read model
    /// folded from the log) instead of the queue backend's.
    pub fn with_result_counts(mut self, results: Arc<dyn ResultCounts>) -> Self {
        self.results = Some(results);
        self
    }

    /// The same service, scoring agents with the weights `weights` gives for a tenant
    /// (its policy's; the defaults without it).
    pub fn with_routing_weights(mut self, weights: WeightsOf) -> Self {
        self.weights = weights;
        self
    }

    /// The same service, with these liveness thresholds.
    pub fn with_liveness(mut self, liveness: Liveness) -> Self {
        self.liveness = liveness;
        self
    }

    /// Opens tickets' sealed inputs with `codec` before handing them to agents (with
    /// encryption at rest, the queue holds them sealed).
    pub fn with_codec(mut self, codec: crate::crypto::PayloadCodec) -> Self {
        self.codec = codec;
        self
    }

    /// The same service, putting the values of `secrets` into each lease's input (the
    /// poll answer only; the log keeps `${secrets.NAME}`). Without it, an input that
    /// references a secret fails its attempt.
    pub fn with_secrets(mut self, secrets: crate::secrets::Secrets) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// Registers an agent in the caller's tenant and returns it. Refused with
    /// [`AgentError::Invalid`] for an empty name, no roles, an empty role or a capacity
    /// of 0, and with [`AgentError::RolesNotServed`] when the caller's agent key does not
    /// serve every role; then nothing is recorded.
    pub async fn register(
        &self,
        registration: Registration,
        caller: &Caller,
    ) -> Result<Agent, AgentError> {
        if registration.name.trim().is_empty() {
            return Err(AgentError::Invalid("name must not be empty".into()));
        }
        if registration.roles.is_empty() || registration.roles.iter().any(|r| r.trim().is_empty()) {
            return Err(AgentError::Invalid(
                "roles must be a non-empty list of non-empty names".into(),
            ));
        }
        if let Some(role) = registration
            .roles
            .iter()
            .find(|r| r.chars().any(char::is_control))
        {
            return Err(AgentError::Invalid(format!(
                "role {role:?} must not contain control characters"
            )));
        }
        for capability in &registration.capabilities {
            conflux_schema::kind::check_capability(capability).map_err(AgentError::Invalid)?;
        }
        if registration.capacity == 0 {
            return Err(AgentError::Invalid("capacity must be at least 1".into()));
        }
        if registration.cost.is_some_and(|c| !c.is_finite() || c < 0.0) {
            return Err(AgentError::Invalid(
                "cost must be a finite number of at least 0".into(),
            ));
        }
        caller.may_serve_all(&registration.roles)?;
        let agent_id = Uuid::now_v7();
        let event = Event::AgentRegistered {
            agent_id,
            name: registration.name.clone(),
            roles: registration.roles.clone(),
            capabilities: registration.capabilities.clone(),
            capacity: registration.capacity,
            cost: registration.cost,
        };
        let recorded = self
            .commands
            .store()
            .append(
                &StreamId::agent(agent_id),
                0,
                vec![NewEvent::new(event, caller.metadata.clone())],
            )
            .await?;
        self.directory.remember(&recorded);
        let registered_at = recorded
            .first()
            .map_or_else(chrono::Utc::now, |e| e.recorded_at);
        Ok(Agent {
            agent_id,
            tenant: caller.tenant().to_owned(),
            name: registration.name,
            roles: registration.roles,
            capabilities: registration.capabilities,
            capacity: registration.capacity,
            cost: registration.cost,
            registered_at,
            state: conflux_schema::api::AgentState::Active,
        })
    }

    /// The agent `agent_id` if it is `tenant`'s and not deregistered; None for an
    /// unknown id, a deregistered agent and another tenant's alike (no existence oracle).
    pub async fn agent(&self, tenant: &str, agent_id: Uuid) -> Result<Option<Agent>, AgentError> {
        Ok(self
            .directory
            .get(&**self.commands.store(), agent_id)
            .await?
            .filter(|a| a.tenant == tenant && a.state != AgentState::Deregistered))
    }

    /// [`AgentError::Unavailable`] while the bus is not this store's.
    fn serving(&self) -> Result<(), AgentError> {
        match &*self.bus.borrow() {
            BusStatus::Owned { .. } => Ok(()),
            _ => Err(AgentError::Unavailable(
                "the bus (Redis prefix) is not this store's (see /ready): agents are not served"
                    .into(),
            )),
        }
    }
}
