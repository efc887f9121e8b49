//! Sub-workflows end to end, over HTTP and the WebSocket: a child's output becomes its
//! task's output and pausing the parent reaches the child; a parent with two children
//! cancelled mid-run cancels both; a failing child fails its task; definitions that name
//! a missing workflow or lead back to themselves are refused; the depth limit fails a
//! run that nests too deep.

use std::time::{Duration, Instant};

use conflux::config::Config;
use conflux_engine::catalog::WorkflowCatalog;
use conflux_engine::commands::{ExecutionCommands, StartExtra};
use conflux_engine::execution::{child_execution_id, Command, TaskRef};
use conflux_schema::definition::WorkflowDefinition;
use conflux_schema::validate::Limits;
use conflux_schema::{EventMetadata, ParentLink, TaskId};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::agent::TestAgent;
use crate::harness::{Log, Mode, TestServer, PATIENCE};
use crate::waits::stream_is_rest_of;

/// Polls `execution` until `done` holds of its body; fails with the body after
/// [`PATIENCE`].
async fn wait_body(
    s: &TestServer,
    execution: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let body = s.execution(execution).await;
        if done(&body) {
            return body;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{what} never happened: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The child execution `task` of `parent` runs, once the parent shows it.
async fn child_of(s: &TestServer, parent: &str, task: &str) -> String {
    let body = wait_body(s, parent, &format!("{task} starting its child"), |b| {
        b["tasks"][task]["child_execution_id"].is_string()
    })
    .await;
    assert_eq!(body["tasks"][task]["status"], "running", "{body:#}");
    body["tasks"][task]["child_execution_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn code(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["error"]["code"].as_str().unwrap_or(""))
}

/// A parent runs `prep`, then the child workflow `double` (pinned to version 2, the
/// second of its name) on `prep`'s output, then `after` on the child's output. Pausing
/// the parent pauses the child and resuming resumes it; the child's body names its
/// parent and the parent's task names the child; the child's output is the task's.
pub async fn a_child_workflow_runs_as_a_task(s: &TestServer) {
    let agent = TestAgent::register(&s.base, &["doubler"]).await;
    s.create_workflow(json!({"name": "double", "tasks": [{"id": "unused", "kind": "noop"}]}))
        .await;
    let v2 = s
        .create_workflow(json!({"name": "double", "tasks": [
            {"id": "times", "kind": "agent", "agent_role": "doubler", "input": {"n": "${input.n}"}}
        ]}))
        .await;
    let parent = s
        .run(
            json!({"name": "doubling", "tasks": [
                {"id": "prep", "kind": "noop", "input": {"n": "${input.n}"}},
                {"id": "sub", "kind": "workflow", "workflow": {"name": "double", "version": 2},
                 "depends_on": ["prep"], "input": {"n": "${tasks.prep.output.n}"}},
                {"id": "after", "kind": "noop", "depends_on": ["sub"],
                 "input": {"got": "${tasks.sub.output.times.doubled}"}}
            ]}),
            json!({"n": 21}),
        )
        .await;
    let child = child_of(s, &parent, "sub").await;
    let lease = agent.next_lease().await;
    assert_eq!(
        (lease.execution_id.as_str(), lease.task_id.as_str()),
        (child.as_str(), "times")
    );
    assert_eq!(lease.input, json!({"n": 21}));

    let body = s.execution(&child).await;
    assert_eq!(body["workflow_id"], json!(v2), "the pinned version runs");
    assert_eq!(
        body["parent"],
        json!({"execution_id": parent, "task_id": "sub", "attempt": 1, "depth": 1}),
        "{body:#}"
    );

    let (status, body) = s
        .post(&format!("/api/v1/executions/{parent}/pause"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    wait_body(s, &child, "the child pausing", |b| b["status"] == "paused").await;
    let (status, body) = s
        .post(&format!("/api/v1/executions/{parent}/resume"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    wait_body(s, &child, "the child resuming", |b| {
        b["status"] == "running"
    })
    .await;

    let (status, body) = agent.complete(&lease, json!({"doubled": 42})).await;
    assert_eq!(status, 200, "{body}");
    let body = s.wait_terminal(&parent).await;
    assert_eq!(body["status"], "completed", "{body:#}");
    assert_eq!(
        body["tasks"]["sub"]["output"],
        json!({"times": {"doubled": 42}})
    );
    assert_eq!(body["tasks"]["sub"]["child_execution_id"], json!(child));
    assert_eq!(body["output"]["after"], json!({"got": 42}), "{body:#}");
    assert_eq!(s.execution(&child).await["status"], "completed");

    let log = s.events(&parent).await;
    assert_eq!(log.count("TaskStarted", Some("sub")), 1);
    assert_eq!(log.count("TaskCompleted", Some("sub")), 1);
    let child_log = s.events(&child).await;
    let types = child_log.types();
    assert_eq!(types.first(), Some(&"ExecutionStarted"));
    assert!(
        types.contains(&"ExecutionPaused") && types.contains(&"ExecutionResumed"),
        "{types:?}"
    );
    let started = child_log.at(0);
    assert_eq!(started["data"]["parent"]["task_id"], "sub");
    assert_eq!(started["metadata"]["actor"], "engine");
}

/// A parent with two child workflows, each held by an agent, is cancelled mid-run: both
/// children are cancelled, their agents' leases go stale, and the parent's live stream
/// is exactly its log, to `ExecutionCancelled`.
pub async fn a_parent_with_two_children_is_cancelled_mid_run(s: &TestServer) {
    let agent = TestAgent::register(&s.base, &["leg"]).await;
    s.create_workflow(json!({"name": "leg", "tasks": [
        {"id": "walk", "kind": "agent", "agent_role": "leg", "input": {"side": "${input.side}"}},
        {"id": "rest", "kind": "noop", "depends_on": ["walk"]}
    ]}))
    .await;
    let parent = s
        .run(
            json!({"name": "walker", "tasks": [
                {"id": "left", "kind": "workflow", "workflow": {"name": "leg"}, "input": {"side": "l"}},
                {"id": "right", "kind": "workflow", "workflow": {"name": "leg"}, "input": {"side": "r"}},
                {"id": "join", "kind": "noop", "depends_on": ["left", "right"]}
            ]}),
            json!({}),
        )
        .await;
    let (mut socket, _) = s
        .ws_connect(&format!("/ws/executions/{parent}"))
        .await
        .expect("websocket");
    let children = [
        child_of(s, &parent, "left").await,
        child_of(s, &parent, "right").await,
    ];
    assert_ne!(children[0], children[1]);
    let mut leases = [agent.next_lease().await, agent.next_lease().await];
    leases.sort_by(|a, b| a.input["side"].as_str().cmp(&b.input["side"].as_str()));
    assert_eq!(leases[0].execution_id, children[0]);
    assert_eq!(leases[1].execution_id, children[1]);

    let path = format!("/api/v1/executions/{parent}/cancel");
    let (status, body) = s.post(&path, json!({"reason": "changed my mind"})).await;
    assert_eq!(status, 202, "{body}");
    let body = s.wait_terminal(&parent).await;
    assert_eq!(body["status"], "cancelled", "{body:#}");
    for task in ["left", "right"] {
        assert_eq!(body["tasks"][task]["status"], "cancelled", "{body:#}");
    }
    for (child, lease) in children.iter().zip(&leases) {
        let body = s.wait_terminal(child).await;
        assert_eq!(body["status"], "cancelled", "{body:#}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains("was cancelled"), "{error}");
        let (status, answer) = agent.complete(lease, json!({})).await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (409, &json!("stale_attempt"))
        );
        let log = s.events(child).await;
        assert_eq!(log.last_type(), "ExecutionCancelled");
        assert_eq!(log.count("TaskCancelled", Some("walk")), 1);
    }

    let log = s.events(&parent).await;
    assert_eq!(log.count("TaskCancelled", None), 2, "{:?}", log.types());
    assert_eq!(log.count("TaskCompleted", None), 0);
    assert_eq!(log.last_type(), "ExecutionCancelled");
    // The live stream: a snapshot, then exactly the rest of the log.
    stream_is_rest_of(&mut socket, &log).await;
}

/// A child that fails fails its task, naming the child and why; the parent fails.
pub async fn a_failing_child_fails_its_task(s: &TestServer) {
    s.create_workflow(json!({"name": "broken", "tasks": [
        {"id": "bad", "kind": "map", "items": "${input.n}", "template": {"kind": "noop"}}
    ]}))
    .await;
    let parent = s
        .run(
            json!({"name": "calls-broken", "tasks": [
                {"id": "call", "kind": "workflow", "workflow": {"name": "broken"}, "input": {"n": 5}}
            ]}),
            json!({}),
        )
        .await;
    let body = s.wait_terminal(&parent).await;
    assert_eq!(body["status"], "failed", "{body:#}");
    let child = body["tasks"]["call"]["child_execution_id"]
        .as_str()
        .expect("the child is named")
        .to_owned();
    let error = body["tasks"]["call"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&child) && error.contains("failed"),
        "{error}"
    );
    assert!(error.contains("items is not an array"), "{error}");
    assert_eq!(s.execution(&child).await["status"], "failed");
}

/// Definitions that name a workflow the tenant lacks, that start themselves, or whose
/// named workflows start them again are `422 invalid_task` naming the task; malformed
/// `workflow` fields too. Nothing is created.
pub async fn bad_sub_workflows_are_refused(s: &TestServer) {
    let refused = [
        (
            json!({"id": "c", "kind": "workflow", "workflow": {"name": "nowhere"}}),
            "does not exist",
        ),
        (
            json!({"id": "c", "kind": "workflow", "workflow": {"name": "selfish"}}),
            "start itself",
        ),
        (
            json!({"id": "c", "kind": "workflow"}),
            "workflow is required",
        ),
        (
            json!({"id": "c", "kind": "workflow", "workflow": {"name": "x", "version": 0}}),
            "at least 1",
        ),
        (
            json!({"id": "c", "kind": "noop", "workflow": {"name": "x"}}),
            "only for workflow tasks",
        ),
        (
            json!({"id": "c", "kind": "noop", "compensate": {"kind": "workflow"}}),
            "cannot compensate",
        ),
    ];
    for (task, why) in refused {
        let answer = s
            .post(
                "/api/v1/workflows",
                json!({"name": "selfish", "tasks": [task]}),
            )
            .await;
        assert_eq!(code(&answer), (422, "invalid_task"), "{task}: {}", answer.1);
        assert_eq!(answer.1["error"]["details"]["task"], "c", "{}", answer.1);
        let reason = answer.1["error"]["details"]["reason"]
            .as_str()
            .unwrap_or_default();
        assert!(reason.contains(why), "{task}: {reason}");
    }
    // A cycle through another workflow: ping → pong (latest) → ping (latest).
    s.create_workflow(json!({"name": "pong", "tasks": [{"id": "p", "kind": "noop"}]}))
        .await;
    s.create_workflow(json!({"name": "ping", "tasks": [
        {"id": "to-pong", "kind": "workflow", "workflow": {"name": "pong"}}]}))
        .await;
    let answer = s
        .post(
            "/api/v1/workflows",
            json!({"name": "pong", "tasks": [
            {"id": "to-ping", "kind": "workflow", "workflow": {"name": "ping"}}]}),
        )
        .await;
    assert_eq!(code(&answer), (422, "invalid_task"), "{}", answer.1);
    let reason = answer.1["error"]["details"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("pong -> ping -> pong"), "{reason}");
    // The refusal took no version; a version pinned to an older one of its own name,
    // which starts nothing, is no cycle.
    let (status, body) = s
        .post(
            "/api/v1/workflows",
            json!({"name": "pong", "tasks": [{"id": "p", "kind": "noop"}]}),
        )
        .await;
    assert_eq!((status, &body["version"]), (201, &json!(2)), "{body}");
    let (status, body) = s
        .post(
            "/api/v1/workflows",
            json!({"name": "pong", "tasks": [
                {"id": "older", "kind": "workflow", "workflow": {"name": "pong", "version": 2}}]}),
        )
        .await;
    assert_eq!((status, &body["version"]), (201, &json!(3)), "{body}");
    let (status, body) = s
        .post(
            "/api/v1/workflows",
            json!({"name": "selfish", "tasks": [{"id": "c", "kind": "noop"}]}),
        )
        .await;
    assert_eq!((status, &body["version"]), (201, &json!(1)), "{body}");
}

/// On a server with `CONFLUX_MAX_WORKFLOW_DEPTH=1`: `top` → `middle` (depth 1) runs,
/// `middle` → `bottom` (depth 2) fails for good naming the limit, and the failure
/// climbs to the top.
pub async fn nesting_past_the_depth_limit_fails(s: &TestServer) {
    s.create_workflow(json!({"name": "bottom", "tasks": [{"id": "b", "kind": "noop"}]}))
        .await;
    s.create_workflow(json!({"name": "middle", "tasks": [
        {"id": "down", "kind": "workflow", "workflow": {"name": "bottom"},
         "retry": {"max_attempts": 3, "initial_interval_ms": 10}}]}))
        .await;
    let top = s
        .run(
            json!({"name": "top", "tasks": [
                {"id": "down", "kind": "workflow", "workflow": {"name": "middle"}}]}),
            json!({}),
        )
        .await;
    let body = s.wait_terminal(&top).await;
    assert_eq!(body["status"], "failed", "{body:#}");
    let middle = body["tasks"]["down"]["child_execution_id"]
        .as_str()
        .expect("a child")
        .to_owned();
    let body = s.execution(&middle).await;
    assert_eq!(body["status"], "failed", "{body:#}");
    assert_eq!(body["parent"]["depth"], 1);
    let error = body["tasks"]["down"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("limit of 1") && error.contains("CONFLUX_MAX_WORKFLOW_DEPTH"),
        "{error}"
    );
    let log: Log = s.events(&middle).await;
    assert_eq!(log.attempts("TaskFailed", "down"), [1], "not retried");
}

/// A parent whose child ended while no engine ran (the child's end recorded, the
/// parent's task still running, as after a crash between the two): the engine that
/// starts completes the parent's task with the child's output, without starting the
/// child again. Two paths lead there — the child's end read from the bus, and recovery
/// re-performing `StartChild` for the running attempt, which finds the child ended — and
/// this proves that at least one does.
pub async fn a_child_that_ended_unheard_is_reported_on_start(mode: Mode) {
    let parent = Uuid::now_v7();
    let child = child_execution_id(
        parent,
        &TaskRef::new(TaskId::parse("sub").expect("an id"), 1),
    );
    let server = TestServer::start_seeded(mode, |config| async move {
        ended_unheard(&config, parent, child).await;
    })
    .await;
    let body = server.wait_terminal(&parent.to_string()).await;
    assert_eq!(body["status"], "completed", "{body:#}");
    assert_eq!(body["tasks"]["sub"]["output"], json!({"q": {"v": 5}}));
    let log = server.events(&child.to_string()).await;
    assert_eq!(log.count("ExecutionStarted", None), 1);
    assert_eq!(log.last_type(), "ExecutionCompleted");
    server.stop().await;
}

/// Writes the store of [`a_child_that_ended_unheard_is_reported_on_start`] with the
/// engine's own commands, minus the report to the parent.
async fn ended_unheard(config: &Config, parent: Uuid, child: Uuid) {
    let backends = conflux::backends::Backends::open(config)
        .await
        .expect("open the backends");
    let catalog = WorkflowCatalog::new(backends.store.clone(), Limits::default());
    let meta = EventMetadata {
        actor: Some("test".into()),
        ..EventMetadata::default()
    };
    let define = |v: Value| serde_json::from_value::<WorkflowDefinition>(v).expect("a definition");
    let quick = catalog
        .create(
            define(json!({"name": "quick", "tasks": [
                {"id": "q", "kind": "noop", "input": {"v": "${input.v}"}}]})),
            meta.clone(),
        )
        .await
        .expect("create");
    let waiter = catalog
        .create(
            define(json!({"name": "waiter", "tasks": [
                {"id": "sub", "kind": "workflow", "workflow": {"name": "quick"}, "input": {"v": 5}}]})),
            meta.clone(),
        )
        .await
        .expect("create");
    let commands = ExecutionCommands::new(backends.store.clone(), catalog);
    let advance = |id: Uuid| {
        let commands = commands.clone();
        let meta = meta.clone();
        async move {
            commands
                .record(id, meta, |_, _| Ok(Command::Advance))
                .await
                .expect("advance");
        }
    };
    commands
        .start(waiter.workflow_id, parent, json!({}), None, meta.clone())
        .await
        .expect("start the parent");
    advance(parent).await;
    let link = ParentLink {
        execution_id: parent,
        task_id: TaskId::parse("sub").expect("an id"),
        attempt: 1,
        depth: 1,
    };
    commands
        .start_with(
            quick.workflow_id,
            child,
            json!({"v": 5}),
            None,
            meta.clone(),
            StartExtra {
                parent: Some(link),
                budget: None,
                priority: None,
            },
        )
        .await
        .expect("start the child");
    advance(child).await;
    let q = TaskRef::new(TaskId::parse("q").expect("an id"), 1);
    commands
        .record(child, meta.clone(), |_, _| {
            Ok(Command::CompleteTask {
                task: q.clone(),
                output: json!({"v": 5}),
                usage: None,
            })
        })
        .await
        .expect("complete q");
    advance(child).await;
    let (state, _) = commands
        .load(child)
        .await
        .expect("load")
        .expect("the child");
    assert!(state.is_terminal(), "the child ended");
}
