//! Budgets end to end: agents report what their attempts spent, the execution's body
//! sums it, and past its budget the execution stops dispatching and fails with
//! `budget_exceeded`; bad budgets and bad usage are refused and change nothing.

use serde_json::{json, Value};

use crate::agent::TestAgent;
use crate::harness::TestServer;

fn llm_flow() -> Value {
    json!({"name": "llm-flow", "tasks": [
        {"id": "plan", "kind": "agent", "agent_role": "llm"},
        {"id": "write", "kind": "agent", "agent_role": "llm", "depends_on": ["plan"]},
        {"id": "check", "kind": "agent", "agent_role": "llm", "depends_on": ["plan"]},
        {"id": "review", "kind": "agent", "agent_role": "llm", "depends_on": ["write", "check"]}
    ]})
}

fn code(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["error"]["code"].as_str().unwrap_or(""))
}

/// `plan` spends 0.02 and 100 tokens, `write` 0.04 more: past `max_cost: 0.05`, the
/// execution cancels `check`, skips `review`, fails with `budget_exceeded`, and nothing
/// is scheduled after the report that crossed the budget.
pub async fn a_budget_stops_an_execution_that_spends_past_it(s: &TestServer) {
    let agent = TestAgent::register(&s.base, &["llm"]).await;
    let workflow = s.create_workflow(llm_flow()).await;
    let (status, body) = s
        .post(
            &format!("/api/v1/workflows/{workflow}/execute"),
            json!({"input": {}, "budget": {"max_cost": 0.05, "max_tokens": 10000}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let execution = body["execution_id"].as_str().expect("an id").to_owned();
    let plan = agent.next_lease().await;
    let usage = json!({"cost": 0.02, "input_tokens": 80, "output_tokens": 20});
    let (status, body) = agent
        .on_lease_raw(
            &plan,
            "complete",
            json!({"output": {"steps": 2}, "usage": usage}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut leases = [agent.next_lease().await, agent.next_lease().await];
    leases.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    let (check, write) = (&leases[0], &leases[1]);
    assert_eq!(
        (check.task_id.as_str(), write.task_id.as_str()),
        ("check", "write")
    );
    let body = s.execution(&execution).await;
    assert_eq!(
        body["usage"],
        json!({"cost": 0.02, "input_tokens": 80, "output_tokens": 20})
    );
    assert_eq!(
        body["budget"],
        json!({"max_cost": 0.05, "max_tokens": 10000})
    );

    let usage = json!({"cost": 0.04, "input_tokens": 10, "output_tokens": 5});
    let (status, body) = agent
        .on_lease_raw(
            write,
            "complete",
            json!({"output": "draft", "usage": usage}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "failed", "{body:#}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("budget_exceeded: cost"), "{error}");
    assert_eq!(body["tasks"]["check"]["status"], "cancelled", "{body:#}");
    assert_eq!(body["tasks"]["review"]["status"], "skipped", "{body:#}");
    assert_eq!(body["usage"]["input_tokens"], 90);
    let (status, answer) = agent.complete(check, json!({})).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (409, &json!("stale_attempt"))
    );

    let log = s.events(&execution).await;
    assert_eq!(log.count("BudgetSet", None), 1);
    assert_eq!(log.count("UsageRecorded", None), 2);
    let crossed = log.only("UsageRecorded", "write");
    assert_eq!(log.at(crossed)["data"]["usage"], usage);
    let later: Vec<&str> = log.types()[crossed..].to_vec();
    assert!(
        !later.contains(&"TaskScheduled") && !later.contains(&"TaskDispatched"),
        "{later:?}"
    );
    assert_eq!(log.last_type(), "ExecutionFailed");
}

/// Budgets that are not positive, empty or mistyped, and usage that is negative or
/// mistyped, are 400s naming the field; nothing is started or recorded.
pub async fn bad_budgets_and_usage_are_refused(s: &TestServer) {
    let agent = TestAgent::register(&s.base, &["llm"]).await;
    let workflow = s.create_workflow(llm_flow()).await;
    let path = format!("/api/v1/workflows/{workflow}/execute");
    let key = [("idempotency-key", "budget-key")];
    // Limits that parse but make no sense name the budget; mistyped ones are shape
    // errors (with where) or unknown fields (named), as every strict body is.
    let refused = [
        (json!({"max_cost": -1}), true),
        (json!({"max_cost": 0}), true),
        (json!({"max_tokens": 0}), true),
        (json!({}), true),
        (json!({"max_tokens": -5}), false),
        (json!({"max_cost": "ten"}), false),
        (json!({"max_dollars": 1}), false),
    ];
    for (budget, named) in refused {
        let answer = s
            .post_with(&path, &key, json!({"input": {}, "budget": budget}))
            .await;
        assert_eq!(
            code(&answer),
            (400, "invalid_request"),
            "{budget}: {}",
            answer.1
        );
        if named {
            assert_eq!(
                answer.1["error"]["details"]["field"], "budget",
                "{}",
                answer.1
            );
        }
    }
    // The key was never used: this start is the first.
    let (status, body) = s
        .post_with(
            &path,
            &key,
            json!({"input": {}, "budget": {"max_tokens": 5}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let execution = body["execution_id"].as_str().expect("an id").to_owned();

    let lease = agent.next_lease().await;
    for usage in [
        json!({"cost": -0.5}),
        json!({"cost": "cheap"}),
        json!({"input_tokens": -1}),
        json!({"input_tokens": 1.5}),
        json!({"tokens": 3}),
    ] {
        let answer = agent
            .on_lease_raw(&lease, "complete", json!({"output": 1, "usage": usage}))
            .await;
        assert_eq!(
            code(&answer),
            (400, "invalid_request"),
            "{usage}: {}",
            answer.1
        );
    }
    let answer = agent
        .on_lease_raw(&lease, "fail", json!({"error": "x", "usage": {"cost": -1}}))
        .await;
    assert_eq!(code(&answer), (400, "invalid_request"), "{}", answer.1);
    assert_eq!(s.events(&execution).await.count("UsageRecorded", None), 0);
    let (status, body) = agent
        .on_lease_raw(
            &lease,
            "complete",
            json!({"output": 1, "usage": {"input_tokens": 6}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "failed", "{body:#}");
    assert_eq!(
        body["error"], "budget_exceeded: 6 tokens are over max_tokens 5",
        "{body:#}"
    );
}
