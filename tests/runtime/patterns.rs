//! Orchestration patterns end to end: each pattern is created with
//! `POST /api/v1/patterns/{pattern}?create=true`, executed, and run to completion by the
//! Python agent of `examples/agents/pattern_agent.py` (spawned here, killed at the end);
//! the main execution's live stream is exactly the rest of its log, and every execution
//! of the run (children included) has a complete, verified log in which every task of
//! its body has its events and the terminal event is last. Bad parameters are a `422`
//! naming every one of them, and create nothing; nor does a pattern over the tenant's
//! `definitions` quota.

use std::collections::BTreeMap;
use std::process::Stdio;

use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::auth::ADMIN_TOKEN;
use crate::conformance::complaint;
use crate::harness::{id_of, Log, TestServer};
use crate::tenants::{key_in, system_admin};
use crate::waits::stream_is_rest_of;
use conflux_schema::access::Role;

/// The agent the README shows, as a child process serving `roles` for `s`.
fn spawn_agent(s: &TestServer, roles: &[&str], extra: &[&str]) -> Child {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/agents/pattern_agent.py"
    );
    Command::new("python3")
        .arg(script)
        .args(["--url", &s.base, "--token", ADMIN_TOKEN, "--wait-ms", "500"])
        .args(extra)
        .args(roles)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs the pattern agent")
}

/// What one pattern run left: the main execution's body, and every execution of the
/// run (the main one first, then its children, depth first) with its log.
struct Run {
    main: Value,
    executions: BTreeMap<String, (Value, Log)>,
    created: Value,
}

impl Run {
    /// The body of the child execution `task` of execution `parent` started.
    fn child(&self, parent: &Value, task: &str) -> &Value {
        let id = parent["tasks"][task]["child_execution_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{task} started no child: {parent:#}"));
        &self.executions[id].0
    }
}

/// Fails unless `answer` is documented for `POST /api/v1/patterns/{pattern}`, with a
/// body valid against its schema.
async fn documented(s: &TestServer, what: &str, answer: &(u16, Value)) {
    let (_, document) = s.get("/api/v1/openapi.json").await;
    let operation = &document["paths"]["/api/v1/patterns/{pattern}"]["post"];
    if let Some(problem) = complaint(&document, operation, what, answer.0, &answer.1) {
        panic!("{problem}");
    }
}

/// The status of task `task` in an execution body.
fn status<'a>(body: &'a Value, task: &str) -> &'a str {
    body["tasks"][task]["status"].as_str().unwrap_or("")
}

/// Compiles `pattern` (nothing is created), then creates, executes and runs it with an
/// agent serving `roles` (with `agent_args`), and checks every execution of the run.
async fn run_pattern(
    s: &TestServer,
    pattern: &str,
    params: Value,
    roles: &[&str],
    agent_args: &[&str],
) -> Run {
    let name = params["name"].as_str().expect("a name").to_owned();
    let path = format!("/api/v1/patterns/{pattern}");
    let answer = s.post(&path, params.clone()).await;
    documented(s, "compile", &answer).await;
    let (code, compiled) = answer;
    assert_eq!(code, 200, "{compiled}");
    assert_eq!(compiled["main"], name.as_str());
    let names: Vec<&str> = compiled["workflows"]
        .as_array()
        .expect("workflows")
        .iter()
        .map(|w| w["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names.last(), Some(&name.as_str()), "main last: {names:?}");
    let (_, listed) = s.get(&format!("/api/v1/workflows?name={name}")).await;
    assert_eq!(listed["items"], json!([]), "compiling creates nothing");

    let answer = s.post(&format!("{path}?create=true"), params).await;
    documented(s, "create", &answer).await;
    let (code, created) = answer;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["pattern"], pattern);
    assert_eq!(created["main"]["name"], name.as_str());
    let made: Vec<&str> = created["workflows"]
        .as_array()
        .expect("workflows")
        .iter()
        .map(|w| w["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(made, names, "created as compiled, in order");
    for workflow in created["workflows"].as_array().expect("workflows") {
        let id = id_of(workflow, "workflow_id");
        let (_, stored) = s.get(&format!("/api/v1/workflows/{id}")).await;
        assert_eq!(stored["pattern"], pattern, "{stored}");
    }

    let main_id = id_of(&created["main"], "workflow_id");
    let execution = s
        .execute(&main_id, json!({"task": format!("{pattern} demo")}))
        .await;
    let (mut socket, _) = s
        .ws_connect(&format!("/ws/executions/{execution}"))
        .await
        .expect("the live stream opens");
    let mut agent = spawn_agent(s, roles, agent_args);
    let main = s.wait_terminal(&execution).await;
    assert_eq!(main["status"], "completed", "{main:#}");

    let mut executions = BTreeMap::new();
    let mut pending = vec![execution.clone()];
    while let Some(id) = pending.pop() {
        let body = s.wait_terminal(&id).await;
        assert_eq!(body["status"], "completed", "{body:#}");
        let log = complete_log(s, &id, &body).await;
        for task in body["tasks"].as_object().expect("tasks").values() {
            if let Some(child) = task["child_execution_id"].as_str() {
                pending.push(child.to_owned());
            }
        }
        executions.insert(id, (body, log));
    }
    let main_log = &executions[&execution].1;
    let streamed = stream_is_rest_of(&mut socket, main_log).await;
    assert_eq!(
        streamed.last().and_then(|e| e["type"].as_str()),
        Some("ExecutionCompleted")
    );
    agent.kill().await.expect("the agent stops");
    Run {
        main,
        executions,
        created,
    }
}

/// The log of finished execution `id` (body `body`): well formed, ending with
/// `ExecutionCompleted`, every task of the body with its events (completed ones
/// scheduled and completed; skipped ones skipped), a replay that folds to the same
/// state, and a verified chain.
async fn complete_log(s: &TestServer, id: &str, body: &Value) -> Log {
    let log = s.events(id).await;
    log.assert_well_formed();
    assert_eq!(log.last_type(), "ExecutionCompleted", "{:?}", log.types());
    for (task, state) in body["tasks"].as_object().expect("tasks") {
        match state["status"].as_str() {
            Some("completed") => {
                for ty in ["TaskScheduled", "TaskCompleted"] {
                    assert!(log.count(ty, Some(task)) >= 1, "{id}: no {ty} of {task}");
                }
            }
            Some("skipped") => assert_eq!(log.count("TaskSkipped", Some(task)), 1, "{task}"),
            other => panic!("{id}: task {task} ended {other:?}: {body:#}"),
        }
    }
    // Replaying the log gives the state the read model shows.
    let (code, replay) = s.get(&format!("/api/v1/executions/{id}/replay")).await;
    assert_eq!(code, 200, "{replay}");
    assert_eq!(replay["to_version"], log.0.len() as u64, "{replay}");
    assert_eq!(replay["state"]["status"], "completed", "{replay}");
    assert_eq!(replay["state"]["output"], body["output"], "{replay}");
    assert_eq!(
        replay["state"]["tasks"].as_object().map(|t| t.len()),
        body["tasks"].as_object().map(|t| t.len())
    );
    let (code, verdict) = s.get(&format!("/api/v1/executions/{id}/verify")).await;
    assert_eq!(code, 200, "{verdict}");
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["events"], log.0.len() as u64, "{verdict}");
    log
}

/// Supervisor: round 1's review says "revise", so round 2 runs as a child; its review
/// accepts, and round 3 (the bound) never starts.
pub async fn pattern_supervisor_loops_until_accepted(s: &TestServer) {
    let params = json!({"name": "research", "max_rounds": 3, "max_parallel": 2});
    let run = run_pattern(
        s,
        "supervisor",
        params,
        &["supervisor", "worker"],
        &["--revise-rounds", "1"],
    )
    .await;
    assert_eq!(run.created["workflows"].as_array().map(Vec::len), Some(3));
    let main = &run.main;
    assert_eq!(status(main, "work[0]"), "completed");
    assert_eq!(status(main, "work[1]"), "completed");
    assert_eq!(status(main, "next-round"), "completed");
    assert_eq!(status(main, "accepted"), "skipped");
    let round2 = run.child(main, "next-round");
    assert_eq!(status(round2, "accepted"), "completed");
    assert_eq!(
        status(round2, "next-round"),
        "skipped",
        "round 3 is never started"
    );
    assert_eq!(run.executions.len(), 2, "two rounds ran");
    let out = &main["output"]["next-round"]["accepted"];
    assert_eq!(out["verdict"], "accept", "{main:#}");
    assert_eq!(out["round"], 2);
}

/// Hierarchical: the top supervisor's two steps each run a supervised team.
pub async fn pattern_hierarchical_delegates_to_teams(s: &TestServer) {
    let params = json!({"name": "org", "depth": 2, "branches": 2});
    let run = run_pattern(s, "hierarchical", params, &["supervisor", "worker"], &[]).await;
    let main = &run.main;
    assert_eq!(run.executions.len(), 3, "the top and two teams");
    for team in ["team-0", "team-1"] {
        let body = run.child(main, team);
        assert_eq!(status(body, "work[0]"), "completed", "{body:#}");
        assert_eq!(
            body["input"]["task"],
            format!(
                "hierarchical demo / part {}",
                &team[5..].parse::<u32>().expect("n") + 1
            )
        );
    }
    assert_eq!(main["output"]["accepted"]["verdict"], "accept");
}

/// Handoff: triage hands to billing, billing to tech, the last hop ends the chain.
pub async fn pattern_handoff_follows_each_next_role(s: &TestServer) {
    let params = json!({"name": "desk", "roles": ["triage", "billing", "tech"], "max_hops": 3});
    let run = run_pattern(s, "handoff", params, &["triage", "billing", "tech"], &[]).await;
    let main = &run.main;
    assert_eq!(status(main, "to-billing"), "completed");
    assert_eq!(status(main, "to-tech"), "skipped");
    let hop2 = run.child(main, "to-billing");
    assert_eq!(status(hop2, "to-tech"), "completed");
    let hop3 = run.child(hop2, "to-tech");
    assert_eq!(
        hop3["output"]["done"]["result"]["trail"],
        json!(["triage", "billing", "tech"])
    );
    assert_eq!(hop3["output"]["done"]["hops"], 3);
    assert_eq!(run.executions.len(), 3);
}

/// Swarm: three agents answer at once, a judge counts the votes.
pub async fn pattern_swarm_votes(s: &TestServer) {
    let params =
        json!({"name": "panel", "agents": ["solver", "solver", "critic"], "aggregator": "judge"});
    let run = run_pattern(s, "swarm", params, &["solver", "critic", "judge"], &[]).await;
    let vote = &run.main["output"]["aggregate"];
    assert_eq!(vote["result"], "answer to swarm demo", "{vote}");
    assert_eq!(vote["votes"]["\"answer to swarm demo\""], 3, "{vote}");
}

/// Network: two agents exchange messages as signals for two rounds.
pub async fn pattern_network_exchanges_signals(s: &TestServer) {
    let params =
        json!({"name": "net", "agents": ["alice", "bob"], "max_rounds": 2, "timeout_seconds": 60});
    let run = run_pattern(s, "network", params, &["alice", "bob"], &[]).await;
    let main = &run.main;
    let log = &run.executions[main["execution_id"].as_str().expect("id")].1;
    assert_eq!(log.count("SignalReceived", None), 2, "{:?}", log.types());
    assert_eq!(main["tasks"]["r1-alice-to-bob"]["output"]["from"], "alice");
    let heard = &main["output"]["conclude"]["final"]["bob"]["heard"]["alice"];
    assert_eq!(heard["to"], "bob", "{main:#}");
    assert_eq!(heard["round"], 1);
}

/// Bad parameters: `422 invalid_parameters` naming each; an unknown pattern is `404`;
/// neither creates a workflow.
pub async fn pattern_parameters_are_checked(s: &TestServer) {
    let bad = json!({"max_rounds": 0, "worker": "two words", "colour": "red"});
    let answer = s.post("/api/v1/patterns/supervisor?create=true", bad).await;
    documented(s, "invalid", &answer).await;
    let (code, body) = answer;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_parameters");
    let mut fields: Vec<&str> = body["error"]["details"]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().unwrap_or(""))
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["colour", "max_rounds", "name", "worker"], "{body}");
    let (code, body) = s
        .post(
            "/api/v1/patterns/network?create=true",
            json!({"name": "n", "agents": ["a"], "max_rounds": 6}),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["error"]["details"]["errors"][0]["field"], "agents",
        "{body}"
    );
    assert_eq!(
        body["error"]["details"]["errors"][1]["field"], "max_rounds",
        "{body}"
    );
    let (code, body) = s
        .post(
            "/api/v1/patterns/committee?create=true",
            json!({"name": "c"}),
        )
        .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (_, listed) = s.get("/api/v1/workflows").await;
    assert_eq!(listed["items"], json!([]), "nothing was created: {listed}");
}

/// A pattern expanding to more workflows than the tenant's `definitions` quota leaves
/// is refused whole: nothing is recorded. One that fits is created.
pub async fn pattern_over_quota_creates_nothing(s: &TestServer) {
    let root = system_admin(s);
    root.ok(
        "POST",
        "/api/v1/tenants",
        Some(json!({"tenant": "patterned"})),
    )
    .await;
    root.ok(
        "PUT",
        "/api/v1/tenants/patterned/policy",
        Some(json!({"quotas": {"definitions": 2}})),
    )
    .await;
    let admin = key_in(s, "patterned", Role::Admin).await;
    let before = s.head().await;
    let params = json!({"name": "loop", "max_rounds": 3});
    let answer = admin
        .call(
            "POST",
            "/api/v1/patterns/supervisor?create=true",
            Some(params),
        )
        .await;
    documented(s, "over quota", &answer).await;
    assert_eq!(answer.0, 429, "{}", answer.1);
    assert_eq!(answer.1["error"]["details"]["quota"], "definitions");
    assert_eq!(s.head().await, before, "a refused pattern records nothing");
    let params = json!({"name": "loop", "max_rounds": 2});
    let answer = admin
        .call(
            "POST",
            "/api/v1/patterns/supervisor?create=true",
            Some(params),
        )
        .await;
    assert_eq!(answer.0, 201, "{}", answer.1);
}
