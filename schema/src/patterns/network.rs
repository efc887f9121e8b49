//! `network`: agents that exchange messages through signals, for a bounded number of
//! rounds.
//!
//! One workflow `<name>`. In round r each agent (one per role of `agents`) runs a task
//! `r<r>-<role>`. Before the last round, that agent sends one message to every peer as
//! a signal to its own execution (`POST /api/v1/executions/{id}/signals/<name>`), and
//! the `signal` task `r<r>-<role>-to-<peer>` (signal name = task id, after the sender's
//! task) receives it, so every message is an event of the run. Round r + 1 of an agent
//! starts once its own round r and every message to it are in, and reads them as
//! `inbox` (peer → payload). After `max_rounds`, `conclude` gathers each agent's last
//! answer. A signal sent before its task is reached is kept for it.
//!
//! Parameters: `name` (required), `agents` (2–8 distinct roles, required), `max_rounds`
//! (1–5, default 2), `timeout_seconds` (1–86400, optional: each agent attempt's limit
//! and each message's wait).
//!
//! What the agents see: `action: "message"` with `me`, `peers`, `task`, `round`,
//! `max_rounds`, `inbox`, and `send` (peer → signal name; empty in the last round):
//! they send each signal (payload: the message), then answer with any output.

use serde_json::{json, Map, Value};

use super::build::{agent, definition, task};
use super::params::{ParameterError, Params};
use super::Expansion;
use crate::definition::{TaskKind, TaskSpec};

/// Most rounds of messages.
pub const MAX_ROUNDS: u32 = 5;

/// The expansion of `params`, or every bad parameter.
pub fn expand(params: &Value) -> Result<Expansion, Vec<ParameterError>> {
    let mut p = Params::new(params);
    let name = p.name();
    let agents = p.roles("agents", 2, 8, true);
    let rounds = p.count("max_rounds", Some(2), 1, MAX_ROUNDS);
    let timeout = p.optional("timeout_seconds", 1, 86_400);
    p.finish()?;
    let message = |r: u32, from: &str, to: &str| format!("r{r}-{from}-to-{to}");
    let mut tasks: Vec<TaskSpec> = Vec::new();
    for r in 1..=rounds {
        for me in &agents {
            let peers: Vec<&String> = agents.iter().filter(|a| *a != me).collect();
            let mut inbox = Map::new();
            let mut after = Vec::new();
            if r > 1 {
                after.push(format!("r{}-{me}", r - 1));
                for peer in &peers {
                    let id = message(r - 1, peer, me);
                    inbox.insert(
                        (*peer).clone(),
                        Value::String(format!("${{tasks.{id}.output}}")),
                    );
                    after.push(id);
                }
            }
            let send: Map<String, Value> = if r < rounds {
                peers
                    .iter()
                    .map(|peer| ((*peer).clone(), Value::String(message(r, me, peer))))
                    .collect()
            } else {
                Map::new()
            };
            let after: Vec<&str> = after.iter().map(String::as_str).collect();
            let id = format!("r{r}-{me}");
            tasks.push(agent(
                &id,
                me,
                &after,
                json!({"pattern": "network", "action": "message", "me": me, "peers": peers,
                       "task": "${input.task}", "round": r, "max_rounds": rounds,
                       "inbox": inbox, "send": send}),
                timeout,
            ));
            for signal in send.values().filter_map(Value::as_str) {
                tasks.push(TaskSpec {
                    timeout_seconds: timeout.map(u64::from),
                    ..task(signal, TaskKind::Signal, &[id.as_str()], Value::Null)
                });
            }
        }
    }
    let finals: Map<String, Value> = agents
        .iter()
        .map(|a| {
            (
                a.clone(),
                Value::String(format!("${{tasks.r{rounds}-{a}.output}}")),
            )
        })
        .collect();
    let last: Vec<String> = agents.iter().map(|a| format!("r{rounds}-{a}")).collect();
    let last: Vec<&str> = last.iter().map(String::as_str).collect();
    tasks.push(task(
        "conclude",
        TaskKind::Noop,
        &last,
        json!({"rounds": rounds, "final": finals}),
    ));
    let roles: Vec<&str> = agents.iter().map(String::as_str).collect();
    let description = format!(
        "network of {} agents ({}) exchanging messages as signals for {rounds} rounds",
        agents.len(),
        agents.join(", ")
    );
    Ok(Expansion {
        pattern: "network",
        workflows: vec![definition(&name, "network", description, &roles, tasks)],
        main: name,
    })
}
