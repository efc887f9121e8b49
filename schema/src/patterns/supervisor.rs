//! `supervisor`: a supervisor agent plans, a `map` hands each step of the plan to a
//! worker agent, and the supervisor reviews the results; a review that says
//! `"revise"` starts the next round, up to `max_rounds`.
//!
//! The loop is unrolled: round 1 is the main workflow `<name>`, round k > 1 is the
//! workflow `<name>-round-<k>`, and round k's `next-round` task (a `workflow` task,
//! chosen by a `switch` on the review's verdict) starts round k + 1. The last round
//! has no `next-round`: whatever its review says, the run ends there.
//!
//! Parameters: `name` (required), `supervisor` (role, default `"supervisor"`), `worker`
//! (role, default `"worker"`), `max_rounds` (1–5, default 3), `max_steps` (1–100,
//! default 5: most steps a plan should have, told to the supervisor), `max_parallel`
//! (1–100, optional: most workers at once), `timeout_seconds` (1–86400, optional: each
//! agent attempt's limit).
//!
//! What the agents see (`input.action`) and answer: `plan` → `{"steps": [...]}`;
//! `work` (one step: `step`, `index`) → any output; `review` (`steps`, `results`,
//! `round`, `last_round`) → `{"verdict": "accept" | "revise", "feedback", "result"}`.

use serde_json::{json, Value};

use super::build::{agent, child, definition, output_is, switch, task};
use super::params::{ParameterError, Params};
use super::Expansion;
use crate::definition::{CompensationSpec, TaskKind, TaskSpec, WorkflowDefinition};

/// Most rounds a supervisor loop may have.
pub const MAX_ROUNDS: u32 = 5;

/// One supervised team: the parameters of a supervisor loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Team {
    /// The name of round 1; later rounds add `-round-<k>`.
    pub name: String,
    /// The value of each definition's `pattern` field.
    pub pattern: &'static str,
    /// The supervisor's role.
    pub supervisor: String,
    /// The workers' role.
    pub worker: String,
    /// Rounds at most (1 to [`MAX_ROUNDS`]).
    pub max_rounds: u32,
    /// Most steps a plan should have (told to the supervisor).
    pub max_steps: u32,
    /// Most workers at once.
    pub max_parallel: Option<u32>,
    /// Each agent attempt's limit, in seconds.
    pub timeout_seconds: Option<u32>,
}

/// Reads the team parameters shared with `hierarchical` (all but `name`).
pub(crate) fn team_params(
    p: &mut Params<'_>,
    name: String,
    pattern: &'static str,
    rounds: u32,
) -> Team {
    Team {
        name,
        pattern,
        supervisor: p.role("supervisor", Some("supervisor")),
        worker: p.role("worker", Some("worker")),
        max_rounds: p.count("max_rounds", Some(rounds), 1, MAX_ROUNDS),
        max_steps: p.count("max_steps", Some(5), 1, 100),
        max_parallel: p.optional("max_parallel", 1, 100),
        timeout_seconds: p.optional("timeout_seconds", 1, 86_400),
    }
}

/// The expansion of `params`, or every bad parameter.
pub fn expand(params: &Value) -> Result<Expansion, Vec<ParameterError>> {
    let mut p = Params::new(params);
    let name = p.name();
    let team = team_params(&mut p, name, "supervisor", 3);
    p.finish()?;
    Ok(Expansion {
        pattern: "supervisor",
        main: team.name.clone(),
        workflows: team.workflows(),
    })
}

impl Team {
    /// The name of round `k` (1-based): the team's name for round 1.
    pub fn round_name(&self, k: u32) -> String {
        if k == 1 {
            self.name.clone()
        } else {
            format!("{}-round-{k}", self.name)
        }
    }

    /// Every round's definition, the last round first and round 1 (the team's entry)
    /// last: each after the round it starts.
    pub fn workflows(&self) -> Vec<WorkflowDefinition> {
        (1..=self.max_rounds).rev().map(|k| self.round(k)).collect()
    }

    fn round(&self, k: u32) -> WorkflowDefinition {
        let last = k == self.max_rounds;
        let (pattern, n) = (self.pattern, self.max_rounds);
        let plan = agent(
            "plan",
            &self.supervisor,
            &[],
            json!({"pattern": pattern, "action": "plan", "task": "${input.task}",
                   "feedback": "${input.feedback}", "round": k, "max_rounds": n,
                   "max_steps": self.max_steps}),
            self.timeout_seconds,
        );
        let work = TaskSpec {
            items: Some(Value::String("${tasks.plan.output.steps}".to_owned())),
            template: Some(CompensationSpec {
                kind: TaskKind::Agent,
                agent_role: Some(self.worker.clone()),
                input: json!({"pattern": pattern, "action": "work", "task": "${input.task}",
                              "step": "${item}", "index": "${index}", "round": k}),
                http: None,
                sleep_ms: None,
                retry: None,
                timeout_seconds: self.timeout_seconds.map(u64::from),
                rate_limit: None,
            }),
            max_parallel: self.max_parallel,
            ..task("work", TaskKind::Map, &["plan"], Value::Null)
        };
        let review = agent(
            "review",
            &self.supervisor,
            &["work"],
            json!({"pattern": pattern, "action": "review", "task": "${input.task}",
                   "steps": "${tasks.plan.output.steps}", "results": "${tasks.work.output}",
                   "round": k, "max_rounds": n, "last_round": last}),
            self.timeout_seconds,
        );
        let mut tasks = vec![plan, work, review];
        let outcome = |verdict: Value| {
            json!({"verdict": verdict, "result": "${tasks.review.output.result}", "round": k,
                   "max_rounds": n})
        };
        if last {
            tasks.push(task(
                "accepted",
                TaskKind::Noop,
                &["review"],
                outcome(json!("${tasks.review.output.verdict}")),
            ));
        } else {
            tasks.push(switch(
                "decide",
                "review",
                vec![(
                    output_is("review", "verdict", "revise"),
                    "next-round".to_owned(),
                )],
                "accepted",
            ));
            tasks.push(child(
                "next-round",
                &self.round_name(k + 1),
                &["decide"],
                json!({"task": "${input.task}", "feedback": "${tasks.review.output.feedback}",
                       "previous": "${tasks.review.output.result}"}),
            ));
            tasks.push(task(
                "accepted",
                TaskKind::Noop,
                &["decide"],
                outcome(json!("accept")),
            ));
        }
        let description = format!(
            "{} round {k} of at most {n}: {} plans, a {} agent does each step, {} reviews{}",
            self.pattern,
            self.supervisor,
            self.worker,
            self.supervisor,
            if last {
                String::new()
            } else {
                format!("; \"revise\" starts {}", self.round_name(k + 1))
            }
        );
        let roles = [self.supervisor.as_str(), self.worker.as_str()];
        definition(&self.round_name(k), pattern, description, &roles, tasks)
    }
}
