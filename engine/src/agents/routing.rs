//! Capability-scored routing, the pure part: given the agents waiting for work and a
//! task, which of them should lease it, and every candidate's score
//! ([`conflux_schema::routing`] states the formula).
//!
//! The poll is a pull: whichever waiting poll takes a ticket first asks [`choose`] who
//! should have it, and hands it to that agent's mailbox queue when it is not itself
//! (`poll`). Keeping the arithmetic here lets the tests check the documented choice
//! without a server.

use conflux_schema::routing::{AgentScore, Routing, RoutingWeights};
use uuid::Uuid;

use super::Agent;
use crate::queue::AgentStats;

/// A waiting agent as routing sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// The agent's registration.
    pub agent: &'a Agent,
    /// Its counters (leases held, results, recent durations).
    pub stats: AgentStats,
}

/// Whether `agent` may take a task of `role` that requires `requires`: it serves the
/// role and has every required capability.
pub fn eligible(agent: &Agent, role: &str, requires: &[String]) -> bool {
    agent.roles.iter().any(|r| r == role)
        && requires
            .iter()
            .all(|c| agent.capabilities.iter().any(|h| h == c))
}

/// Scores every candidate for a task requiring `requires`, best first; among equal
/// scores `prefer` (the agent whose poll holds the ticket) comes first, then the lower
/// agent id, so the order is deterministic. The candidates must all be eligible.
pub fn choose(
    requires: &[String],
    candidates: &[Candidate<'_>],
    weights: RoutingWeights,
    prefer: Uuid,
) -> Routing {
    let medians: Vec<Option<u64>> = candidates.iter().map(|c| c.stats.median_ms()).collect();
    let fastest = medians.iter().flatten().min().copied();
    let costs: Vec<f64> = candidates.iter().filter_map(|c| c.agent.cost).collect();
    let cheapest = costs.iter().copied().fold(f64::INFINITY, f64::min);
    let dearest = costs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut scores: Vec<AgentScore> = candidates
        .iter()
        .zip(&medians)
        .map(|(c, median)| {
            let capability = capability_match(requires, &c.agent.capabilities);
            let availability = availability(c.stats.held, c.agent.capacity);
            let history = history(c.stats.success_rate(), *median, fastest);
            let cost = relative_cost(c.agent.cost, cheapest, dearest);
            AgentScore {
                agent_id: c.agent.agent_id,
                score: weights.capability * capability
                    + weights.availability * availability
                    + weights.history * history
                    + weights.cost * cost,
                capability,
                availability,
                history,
                cost,
            }
        })
        .collect();
    scores.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| (b.agent_id == prefer).cmp(&(a.agent_id == prefer)))
            .then_with(|| a.agent_id.cmp(&b.agent_id))
    });
    Routing {
        weights,
        candidates: scores,
    }
}

/// The share of the agent's capabilities the task requires (1 without capabilities).
fn capability_match(requires: &[String], capabilities: &[String]) -> f64 {
    if capabilities.is_empty() {
        return 1.0;
    }
    let used = requires.iter().filter(|r| capabilities.contains(r)).count();
    (used as f64 / capabilities.len() as f64).clamp(0.0, 1.0)
}

/// `1 − held / capacity`, within `0..=1`.
fn availability(held: u64, capacity: u32) -> f64 {
    if capacity == 0 {
        return 0.0;
    }
    (1.0 - held as f64 / f64::from(capacity)).clamp(0.0, 1.0)
}

/// Mean of the success rate and the relative speed; 0.5 for a part not yet known.
fn history(success_rate: Option<f64>, median: Option<u64>, fastest: Option<u64>) -> f64 {
    let success = success_rate.unwrap_or(0.5);
    let speed = match (median, fastest) {
        (Some(0), _) => 1.0,
        (Some(m), Some(f)) => f as f64 / m as f64,
        _ => 0.5,
    };
    ((success + speed) / 2.0).clamp(0.0, 1.0)
}

/// 1 for the cheapest, 0 for the dearest, linear between; 1 when all cost the same, 0.5
/// without a declared cost.
fn relative_cost(cost: Option<f64>, cheapest: f64, dearest: f64) -> f64 {
    let Some(cost) = cost else { return 0.5 };
    if dearest <= cheapest {
        return 1.0;
    }
    (1.0 - (cost - cheapest) / (dearest - cheapest)).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use conflux_schema::api::AgentState;

    fn agent(n: u128, capabilities: &[&str], capacity: u32, cost: Option<f64>) -> Agent {
        Agent {
            agent_id: Uuid::from_u128(n),
            tenant: "default".into(),
            name: format!("a{n}"),
            roles: vec!["worker".into()],
            capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
            capacity,
            cost,
            registered_at: chrono::Utc::now(),
            state: AgentState::Active,
        }
    }

    fn stats(held: u64, completed: u64, failed: u64, recent_ms: &[u64]) -> AgentStats {
        AgentStats {
            held,
            completed,
            failed,
            recent_ms: recent_ms.to_vec(),
        }
    }

    fn ids(r: &Routing) -> Vec<u128> {
        r.candidates.iter().map(|s| s.agent_id.as_u128()).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn the_specialist_beats_the_generalist_for_what_it_does() {
        let (gpu, all) = (
            agent(1, &["gpu"], 4, None),
            agent(2, &["gpu", "python", "arm"], 4, None),
        );
        let candidates = [
            Candidate {
                agent: &all,
                stats: AgentStats::default(),
            },
            Candidate {
                agent: &gpu,
                stats: AgentStats::default(),
            },
        ];
        let r = choose(
            &["gpu".into()],
            &candidates,
            RoutingWeights::default(),
            all.agent_id,
        );
        assert_eq!(ids(&r), vec![1, 2]);
        assert!(close(r.candidates[0].capability, 1.0));
        assert!(close(r.candidates[1].capability, 1.0 / 3.0));
        // 0.4×1 + 0.2×1 + 0.3×0.5 + 0.1×0.5
        assert!(close(r.candidates[0].score, 0.8));
    }

    #[test]
    fn load_history_and_cost_each_decide_when_the_rest_is_equal() {
        let (a, b) = (agent(1, &[], 4, Some(1.0)), agent(2, &[], 4, Some(1.0)));
        let w = RoutingWeights::default();
        let busy = [
            Candidate {
                agent: &a,
                stats: stats(3, 0, 0, &[]),
            },
            Candidate {
                agent: &b,
                stats: stats(1, 0, 0, &[]),
            },
        ];
        let r = choose(&[], &busy, w, a.agent_id);
        assert_eq!(ids(&r), vec![2, 1], "the less loaded agent wins");
        assert!(close(r.candidates[0].availability, 0.75));
        assert!(close(r.candidates[1].availability, 0.25));

        let history = [
            Candidate {
                agent: &a,
                stats: stats(0, 5, 5, &[100, 100]),
            },
            Candidate {
                agent: &b,
                stats: stats(0, 10, 0, &[50, 70, 60]),
            },
        ];
        let r = choose(&[], &history, w, a.agent_id);
        assert_eq!(ids(&r), vec![2, 1], "the reliable, faster agent wins");
        assert!(close(r.candidates[0].history, 1.0));
        // success 0.5, speed 60/100
        assert!(close(r.candidates[1].history, (0.5 + 0.6) / 2.0));

        let (cheap, dear) = (agent(3, &[], 4, Some(0.01)), agent(4, &[], 4, Some(0.05)));
        let cost = [
            Candidate {
                agent: &dear,
                stats: AgentStats::default(),
            },
            Candidate {
                agent: &cheap,
                stats: AgentStats::default(),
            },
        ];
        let r = choose(&[], &cost, w, dear.agent_id);
        assert_eq!(ids(&r), vec![3, 4], "the cheaper agent wins");
        assert!(close(r.candidates[0].cost, 1.0) && close(r.candidates[1].cost, 0.0));
    }

    #[test]
    fn scores_are_the_weighted_sum_of_their_components() {
        let (a, b) = (
            agent(1, &["x"], 2, Some(2.0)),
            agent(2, &["x", "y"], 5, None),
        );
        let w = RoutingWeights {
            capability: 0.1,
            availability: 0.5,
            history: 0.25,
            cost: 0.15,
        };
        let candidates = [
            Candidate {
                agent: &a,
                stats: stats(1, 3, 1, &[30]),
            },
            Candidate {
                agent: &b,
                stats: stats(0, 0, 0, &[]),
            },
        ];
        let r = choose(&["x".into()], &candidates, w, a.agent_id);
        for s in &r.candidates {
            let sum = w.capability * s.capability
                + w.availability * s.availability
                + w.history * s.history
                + w.cost * s.cost;
            assert!(close(s.score, sum));
        }
        assert_eq!(r.weights, w);
    }

    #[test]
    fn a_tie_keeps_the_ticket_with_the_agent_that_holds_it() {
        let (a, b) = (agent(1, &[], 1, None), agent(2, &[], 1, None));
        let candidates = [
            Candidate {
                agent: &a,
                stats: AgentStats::default(),
            },
            Candidate {
                agent: &b,
                stats: AgentStats::default(),
            },
        ];
        let r = choose(&[], &candidates, RoutingWeights::default(), b.agent_id);
        assert_eq!(ids(&r), vec![2, 1]);
    }

    #[test]
    fn only_agents_with_the_role_and_every_capability_are_eligible() {
        let a = agent(1, &["gpu", "python"], 1, None);
        assert!(eligible(&a, "worker", &["gpu".into()]));
        assert!(eligible(&a, "worker", &[]));
        assert!(!eligible(&a, "worker", &["gpu".into(), "arm".into()]));
        assert!(!eligible(&a, "other", &[]));
    }
}
