//! Every pattern's expansion: its shape, its bounds, that every definition validates,
//! and that bad parameters are all named.

use serde_json::{json, Value};

use super::*;
use crate::condition::evaluate;
use crate::definition::{TaskKind, WorkflowDefinition};
use crate::validate::{validate, Limits};

fn ok(pattern: &str, params: Value) -> Expansion {
    let expansion = expand(pattern, &params).unwrap_or_else(|e| panic!("{pattern}: {e}"));
    assert_eq!(expansion.pattern, pattern);
    let last = expansion.workflows.last().expect("a workflow");
    assert_eq!(last.name, expansion.main, "the main workflow comes last");
    // Every definition validates, and names only workflows created before it.
    let mut created: Vec<&str> = Vec::new();
    for def in &expansion.workflows {
        assert_eq!(def.pattern.as_deref(), Some(pattern));
        let valid = validate(def.clone(), &Limits::default())
            .unwrap_or_else(|e| panic!("{} does not validate: {e}", def.name));
        for (task, child) in valid.child_workflows() {
            assert!(
                created.contains(&child.name.as_str()),
                "{}.{task} names {} before it exists",
                def.name,
                child.name
            );
        }
        assert!(!created.contains(&def.name.as_str()), "{} twice", def.name);
        created.push(&def.name);
    }
    expansion
}

fn invalid(pattern: &str, params: Value) -> Vec<String> {
    match expand(pattern, &params) {
        Err(PatternError::Invalid { errors, .. }) => errors.into_iter().map(|e| e.field).collect(),
        other => panic!("{pattern} {params}: expected invalid, got {other:?}"),
    }
}

fn named<'a>(expansion: &'a Expansion, name: &str) -> &'a WorkflowDefinition {
    expansion
        .workflows
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no workflow {name}"))
}

fn ids(def: &WorkflowDefinition) -> Vec<&str> {
    def.tasks.iter().map(|t| t.id.as_str()).collect()
}

fn children(def: &WorkflowDefinition) -> Vec<&str> {
    def.tasks
        .iter()
        .filter_map(|t| Some(t.workflow.as_ref()?.name.as_str()))
        .collect()
}

#[test]
fn supervisor_unrolls_its_rounds_into_a_bounded_chain() {
    let e = ok(
        "supervisor",
        json!({"name": "research", "max_rounds": 3, "max_parallel": 4}),
    );
    let names: Vec<&str> = e.workflows.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["research-round-3", "research-round-2", "research"]);
    let first = named(&e, "research");
    assert_eq!(
        ids(first),
        ["plan", "work", "review", "decide", "next-round", "accepted"]
    );
    assert_eq!(children(first), ["research-round-2"]);
    let work = &first.tasks[1];
    assert_eq!(work.kind, TaskKind::Map);
    assert_eq!(work.max_parallel, Some(4));
    assert_eq!(work.items, Some(json!("${tasks.plan.output.steps}")));
    assert_eq!(
        children(named(&e, "research-round-2")),
        ["research-round-3"]
    );
    let last = named(&e, "research-round-3");
    assert_eq!(
        ids(last),
        ["plan", "work", "review", "accepted"],
        "the last round loops no more"
    );
    assert_eq!(last.tasks[2].input["last_round"], true);
    assert!(first.agents.contains_key("supervisor") && first.agents.contains_key("worker"));
}

#[test]
fn one_round_is_one_workflow() {
    let e = ok(
        "supervisor",
        json!({"name": "s", "max_rounds": 1, "supervisor": "boss"}),
    );
    assert_eq!(e.workflows.len(), 1);
    assert_eq!(e.workflows[0].tasks[0].agent_role.as_deref(), Some("boss"));
}

#[test]
fn the_revise_condition_reads_the_verdict_and_tolerates_its_absence() {
    let when = build::output_is("review", "verdict", "revise");
    let with = |output: Value| evaluate(&when, &json!({}), &|_| Some(output.clone()));
    assert_eq!(with(json!({"verdict": "revise"})), Ok(true));
    assert_eq!(with(json!({"verdict": "accept"})), Ok(false));
    assert_eq!(with(json!({"result": 1})), Ok(false));
}

#[test]
fn supervisor_parameters_are_all_named() {
    let mut bad = invalid(
        "supervisor",
        json!({"max_rounds": 0, "max_steps": "many", "worker": "a b", "colour": "red"}),
    );
    bad.sort();
    assert_eq!(bad, ["colour", "max_rounds", "max_steps", "name", "worker"]);
    assert_eq!(
        invalid("supervisor", json!({"name": "s", "max_rounds": 6})),
        ["max_rounds"]
    );
    assert_eq!(invalid("supervisor", json!([1])), ["body", "name"]);
}

#[test]
fn hierarchical_nests_supervised_teams_to_its_depth() {
    let e = ok(
        "hierarchical",
        json!({"name": "org", "depth": 3, "branches": 3, "max_rounds": 2}),
    );
    let names: Vec<&str> = e.workflows.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        ["org-level-3-round-2", "org-level-3", "org-level-2", "org"]
    );
    let top = named(&e, "org");
    assert_eq!(
        ids(top),
        ["plan", "team-0", "team-1", "team-2", "review", "accepted"]
    );
    assert_eq!(children(top), ["org-level-2"; 3]);
    assert_eq!(
        top.tasks[1].input,
        json!({"task": "${tasks.plan.output.steps.0}"})
    );
    assert_eq!(top.tasks[0].input["branches"], 3);
    assert_eq!(children(named(&e, "org-level-2")), ["org-level-3"; 3]);
    assert_eq!(children(named(&e, "org-level-3")), ["org-level-3-round-2"]);
    let one = ok("hierarchical", json!({"name": "flat", "depth": 1}));
    assert_eq!(one.workflows.len(), 1, "depth 1 is one supervised team");
    let mut bad = invalid(
        "hierarchical",
        json!({"name": "", "depth": 5, "branches": 0}),
    );
    bad.sort();
    assert_eq!(bad, ["branches", "depth", "name"]);
}

#[test]
fn handoff_is_a_chain_of_hops_chosen_by_each_output() {
    let e = ok(
        "handoff",
        json!({"name": "desk", "roles": ["triage", "billing", "tech"], "max_hops": 3}),
    );
    assert_eq!(e.workflows.len(), 1 + 3 * 2);
    let first = named(&e, "desk");
    assert_eq!(first.tasks[0].agent_role.as_deref(), Some("triage"));
    assert_eq!(
        ids(first),
        ["act", "route", "to-triage", "to-billing", "to-tech", "done"]
    );
    assert_eq!(
        children(first),
        ["desk-hop-2-triage", "desk-hop-2-billing", "desk-hop-2-tech"]
    );
    let route = &first.tasks[1];
    assert_eq!(route.cases.len(), 3);
    assert_eq!(route.default_next, Some(vec!["done".to_owned()]));
    let last = named(&e, "desk-hop-3-tech");
    assert_eq!(ids(last), ["act", "done"], "the hop limit ends the chain");
    assert_eq!(last.tasks[0].input["last_hop"], true);
    let started = ok(
        "handoff",
        json!({"name": "d", "roles": ["a", "b"], "start": "b", "max_hops": 1}),
    );
    assert_eq!(started.workflows.len(), 1);
    assert_eq!(
        started.workflows[0].tasks[0].agent_role.as_deref(),
        Some("b")
    );
    let mut bad = invalid(
        "handoff",
        json!({"name": "d", "roles": ["a", "a"], "start": "c", "max_hops": 11}),
    );
    bad.sort();
    assert_eq!(bad, ["max_hops", "roles[1]", "start"]);
    assert_eq!(invalid("handoff", json!({"name": "d"})), ["roles"]);
}

#[test]
fn swarm_runs_its_agents_at_once_then_aggregates() {
    let e = ok(
        "swarm",
        json!({"name": "panel", "agents": ["a", "b", "a"], "aggregate": "merge", "aggregator": "judge"}),
    );
    let def = &e.workflows[0];
    assert_eq!(ids(def), ["agent-0", "agent-1", "agent-2", "aggregate"]);
    assert!(def.tasks[..3].iter().all(|t| t.depends_on.is_empty()));
    let aggregate = &def.tasks[3];
    assert_eq!(aggregate.agent_role.as_deref(), Some("judge"));
    assert_eq!(aggregate.depends_on, ["agent-0", "agent-1", "agent-2"]);
    assert_eq!(aggregate.input["action"], "merge");
    assert_eq!(aggregate.input["answers"][2], "${tasks.agent-2.output}");
    let voted = ok("swarm", json!({"name": "v", "agents": ["x", "y"]}));
    assert_eq!(voted.workflows[0].tasks[2].input["action"], "vote");
    assert_eq!(voted.workflows[0].tasks[2].agent_role.as_deref(), Some("x"));
    let mut bad = invalid(
        "swarm",
        json!({"name": "v", "agents": ["x"], "aggregate": "average"}),
    );
    bad.sort();
    assert_eq!(bad, ["agents", "aggregate"]);
}

#[test]
fn network_exchanges_messages_as_signals_for_its_rounds() {
    let e = ok(
        "network",
        json!({"name": "net", "agents": ["alice", "bob", "carol"], "max_rounds": 2, "timeout_seconds": 60}),
    );
    let def = &e.workflows[0];
    // 2 rounds × 3 agents, 3 × 2 messages in round 1, and the conclusion.
    assert_eq!(def.tasks.len(), 6 + 6 + 1);
    let signals: Vec<&str> = def
        .tasks
        .iter()
        .filter(|t| t.kind == TaskKind::Signal)
        .map(|t| t.id.as_str())
        .collect();
    assert_eq!(signals.len(), 6);
    assert!(signals.contains(&"r1-alice-to-bob"));
    let bob2 = def.tasks.iter().find(|t| t.id == "r2-bob").expect("r2-bob");
    assert_eq!(
        bob2.depends_on,
        ["r1-bob", "r1-alice-to-bob", "r1-carol-to-bob"]
    );
    assert_eq!(
        bob2.input["inbox"]["alice"],
        "${tasks.r1-alice-to-bob.output}"
    );
    assert_eq!(
        bob2.input["send"],
        json!({}),
        "nobody sends in the last round"
    );
    let alice1 = def
        .tasks
        .iter()
        .find(|t| t.id == "r1-alice")
        .expect("r1-alice");
    assert_eq!(
        alice1.input["send"],
        json!({"bob": "r1-alice-to-bob", "carol": "r1-alice-to-carol"})
    );
    let conclude = def.tasks.last().expect("conclude");
    assert_eq!(conclude.depends_on, ["r2-alice", "r2-bob", "r2-carol"]);
    let mut bad = invalid(
        "network",
        json!({"name": "n", "agents": ["a", "a.b"], "max_rounds": 9}),
    );
    bad.sort();
    assert_eq!(bad, ["agents[1]", "max_rounds"]);
}

#[test]
fn unknown_patterns_are_not_found() {
    assert_eq!(
        expand("committee", &json!({"name": "x"})),
        Err(PatternError::Unknown("committee".to_owned()))
    );
    for pattern in PATTERNS {
        assert!(matches!(
            expand(pattern, &json!({})),
            Err(PatternError::Invalid { .. })
        ));
    }
}

#[test]
fn expansion_is_pure() {
    let params = json!({"name": "p", "roles": ["a", "b"], "max_hops": 4});
    assert_eq!(expand("handoff", &params), expand("handoff", &params));
}

#[test]
fn the_largest_expansions_stay_valid() {
    let roles: Vec<String> = (0..8).map(|i| format!("role-{i}")).collect();
    let e = ok(
        "handoff",
        json!({"name": "big", "roles": roles, "max_hops": 10}),
    );
    assert_eq!(e.workflows.len(), 1 + 8 * 9);
    ok(
        "network",
        json!({"name": "big", "agents": roles, "max_rounds": 5}),
    );
    ok(
        "hierarchical",
        json!({"name": "big", "depth": 4, "branches": 5, "max_rounds": 5}),
    );
    let long = "n".repeat(params::MAX_NAME_CHARS);
    ok("supervisor", json!({"name": long, "max_rounds": 5}));
}
