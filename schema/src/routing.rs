//! Capability-scored routing: which waiting agent gets an agent task, and the record of
//! why.
//!
//! Among the agents of the task's tenant that are waiting for work (in a poll, with a
//! free slot) and may take the task (they serve its role and have every capability it
//! `requires`), the one with the highest score leases it:
//!
//! `score = w.capability × capability + w.availability × availability + w.history ×
//! history + w.cost × cost`, each component in `0..=1`:
//!
//! - **capability**: the share of the agent's capabilities the task requires
//!   (`|requires| / |capabilities|`, 1 for an agent without capabilities): an agent that
//!   has exactly what the task needs scores 1, a generalist less, so specialists stay
//!   free for the work only they can do.
//! - **availability**: `1 − leases held / capacity`.
//! - **history**: the mean of its success rate (`completed / results`) and its speed
//!   (the fastest median duration among the candidates divided by its own); either part
//!   is 0.5 while the agent has no results.
//! - **cost**: `1 − (cost − cheapest) / (dearest − cheapest)` over the candidates'
//!   declared costs (1 when they all cost the same, 0.5 for an agent that declared none).
//!
//! The weights default to 0.4, 0.2, 0.3 and 0.1 and are set per tenant in its policy
//! (`PUT /api/v1/tenants/{tenant}/policy` `{"routing_weights": {...}}`). The choice is
//! recorded in the lease's `TaskStarted` as a [`Routing`]: the weights and every
//! candidate's components and score, best first.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// How much each component counts in an agent's score. Each weight is a finite number
/// of at least 0, and at least one is above 0.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingWeights {
    /// Weight of the capability match.
    #[schema(minimum = 0.0, example = 0.4)]
    pub capability: f64,
    /// Weight of the free capacity.
    #[schema(minimum = 0.0, example = 0.2)]
    pub availability: f64,
    /// Weight of the success rate and speed.
    #[schema(minimum = 0.0, example = 0.3)]
    pub history: f64,
    /// Weight of the declared cost (cheaper is better).
    #[schema(minimum = 0.0, example = 0.1)]
    pub cost: f64,
}

impl Default for RoutingWeights {
    /// 0.4 capability, 0.2 availability, 0.3 history, 0.1 cost.
    fn default() -> Self {
        Self {
            capability: 0.4,
            availability: 0.2,
            history: 0.3,
            cost: 0.1,
        }
    }
}

impl RoutingWeights {
    /// Why these weights cannot be used, naming the field: a weight that is negative or
    /// not finite, or all of them 0.
    pub fn check(&self) -> Result<(), String> {
        let named = [
            ("capability", self.capability),
            ("availability", self.availability),
            ("history", self.history),
            ("cost", self.cost),
        ];
        for (name, w) in named {
            if !w.is_finite() || w < 0.0 {
                return Err(format!(
                    "routing_weights.{name} must be a finite number of at least 0, got {w}"
                ));
            }
        }
        if named.iter().all(|(_, w)| *w == 0.0) {
            return Err("routing_weights must have at least one weight above 0".to_owned());
        }
        Ok(())
    }
}

/// One candidate's score and its components (each in `0..=1`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct AgentScore {
    /// The agent.
    pub agent_id: Uuid,
    /// The weighted sum of the components.
    pub score: f64,
    /// Share of its capabilities the task requires.
    pub capability: f64,
    /// `1 − leases held / capacity` when it was scored.
    pub availability: f64,
    /// Mean of its success rate and relative speed.
    pub history: f64,
    /// How cheap it is relative to the other candidates.
    pub cost: f64,
}

/// Why an agent got a task: recorded in the lease's `TaskStarted`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct Routing {
    /// The weights in force for the tenant.
    pub weights: RoutingWeights,
    /// Every eligible agent that was waiting, best first; the first leased the task.
    pub candidates: Vec<AgentScore>,
}
