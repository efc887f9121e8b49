//! Small constructors of tasks and definitions the pattern modules share, so each
//! module reads as the shape it builds.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::definition::{
    AgentSpec, ChildWorkflow, FailurePolicy, OnFailure, SwitchCase, TaskKind, TaskSpec,
    TriggerRule, WorkflowDefinition,
};

/// A task of `kind` with every optional field empty.
pub(crate) fn task(id: &str, kind: TaskKind, depends_on: &[&str], input: Value) -> TaskSpec {
    TaskSpec {
        id: id.to_owned(),
        kind,
        depends_on: depends_on.iter().map(|d| (*d).to_owned()).collect(),
        input,
        agent_role: None,
        timeout_seconds: None,
        retry: None,
        compensate: None,
        http: None,
        sleep_ms: None,
        when: None,
        trigger_rule: TriggerRule::AllSuccess,
        cases: Vec::new(),
        default_next: None,
        items: None,
        template: None,
        max_parallel: None,
        failure_policy: FailurePolicy::FailFast,
        signal: None,
        approvers: None,
        workflow: None,
        requires: Vec::new(),
        priority: None,
        rate_limit: None,
        hooks: None,
    }
}

/// An `agent` task of `role`, with an attempt limit when given.
pub(crate) fn agent(
    id: &str,
    role: &str,
    depends_on: &[&str],
    input: Value,
    timeout_seconds: Option<u32>,
) -> TaskSpec {
    TaskSpec {
        agent_role: Some(role.to_owned()),
        timeout_seconds: timeout_seconds.map(u64::from),
        ..task(id, TaskKind::Agent, depends_on, input)
    }
}

/// A `workflow` task starting the latest version of `workflow` with `input`.
pub(crate) fn child(id: &str, workflow: &str, depends_on: &[&str], input: Value) -> TaskSpec {
    TaskSpec {
        workflow: Some(ChildWorkflow {
            name: workflow.to_owned(),
            version: None,
        }),
        ..task(id, TaskKind::Workflow, depends_on, input)
    }
}

/// A `switch` after `after`: `cases` as (CEL condition, tasks), else `default`.
pub(crate) fn switch(
    id: &str,
    after: &str,
    cases: Vec<(String, String)>,
    default: &str,
) -> TaskSpec {
    TaskSpec {
        cases: cases
            .into_iter()
            .map(|(when, next)| SwitchCase {
                when,
                next: vec![next],
            })
            .collect(),
        default_next: Some(vec![default.to_owned()]),
        ..task(id, TaskKind::Switch, &[after], Value::Null)
    }
}

/// A definition named `name` of `pattern`, expecting agents of `roles`.
pub(crate) fn definition(
    name: &str,
    pattern: &str,
    description: String,
    roles: &[&str],
    tasks: Vec<TaskSpec>,
) -> WorkflowDefinition {
    let agents: BTreeMap<String, AgentSpec> = roles
        .iter()
        .map(|r| ((*r).to_owned(), AgentSpec::default()))
        .collect();
    WorkflowDefinition {
        name: name.to_owned(),
        description: Some(description),
        pattern: Some(pattern.to_owned()),
        agents,
        on_failure: OnFailure::Fail,
        timeout_seconds: None,
        concurrency: None,
        tasks,
    }
}

/// A CEL condition that holds when task `id`'s output field `field` equals `value`
/// (false, not an error, when the field is missing).
pub(crate) fn output_is(id: &str, field: &str, value: &str) -> String {
    let value = serde_json::to_string(value).unwrap_or_default();
    format!("has(tasks[\"{id}\"].output.{field}) && tasks[\"{id}\"].output.{field} == {value}")
}
