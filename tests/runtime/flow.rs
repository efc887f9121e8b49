//! The happy paths: tasks run in dependency order, a join waits for every branch, data
//! flows from the input and from upstream outputs with its JSON types, and a repeated
//! idempotency key starts nothing new.

use serde_json::{json, Value};

use crate::harness::{id_of, TestServer};

fn noop(id: &str, depends_on: &[&str]) -> Value {
    json!({"id": id, "kind": "noop", "depends_on": depends_on, "input": {"me": id}})
}

/// Scenario 1: A chain of noop tasks completes, each task scheduled only after the previous one
/// completed.
pub async fn chain_runs_in_order(s: &TestServer) {
    let ids = ["a", "b", "c", "d"];
    let tasks: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| noop(id, &ids[i.saturating_sub(1)..i]))
        .collect();
    let execution = s
        .run(json!({"name": "chain", "tasks": tasks}), json!({}))
        .await;
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "completed", "{body:#}");
    // The output is the map of the sink outputs; a noop's output is its input.
    assert_eq!(body["output"], json!({"d": {"me": "d"}}), "{body:#}");
    for id in ids {
        assert_eq!(body["tasks"][id]["status"], "completed", "{body:#}");
        assert_eq!(body["tasks"][id]["attempts"], 1, "{body:#}");
    }

    let log = s.events(&execution).await;
    assert_eq!(log.at(0)["type"], "ExecutionStarted");
    assert_eq!(log.last_type(), "ExecutionCompleted");
    // Paging through it three events at a time reads exactly the same log.
    assert_eq!(s.events_paged(&execution, 3).await.0, log.0);
    for pair in ids.windows(2) {
        let done = log.only("TaskCompleted", pair[0]);
        let next = log.only("TaskScheduled", pair[1]);
        assert!(
            done < next,
            "`{}` scheduled before `{}` completed: {:?}",
            pair[1],
            pair[0],
            log.types()
        );
    }
    for id in ids {
        assert!(log.only("TaskScheduled", id) < log.only("TaskDispatched", id));
        assert!(log.only("TaskDispatched", id) < log.only("TaskCompleted", id));
    }
}

/// Scenario 2: Fan-out / fan-in (1 → 5 → 1): the join is scheduled only after all five
/// branches completed, and each branch only after the root.
pub async fn diamond_joins_after_every_branch(s: &TestServer) {
    let branches = ["b1", "b2", "b3", "b4", "b5"];
    let mut tasks = vec![noop("root", &[])];
    tasks.extend(branches.iter().map(|b| noop(b, &["root"])));
    tasks.push(noop("join", &branches));
    let execution = s
        .run(json!({"name": "diamond", "tasks": tasks}), json!({}))
        .await;
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "completed", "{body:#}");
    assert_eq!(body["output"], json!({"join": {"me": "join"}}));

    let log = s.events(&execution).await;
    let root_done = log.only("TaskCompleted", "root");
    let join = log.only("TaskScheduled", "join");
    for b in branches {
        assert!(
            root_done < log.only("TaskScheduled", b),
            "{:?}",
            log.types()
        );
        assert!(
            log.only("TaskCompleted", b) < join,
            "join before `{b}`: {:?}",
            log.types()
        );
    }
    assert_eq!(log.count("TaskCompleted", None), 7);
    assert_eq!(log.last_type(), "ExecutionCompleted");
}

/// Scenario 3: Data passing: `${input.x}` alone keeps its JSON type, `${tasks.a.output.y}`
/// reaches the downstream input, and references inside text are interpolated.
pub async fn data_flows_with_types(s: &TestServer) {
    let definition = json!({
        "name": "data",
        "tasks": [
            {"id": "a", "kind": "noop",
             "input": {"y": "${input.x}", "obj": "${input.obj}", "list": "${input.list}", "flag": "${input.flag}"}},
            {"id": "b", "kind": "noop", "depends_on": ["a"],
             "input": {"from_a": "${tasks.a.output.y}", "deep": "${tasks.a.output.obj.inner}",
                       "text": "hello ${input.name}, x=${input.x}, y=${tasks.a.output.y}",
                       "literal": "no references here"}}
        ]
    });
    let input = json!({"x": 42, "name": "ada", "obj": {"inner": [1, 2.5, null]}, "list": ["p", "q"], "flag": true});
    let execution = s.run(definition, input.clone()).await;
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "completed", "{body:#}");
    assert_eq!(body["input"], input);

    let a = json!({"y": 42, "obj": {"inner": [1, 2.5, null]}, "list": ["p", "q"], "flag": true});
    let b = json!({"from_a": 42, "deep": [1, 2.5, null], "text": "hello ada, x=42, y=42",
                   "literal": "no references here"});
    assert_eq!(body["tasks"]["a"]["output"], a, "{body:#}");
    assert_eq!(body["tasks"]["b"]["output"], b, "{body:#}");
    assert_eq!(body["output"], json!({"b": b}));

    // The log records the resolved input each attempt was dispatched with.
    let log = s.events(&execution).await;
    assert_eq!(log.at(log.only("TaskDispatched", "a"))["data"]["input"], a);
    assert_eq!(log.at(log.only("TaskDispatched", "b"))["data"]["input"], b);
}

/// Scenario 10: The same `Idempotency-Key` twice gives the same execution: 202, then 200, and
/// only one `ExecutionStarted`. Another key starts another execution.
pub async fn idempotent_execute(s: &TestServer) {
    let workflow = s
        .create_workflow(json!({"name": "idem", "tasks": [noop("only", &[])]}))
        .await;
    let path = format!("/api/v1/workflows/{workflow}/execute");
    let key = [("Idempotency-Key", "order-17")];
    let (first, body1) = s.post_with(&path, &key, json!({"input": {"n": 1}})).await;
    assert_eq!(first, 202, "{body1}");
    let (second, body2) = s.post_with(&path, &key, json!({"input": {"n": 2}})).await;
    assert_eq!(second, 200, "{body2}");
    let execution = id_of(&body1, "execution_id");
    assert_eq!(id_of(&body2, "execution_id"), execution);
    assert_eq!(body2["workflow_id"], body1["workflow_id"]);

    // Eight at once with a fresh key: one starts it, seven find it.
    let race = [("Idempotency-Key", "order-race")];
    let replies =
        futures_all((0..8).map(|n| s.post_with(&path, &race, json!({"input": {"n": n}})))).await;
    let started: Vec<&(u16, Value)> = replies
        .iter()
        .filter(|(status, _)| *status == 202)
        .collect();
    assert_eq!(started.len(), 1, "{replies:?}");
    assert!(
        replies.iter().all(|(status, b)| [200, 202].contains(status)
            && b["execution_id"] == started[0].1["execution_id"]),
        "{replies:?}"
    );
    let raced = id_of(&started[0].1, "execution_id");
    assert_eq!(s.events(&raced).await.count("ExecutionStarted", None), 1);

    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "completed", "{body:#}");
    assert_eq!(
        body["input"],
        json!({"n": 1}),
        "the first request's input is kept"
    );
    let (third, body3) = s.post_with(&path, &key, json!({})).await;
    assert_eq!(
        (third, &body3["execution_id"]),
        (200, &json!(execution)),
        "{body3}"
    );
    assert_eq!(body3["status"], "completed");

    let log = s.events(&execution).await;
    assert_eq!(log.count("ExecutionStarted", None), 1, "{:?}", log.types());
    assert_eq!(log.at(0)["data"]["idempotency_key"], "order-17");
    assert_eq!(log.count("TaskCompleted", None), 1);

    // `?execute=true` creates and starts in one request.
    let (status, created) = s
        .post(
            "/api/v1/workflows?execute=true",
            json!({"name": "idem", "tasks": [noop("only", &[])], "input": {"n": 3}}),
        )
        .await;
    assert_eq!((status, &created["version"]), (201, &json!(2)), "{created}");
    let body = s.wait_terminal(&id_of(&created, "execution_id")).await;
    assert_eq!(
        (&body["status"], &body["input"]),
        (&json!("completed"), &json!({"n": 3})),
        "{body:#}"
    );

    let (other, body4) = s
        .post_with(&path, &[("Idempotency-Key", "order-18")], json!({}))
        .await;
    assert_eq!(other, 202, "{body4}");
    assert_ne!(id_of(&body4, "execution_id"), execution);
}

/// Polls every future together, keeping their order (the harness has no `futures`).
async fn futures_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (future, out) in pending.iter_mut().zip(done.iter_mut()) {
            if out.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    done.into_iter().flatten().collect()
}
