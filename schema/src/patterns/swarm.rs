//! `swarm`: N agents work on the same input in parallel, then one task votes on or
//! merges their answers.
//!
//! One workflow `<name>`: `agent-0` … `agent-<N-1>` (one `agent` task per entry of
//! `agents`, all roots, so they run at once), then `aggregate`, an agent task of the
//! `aggregator` role given every answer in order.
//!
//! Parameters: `name` (required), `agents` (2–32 roles, repeats allowed: one task
//! each), `aggregate` (`"vote"` or `"merge"`, default `"vote"`), `aggregator` (role,
//! default the first of `agents`), `timeout_seconds` (1–86400, optional).
//!
//! What the agents see: `action: "answer"` (`task`, `index`, `size`) → `{"answer"}`;
//! then `action: "vote"` or `"merge"` with `answers` → `{"result", ...}` (a vote also
//! gives `votes`: answer → count).

use serde_json::{json, Value};

use super::build::{agent, definition};
use super::params::{ParameterError, Params};
use super::Expansion;

/// The expansion of `params`, or every bad parameter.
pub fn expand(params: &Value) -> Result<Expansion, Vec<ParameterError>> {
    let mut p = Params::new(params);
    let name = p.name();
    let agents = p.roles("agents", 2, 32, false);
    let aggregate = p.choice("aggregate", &["vote", "merge"], "vote");
    let aggregator = p.role(
        "aggregator",
        Some(agents.first().map_or("", String::as_str)),
    );
    let timeout = p.optional("timeout_seconds", 1, 86_400);
    p.finish()?;
    let size = agents.len();
    let mut tasks = Vec::with_capacity(size + 1);
    let mut answers = Vec::with_capacity(size);
    let ids: Vec<String> = (0..size).map(|i| format!("agent-{i}")).collect();
    for (i, (id, role)) in ids.iter().zip(&agents).enumerate() {
        tasks.push(agent(
            id,
            role,
            &[],
            json!({"pattern": "swarm", "action": "answer", "task": "${input.task}",
                   "index": i, "size": size}),
            timeout,
        ));
        answers.push(Value::String(format!("${{tasks.{id}.output}}")));
    }
    let after: Vec<&str> = ids.iter().map(String::as_str).collect();
    tasks.push(agent(
        "aggregate",
        &aggregator,
        &after,
        json!({"pattern": "swarm", "action": aggregate, "task": "${input.task}",
               "answers": answers}),
        timeout,
    ));
    let mut roles: Vec<&str> = agents.iter().map(String::as_str).collect();
    roles.push(&aggregator);
    let description = format!(
        "swarm of {size} agents on one task, then {aggregator} does a {aggregate} of their answers"
    );
    Ok(Expansion {
        pattern: "swarm",
        workflows: vec![definition(&name, "swarm", description, &roles, tasks)],
        main: name,
    })
}
