//! The projector's read models, end to end: after a mix of executions that complete,
//! retry, fail, compensate, get cancelled and stay paused, the live tables serve the
//! query routes (list with filters and cursor pages, the execution read), and a rebuild
//! from position 0 produces tables equal to the live ones row for row.

use std::time::Instant;

use conflux_engine::catalog::WorkflowCatalog;
use conflux_projector::rebuild::rebuild;
use conflux_projector::runner::Step;
use conflux_projector::Projector;
use conflux_schema::validate::Limits;
use serde_json::{json, Value};

use crate::harness::{TestServer, PATIENCE};
use crate::target::Target;

/// Waits until the projector has applied everything the store holds.
async fn caught_up(s: &TestServer) -> u64 {
    let started = Instant::now();
    loop {
        let head = s.backends.store.head_position().await.expect("head");
        let checkpoint = s
            .backends
            .read_models
            .checkpoint()
            .await
            .expect("checkpoint");
        if checkpoint >= head {
            return checkpoint;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "projector stuck at {checkpoint} of {head}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls `GET path` until `done` holds on the body.
async fn wait_body(s: &TestServer, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = s.get(path).await;
        if status == 200 && done(&body) {
            return body;
        }
        assert!(started.elapsed() < PATIENCE, "{path}: last body {body:#}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Runs every kind of outcome, checks the reads, rebuilds, and compares row for row.
pub async fn rebuilt_read_models_equal_live(s: &TestServer) {
    let target = Target::start().await;
    let chain = s
        .create_workflow(json!({"name": "rm-chain", "tasks": [
            {"id": "a", "kind": "noop", "input": {"n": "${input.n}"}},
            {"id": "b", "kind": "noop", "depends_on": ["a"], "input": {"from_a": "${tasks.a.output.n}"}}
        ]}))
        .await;
    let flaky = s
        .create_workflow(json!({"name": "rm-flaky", "tasks": [
            {"id": "call", "kind": "http", "http": {"url": target.url("/flaky")},
             "retry": {"max_attempts": 3, "initial_interval_ms": 10}}
        ]}))
        .await;
    let failing = s
        .create_workflow(json!({"name": "rm-failing", "tasks": [
            {"id": "call", "kind": "http", "http": {"url": target.url("/fail500")},
             "retry": {"max_attempts": 2, "initial_interval_ms": 10}}
        ]}))
        .await;
    let saga = s
        .create_workflow(
            json!({"name": "rm-saga", "on_failure": "compensate", "tasks": [
                {"id": "reserve", "kind": "noop", "input": {"r": 1},
                 "compensate": {"kind": "noop", "input": {"release": "${tasks.reserve.output.r}"}}},
                {"id": "charge", "kind": "http", "depends_on": ["reserve"],
                 "http": {"url": target.url("/missing")}}
            ]}),
        )
        .await;
    let waiting = s
        .create_workflow(json!({"name": "rm-waiting", "tasks": [
            {"id": "wait", "kind": "agent", "agent_role": "nobody-polls-this"},
            {"id": "after", "kind": "noop", "depends_on": ["wait"]}
        ]}))
        .await;

    let mut finished = Vec::new();
    for n in 0..3 {
        finished.push(s.execute(&chain, json!({"n": n})).await);
    }
    finished.push(s.execute(&flaky, json!({})).await);
    finished.push(s.execute(&failing, json!({})).await);
    finished.push(s.execute(&saga, json!({})).await);
    let cancelled = s.execute(&waiting, json!({})).await;
    let paused = s.execute(&waiting, json!({})).await;
    for (execution, action) in [(&cancelled, "cancel"), (&paused, "pause")] {
        let (status, body) = s
            .post(
                &format!("/api/v1/executions/{execution}/{action}"),
                json!({}),
            )
            .await;
        assert_eq!(status, 202, "{action}: {body}");
    }
    let mut statuses = Vec::new();
    for execution in finished.iter().chain([&cancelled]) {
        statuses.push(s.wait_terminal(execution).await["status"].clone());
    }
    assert_eq!(
        statuses,
        [
            "completed",
            "completed",
            "completed",
            "completed",
            "failed",
            "compensated",
            "cancelled"
        ],
    );
    wait_body(s, &format!("/api/v1/executions/{paused}"), |b| {
        b["status"] == "paused"
    })
    .await;
    let checkpoint = caught_up(s).await;

    // The execution read comes from the read model and says which position it reflects.
    let read = s.execution(&finished[0]).await;
    assert_eq!(
        read["tasks"]["b"]["output"],
        json!({"from_a": 0}),
        "{read:#}"
    );
    let replayed = s
        .get(&format!("/api/v1/executions/{}/replay", finished[0]))
        .await
        .1["state"]
        .clone();
    for field in [
        "status",
        "input",
        "output",
        "tasks",
        "started_at",
        "completed_at",
        "version",
    ] {
        assert_eq!(
            read[field], replayed[field],
            "{field}: {read:#} vs {replayed:#}"
        );
    }

    // The workflow list: filters, newest first, cursor pages.
    let (status, all) = s.get("/api/v1/workflows?limit=1000").await;
    assert_eq!(status, 200, "{all}");
    let names: Vec<&str> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "rm-waiting",
            "rm-saga",
            "rm-failing",
            "rm-flaky",
            "rm-chain"
        ]
    );
    assert_eq!(all["next_cursor"], Value::Null);
    let (_, failed) = s.get("/api/v1/workflows?status=failed").await;
    assert_eq!(
        failed["items"][0]["workflow_id"],
        json!(failing),
        "{failed}"
    );
    assert_eq!(failed["items"].as_array().map(Vec::len), Some(1));
    let (_, by_name) = s.get("/api/v1/workflows?name=rm-chain").await;
    assert_eq!(
        by_name["items"][0]["executions"]["completed"], 3,
        "{by_name}"
    );
    assert_eq!(by_name["items"][0]["status"], "completed");
    let (_, waiting_row) = s.get("/api/v1/workflows?name=rm-waiting").await;
    let counts = &waiting_row["items"][0]["executions"];
    assert_eq!(
        (&counts["cancelled"], &counts["paused"]),
        (&json!(1), &json!(1)),
        "{waiting_row}"
    );
    let mut paged = Vec::new();
    let mut path = "/api/v1/workflows?limit=2".to_owned();
    loop {
        let (status, page) = s.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        paged.extend(
            items
                .iter()
                .map(|w| w["name"].as_str().unwrap_or("").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/workflows?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(paged, names);
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=ten",
        "status=sleeping",
        "cursor=abc",
        "cursor=-4",
    ] {
        let (status, body) = s.get(&format!("/api/v1/workflows?{bad}")).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("invalid_request")),
            "{bad}: {body}"
        );
    }
    let (_, status_body) = s.get(&format!("/api/v1/workflows/{saga}/status")).await;
    assert_eq!(status_body["status"], "compensated", "{status_body}");
    assert_eq!(
        status_body["latest_execution"]["tasks"]["reserve"]["status"],
        "compensated"
    );

    // Rebuild from position 0: the same rows.
    let live = s.backends.read_models.dump().await.expect("dump live");
    assert_eq!(live.checkpoint, checkpoint);
    assert_eq!(live.executions.len(), 8);
    assert_eq!(live.workflows.len(), 5);
    let catalog = WorkflowCatalog::new(
        s.backends.store.clone(),
        Limits {
            max_tasks: usize::MAX,
            ..Limits::default()
        },
    );
    let mut reported = Vec::new();
    let report = rebuild(
        s.backends.stored.clone(),
        catalog,
        s.backends.read_models.clone(),
        |p| reported.push(p),
    )
    .await
    .expect("rebuild");
    assert_eq!(report.position, checkpoint);
    assert!(report.events >= checkpoint.min(1), "{report:?}");
    assert!(!reported.is_empty());
    let rebuilt = s.backends.read_models.dump().await.expect("dump rebuilt");
    assert_eq!(rebuilt.workflows, live.workflows);
    assert_eq!(rebuilt.executions, live.executions);
    assert_eq!(rebuilt.checkpoint, live.checkpoint);
    assert_eq!(rebuilt.dead_letters, live.dead_letters);
    assert!(
        !live.dead_letters.is_empty(),
        "the failures are dead letters"
    );

    // Two projectors on the same tables, from scratch, in small interleaved steps: the
    // checkpoint guard lets exactly one apply each batch, and the result is the same.
    s.backends.read_models.reset().await.expect("reset");
    let projector = || {
        Projector::new(
            s.backends.stored.clone(),
            WorkflowCatalog::new(
                s.backends.store.clone(),
                Limits {
                    max_tasks: usize::MAX,
                    ..Limits::default()
                },
            ),
            s.backends.read_models.clone(),
            7,
        )
    };
    let (mut first, mut second) = (
        projector().await.expect("first"),
        projector().await.expect("second"),
    );
    let (mut applied, mut resynced) = (0, 0);
    loop {
        let a = first.step().await.expect("first step");
        let b = second.step().await.expect("second step");
        for step in [a, b] {
            match step {
                Step::Applied(_) => applied += 1,
                Step::Resynced => resynced += 1,
                Step::Idle => {}
            }
        }
        if a == Step::Idle && b == Step::Idle {
            break;
        }
    }
    assert!(
        resynced > 0, // the server's own projector may win batches too; ours lose some
        "applied {applied}, resynced {resynced}"
    );
    let raced = s.backends.read_models.dump().await.expect("dump raced");
    assert_eq!(raced.workflows, live.workflows);
    assert_eq!(raced.executions, live.executions);

    // The live projector carries on after the rebuild moved the checkpoint under it.
    let (status, body) = s
        .post(&format!("/api/v1/executions/{paused}/cancel"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    wait_body(s, &format!("/api/v1/workflows/{waiting}/status"), |b| {
        b["executions"]["cancelled"] == 2 && b["executions"]["paused"] == 0
    })
    .await;
}

/// The agent body's result counters are a read model: after an agent completed two
/// tasks and failed one, its body says so, `rm_agent_results` holds the three results
/// with their durations, and a rebuild from the log gives the same rows.
pub async fn agent_results_are_rebuilt_from_the_log(s: &TestServer) {
    let workflow = s
        .create_workflow(json!({"name": "rm-agent", "tasks": [
            {"id": "job", "kind": "agent", "agent_role": "rm-worker"}]}))
        .await;
    let mut executions = Vec::new();
    for _ in 0..3 {
        executions.push(s.execute(&workflow, json!({})).await);
    }
    let (status, agent) = s
        .post(
            "/api/v1/agents",
            json!({"name": "rm-worker", "roles": ["rm-worker"], "capacity": 3}),
        )
        .await;
    assert_eq!(status, 201, "{agent}");
    let agent = agent["agent_id"].as_str().expect("id").to_owned();
    let mut leases = Vec::new();
    while leases.len() < 3 {
        let (_, body) = s
            .post(
                &format!("/api/v1/agents/{agent}/poll?max=3&wait_ms=2000"),
                json!({}),
            )
            .await;
        for task in body["tasks"].as_array().cloned().unwrap_or_default() {
            leases.push(task["lease_id"].as_str().unwrap_or_default().to_owned());
        }
    }
    for (i, lease) in leases.iter().enumerate() {
        let (path, body) = if i < 2 {
            ("complete", json!({"output": {}}))
        } else {
            ("fail", json!({"error": "no", "retryable": false}))
        };
        let (status, answer) = s.post(&format!("/api/v1/tasks/{lease}/{path}"), body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let body = wait_body(s, &format!("/api/v1/agents/{agent}"), |b| {
        b["completed"] == 2 && b["failed"] == 1
    })
    .await;
    assert!(body["p50_duration_ms"].is_u64(), "{body}");
    // Every execution ended (the engine's last events, dead letter included, are in the
    // log) before the projector is caught up and the tables compared.
    for execution in &executions {
        s.wait_terminal(execution).await;
    }
    let checkpoint = caught_up(s).await;
    let live = s.backends.read_models.dump().await.expect("dump live");
    assert_eq!(live.agent_results.len(), 3, "{:?}", live.agent_results);
    assert!(live.agent_results.iter().all(|r| r.duration_ms.is_some()));
    let catalog = WorkflowCatalog::new(s.backends.store.clone(), Limits::default());
    rebuild(
        s.backends.stored.clone(),
        catalog,
        s.backends.read_models.clone(),
        |_| {},
    )
    .await
    .expect("rebuild");
    let rebuilt = s.backends.read_models.dump().await.expect("dump rebuilt");
    assert_eq!(rebuilt.checkpoint, checkpoint);
    assert_eq!(rebuilt.agent_results, live.agent_results);
    // The failed execution's task is a dead letter, rebuilt the same.
    assert_eq!(live.dead_letters.len(), 1, "{:?}", live.dead_letters);
    assert_eq!(live.dead_letters[0].body.task_id, "job");
    assert_eq!(rebuilt.dead_letters, live.dead_letters);
    let (_, after) = s.get(&format!("/api/v1/agents/{agent}")).await;
    assert_eq!(
        (
            &after["completed"],
            &after["failed"],
            &after["success_rate"]
        ),
        (&json!(2), &json!(1), &body["success_rate"])
    );
}
