//! Webhooks end to end: a receiver on loopback (the server's egress allowlist opens
//! loopback, as for `http` tasks) gets every matching event of its tenant exactly as the
//! log has it, in log order, signed — through failures (retried with backoff), across a
//! restart with events recorded while no server ran (and a crashed holder's lease
//! taken over), with two servers on one store (each event once), and, from a receiver
//! that always fails, dead-lettered deliveries that are listed. Bad input is refused
//! with nothing recorded.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{id_of, Mode, TestServer};
use crate::hook_receiver::{signature_is_valid, Received, Receiver, DELIVERY_PATIENCE};
use crate::tenants::system_admin;

/// Every event of `executions`, as `GET /api/v1/executions/{id}/events` serves them,
/// whose type is in `types`, in log order.
async fn served_events(server: &TestServer, executions: &[String], types: &[&str]) -> Vec<Value> {
    let mut out = Vec::new();
    for id in executions {
        let (status, page) = server
            .get(&format!("/api/v1/executions/{id}/events?limit=10000"))
            .await;
        assert_eq!(status, 200, "{page}");
        out.extend(
            page["events"]
                .as_array()
                .expect("events")
                .iter()
                .filter(|e| types.contains(&e["type"].as_str().unwrap_or_default()))
                .cloned(),
        );
    }
    out.sort_by_key(|e| e["position"].as_u64());
    out
}

fn two_tasks() -> Value {
    json!({"name": "hooked", "tasks": [
        {"id": "a", "kind": "noop"},
        {"id": "b", "kind": "noop", "depends_on": ["a"]}
    ]})
}

async fn create_hook(server: &TestServer, url: &str, events: Value, secret: Option<&str>) -> Value {
    let mut body = json!({"url": url, "events": events});
    if let Some(secret) = secret {
        body["secret"] = json!(secret);
    }
    let (status, created) = server.post("/api/v1/hooks", body).await;
    assert_eq!(status, 201, "{created}");
    created
}

/// The bodies delivered are the served envelopes, in log order, each signed.
fn assert_delivered_exactly(delivered: &[Received], expected: &[Value], secret: &str, hook: &str) {
    let ids = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let got: Vec<String> = delivered.iter().map(|r| r.event.clone()).collect();
    assert_eq!(
        got,
        ids(expected),
        "every matching event, in log order, nothing else"
    );
    for (r, e) in delivered.iter().zip(expected) {
        assert_eq!(&r.body, e, "delivered exactly as the log serves it");
        assert_eq!(r.hook, hook);
        assert!(
            signature_is_valid(secret, &r.signature, &r.raw),
            "signature {:?} of {}",
            r.signature,
            r.event
        );
    }
}

const TYPES: [&str; 3] = ["ExecutionStarted", "TaskCompleted", "ExecutionCompleted"];

/// A receiver that answers 500 three times, then 200: every matching event arrives once
/// answered, in order, signed, as the log serves it; the first one after 4 attempts.
pub async fn deliveries_are_signed_complete_and_in_order(server: &TestServer) {
    let receiver = Receiver::start(3, false).await;
    let secret = "test-secret-for-hooks";
    let hook = create_hook(server, &receiver.url, json!(TYPES), Some(secret)).await;
    assert_eq!(hook["secret"], secret);
    let hook_id = id_of(&hook, "id");
    // A hook without a secret gets a generated one, shown once.
    let other = create_hook(server, &receiver.url, json!(["TenantDataErased"]), None).await;
    let generated = other["secret"].as_str().expect("a secret");
    assert!(
        generated.starts_with("whsec_") && generated.len() == 70,
        "{generated}"
    );
    let (status, shown) = server.get(&format!("/api/v1/hooks/{hook_id}")).await;
    assert_eq!(status, 200);
    assert!(
        shown.get("secret").is_none() && !shown.to_string().contains(secret),
        "{shown}"
    );
    let (_, list) = server.get("/api/v1/hooks").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");
    assert!(!list.to_string().contains(generated));

    let mut executions = Vec::new();
    for n in 0..2 {
        let id = server.run(two_tasks(), json!({"n": n})).await;
        server.wait_terminal(&id).await;
        executions.push(id);
    }
    let expected = served_events(server, &executions, &TYPES).await;
    assert_eq!(
        expected.len(),
        2 * 4,
        "started, a, b, completed per execution"
    );
    let delivered = receiver.wait_for(&expected).await;
    assert_delivered_exactly(&delivered, &expected, secret, &hook_id);
    let first = receiver.requests();
    assert_eq!(
        first
            .iter()
            .take(4)
            .map(|r| (r.attempt, r.answered))
            .collect::<Vec<_>>(),
        vec![(1, 500), (2, 500), (3, 500), (4, 200)],
        "the first event was retried until answered"
    );
    let (status, deliveries) = server
        .get(&format!("/api/v1/hooks/{hook_id}/deliveries?limit=1000"))
        .await;
    assert_eq!(status, 200, "{deliveries}");
    let items = deliveries["items"].as_array().expect("items");
    assert_eq!(items.len(), expected.len(), "{deliveries}");
    assert!(items
        .iter()
        .all(|d| d["state"] == "delivered" && d["last_status"] == 200));
    let oldest = items.last().expect("one");
    assert_eq!(oldest["attempts"], 4);
    assert_eq!(oldest["event_id"], expected[0]["event_id"]);
    // The lifecycle is in the log; the secret is not.
    let head = server.head().await;
    let log = server
        .backends
        .store
        .read_all(0, usize::try_from(head).unwrap_or(usize::MAX))
        .await
        .expect("log");
    let created: Vec<_> = log
        .iter()
        .filter(|e| e.event.type_name() == "HookCreated")
        .collect();
    assert_eq!(created.len(), 2);
    assert!(!serde_json::to_string(&created)
        .expect("json")
        .contains(secret));
    // Deleted: gone from the API, recorded in the log.
    let (status, _) = system_admin(server)
        .call("DELETE", &format!("/api/v1/hooks/{hook_id}"), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(server.get(&format!("/api/v1/hooks/{hook_id}")).await.0, 404);
    assert_eq!(
        server
            .get(&format!("/api/v1/hooks/{hook_id}/deliveries"))
            .await
            .0,
        404
    );
}

/// A receiver that always fails: each delivery is dead-lettered after the configured
/// attempts (3), listed as such, and the hook moves on to the next event.
pub async fn failing_deliveries_are_dead_lettered(server: &TestServer) {
    let receiver = Receiver::start(0, true).await;
    let hook = create_hook(server, &receiver.url, json!(["ExecutionCompleted"]), None).await;
    let hook_id = id_of(&hook, "id");
    let mut executions = Vec::new();
    for n in 0..2 {
        let id = server.run(two_tasks(), json!({"n": n})).await;
        server.wait_terminal(&id).await;
        executions.push(id);
    }
    let expected = served_events(server, &executions, &["ExecutionCompleted"]).await;
    let started = Instant::now();
    let items = loop {
        let (status, page) = server
            .get(&format!("/api/v1/hooks/{hook_id}/deliveries"))
            .await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.len() == 2 && items.iter().all(|d| d["state"] == "dead_lettered") {
            break items;
        }
        assert!(started.elapsed() < DELIVERY_PATIENCE, "{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (d, e) in items.iter().rev().zip(&expected) {
        assert_eq!(d["event_id"], e["event_id"]);
        assert_eq!(d["attempts"], 3);
        assert_eq!(d["last_status"], 500);
        assert!(
            d["last_error"].as_str().unwrap_or_default().contains("500"),
            "{d}"
        );
    }
    let requests = receiver.requests();
    assert_eq!(requests.len(), 6, "3 attempts per event, no more");
    assert_eq!(
        requests.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3, 1, 2, 3]
    );
    let metrics = server.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("conflux_hook_dead_lettered_total") && !l.ends_with(" 0")),
        "dead-lettered deliveries are counted"
    );
}

/// Bad input is refused with a 4xx naming the problem, and nothing is recorded.
pub async fn bad_hooks_are_refused_and_record_nothing(server: &TestServer) {
    let head = server.head().await;
    let refused = [
        (
            json!({"url": "ftp://example.com/in", "events": ["ExecutionCompleted"]}),
            "invalid_url",
            "url",
        ),
        (
            json!({"url": "not a url", "events": ["ExecutionCompleted"]}),
            "invalid_url",
            "url",
        ),
        (
            json!({"url": "http://user:pw@example.com/in", "events": ["*"]}),
            "invalid_url",
            "url",
        ),
        (
            json!({"url": "http://10.1.2.3/in", "events": ["ExecutionCompleted"]}),
            "egress_denied",
            "url",
        ),
        (
            json!({"url": "http://169.254.169.254/latest", "events": ["*"]}),
            "egress_denied",
            "url",
        ),
        (
            json!({"url": "http://example.com/in", "events": ["ExecutionCompleted", "NoSuchEvent", "executionfailed"]}),
            "unknown_event_type",
            "events",
        ),
        (
            json!({"url": "http://example.com/in", "events": []}),
            "invalid_events",
            "events",
        ),
        (
            json!({"url": "http://example.com/in", "events": ["*"], "secret": "short"}),
            "invalid_secret",
            "secret",
        ),
    ];
    for (body, code, field) in refused {
        let (status, answer) = server.post("/api/v1/hooks", body.clone()).await;
        assert_eq!(status, 422, "{body} → {answer}");
        assert_eq!(answer["error"]["code"], code, "{body} → {answer}");
        assert_eq!(answer["error"]["details"]["field"], field, "{answer}");
        if code == "unknown_event_type" {
            assert_eq!(
                answer["error"]["details"]["unknown"],
                json!(["NoSuchEvent", "executionfailed"])
            );
            assert!(answer["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("NoSuchEvent"));
        }
    }
    let (status, answer) = server
        .post("/api/v1/hooks", json!({"url": "http://example.com/in"}))
        .await;
    assert_eq!(status, 400, "events is required: {answer}");
    let (_, list) = server.get("/api/v1/hooks").await;
    assert_eq!(list["items"], json!([]), "nothing created");
    assert_eq!(server.head().await, head, "nothing recorded in the log");
    assert_eq!(
        server
            .get(&format!("/api/v1/hooks/{}", uuid::Uuid::now_v7()))
            .await
            .0,
        404
    );
}

/// A hook misses nothing across a restart: events recorded while its receiver failed,
/// and while no server ran at all, are delivered by the next server, in order — once
/// the lease of a process that crashed holding the hook has run out.
pub async fn nothing_is_missed_across_a_restart(mode: Mode) {
    let server = TestServer::start_tuned(mode, tune).await;
    let receiver = Receiver::start(0, true).await;
    let secret = "restart-secret-value";
    let types = [
        "WorkflowCreated",
        "ExecutionStarted",
        "TaskCompleted",
        "ExecutionCompleted",
    ];
    let hook = create_hook(&server, &receiver.url, json!(types), Some(secret)).await;
    let hook_id = id_of(&hook, "id");
    let hook_uuid = uuid::Uuid::parse_str(&hook_id).expect("a uuid");
    let first = server.run(two_tasks(), json!({"n": 1})).await;
    server.wait_terminal(&first).await;
    // At least one attempt failed before the stop.
    let started = Instant::now();
    while receiver.requests().is_empty() {
        assert!(
            started.elapsed() < DELIVERY_PATIENCE,
            "no attempt before the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let server = server
        .restart(|config| async move {
            // No server runs: a workflow is recorded straight into the store.
            let backends = conflux::backends::Backends::open(&config)
                .await
                .expect("backends");
            let catalog = conflux_engine::catalog::WorkflowCatalog::new(
                backends.store.clone(),
                conflux_schema::validate::Limits::default(),
            );
            let definition = serde_json::from_value(
                json!({"name": "offline", "tasks": [{"id": "a", "kind": "noop"}]}),
            )
            .expect("a definition");
            let metadata = conflux_schema::EventMetadata {
                tenant_id: Some("default".into()),
                actor: Some("test".into()),
                ..Default::default()
            };
            catalog
                .create(definition, metadata)
                .await
                .expect("recorded while stopped");
            // A process that crashed holding the hook's lease: the next server waits
            // for it to run out, then takes the hook over.
            let now = chrono::Utc::now().timestamp_millis();
            let crashed = backends
                .hooks
                .hook_store()
                .acquire(hook_uuid, uuid::Uuid::now_v7(), now, now + 3_000)
                .await
                .expect("acquire");
            assert!(crashed.is_some(), "a clean stop gives the lease back");
        })
        .await;
    let lease_ends = Instant::now() + Duration::from_millis(2_500);
    receiver.inbox.always_fail.store(false, Ordering::SeqCst);
    let second = server.run(two_tasks(), json!({"n": 2})).await;
    server.wait_terminal(&second).await;
    let head = server.head().await;
    let mut expected: Vec<Value> = server
        .backends
        .store
        .read_all(
            hook["start_after"].as_u64().expect("start"),
            usize::try_from(head).unwrap_or(usize::MAX),
        )
        .await
        .expect("log")
        .into_iter()
        .filter(|e| e.metadata.tenant() == "default" && types.contains(&e.event.type_name()))
        .map(|e| serde_json::to_value(e).expect("json"))
        .collect();
    expected.sort_by_key(|e| e["position"].as_u64());
    let served = served_events(&server, &[first, second], &types).await;
    assert!(
        served.iter().all(|e| expected.contains(e)),
        "the log read is the served one"
    );
    assert_eq!(
        expected
            .iter()
            .filter(|e| e["type"] == "WorkflowCreated")
            .count(),
        3,
        "two workflows created while serving, one while stopped"
    );
    let delivered = receiver.wait_for(&expected).await;
    assert_delivered_exactly(&delivered, &expected, secret, &hook_id);
    assert!(
        delivered.iter().all(|r| r.at >= lease_ends),
        "nothing delivered while the crashed holder's lease ran"
    );
    server.stop().await;
}

/// Two servers on one store: one of them at a time delivers the hook (its lease), so
/// every matching event arrives once, in order, whichever server recorded it.
pub async fn two_servers_deliver_each_event_once() {
    let first = TestServer::start_tuned(Mode::PostgresRedis, tune).await;
    let second = first.join().await;
    let receiver = Receiver::start(0, false).await;
    let secret = "two-servers-secret";
    let hook = create_hook(&first, &receiver.url, json!(TYPES), Some(secret)).await;
    let hook_id = id_of(&hook, "id");
    let mut executions = Vec::new();
    for (n, server) in [&first, &second, &first, &second].into_iter().enumerate() {
        let id = server.run(two_tasks(), json!({"n": n})).await;
        server.wait_terminal(&id).await;
        executions.push(id);
    }
    let expected = served_events(&first, &executions, &TYPES).await;
    let delivered = receiver.wait_for(&expected).await;
    assert_delivered_exactly(&delivered, &expected, secret, &hook_id);
    // Give a second deliverer the time to repeat anything, then: nothing was.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        receiver.requests().len(),
        expected.len(),
        "each event delivered once"
    );
    second.stop().await;
    first.stop().await;
}

/// A hook's secret is in no table, file, Redis key or log line, in plain text, after
/// deliveries signed with it.
pub async fn a_hook_secret_is_nowhere_at_rest(mode: Mode) {
    crate::raw_scan::capture_logs();
    let server = TestServer::start_tuned(mode, tune).await;
    let receiver = Receiver::start(1, false).await;
    let secret = format!("hooksecret-{}", uuid::Uuid::now_v7().simple());
    let hook = create_hook(
        &server,
        &receiver.url,
        json!(["ExecutionCompleted"]),
        Some(&secret),
    )
    .await;
    let hook_id = id_of(&hook, "id");
    let id = server.run(two_tasks(), json!({})).await;
    server.wait_terminal(&id).await;
    let expected = served_events(&server, &[id], &["ExecutionCompleted"]).await;
    let delivered = receiver.wait_for(&expected).await;
    assert_delivered_exactly(&delivered, &expected, &secret, &hook_id);
    let scan = crate::raw_scan::scan_of(&server);
    let leaks = scan.occurrences(&secret).await;
    assert!(
        leaks.is_empty(),
        "the hook's secret is stored or logged: {leaks:?}"
    );
    assert!(
        !scan.occurrences(&hook_id).await.is_empty(),
        "the scan finds what is stored (the hook's id)"
    );
    server.stop().await;
}

/// Small retries so the tests stay short: 3 attempts, 50 ms apart at first.
fn tune(config: &mut conflux::config::Config) {
    config.hooks.hook_max_attempts = 3;
    config.hooks.hook_backoff_ms = 50;
    config.hooks.hook_timeout_seconds = 5;
}

macro_rules! hook_scenarios {
    ($mode_mod:ident, $mode:expr) => {
        mod $mode_mod {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn deliveries_are_signed_complete_and_in_order() {
                let server = crate::harness::TestServer::start_tuned($mode, |c| {
                    super::tune(c);
                    c.hooks.hook_max_attempts = 8;
                })
                .await;
                super::deliveries_are_signed_complete_and_in_order(&server).await;
                server.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn failing_deliveries_are_dead_lettered() {
                let server = crate::harness::TestServer::start_tuned($mode, super::tune).await;
                super::failing_deliveries_are_dead_lettered(&server).await;
                server.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_hooks_are_refused_and_record_nothing() {
                // The operator's default policy: public addresses only.
                let server = crate::harness::TestServer::start_tuned($mode, |c| {
                    c.egress_allow = String::new();
                })
                .await;
                super::bad_hooks_are_refused_and_record_nothing(&server).await;
                server.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_hook_secret_is_nowhere_at_rest() {
                super::a_hook_secret_is_nowhere_at_rest($mode).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn nothing_is_missed_across_a_restart() {
                super::nothing_is_missed_across_a_restart($mode).await;
            }
        }
    };
}

hook_scenarios!(postgres_redis, crate::harness::Mode::PostgresRedis);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_two_servers_deliver_each_event_once() {
    two_servers_deliver_each_event_once().await;
}
hook_scenarios!(embedded, crate::harness::Mode::Embedded);
hook_scenarios!(sealed, crate::harness::Mode::Sealed);
