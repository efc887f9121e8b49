//! A test agent that talks HTTP only, as an external worker would: it registers
//! (`POST /api/v1/agents`), long-polls for leases, and completes or fails them, either
//! step by step or following a script.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// How long a lease may take to arrive before the test fails: a guard only.
const PATIENCE: Duration = Duration::from_secs(30);
/// Long-poll wait per request: short, so a server shutting down is never held up long.
const WAIT_MS: u64 = 500;

/// One leased attempt, as the poll returns it.
#[derive(Debug, Clone)]
pub struct Lease {
    pub lease_id: String,
    pub execution_id: String,
    pub task_id: String,
    pub attempt: u64,
    pub compensation: bool,
    pub input: Value,
}

impl Lease {
    fn parse(v: &Value) -> Lease {
        let text = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("lease without {k}: {v}"))
                .to_owned()
        };
        Lease {
            lease_id: text("lease_id"),
            execution_id: text("execution_id"),
            task_id: text("task_id"),
            attempt: v["attempt"]
                .as_u64()
                .unwrap_or_else(|| panic!("lease without attempt: {v}")),
            compensation: v["compensation"].as_bool().unwrap_or(false),
            input: v["input"].clone(),
        }
    }
}

/// What a scripted agent does with each lease it gets, in order.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// `POST /complete` with this output.
    Complete(Value),
    /// `POST /fail`.
    Fail { retryable: bool },
}

/// A registered agent.
#[derive(Clone)]
pub struct TestAgent {
    /// The server it talks to (changeable: a restarted server listens elsewhere).
    pub base: String,
    /// Its id.
    pub agent_id: String,
    http: reqwest::Client,
}

impl TestAgent {
    /// Registers an agent serving `roles` at the server `base`.
    pub async fn register(base: &str, roles: &[&str]) -> TestAgent {
        let http = crate::auth::client();
        let resp = http
            .post(format!("{base}/api/v1/agents"))
            .json(&json!({"name": format!("test-agent-{}", roles.join("+")), "roles": roles, "capacity": 100}))
            .send()
            .await
            .expect("register");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("json");
        assert_eq!(status, 201, "register agent: {body}");
        TestAgent {
            base: base.to_owned(),
            agent_id: body["agent_id"].as_str().expect("agent_id").to_owned(),
            http,
        }
    }

    /// One long-poll for up to `max` leases.
    pub async fn poll(&self, max: usize) -> Vec<Lease> {
        let url = format!(
            "{}/api/v1/agents/{}/poll?max={max}&wait_ms={WAIT_MS}",
            self.base, self.agent_id
        );
        let resp = self.http.post(url).send().await.expect("poll");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("json");
        assert_eq!(status, 200, "poll: {body}");
        body["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(Lease::parse)
            .collect()
    }

    /// Polls until one lease arrives.
    pub async fn next_lease(&self) -> Lease {
        let started = Instant::now();
        loop {
            if let Some(lease) = self.poll(1).await.pop() {
                return lease;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "no lease arrived for agent {}",
                self.agent_id
            );
        }
    }

    /// `POST /api/v1/tasks/{lease}/complete` → (status, body).
    pub async fn complete(&self, lease: &Lease, output: Value) -> (u16, Value) {
        self.on_lease(lease, "complete", json!({ "output": output }))
            .await
    }

    /// `POST /api/v1/tasks/{lease}/<what>` with any body → (status, body).
    pub async fn on_lease_raw(&self, lease: &Lease, what: &str, body: Value) -> (u16, Value) {
        self.on_lease(lease, what, body).await
    }

    /// `POST /api/v1/tasks/{lease}/fail` → (status, body).
    pub async fn fail(&self, lease: &Lease, error: &str, retryable: bool) -> (u16, Value) {
        self.on_lease(
            lease,
            "fail",
            json!({"error": error, "retryable": retryable}),
        )
        .await
    }

    /// `POST /api/v1/tasks/{lease}/heartbeat` → (status, body).
    pub async fn heartbeat(&self, lease: &Lease) -> (u16, Value) {
        self.on_lease(lease, "heartbeat", json!({})).await
    }

    async fn on_lease(&self, lease: &Lease, what: &str, body: Value) -> (u16, Value) {
        let url = format!("{}/api/v1/tasks/{}/{what}", self.base, lease.lease_id);
        let resp = self.http.post(url).json(&body).send().await.expect(what);
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("json"))
    }

    /// Follows `script`: one behaviour per lease, in order, until the script ends.
    /// Returns the leases it got. Every answer must be accepted (200).
    pub fn run_script(&self, script: Vec<Behaviour>) -> JoinHandle<Vec<Lease>> {
        let agent = self.clone();
        tokio::spawn(async move {
            let mut leases = Vec::new();
            for behaviour in script {
                let lease = agent.next_lease().await;
                let (status, body) = match &behaviour {
                    Behaviour::Complete(output) => agent.complete(&lease, output.clone()).await,
                    Behaviour::Fail { retryable } => {
                        agent.fail(&lease, "scripted failure", *retryable).await
                    }
                };
                assert_eq!(status, 200, "{behaviour:?} of {lease:?}: {body}");
                leases.push(lease);
            }
            leases
        })
    }
}
