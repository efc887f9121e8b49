//! Workflow definitions: parsing, validation (every 422 code with its details),
//! `${...}` references, retry delays, and the size and shape properties the engine
//! relies on (big graphs validate fast and without recursion; random DAGs validate;
//! any back edge is reported as an actual cycle).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use conflux_schema::definition::{
    references, resolve, reveal, OnFailure, Reference, RetryPolicy, TaskSpec, WorkflowDefinition,
};
use conflux_schema::validate::{validate, Limits, ValidatedWorkflow, ValidationError};
use proptest::prelude::*;
use serde_json::{json, Value};

const API_EXAMPLE: &str = r#"{
  "name": "order-fulfilment",
  "description": "optional",
  "pattern": "custom",
  "agents": {"picker": {"capabilities": ["warehouse"]}},
  "on_failure": "fail",
  "timeout_seconds": 3600,
  "tasks": [
    {"id": "reserve", "kind": "agent", "agent_role": "picker",
     "input": {"order": "${input.order_id}"},
     "timeout_seconds": 30,
     "retry": {"max_attempts": 3, "initial_interval_ms": 100, "backoff_coefficient": 2.0, "max_interval_ms": 10000},
     "compensate": {"kind": "agent", "agent_role": "picker", "input": {"release": "${tasks.reserve.output.reservation}"}}},
    {"id": "charge", "kind": "http", "depends_on": ["reserve"],
     "http": {"method": "POST", "url": "http://127.0.0.1:9000/charge", "body": {"amount": "${input.amount}"}}},
    {"id": "wait", "kind": "sleep", "depends_on": ["charge"], "sleep_ms": 50},
    {"id": "done", "kind": "noop", "depends_on": ["wait"]}
  ]
}"#;

fn definition(tasks: Value) -> WorkflowDefinition {
    serde_json::from_value(json!({"name": "wf", "tasks": tasks})).expect("well-formed definition")
}

fn check(tasks: Value) -> Result<ValidatedWorkflow, ValidationError> {
    validate(definition(tasks), &Limits::default())
}

/// The code and details of the error `tasks` must produce.
fn rejection(tasks: Value) -> (&'static str, Value) {
    let error = check(tasks).expect_err("definition must be rejected");
    (error.code(), error.details())
}

/// The reason of the `invalid_task` error `tasks` must produce for task `task`.
fn invalid_task_reason(tasks: Value, task: &str) -> String {
    let (code, details) = rejection(tasks);
    assert_eq!(code, "invalid_task", "details: {details}");
    assert_eq!(details["task"], task);
    details["reason"].as_str().expect("reason").to_owned()
}

fn noop(id: String, depends_on: Vec<String>) -> TaskSpec {
    serde_json::from_value(json!({"id": id, "kind": "noop", "depends_on": depends_on}))
        .expect("a noop task")
}

fn named(tasks: Vec<TaskSpec>) -> WorkflowDefinition {
    WorkflowDefinition {
        name: "generated".to_owned(),
        description: None,
        pattern: None,
        agents: Default::default(),
        on_failure: OnFailure::Fail,
        timeout_seconds: None,
        concurrency: None,
        tasks,
    }
}

#[test]
fn the_api_example_parses_round_trips_and_validates() {
    let def: WorkflowDefinition = serde_json::from_str(API_EXAMPLE).expect("parses");
    assert_eq!(def.tasks.len(), 4);
    assert_eq!(def.agents["picker"].capabilities, vec!["warehouse"]);
    let retry = def.tasks[0].retry.clone().expect("retry");
    assert_eq!(retry.max_attempts, 3);

    let again: WorkflowDefinition =
        serde_json::from_value(serde_json::to_value(&def).expect("serializes")).expect("parses");
    assert_eq!(again, def);

    let wf = validate(def.clone(), &Limits::default()).expect("valid");
    assert_eq!(wf.name().as_str(), "order-fulfilment");
    assert_eq!(wf.definition(), &def);
    let ids: Vec<&str> = wf.task_ids().iter().map(|id| id.as_str()).collect();
    assert_eq!(ids, ["reserve", "charge", "wait", "done"]);
    assert_eq!(wf.roots(), [0]);
    assert_eq!(wf.sinks(), [3]);
    assert_eq!(wf.dependencies(1), [0]);
    assert_eq!(wf.dependents(1), [2]);
    assert_eq!(wf.in_degrees(), [0, 1, 1, 1]);
    assert_eq!(wf.index_of_str("wait"), Some(2));
    assert_eq!(wf.index_of_str("nope"), None);
}

#[test]
fn tasks_come_out_in_topological_order_with_repeated_dependencies_merged() {
    let wf = check(json!([
        {"id": "late", "kind": "noop", "depends_on": ["early", "early", "mid"],
         "input": "${tasks.early.output}"},
        {"id": "mid", "kind": "noop", "depends_on": ["early"]},
        {"id": "early", "kind": "noop"},
        {"id": "alone", "kind": "noop"}
    ]))
    .expect("valid");
    let ids: Vec<&str> = wf.tasks().iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["early", "mid", "late", "alone"]);
    assert_eq!(wf.definition().tasks.len(), 4);
    assert_eq!(wf.index_of_str("late"), Some(2));
    assert_eq!(wf.dependencies(2), [0, 1]);
    assert_eq!(wf.dependents(0), [1, 2]);
    assert_eq!(wf.in_degrees(), [0, 1, 2, 0]);
    assert_eq!(wf.roots(), [0, 3]);
    assert_eq!(wf.sinks(), [2, 3]);
    assert_consistent(&wf);
}

#[test]
fn a_reference_across_a_long_chain_is_upstream() {
    let mut def = chain(10_000);
    def.tasks[9_999].input = json!({"first": "${tasks.t0.output}"});
    assert!(validate(def, &Limits::default()).is_ok());
    let mut def = chain(10_000);
    def.tasks[0].input = json!({"last": "${tasks.t9999.output}"});
    let error = validate(def, &Limits::default()).expect_err("downstream reference");
    assert_eq!(error.code(), "invalid_task");
    assert_eq!(error.details()["task"], "t0");
}

#[test]
fn defaults_apply_and_unknown_fields_are_ignored() {
    let def: WorkflowDefinition = serde_json::from_value(json!({
        "name": "wf", "input": {"ignored": true}, "future_field": 1,
        "tasks": [
            {"id": "a", "kind": "noop", "future": "x"},
            {"id": "h", "kind": "http", "http": {"url": "https://example.test"}, "retry": {}}
        ]
    }))
    .expect("parses");
    assert_eq!(def.on_failure, OnFailure::Fail);
    assert!(def.agents.is_empty());
    assert!(def.tasks[0].depends_on.is_empty());
    assert_eq!(def.tasks[0].input, Value::Null);
    assert_eq!(def.tasks[0].retry_policy(), RetryPolicy::default());
    assert_eq!(def.tasks[0].retry_policy().max_attempts, 1);
    let http = def.tasks[1].http.clone().expect("http");
    assert_eq!(http.method, "GET");
    assert_eq!(def.tasks[1].retry, Some(RetryPolicy::default()));

    let written = serde_json::to_value(&def.tasks[0]).expect("serializes");
    assert_eq!(
        written,
        json!({"id": "a", "kind": "noop", "depends_on": []})
    );
}

#[test]
fn wrong_kinds_are_serde_errors() {
    let bad = json!({"name": "wf", "tasks": [{"id": "a", "kind": "teleport"}]});
    assert!(serde_json::from_value::<WorkflowDefinition>(bad).is_err());
    let bad = json!({"name": "wf", "on_failure": "retry", "tasks": []});
    assert!(serde_json::from_value::<WorkflowDefinition>(bad).is_err());
}

#[test]
fn a_three_task_cycle_reports_exactly_its_members_in_order() {
    let (code, details) = rejection(json!([
        {"id": "start", "kind": "noop"},
        {"id": "a", "kind": "noop", "depends_on": ["c", "start"]},
        {"id": "b", "kind": "noop", "depends_on": ["a"]},
        {"id": "c", "kind": "noop", "depends_on": ["b"]},
        {"id": "after", "kind": "noop", "depends_on": ["c"]}
    ]));
    assert_eq!(code, "cycle");
    assert_eq!(details, json!({"cycle": ["a", "b", "c"]}));
}

#[test]
fn a_self_dependency_is_a_cycle() {
    let (code, details) = rejection(json!([
        {"id": "a", "kind": "noop"},
        {"id": "b", "kind": "noop", "depends_on": ["a", "b"]}
    ]));
    assert_eq!(code, "cycle");
    assert_eq!(details, json!({"cycle": ["b"]}));
}

#[test]
fn unknown_dependency() {
    let (code, details) = rejection(json!([
        {"id": "x", "kind": "noop", "depends_on": ["y"]}
    ]));
    assert_eq!(code, "unknown_dependency");
    assert_eq!(details, json!({"task": "x", "dependency": "y"}));
}

#[test]
fn duplicate_task_id() {
    let (code, details) = rejection(json!([
        {"id": "x", "kind": "noop"},
        {"id": "x", "kind": "noop"}
    ]));
    assert_eq!(code, "duplicate_task_id");
    assert_eq!(details, json!({"task_id": "x"}));
}

#[test]
fn empty_workflow() {
    let (code, _) = rejection(json!([]));
    assert_eq!(code, "empty_workflow");
}

#[test]
fn too_many_tasks() {
    let def = definition(json!([
        {"id": "a", "kind": "noop"}, {"id": "b", "kind": "noop"}, {"id": "c", "kind": "noop"}
    ]));
    let error = validate(
        def,
        &Limits {
            max_tasks: 2,
            ..Limits::default()
        },
    )
    .expect_err("over the limit");
    assert_eq!(error.code(), "too_many_tasks");
    assert_eq!(error.details(), json!({"limit": 2, "count": 3}));
    assert!(error.to_string().contains("limit of 2"));
}

#[test]
fn a_bad_name_is_an_invalid_request() {
    let def: WorkflowDefinition =
        serde_json::from_value(json!({"name": "  ", "tasks": [{"id": "a", "kind": "noop"}]}))
            .expect("parses");
    let error = validate(def, &Limits::default()).expect_err("bad name");
    assert_eq!(error.code(), "invalid_request");
}

#[test]
fn a_bad_task_id_is_an_invalid_task() {
    invalid_task_reason(json!([{"id": "has space", "kind": "noop"}]), "has space");
    invalid_task_reason(json!([{"id": "", "kind": "noop"}]), "");
}

#[test]
fn each_kind_needs_its_fields() {
    let reason = invalid_task_reason(json!([{"id": "h", "kind": "http"}]), "h");
    assert!(reason.contains("http"), "{reason}");
    let reason = invalid_task_reason(
        json!([{"id": "h", "kind": "http", "http": {"method": "POST"}}]),
        "h",
    );
    assert!(reason.contains("http.url"), "{reason}");
    let reason = invalid_task_reason(
        json!([{"id": "h", "kind": "http", "http": {"url": "ftp://example.test/x"}}]),
        "h",
    );
    assert!(reason.contains("http.url"), "{reason}");
    invalid_task_reason(
        json!([{"id": "h", "kind": "http", "http": {"url": "http://"}}]),
        "h",
    );
    invalid_task_reason(
        json!([{"id": "h", "kind": "http", "http": {"method": "GET X", "url": "http://e.test"}}]),
        "h",
    );
    let reason = invalid_task_reason(json!([{"id": "g", "kind": "agent"}]), "g");
    assert!(reason.contains("agent_role"), "{reason}");
    let reason = invalid_task_reason(json!([{"id": "s", "kind": "sleep"}]), "s");
    assert!(reason.contains("sleep_ms"), "{reason}");
    invalid_task_reason(
        json!([{"id": "n", "kind": "noop", "timeout_seconds": 0}]),
        "n",
    );

    assert!(check(json!([
        {"id": "h", "kind": "http", "http": {"url": "HTTPS://example.test/${input.path}"}},
        {"id": "g", "kind": "agent", "agent_role": "picker"},
        {"id": "s", "kind": "sleep", "sleep_ms": 0}
    ]))
    .is_ok());
}

#[test]
fn retry_policies_must_make_sense() {
    let reason = invalid_task_reason(
        json!([{"id": "a", "kind": "noop", "retry": {"max_attempts": 0}}]),
        "a",
    );
    assert!(reason.contains("max_attempts"), "{reason}");
    let reason = invalid_task_reason(
        json!([{"id": "a", "kind": "noop", "retry": {"backoff_coefficient": 0.5}}]),
        "a",
    );
    assert!(reason.contains("backoff_coefficient"), "{reason}");

    let mut def = definition(json!([{"id": "a", "kind": "noop"}]));
    def.tasks[0].retry = Some(RetryPolicy {
        backoff_coefficient: f64::NAN,
        ..RetryPolicy::default()
    });
    let error = validate(def, &Limits::default()).expect_err("NaN coefficient");
    assert_eq!(error.code(), "invalid_task");
}

#[test]
fn task_references_must_name_upstream_tasks() {
    // A transitive ancestor is fine, in input, url, headers and body.
    assert!(check(json!([
        {"id": "a", "kind": "noop", "input": {"v": 1}},
        {"id": "b", "kind": "noop", "depends_on": ["a"]},
        {"id": "c", "kind": "http", "depends_on": ["b"],
         "input": "${tasks.a.output.v}",
         "http": {"url": "http://e.test/${tasks.b.output}", "headers": {"x": "${tasks.a.output}"},
                  "body": ["${tasks.a.output.v}"]}}
    ]))
    .is_ok());

    // A sibling is not upstream.
    let reason = invalid_task_reason(
        json!([
            {"id": "a", "kind": "noop"},
            {"id": "b", "kind": "noop", "input": "${tasks.a.output}"}
        ]),
        "b",
    );
    assert!(reason.contains("not an upstream dependency"), "{reason}");

    // Neither is a downstream task.
    let reason = invalid_task_reason(
        json!([
            {"id": "a", "kind": "noop", "input": {"x": "${tasks.b.output.x}"}},
            {"id": "b", "kind": "noop", "depends_on": ["a"]}
        ]),
        "a",
    );
    assert!(reason.contains("`b`"), "{reason}");

    // Nor the task itself, a missing task, or one named in a header or the url.
    invalid_task_reason(
        json!([{"id": "a", "kind": "noop", "input": "${tasks.a.output}"}]),
        "a",
    );
    invalid_task_reason(
        json!([{"id": "a", "kind": "noop", "input": "${tasks.z.output}"}]),
        "a",
    );
    invalid_task_reason(
        json!([
            {"id": "a", "kind": "noop"},
            {"id": "h", "kind": "http", "http": {"url": "http://e.test", "headers": {"k": "${tasks.a.output}"}}}
        ]),
        "h",
    );
    invalid_task_reason(
        json!([
            {"id": "a", "kind": "noop"},
            {"id": "h", "kind": "http", "http": {"url": "http://e.test/${tasks.a.output}"}}
        ]),
        "h",
    );
}

#[test]
fn unparseable_references_are_invalid_tasks() {
    for bad in [
        "${foo}",
        "${tasks.x}",
        "${input",
        "x ${input..a}",
        "${tasks.output}",
        "${}",
    ] {
        let reason = invalid_task_reason(
            json!([{"id": "a", "kind": "noop", "input": {"k": [bad]}}]),
            "a",
        );
        assert!(reason.starts_with("input"), "{bad}: {reason}");
    }
}

#[test]
fn compensations_follow_the_same_rules_and_may_name_their_task() {
    assert!(check(json!([
        {"id": "a", "kind": "noop"},
        {"id": "b", "kind": "noop", "depends_on": ["a"], "compensate": {"kind": "http",
         "http": {"url": "http://e.test/${tasks.b.output.id}", "body": "${tasks.a.output}"}}}
    ]))
    .is_ok());
    let reason = invalid_task_reason(
        json!([
            {"id": "a", "kind": "noop", "compensate": {"kind": "noop", "input": "${tasks.b.output}"}},
            {"id": "b", "kind": "noop", "depends_on": ["a"]}
        ]),
        "a",
    );
    assert!(reason.starts_with("compensate.input"), "{reason}");
    let reason = invalid_task_reason(
        json!([{"id": "a", "kind": "noop", "compensate": {"kind": "agent"}}]),
        "a",
    );
    assert!(reason.contains("compensate.agent_role"), "{reason}");
    invalid_task_reason(
        json!([{"id": "a", "kind": "noop", "compensate": {"kind": "noop", "retry": {"max_attempts": 0}}}]),
        "a",
    );
    invalid_task_reason(
        json!([{"id": "a", "kind": "noop", "compensate": {"kind": "noop", "input": "${bad}"}}]),
        "a",
    );
}

#[test]
fn references_are_found_everywhere() {
    let found = references(&json!({
        "a": "${input}", "b": ["x ${input.a.0} y ${tasks.t.1.output.z}", {"c": "${tasks.u.output}"}],
        "n": 1, "escaped": "$${input.not} $5"
    }))
    .expect("valid");
    assert_eq!(
        found,
        vec![
            Reference::Input(vec![]),
            Reference::Input(vec!["a".into(), "0".into()]),
            Reference::TaskOutput {
                task: "t.1".into(),
                path: vec!["z".into()]
            },
            Reference::TaskOutput {
                task: "u".into(),
                path: vec![]
            },
        ]
    );
    assert!(references(&json!(["${nope}"])).is_err());
}

#[test]
fn resolve_keeps_types_interpolates_and_follows_paths() {
    let input = json!({"n": 5, "obj": {"k": [10, 20]}, "s": "text"});
    let outputs = |task: &str| match task {
        "a" => Some(json!({"items": [{"id": "first"}, {"id": "second"}], "ok": true})),
        _ => None,
    };
    let template = json!({
        "number": "${input.n}",
        "object": "${input.obj}",
        "item": "${input.obj.k.1}",
        "whole": "${input}",
        "missing": "${input.nope.deeper}",
        "out_of_range": "${input.obj.k.9}",
        "from_task": "${tasks.a.output.items.1.id}",
        "text": "n=${input.n} s=${input.s} o=${input.obj} m=${input.nope}",
        "nested": [{"deep": ["${tasks.a.output.ok}"]}],
        "literal": "cost $5, $${input.n}",
        "untouched": 7
    });
    let resolved = resolve(&template, &input, &outputs).expect("resolves");
    assert_eq!(
        resolved,
        json!({
            "number": 5,
            "object": {"k": [10, 20]},
            "item": 20,
            "whole": input,
            "missing": null,
            "out_of_range": null,
            "from_task": "second",
            "text": "n=5 s=text o={\"k\":[10,20]} m=null",
            "nested": [{"deep": [true]}],
            // A template: the escape is kept, `reveal` undoes it.
            "literal": "cost $5, $${input.n}",
            "untouched": 7
        })
    );
    let revealed = reveal(&resolved, &|_| None).expect("no secrets");
    assert_eq!(revealed["literal"], "cost $5, ${input.n}");
    assert_eq!(revealed["text"], resolved["text"]);
    assert!(resolve(&json!("${tasks.zzz.output}"), &input, &outputs).is_err());
    assert!(resolve(&json!("${input"), &input, &outputs).is_err());
}

#[test]
fn secrets_stay_references_until_revealed_and_data_cannot_become_one() {
    let input = json!({"evil": "${secrets.OTHER}", "dollar": "x$", "n": 1});
    let outputs = |_: &str| None;
    let template = json!({
        "auth": "Bearer ${secrets.TOKEN}",
        "whole": "${secrets.TOKEN}",
        "mixed": "${input.n}:${secrets.TOKEN}:$${literal}",
        "injected": "note ${input.evil}",
        "injected_whole": "${input.evil}",
        "split": "${input.dollar}{secrets.OTHER}"
    });
    let resolved = resolve(&template, &input, &outputs).expect("resolves");
    assert_eq!(resolved["auth"], "Bearer ${secrets.TOKEN}");
    assert_eq!(resolved["whole"], "${secrets.TOKEN}");
    assert_eq!(resolved["mixed"], "1:${secrets.TOKEN}:$${literal}");
    let names = conflux_schema::reference::secret_names(&resolved).expect("names");
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["TOKEN"]);
    let secret = |name: &str| (name == "TOKEN").then(|| "s3cr3t".to_owned());
    let revealed = reveal(&resolved, &secret).expect("reveals");
    assert_eq!(
        revealed,
        json!({
            "auth": "Bearer s3cr3t",
            "whole": "s3cr3t",
            "mixed": "1:s3cr3t:${literal}",
            "injected": "note ${secrets.OTHER}",
            "injected_whole": "${secrets.OTHER}",
            "split": "x${secrets.OTHER}"
        })
    );
    let missing = reveal(&json!("${secrets.GONE}"), &secret).expect_err("missing");
    assert!(missing.contains("GONE"), "{missing}");
    for bad in [
        "${secrets}",
        "${secrets.A.B}",
        "${secrets.1A}",
        "${secrets.a-b}",
    ] {
        assert!(references(&json!(bad)).is_err(), "{bad}");
    }
    assert!(references(&json!(format!("${{secrets.{}}}", "A".repeat(129)))).is_err());
}

#[test]
fn retry_delays_grow_and_are_capped() {
    let policy = RetryPolicy {
        max_attempts: 10,
        initial_interval_ms: 100,
        backoff_coefficient: 2.0,
        max_interval_ms: 1_000,
    };
    let delays: Vec<u64> = (1..=6)
        .map(|attempt| policy.delay_for_attempt(attempt).as_millis() as u64)
        .collect();
    assert_eq!(delays, [100, 200, 400, 800, 1_000, 1_000]);
    assert_eq!(policy.delay_for_attempt(0), Duration::from_millis(100));
    assert_eq!(
        policy.delay_for_attempt(u32::MAX),
        Duration::from_millis(1_000)
    );
    let flat = RetryPolicy {
        backoff_coefficient: 1.0,
        ..policy
    };
    assert_eq!(flat.delay_for_attempt(7), Duration::from_millis(100));
}

/// Asserts the structural guarantees of a validated workflow.
fn assert_consistent(wf: &ValidatedWorkflow) {
    for i in 0..wf.len() {
        for &d in wf.dependencies(i) {
            assert!((d as usize) < i, "dependency after its dependent");
            assert!(wf.dependents(d as usize).contains(&(i as u32)));
        }
        for &d in wf.dependents(i) {
            assert!((d as usize) > i);
        }
        assert_eq!(wf.index_of(&wf.task_ids()[i]), Some(i));
        assert_eq!(wf.tasks()[i].id, wf.task_ids()[i].as_str());
    }
    let roots: Vec<u32> = (0..wf.len() as u32)
        .filter(|&i| wf.dependencies(i as usize).is_empty())
        .collect();
    let sinks: Vec<u32> = (0..wf.len() as u32)
        .filter(|&i| wf.dependents(i as usize).is_empty())
        .collect();
    assert_eq!(wf.roots(), roots);
    assert_eq!(wf.sinks(), sinks);
}

fn chain(n: usize) -> WorkflowDefinition {
    named(
        (0..n)
            .map(|i| {
                noop(
                    format!("t{i}"),
                    if i == 0 {
                        vec![]
                    } else {
                        vec![format!("t{}", i - 1)]
                    },
                )
            })
            .collect(),
    )
}

/// Validates `def`, which must be valid. Speed is measured by the loadtest's
/// planning scenario, never asserted in a test.
fn validate_ok(def: &WorkflowDefinition, limits: &Limits) -> ValidatedWorkflow {
    validate(def.clone(), limits).expect("valid")
}

#[test]
fn a_100_000_task_chain_validates_without_recursion() {
    let limits = Limits {
        max_tasks: 100_000,
        ..Limits::default()
    };
    let wf = validate_ok(&chain(100_000), &limits);
    assert_eq!(wf.len(), 100_000);
    assert_eq!(wf.roots(), [0]);
    assert_eq!(wf.sinks(), [99_999]);
    assert_eq!(wf.dependencies(99_999), [99_998]);

    // Closing the chain into one long cycle is reported in full, still without recursion.
    let mut def = chain(100_000);
    def.tasks[0].depends_on.push("t99999".to_owned());
    let error = validate(def, &limits).expect_err("cycle");
    assert_eq!(error.code(), "cycle");
    assert_eq!(
        error.details()["cycle"].as_array().map(Vec::len),
        Some(100_000)
    );
}

#[test]
fn a_10_000_task_layered_dag_validates() {
    // Layers of 10 tasks; every task depends on all 10 tasks of the layer above.
    let tasks: Vec<TaskSpec> = (0..10_000)
        .map(|i| {
            let layer = i / 10;
            let deps = if layer == 0 {
                vec![]
            } else {
                (0..10)
                    .map(|k| format!("t{}", (layer - 1) * 10 + k))
                    .collect()
            };
            noop(format!("t{i}"), deps)
        })
        .collect();
    let wf = validate_ok(&named(tasks), &Limits::default());
    assert_eq!(wf.roots().len(), 10);
    assert_eq!(wf.sinks().len(), 10);
    assert_consistent(&wf);
}

/// A random DAG: `n` tasks, edges only from a lower to a higher index, listed in a
/// shuffled order so validation cannot rely on the definition being sorted.
fn dag() -> impl Strategy<Value = (usize, Vec<(usize, usize)>, Vec<usize>)> {
    (1usize..30).prop_flat_map(|n| {
        let edges = proptest::collection::vec((0..n, 0..n), 0..(n * 3)).prop_map(|pairs| {
            pairs
                .into_iter()
                .filter(|(a, b)| a < b)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        });
        let order = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
        (Just(n), edges, order)
    })
}

fn build(n: usize, edges: &[(usize, usize)], order: &[usize]) -> WorkflowDefinition {
    let mut deps: Vec<Vec<String>> = vec![Vec::new(); n];
    for &(from, to) in edges {
        deps[to].push(format!("t{from}"));
    }
    named(
        order
            .iter()
            .map(|&i| noop(format!("t{i}"), deps[i].clone()))
            .collect(),
    )
}

/// Tasks reachable from `start` by following edges forward (`start` included).
fn descendants(start: usize, n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut seen = vec![false; n];
    let mut stack = vec![start];
    while let Some(node) = stack.pop() {
        if !std::mem::replace(&mut seen[node], true) {
            stack.extend(edges.iter().filter(|(a, _)| *a == node).map(|(_, b)| *b));
        }
    }
    (0..n).filter(|&i| seen[i]).collect()
}

proptest! {
    #[test]
    fn random_dags_validate((n, edges, order) in dag()) {
        let wf = validate(build(n, &edges, &order), &Limits::default()).expect("a DAG is valid");
        prop_assert_eq!(wf.len(), n);
        assert_consistent(&wf);
        let position: HashMap<&str, usize> =
            wf.task_ids().iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        for (from, to) in &edges {
            let (upstream, downstream) = (format!("t{from}"), format!("t{to}"));
            prop_assert!(position[upstream.as_str()] < position[downstream.as_str()]);
        }
    }

    #[test]
    fn a_back_edge_is_reported_as_an_actual_cycle(
        (n, edges, order) in dag(),
        pick in any::<prop::sample::Index>(),
        target in any::<prop::sample::Index>(),
    ) {
        let from = pick.index(n);
        let reachable = descendants(from, n, &edges);
        let to = reachable[target.index(reachable.len())];
        // `from` now depends on one of its descendants (or on itself): a cycle.
        let mut def = build(n, &edges, &order);
        let holder = def.tasks.iter_mut().find(|t| t.id == format!("t{from}")).expect("task");
        holder.depends_on.push(format!("t{to}"));
        let depends: HashMap<String, Vec<String>> =
            def.tasks.iter().map(|t| (t.id.clone(), t.depends_on.clone())).collect();

        let error = validate(def, &Limits::default()).expect_err("a cycle");
        prop_assert_eq!(error.code(), "cycle");
        let cycle: Vec<String> = serde_json::from_value(error.details()["cycle"].clone()).expect("ids");
        prop_assert!(!cycle.is_empty());
        prop_assert_eq!(cycle.iter().collect::<BTreeSet<_>>().len(), cycle.len(), "each id once");
        for (k, id) in cycle.iter().enumerate() {
            let previous = &cycle[(k + cycle.len() - 1) % cycle.len()];
            prop_assert!(depends[id].contains(previous), "{} does not depend on {}", id, previous);
        }
    }
}

#[test]
fn secrets_are_allowed_in_requests_and_agent_inputs_only() {
    let ok = check(json!([
        {"id": "h", "kind": "http", "http": {
            "url": "http://h/${secrets.URL_PART}", "headers": {"authorization": "Bearer ${secrets.TOKEN}"},
            "body": {"k": "${secrets.BODY}"}},
         "compensate": {"kind": "agent", "agent_role": "r", "input": {"k": "${secrets.UNDO}"}}},
        {"id": "a", "kind": "agent", "agent_role": "r", "input": {"k": "${secrets.TOKEN}"}}
    ]))
    .expect("valid");
    assert_eq!(
        ok.secret_names().into_iter().collect::<Vec<_>>(),
        ["BODY", "TOKEN", "UNDO", "URL_PART"]
    );
    for (kind, extra) in [
        ("noop", json!({})),
        ("sleep", json!({"sleep_ms": 1})),
        ("http", json!({"http": {"url": "http://h/"}})),
    ] {
        let mut task = json!({"id": "t", "kind": kind, "input": {"k": "${secrets.TOKEN}"}});
        for (k, v) in extra.as_object().expect("object") {
            task[k] = v.clone();
        }
        let reason = invalid_task_reason(json!([task]), "t");
        assert!(reason.contains("secret `TOKEN`"), "{kind}: {reason}");
    }
}

#[test]
fn conditions_must_compile_and_name_only_upstream_tasks() {
    let reason = invalid_task_reason(
        json!([{"id": "a", "kind": "noop", "when": "input.n >"}]),
        "a",
    );
    assert!(
        reason.starts_with("when: `input.n >` is not a CEL expression"),
        "{reason}"
    );
    let reason = invalid_task_reason(
        json!([
            {"id": "a", "kind": "noop"},
            {"id": "b", "kind": "noop", "depends_on": ["a"], "when": "tasks.a.output.ok"},
            {"id": "c", "kind": "noop", "depends_on": ["a"], "when": "tasks.b.output.ok"}
        ]),
        "c",
    );
    assert!(reason.contains('b') && reason.contains("when"), "{reason}");
    let ok = check(json!([
        {"id": "a", "kind": "noop"},
        {"id": "b", "kind": "noop", "depends_on": ["a"]},
        {"id": "c", "kind": "noop", "depends_on": ["b"], "trigger_rule": "all_done",
         "when": "has(tasks.a) && tasks[\"a\"].output.n > 1"}
    ]));
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn a_trigger_rule_must_be_one_of_four() {
    let def = serde_json::from_value::<WorkflowDefinition>(json!({"name": "wf", "tasks": [
        {"id": "a", "kind": "noop", "trigger_rule": "sometimes"}
    ]}));
    assert!(def.is_err());
    let wf =
        check(json!([{"id": "a", "kind": "noop", "trigger_rule": "none_failed"}])).expect("valid");
    let echoed = serde_json::to_value(wf.definition()).expect("serialises");
    assert_eq!(echoed["tasks"][0]["trigger_rule"], "none_failed");
    let wf = check(json!([{"id": "a", "kind": "noop"}])).expect("valid");
    let echoed = serde_json::to_value(wf.definition()).expect("serialises");
    assert!(
        echoed["tasks"][0].get("trigger_rule").is_none(),
        "the default is left out"
    );
}

#[test]
fn a_switch_needs_cases_whose_branches_depend_on_it() {
    let reason = invalid_task_reason(json!([{"id": "s", "kind": "switch"}]), "s");
    assert_eq!(reason, "cases is required for a switch task");
    let reason = invalid_task_reason(
        json!([
            {"id": "s", "kind": "switch", "cases": [{"when": "true", "next": ["x"]}]},
            {"id": "x", "kind": "noop"}
        ]),
        "s",
    );
    assert!(reason.contains("does not depend on the switch"), "{reason}");
    let reason = invalid_task_reason(
        json!([
            {"id": "s", "kind": "switch", "cases": [{"when": "true", "next": ["x"]}], "default": ["ghost"]},
            {"id": "x", "kind": "noop", "depends_on": ["s"]}
        ]),
        "s",
    );
    assert!(reason.contains("`ghost`, which is not a task"), "{reason}");
    let reason = invalid_task_reason(
        json!([{"id": "a", "kind": "noop", "cases": [{"when": "true", "next": []}]}]),
        "a",
    );
    assert_eq!(reason, "cases and default are only for switch tasks");
    let reason = invalid_task_reason(
        json!([
            {"id": "s", "kind": "switch", "cases": [{"when": "1 +", "next": []}]}
        ]),
        "s",
    );
    assert!(reason.starts_with("cases[0].when:"), "{reason}");
    let reason = invalid_task_reason(
        json!([
            {"id": "a", "kind": "noop", "compensate": {"kind": "switch"}}
        ]),
        "a",
    );
    assert!(reason.contains("cannot compensate"), "{reason}");
}

#[test]
fn the_fields_of_one_kind_are_refused_on_another() {
    let cases = [
        (
            json!({"id": "a", "kind": "noop", "signal": "go"}),
            "signal is only for signal tasks",
        ),
        (
            json!({"id": "a", "kind": "agent", "agent_role": "r", "approvers": {"roles": ["admin"]}}),
            "approvers is only for approval tasks",
        ),
        (
            json!({"id": "a", "kind": "noop", "items": [1], "template": {"kind": "noop"}}),
            "items, template and max_parallel are only for map tasks",
        ),
        (
            json!({"id": "a", "kind": "noop", "workflow": {"name": "x"}}),
            "workflow is only for workflow tasks",
        ),
    ];
    for (task, reason) in cases {
        assert_eq!(invalid_task_reason(json!([task]), "a"), reason);
    }
}

#[test]
fn a_workflow_task_names_a_workflow_and_cannot_compensate() {
    let reason = |task: Value| invalid_task_reason(json!([task]), "a");
    assert!(reason(json!({"id": "a", "kind": "workflow"})).contains("workflow is required"));
    assert_eq!(
        reason(json!({"id": "a", "kind": "workflow", "workflow": {"name": "x", "version": 0}})),
        "workflow.version must be at least 1"
    );
    assert!(
        reason(json!({"id": "a", "kind": "workflow", "workflow": {"name": " x"}}))
            .starts_with("workflow.name: ")
    );
    assert!(
        reason(json!({"id": "a", "kind": "noop", "compensate": {"kind": "workflow"}}))
            .contains("cannot compensate")
    );
    assert!(reason(json!({"id": "a", "kind": "map", "items": [1],
                          "template": {"kind": "workflow"}}))
    .contains("cannot be a map's item"));
    let ok: WorkflowDefinition = serde_json::from_value(json!({"name": "p", "tasks": [
        {"id": "a", "kind": "workflow", "workflow": {"name": "child", "version": 2},
         "input": {"n": "${input.n}"}}]}))
    .expect("a definition");
    let wf = validate(ok, &Limits::default()).expect("valid");
    let children: Vec<_> = wf.child_workflows().collect();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].0, "a");
    assert_eq!(children[0].1.version, Some(2));
    // Unknown fields inside `workflow` are refused by name.
    let unknown = serde_json::from_value::<WorkflowDefinition>(json!({"name": "p", "tasks": [
        {"id": "a", "kind": "workflow", "workflow": {"name": "c", "versoin": 2}}]}));
    assert!(unknown.is_err());
}
