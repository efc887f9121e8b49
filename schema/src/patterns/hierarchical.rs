//! `hierarchical`: a supervisor whose steps are themselves supervised teams, to a
//! bounded depth.
//!
//! Level 1 is the main workflow `<name>`; level d is `<name>-level-<d>`. A level above
//! the last has its supervisor plan exactly `branches` steps, hands step i to a
//! `workflow` task `team-<i>` running level d + 1 with `{"task": <step i>}`, and
//! reviews the teams' results once. The last level (`depth`) is a [`super::supervisor`]
//! team — plan, workers over a `map`, review, up to `max_rounds` rounds — so the work
//! itself is done by workers only at the bottom. Workflows in all: `depth - 1` levels
//! plus the bottom team's rounds; runs nest at most `depth - 1 + max_rounds - 1` deep
//! (at most 7, within the server's default depth limit of 10).
//!
//! Parameters: `name` (required), `supervisor`, `worker`, `depth` (1–4, default 2),
//! `branches` (1–5, default 2), and the bottom team's `max_rounds` (default 1),
//! `max_steps`, `max_parallel`, `timeout_seconds` (as for `supervisor`).
//!
//! What the agents see: a level's supervisor gets `plan` with `branches` (answer exactly
//! that many `steps`; a missing step reaches its team as `null`) and `review` with the
//! teams' `results`; the bottom team is a supervisor team.

use serde_json::{json, Value};

use super::build::{agent, child, definition, task};
use super::params::{ParameterError, Params};
use super::supervisor::{team_params, Team};
use super::Expansion;
use crate::definition::{TaskKind, WorkflowDefinition};

/// Most levels of supervisors.
pub const MAX_DEPTH: u32 = 4;
/// Most sub-teams of one supervisor.
pub const MAX_BRANCHES: u32 = 5;

/// The expansion of `params`, or every bad parameter.
pub fn expand(params: &Value) -> Result<Expansion, Vec<ParameterError>> {
    let mut p = Params::new(params);
    let name = p.name();
    let depth = p.count("depth", Some(2), 1, MAX_DEPTH);
    let branches = p.count("branches", Some(2), 1, MAX_BRANCHES);
    let bottom = level_name(&name, depth);
    let team = team_params(&mut p, bottom, "hierarchical", 1);
    p.finish()?;
    let mut workflows = team.workflows();
    for d in (1..depth).rev() {
        workflows.push(level(&name, d, depth, branches, &team));
    }
    Ok(Expansion {
        pattern: "hierarchical",
        main: name,
        workflows,
    })
}

/// The workflow of level `d` (1 is the main one, named `name`).
pub fn level_name(name: &str, d: u32) -> String {
    if d == 1 {
        name.to_owned()
    } else {
        format!("{name}-level-{d}")
    }
}

fn level(name: &str, d: u32, depth: u32, branches: u32, team: &Team) -> WorkflowDefinition {
    let supervisor = team.supervisor.as_str();
    let plan = agent(
        "plan",
        supervisor,
        &[],
        json!({"pattern": "hierarchical", "action": "plan", "task": "${input.task}",
               "feedback": null, "level": d, "depth": depth, "branches": branches,
               "max_steps": branches, "round": 1, "max_rounds": 1}),
        team.timeout_seconds,
    );
    let next = level_name(name, d + 1);
    let teams: Vec<String> = (0..branches).map(|i| format!("team-{i}")).collect();
    let mut tasks = vec![plan];
    for (i, id) in teams.iter().enumerate() {
        tasks.push(child(
            id,
            &next,
            &["plan"],
            json!({"task": format!("${{tasks.plan.output.steps.{i}}}")}),
        ));
    }
    let results: Vec<Value> = teams
        .iter()
        .map(|id| Value::String(format!("${{tasks.{id}.output}}")))
        .collect();
    let after: Vec<&str> = teams.iter().map(String::as_str).collect();
    tasks.push(agent(
        "review",
        supervisor,
        &after,
        json!({"pattern": "hierarchical", "action": "review", "task": "${input.task}",
               "steps": "${tasks.plan.output.steps}", "results": results, "level": d,
               "round": 1, "max_rounds": 1, "last_round": true}),
        team.timeout_seconds,
    ));
    tasks.push(task(
        "accepted",
        TaskKind::Noop,
        &["review"],
        json!({"verdict": "${tasks.review.output.verdict}",
               "result": "${tasks.review.output.result}", "level": d}),
    ));
    let description = format!(
        "hierarchical level {d} of {depth}: {supervisor} splits the task into {branches} steps, \
         each run by {next}, and reviews their results"
    );
    definition(
        &level_name(name, d),
        "hierarchical",
        description,
        &[supervisor],
        tasks,
    )
}
