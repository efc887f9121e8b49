//! Fair shares between tenants, end to end: one tenant's backlog of ready executions
//! does not hold back another tenant's first task. Counted in log positions (what the
//! store committed in between), never timed: a slow machine makes everything slower,
//! but it does not change how much of the backlog may be served before the newcomer.
//! The engine runs with small rounds and a short read-ahead margin, so that a backlog a
//! test can afford is many times the bound.

use conflux_engine::executor::EngineOptions;
use conflux_schema::access::Role;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::harness::{id_of, Mode, TestServer};
use crate::tenants::{key_in, system_admin, Caller};

/// Executions in the busy tenant's backlog.
const BACKLOG: usize = 200;
/// Noop tasks in each of them, one after another.
const STEPS: usize = 10;
/// The engine's `round_events` here (rounds while only the backlog's tenant has work).
const ROUND_EVENTS: usize = 64;
/// The engine's `shared_round_events` here (rounds while both tenants have work).
const SHARED_ROUND_EVENTS: usize = 32;
/// The engine's `max_unread` here.
const MAX_UNREAD: u64 = 512;

/// Tenant `busy` submits a backlog of chains at once; as soon as they are accepted,
/// tenant `quiet` submits one execution. Its first task starts before the backlog has
/// drained, and between its `ExecutionStarted` and its first `TaskStarted` the store
/// commits no more of the backlog than the engine's bounds allow (what it may run ahead
/// of the bus, a round in flight and the round that takes the newcomer), while the
/// backlog itself is several times that.
pub async fn a_backlog_does_not_hold_back_another_tenant(mode: Mode) {
    let server = TestServer::start_engine_tuned(mode, |engine: &mut EngineOptions| {
        engine.round_events = ROUND_EVENTS;
        engine.shared_round_events = SHARED_ROUND_EVENTS;
        engine.max_unread = MAX_UNREAD;
    })
    .await;
    check(&server).await;
    server.stop().await;
}

async fn check(server: &TestServer) {
    let admin = system_admin(server);
    for tenant in ["busy", "quiet"] {
        admin
            .ok("POST", "/api/v1/tenants", Some(json!({"tenant": tenant})))
            .await;
    }
    let busy = key_in(server, "busy", Role::Developer).await;
    let quiet = key_in(server, "quiet", Role::Developer).await;
    let tasks: Vec<Value> = (0..STEPS)
        .map(|i| match i {
            0 => json!({"id": "t0", "kind": "noop"}),
            _ => json!({"id": format!("t{i}"), "kind": "noop", "depends_on": [format!("t{}", i - 1)]}),
        })
        .collect();
    let chain = busy
        .ok(
            "POST",
            "/api/v1/workflows",
            Some(json!({"name": "backlog", "tasks": tasks})),
        )
        .await;
    let chain = id_of(&chain, "workflow_id");
    let one = quiet
        .ok(
            "POST",
            "/api/v1/workflows",
            Some(json!({"name": "one", "tasks": [{"id": "only", "kind": "noop"}]})),
        )
        .await;
    let one = id_of(&one, "workflow_id");

    let path = format!("/api/v1/workflows/{chain}/execute");
    let accepted = futures::stream::iter(0..BACKLOG)
        .map(|n| busy.call("POST", &path, Some(json!({"input": {"n": n}}))))
        .buffer_unordered(64)
        .filter(|(status, _)| std::future::ready(*status == 202))
        .count()
        .await;
    assert_eq!(accepted, BACKLOG, "the backlog is accepted");
    let newcomer = quiet
        .ok(
            "POST",
            &format!("/api/v1/workflows/{one}/execute"),
            Some(json!({"input": {}})),
        )
        .await;
    let newcomer = id_of(&newcomer, "execution_id");

    let backlog = all_events(&busy, &chain, |events| {
        events
            .iter()
            .filter(|e| e["type"] == "ExecutionCompleted")
            .count()
            == BACKLOG
    })
    .await;
    let mine = all_events(&quiet, &one, |events| {
        events.iter().any(|e| e["type"] == "ExecutionCompleted")
    })
    .await;
    let position_of = |ty: &str| {
        mine.iter()
            .find(|e| e["type"] == ty && e["stream_id"] == format!("execution-{newcomer}"))
            .and_then(|e| e["position"].as_u64())
            .unwrap_or_else(|| panic!("no {ty} of {newcomer}"))
    };
    let (started, first_task) = (position_of("ExecutionStarted"), position_of("TaskStarted"));
    let between = backlog
        .iter()
        .filter(|e| (started..first_task).contains(&position(e)))
        .count();
    let after = backlog.iter().filter(|e| position(e) > first_task).count();
    // Before the engine reads the newcomer it runs at most `max_unread` positions ahead
    // of the bus, plus the round that crossed it (the backlog alone: a full round); then
    // the round in flight (the same), and the newcomer's (a shared round), which takes
    // it in its first turn. A round may exceed its budget by one decision (a few events
    // of a chain step): one more shared round's worth covers that.
    let bound = MAX_UNREAD as usize + 2 * ROUND_EVENTS + 2 * SHARED_ROUND_EVENTS;
    assert!(
        after > 2 * bound,
        "the backlog still had more than twice the bound to do when the newcomer's first \
         task started ({after} events after it), so the bound is a real one"
    );
    assert!(
        between <= bound,
        "{between} events of the backlog were committed between the newcomer's start and \
         its first task (bound {bound}; {after} came after it)"
    );
}

/// A workflow's events (its executions'), in position order, read again until `done`
/// holds for them.
async fn all_events(
    caller: &Caller<'_>,
    workflow: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let mut events: Vec<Value> = Vec::new();
    loop {
        let after = events.last().map_or(0, position);
        let page = caller
            .ok(
                "GET",
                &format!("/api/v1/workflows/{workflow}/events?after_position={after}&limit=1000"),
                None,
            )
            .await;
        let new = page["events"].as_array().cloned().unwrap_or_default();
        if new.is_empty() {
            if done(&events) {
                return events;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "workflow {workflow} did not get there; {} events so far",
                events.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        events.extend(new);
    }
}

fn position(event: &Value) -> u64 {
    event["position"].as_u64().unwrap_or_default()
}
