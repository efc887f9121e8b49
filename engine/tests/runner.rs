//! The built-in runners against a real local HTTP server (axum on `127.0.0.1:0`).
//!
//! Every test starts its own server, so call counters are per test. Nothing asserts
//! on durations beyond "it returned".

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Json, Router};
use conflux_engine::runner::egress::EgressPolicy;
use conflux_engine::runner::{BreakerOptions, BreakerPhase, BuiltinRunner, Outcome, RunnerOptions};
use conflux_schema::definition::{HttpSpec, TaskKind};
use serde_json::{json, Value};

/// A running test server.
struct Server {
    base: String,
    /// Requests received, on any route.
    hits: Arc<AtomicUsize>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct Routes {
    hits: Arc<AtomicUsize>,
    flaky_calls: Arc<AtomicUsize>,
    flaky_failures: usize,
}

/// Every route, counted in one place: `/ok` echoes method, headers and JSON body;
/// `/flaky` answers 503 to its first `flaky_failures` calls, then 200.
async fn route(
    State(routes): State<Routes>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    routes.hits.fetch_add(1, Ordering::SeqCst);
    match uri.path() {
        "/ok" => {
            let headers: BTreeMap<String, String> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            Json(json!({"method": method.as_str(), "body": body, "headers": headers}))
                .into_response()
        }
        "/text" => "hello, world".into_response(),
        "/empty" => StatusCode::NO_CONTENT.into_response(),
        "/fail500" => (StatusCode::INTERNAL_SERVER_ERROR, "database on fire").into_response(),
        "/redirect" => Redirect::temporary("/ok").into_response(),
        "/big" => "x".repeat(2 * 1024 * 1024).into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            "finally".into_response()
        }
        "/flaky" => {
            let n = routes.flaky_calls.fetch_add(1, Ordering::SeqCst);
            if n < routes.flaky_failures {
                (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response()
            } else {
                Json(json!({"call": n + 1})).into_response()
            }
        }
        // `/missing` and anything else.
        _ => (StatusCode::NOT_FOUND, "no such thing").into_response(),
    }
}

async fn start_server(flaky_failures: usize) -> Server {
    let routes = Routes {
        hits: Arc::default(),
        flaky_calls: Arc::default(),
        flaky_failures,
    };
    let hits = routes.hits.clone();
    let app = Router::new().fallback(route).with_state(routes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    Server {
        base: format!("http://{addr}"),
        hits,
    }
}

/// A runner that may call the test servers on loopback (the default policy denies it).
fn local_runner() -> BuiltinRunner {
    BuiltinRunner::new(RunnerOptions {
        egress: EgressPolicy::allowing_loopback(),
        ..RunnerOptions::default()
    })
}

fn runner(threshold: u32, open_for: Duration) -> BuiltinRunner {
    BuiltinRunner::new(RunnerOptions {
        breaker: BreakerOptions {
            failure_threshold: threshold,
            open_for,
        },
        // The test server listens on loopback.
        egress: EgressPolicy::allowing_loopback(),
        ..RunnerOptions::default()
    })
}

fn get_spec(url: String) -> HttpSpec {
    HttpSpec {
        method: "GET".into(),
        url,
        headers: BTreeMap::new(),
        body: None,
    }
}

async fn call(runner: &BuiltinRunner, url: String) -> Outcome {
    call_with(runner, get_spec(url), None).await
}

async fn call_with(runner: &BuiltinRunner, spec: HttpSpec, timeout: Option<Duration>) -> Outcome {
    runner
        .run(TaskKind::Http, &Value::Null, Some(&spec), None, timeout)
        .await
}

#[track_caller]
fn assert_failed(outcome: &Outcome, want_retryable: bool, contains: &str) {
    match outcome {
        Outcome::Failed { error, retryable } => {
            assert_eq!(*retryable, want_retryable, "retryable for: {error}");
            assert!(error.contains(contains), "`{error}` lacks `{contains}`");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn breaker_of(runner: &BuiltinRunner, server: &Server) -> conflux_engine::runner::BreakerState {
    let host = server.base.trim_start_matches("http://");
    runner
        .breaker_snapshot()
        .into_iter()
        .find(|s| s.host == host)
        .expect("host tracked")
}

#[tokio::test]
async fn noop_echoes_its_input() {
    let input = json!({"order": 42, "items": ["a", "b"]});
    let outcome = local_runner()
        .run(TaskKind::Noop, &input, None, None, None)
        .await;
    assert_eq!(outcome, Outcome::Completed(input));
}

#[tokio::test]
async fn sleep_completes_with_its_duration() {
    let runner = local_runner();
    let outcome = runner
        .run(TaskKind::Sleep, &Value::Null, None, Some(20), None)
        .await;
    assert_eq!(outcome, Outcome::Completed(json!({"slept_ms": 20})));
    let outcome = runner
        .run(
            TaskKind::Sleep,
            &Value::Null,
            None,
            Some(60_000),
            Some(Duration::from_millis(50)),
        )
        .await;
    assert_failed(&outcome, true, "timed out");
}

#[tokio::test]
async fn agent_tasks_are_not_built_in() {
    let outcome = local_runner()
        .run(TaskKind::Agent, &json!({}), None, None, None)
        .await;
    assert_failed(
        &outcome,
        false,
        "agent tasks are not run by the built-in runner",
    );
}

#[tokio::test]
async fn http_2xx_outputs_status_and_parsed_body() {
    let server = start_server(0).await;
    let runner = local_runner();
    match call(&runner, server.url("/ok")).await {
        Outcome::Completed(output) => {
            assert_eq!(output["status"], 200);
            assert_eq!(output["body"]["method"], "GET");
            assert_eq!(output["body"]["body"], Value::Null);
        }
        other => panic!("expected completion, got {other:?}"),
    }
    assert_eq!(
        call(&runner, server.url("/text")).await,
        Outcome::Completed(json!({"status": 200, "body": "hello, world"}))
    );
    assert_eq!(
        call(&runner, server.url("/empty")).await,
        Outcome::Completed(json!({"status": 204, "body": null}))
    );
}

#[tokio::test]
async fn post_body_and_headers_arrive() {
    let server = start_server(0).await;
    let spec = HttpSpec {
        method: "post".into(),
        url: server.url("/ok"),
        headers: BTreeMap::from([("X-Request-Tag".to_owned(), "abc-123".to_owned())]),
        body: Some(json!({"amount": 12.5, "currency": "EUR"})),
    };
    let Outcome::Completed(output) = call_with(&local_runner(), spec, None).await else {
        panic!("expected completion");
    };
    let echo = &output["body"];
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body"], json!({"amount": 12.5, "currency": "EUR"}));
    assert_eq!(echo["headers"]["x-request-tag"], "abc-123");
    assert_eq!(echo["headers"]["content-type"], "application/json");
    assert!(echo["headers"]["user-agent"]
        .as_str()
        .is_some_and(|ua| ua.starts_with("conflux/")));
}

#[tokio::test]
async fn http_500_is_retryable_and_quotes_the_body() {
    let server = start_server(0).await;
    let outcome = call(&local_runner(), server.url("/fail500")).await;
    assert_failed(&outcome, true, "HTTP 500 from");
    assert_failed(&outcome, true, "database on fire");
}

#[tokio::test]
async fn http_404_is_not_retryable() {
    let server = start_server(0).await;
    let outcome = call(&local_runner(), server.url("/missing")).await;
    assert_failed(&outcome, false, "HTTP 404");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = start_server(0).await;
    let outcome = call(&local_runner(), server.url("/redirect")).await;
    assert_failed(&outcome, false, "HTTP 307");
    assert_eq!(server.hits(), 1, "the redirect target was not called");
}

#[tokio::test]
async fn oversized_bodies_fail_for_good() {
    let server = start_server(0).await;
    let outcome = call(&local_runner(), server.url("/big")).await;
    assert_failed(&outcome, false, "larger than");
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let url = format!("http://user:secret@{addr}/ok");
    let outcome = call(&local_runner(), url).await;
    assert_failed(&outcome, true, &format!("http://{addr}/ok"));
    assert!(
        !format!("{outcome:?}").contains("secret"),
        "credentials leaked"
    );
}

#[tokio::test]
async fn timeouts_are_retryable() {
    let server = start_server(0).await;
    let runner = local_runner();
    let task_timeout = Some(Duration::from_millis(200));
    let outcome = call_with(&runner, get_spec(server.url("/slow")), task_timeout).await;
    assert_failed(&outcome, true, "timed out");

    let short = BuiltinRunner::new(RunnerOptions {
        http_timeout: Duration::from_millis(200),
        // The test server listens on loopback.
        egress: EgressPolicy::allowing_loopback(),
        ..RunnerOptions::default()
    });
    let outcome = call(&short, server.url("/slow")).await;
    assert_failed(&outcome, true, "timed out");
}

#[tokio::test]
async fn invalid_requests_are_not_retryable_and_never_sent() {
    let server = start_server(0).await;
    let runner = local_runner();
    let mut spec = get_spec(server.url("/ok"));
    spec.method = "BAD METHOD".into();
    assert_failed(&call_with(&runner, spec, None).await, false, "method");
    assert_failed(
        &call(&runner, "not a url".into()).await,
        false,
        "invalid URL",
    );
    assert_failed(
        &call(&runner, "ftp://example.com/x".into()).await,
        false,
        "scheme",
    );
    // This build has no TLS backend: refused up front, not retried.
    assert_failed(
        &call(&runner, "https://example.com/x".into()).await,
        false,
        "https",
    );
    assert_failed(
        &runner
            .run(TaskKind::Http, &json!({}), None, None, None)
            .await,
        false,
        "http",
    );
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn flaky_host_recovers_and_a_success_resets_the_breaker() {
    let server = start_server(2).await;
    let runner = runner(3, Duration::from_secs(60));
    assert_failed(&call(&runner, server.url("/flaky")).await, true, "HTTP 503");
    assert_failed(&call(&runner, server.url("/flaky")).await, true, "HTTP 503");
    assert_eq!(breaker_of(&runner, &server).consecutive_failures, 2);
    assert_eq!(
        call(&runner, server.url("/flaky")).await,
        Outcome::Completed(json!({"status": 200, "body": {"call": 3}}))
    );
    let state = breaker_of(&runner, &server);
    assert_eq!(
        (state.state, state.consecutive_failures),
        (BreakerPhase::Closed, 0)
    );
    // Two more failures stay below the threshold of three: the count restarted.
    for _ in 0..2 {
        assert_failed(
            &call(&runner, server.url("/fail500")).await,
            true,
            "HTTP 500",
        );
    }
    assert_eq!(breaker_of(&runner, &server).state, BreakerPhase::Closed);
}

#[tokio::test]
async fn breaker_opens_after_threshold_and_fails_fast() {
    let server = start_server(0).await;
    let runner = runner(3, Duration::from_secs(60));
    for _ in 0..3 {
        assert_failed(
            &call(&runner, server.url("/fail500")).await,
            true,
            "HTTP 500",
        );
    }
    assert_eq!(server.hits(), 3);
    let outcome = call(&runner, server.url("/ok")).await;
    assert_failed(&outcome, true, "circuit open for 127.0.0.1:");
    assert_eq!(server.hits(), 3, "an open breaker does not call the server");

    let state = breaker_of(&runner, &server);
    assert_eq!(state.state, BreakerPhase::Open);
    assert_eq!(state.state.as_str(), "open");
    assert_eq!(state.consecutive_failures, 3);
    assert_eq!(state.times_opened, 1);
}

#[tokio::test]
async fn half_open_trial_success_closes_the_breaker() {
    let server = start_server(0).await;
    let open_for = Duration::from_millis(300);
    let runner = runner(2, open_for);
    for _ in 0..2 {
        assert_failed(
            &call(&runner, server.url("/fail500")).await,
            true,
            "HTTP 500",
        );
    }
    assert_eq!(breaker_of(&runner, &server).state, BreakerPhase::Open);
    tokio::time::sleep(open_for + Duration::from_millis(100)).await;
    assert_eq!(breaker_of(&runner, &server).state, BreakerPhase::HalfOpen);

    assert!(matches!(
        call(&runner, server.url("/ok")).await,
        Outcome::Completed(_)
    ));
    let state = breaker_of(&runner, &server);
    assert_eq!(
        (state.state, state.consecutive_failures),
        (BreakerPhase::Closed, 0)
    );
    assert!(matches!(
        call(&runner, server.url("/ok")).await,
        Outcome::Completed(_)
    ));
    assert_eq!(server.hits(), 4);
}

#[tokio::test]
async fn half_open_lets_one_trial_through_and_its_failure_reopens() {
    let server = start_server(0).await;
    let open_for = Duration::from_millis(300);
    let runner = runner(2, open_for);
    for _ in 0..2 {
        assert_failed(
            &call(&runner, server.url("/fail500")).await,
            true,
            "HTTP 500",
        );
    }
    tokio::time::sleep(open_for + Duration::from_millis(100)).await;

    // The trial: /slow with a 1 s limit, so it times out (a failure for the breaker).
    let trial = tokio::spawn({
        let runner = runner.clone();
        let spec = get_spec(server.url("/slow"));
        async move { call_with(&runner, spec, Some(Duration::from_secs(1))).await }
    });
    for _ in 0..500 {
        if server.hits() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.hits(), 3, "the trial reached the server");

    // While the trial is in flight, other calls fail fast.
    let outcome = call(&runner, server.url("/ok")).await;
    assert_failed(&outcome, true, "circuit half-open");
    assert_eq!(server.hits(), 3);

    assert_failed(&trial.await.expect("trial task"), true, "timed out");
    let state = breaker_of(&runner, &server);
    assert_eq!(state.state, BreakerPhase::Open);
    assert_eq!(state.times_opened, 2);
    assert_failed(
        &call(&runner, server.url("/ok")).await,
        true,
        "circuit open",
    );
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn four_xx_does_not_open_the_breaker() {
    let server = start_server(0).await;
    let runner = runner(2, Duration::from_secs(60));
    for _ in 0..5 {
        assert_failed(
            &call(&runner, server.url("/missing")).await,
            false,
            "HTTP 404",
        );
    }
    assert_eq!(server.hits(), 5);
    // A closed breaker without failures is not worth tracking.
    assert!(runner.breaker_snapshot().is_empty());
}

#[tokio::test]
async fn connection_failures_open_the_breaker() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let runner = runner(2, Duration::from_secs(60));
    for _ in 0..2 {
        let outcome = call(&runner, format!("http://{addr}/")).await;
        assert!(matches!(
            outcome,
            Outcome::Failed {
                retryable: true,
                ..
            }
        ));
    }
    let outcome = call(&runner, format!("http://{addr}/")).await;
    assert_failed(&outcome, true, &format!("circuit open for {addr}"));
    let snapshot = runner.breaker_snapshot();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].host, addr.to_string());
    assert_eq!(snapshot[0].state, BreakerPhase::Open);
}

/// The default policy refuses loopback: the call fails for good, naming the rule, and
/// the server on loopback hears nothing.
#[tokio::test]
async fn the_default_policy_never_calls_loopback() {
    let server = start_server(0).await;
    for url in [
        server.url("/ok"),
        server.url("/ok").replacen("127.0.0.1", "localhost", 1),
    ] {
        let outcome = call(&BuiltinRunner::default(), url).await;
        assert_failed(&outcome, false, "egress_denied");
        assert_failed(&outcome, false, "loopback");
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), 0);
}
