//! Schedules end to end through HTTP: bad input refused with nothing recorded, a
//! schedule firing every second starting exactly one execution per tick (checked on the
//! event log, not the read models), pause and resume, delete, and the `schedules`
//! quota. Two servers sharing one store, and a SIGKILL over ticks, are in
//! `tests/schedule_ticks.rs` (real processes).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use conflux_engine::store::read_whole_stream;
use conflux_schema::access::Role;
use conflux_schema::schedule::TickOutcome;
use conflux_schema::{Event, StreamId};
use serde_json::{json, Value};

use crate::harness::{id_of, TestServer};
use crate::tenants::{key_in, system_admin, Caller};

/// How long a test waits for ticks on a loaded machine: a guard, never an expectation.
const TICK_PATIENCE: Duration = Duration::from_secs(90);

/// Every `ExecutionStarted` of `workflow` whose actor is `schedule`, as (tick, execution
/// id) from its `causation_id` (`schedule-<id>@<tick>`), read from the workflow's log.
pub async fn started_by(
    caller: &Caller<'_>,
    workflow: &str,
    schedule: &str,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let path = format!("/api/v1/workflows/{workflow}/events?after_position={after}&limit=1000");
        let page = caller.ok("GET", &path, None).await;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            after = after.max(e["position"].as_u64().unwrap_or(0));
            if e["type"] == "ExecutionStarted"
                && e["metadata"]["actor"] == format!("schedule:{schedule}")
            {
                let cause = e["metadata"]["causation_id"].as_str().unwrap_or_default();
                let tick = cause.rsplit('@').next().unwrap_or_default().to_owned();
                out.push((
                    tick,
                    e["data"]["execution_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ));
            }
        }
        if events.len() < 1000 {
            return out;
        }
    }
}

/// The `ScheduleTicked` events of `schedule`, from the store: (tick, outcome, execution).
async fn ticks_of(
    server: &TestServer,
    schedule: &str,
) -> Vec<(DateTime<Utc>, TickOutcome, Option<String>)> {
    let id = uuid::Uuid::parse_str(schedule).expect("schedule id");
    let stream = StreamId::schedule(id);
    let verified = server
        .backends
        .store
        .verify_stream(&stream)
        .await
        .expect("verify");
    assert!(
        verified.valid,
        "the schedule's hash chain verifies: {verified:?}"
    );
    read_whole_stream(&*server.backends.store, &stream)
        .await
        .expect("read")
        .into_iter()
        .filter_map(|e| match e.event {
            Event::ScheduleTicked {
                tick_at,
                outcome,
                execution_id,
                ..
            } => Some((tick_at, outcome, execution_id.map(|i| i.to_string()))),
            _ => None,
        })
        .collect()
}

async fn wait_ticks(server: &TestServer, schedule: &str, at_least: usize) {
    let started = Instant::now();
    while ticks_of(server, schedule).await.len() < at_least {
        assert!(
            started.elapsed() < TICK_PATIENCE,
            "fewer than {at_least} ticks of {schedule}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Bad input is a clear 4xx and records nothing; a schedule firing every second starts
/// exactly one execution per tick (with `metadata.actor` naming it), pauses, resumes,
/// and is deleted.
pub async fn a_schedule_starts_one_execution_per_tick(server: &TestServer) {
    let admin = system_admin(server);
    let workflow = server
        .create_workflow(json!({"name": "ticked", "tasks": [{"id": "a", "kind": "noop"}]}))
        .await;
    let head = server.head().await;
    for (body, status, code) in [
        (
            json!({"workflow": workflow, "cron": "every second"}),
            422,
            "invalid_cron",
        ),
        (
            json!({"workflow": workflow, "cron": "0 0 31 2 *"}),
            422,
            "invalid_cron",
        ),
        (
            json!({"workflow": workflow, "cron": "* * * * *", "timezone": "Mars/Olympus"}),
            422,
            "invalid_timezone",
        ),
        (
            json!({"workflow": uuid::Uuid::now_v7(), "cron": "* * * * *"}),
            404,
            "not_found",
        ),
        (
            json!({"workflow": workflow, "cron": "* * * * *", "overlap": "sometimes"}),
            400,
            "invalid_json",
        ),
        (
            json!({"workflow": workflow, "cron": "* * * * *", "catchup": "all"}),
            400,
            "invalid_request",
        ),
    ] {
        let (got, answer) = admin
            .call("POST", "/api/v1/schedules", Some(body.clone()))
            .await;
        assert_eq!(got, status, "{body}: {answer}");
        let code_ok = answer["error"]["code"] == code
            || (status == 400 && answer["error"]["code"] == "invalid_request");
        assert!(code_ok, "{body}: {answer}");
    }
    assert_eq!(
        server.head().await,
        head,
        "a refused schedule records nothing"
    );
    let listed = admin.ok("GET", "/api/v1/schedules", None).await;
    assert_eq!(listed["items"], json!([]), "{listed}");

    let created = admin
        .call(
            "POST",
            "/api/v1/schedules",
            Some(
                json!({"workflow": workflow, "cron": "* * * * * *", "timezone": "Europe/Paris",
                        "input": {"from": "schedule"}, "overlap": "allow", "catch_up": "all"}),
            ),
        )
        .await;
    assert_eq!(created.0, 201, "{}", created.1);
    let schedule = id_of(&created.1, "id");
    assert_eq!(created.1["status"], "active");
    assert_eq!(created.1["workflow"], workflow.as_str());
    assert_eq!(created.1["timezone"], "Europe/Paris");
    assert_eq!(created.1["overlap"], "allow");
    assert_eq!(created.1["catch_up"], "all");
    assert!(created.1["next_tick_at"].is_string(), "{}", created.1);
    assert!(created.1["last_tick_at"].is_null(), "{}", created.1);

    wait_ticks(server, &schedule, 5).await;
    let paused = admin
        .ok("POST", &format!("/api/v1/schedules/{schedule}/pause"), None)
        .await;
    assert_eq!(paused["status"], "paused");
    assert!(paused["next_tick_at"].is_null(), "{paused}");
    let again = admin
        .call("POST", &format!("/api/v1/schedules/{schedule}/pause"), None)
        .await;
    assert_eq!(again.0, 409, "{}", again.1);
    let before_pause = ticks_of(server, &schedule).await.len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let during_pause = ticks_of(server, &schedule).await.len();
    // A pass already under way when the pause landed may record one more.
    assert!(
        during_pause <= before_pause + 1,
        "{before_pause} → {during_pause}"
    );
    let resumed = admin
        .ok(
            "POST",
            &format!("/api/v1/schedules/{schedule}/resume"),
            None,
        )
        .await;
    assert_eq!(resumed["status"], "active");
    let again = admin
        .call(
            "POST",
            &format!("/api/v1/schedules/{schedule}/resume"),
            None,
        )
        .await;
    assert_eq!(again.0, 409, "{}", again.1);
    wait_ticks(server, &schedule, during_pause + 2).await;
    let got = admin
        .ok("GET", &format!("/api/v1/schedules/{schedule}"), None)
        .await;
    assert!(got["last_tick_at"].is_string(), "{got}");
    assert!(got["last_execution_id"].is_string(), "{got}");
    let listed = admin.ok("GET", "/api/v1/schedules", None).await;
    assert_eq!(listed["items"][0]["id"], schedule.as_str(), "{listed}");
    let deleted = admin
        .call("DELETE", &format!("/api/v1/schedules/{schedule}"), None)
        .await;
    assert_eq!(deleted.0, 204, "{}", deleted.1);
    let gone = admin
        .call("GET", &format!("/api/v1/schedules/{schedule}"), None)
        .await;
    assert_eq!(gone.0, 404, "{}", gone.1);
    let listed = admin.ok("GET", "/api/v1/schedules", None).await;
    assert_eq!(listed["items"], json!([]), "{listed}");

    // The log: one ScheduleTicked per tick, one execution per started tick, every
    // execution a tick's, and no tick lost while the schedule was active.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ticks = ticks_of(server, &schedule).await;
    let distinct: BTreeSet<_> = ticks.iter().map(|(t, ..)| *t).collect();
    assert_eq!(
        distinct.len(),
        ticks.len(),
        "a tick recorded twice: {ticks:?}"
    );
    assert!(ticks.windows(2).all(|w| w[0].0 < w[1].0), "{ticks:?}");
    let first_run: Vec<_> = ticks.iter().take(5).map(|(t, ..)| t.timestamp()).collect();
    assert!(
        first_run.windows(2).all(|w| w[1] == w[0] + 1),
        "every second ticks: {first_run:?}"
    );
    assert!(
        ticks.iter().all(|(_, o, _)| *o == TickOutcome::Started),
        "{ticks:?}"
    );
    let started = started_by(&admin, &workflow, &schedule).await;
    let by_tick: BTreeMap<&str, usize> = started.iter().fold(BTreeMap::new(), |mut m, (t, _)| {
        *m.entry(t.as_str()).or_default() += 1;
        m
    });
    assert!(
        by_tick.values().all(|n| *n == 1),
        "one execution per tick: {by_tick:?}"
    );
    let executions: BTreeSet<&str> = started.iter().map(|(_, e)| e.as_str()).collect();
    let recorded: BTreeSet<&str> = ticks.iter().filter_map(|(_, _, e)| e.as_deref()).collect();
    assert_eq!(
        executions, recorded,
        "the executions are exactly the ticks'"
    );
    let one = started
        .first()
        .map(|(_, e)| e.clone())
        .expect("an execution");
    let done = server.wait_terminal(&one).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["input"], json!({"from": "schedule"}), "{done}");
}

/// A tenant's schedules are its own, and the `schedules` quota counts them: over it,
/// 429 and nothing recorded; a deleted one frees its place.
pub async fn schedules_are_counted_by_the_quota(server: &TestServer) {
    let tenant = "sched-quota";
    let _ = system_admin(server)
        .call("POST", "/api/v1/tenants", Some(json!({"tenant": tenant})))
        .await;
    system_admin(server)
        .ok(
            "PUT",
            &format!("/api/v1/tenants/{tenant}/policy"),
            Some(json!({"quotas": {"schedules": 1}})),
        )
        .await;
    let admin = key_in(server, tenant, Role::Admin).await;
    let workflow = admin
        .ok(
            "POST",
            "/api/v1/workflows",
            Some(json!({"name": "yearly", "tasks": [{"id": "a", "kind": "noop"}]})),
        )
        .await;
    let body = json!({"workflow": workflow["workflow_id"], "cron": "0 0 1 1 *"});
    let first = admin
        .ok("POST", "/api/v1/schedules", Some(body.clone()))
        .await;
    let head = server.head().await;
    let over = admin
        .call("POST", "/api/v1/schedules", Some(body.clone()))
        .await;
    assert_eq!(over.0, 429, "{}", over.1);
    assert_eq!(over.1["error"]["code"], "quota_exceeded");
    assert_eq!(over.1["error"]["details"]["quota"], "schedules");
    assert_eq!(server.head().await, head, "nothing recorded");
    let usage = admin
        .ok("GET", &format!("/api/v1/tenants/{tenant}/usage"), None)
        .await;
    assert!(usage.to_string().contains("\"schedules\""), "{usage}");
    // Another tenant neither sees it nor can change it.
    let other = system_admin(server);
    let path = format!("/api/v1/schedules/{}", id_of(&first, "id"));
    assert_eq!(other.call("GET", &path, None).await.0, 404);
    assert_eq!(other.call("DELETE", &path, None).await.0, 404);
    assert_eq!(admin.call("DELETE", &path, None).await.0, 204);
    let again = admin.call("POST", "/api/v1/schedules", Some(body)).await;
    assert_eq!(
        again.0, 201,
        "a deleted schedule frees its place: {}",
        again.1
    );
    let viewer = key_in(server, tenant, Role::Viewer).await;
    let listed: Value = viewer.ok("GET", "/api/v1/schedules", None).await;
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let refused = viewer
        .call(
            "POST",
            &format!("/api/v1/schedules/{}/pause", id_of(&again.1, "id")),
            None,
        )
        .await;
    assert_eq!(
        refused.0, 403,
        "a viewer reads schedules, never changes them"
    );
}
