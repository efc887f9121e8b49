//! `TestServer`: the real server (`conflux::app::serve`: HTTP, engine and relay) started
//! in-process on `127.0.0.1:0`, in one of two modes, with the helpers every scenario
//! uses: create a workflow, execute it, wait for a terminal status, read the event log.

use std::time::{Duration, Instant};

use clap::Parser;
use conflux::app::{serve, Runtime};
use conflux::backends::Backends;
use conflux::config::Config;
use conflux_engine::executor::EngineOptions;
use conflux_engine::testing::{delete_redis_prefix, redis_url, unique_prefix, TestDatabase};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, ADMIN_TOKEN};
use crate::proxy::{through, upstream_of, Proxy};

/// Most tasks a workflow may have in the harness (small, so `too_many_tasks` is cheap).
pub const MAX_TASKS: usize = 50;
/// Largest request body in the harness (small, so `payload_too_large` is cheap).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long any wait may take before the test fails: a guard, never an expectation.
pub const PATIENCE: Duration = Duration::from_secs(30);
/// How often waits look again.
const POLL: Duration = Duration::from_millis(20);

/// A WebSocket to the server.
pub type WsSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
/// The server's answer to a WebSocket upgrade.
pub type WsResponse = tokio_tungstenite::tungstenite::handshake::client::Response;

/// Which backends the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A fresh Postgres database and a unique Redis key prefix.
    PostgresRedis,
    /// SQLite in a temporary directory, in-process bus and queues.
    Embedded,
    /// As [`Mode::PostgresRedis`], with payload encryption at rest on (a fresh random
    /// master key).
    Sealed,
}

/// What a server owns and must give back.
enum Resources {
    Shared { db: TestDatabase, prefix: String },
    Embedded { _dir: TempDir },
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    config: Config,
}

/// One server, as `conflux serve` runs it, on its own backends, accepting
/// [`ADMIN_TOKEN`] as the system administrator's token; every request it helps make
/// (HTTP and WebSocket) carries that token.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The configuration it runs with.
    pub config: Config,
    /// The backends it runs on (to look at the store directly).
    pub backends: Backends,
    /// The proxy in front of Postgres, when started behind one.
    pub proxy: Option<Proxy>,
    http: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    resources: Option<Resources>,
}

impl TestServer {
    /// Starts a server in `mode` on fresh backends.
    pub async fn start(mode: Mode) -> Self {
        Self::start_with(mode, false).await
    }

    /// Starts a server on a fresh Postgres database reached through a [`Proxy`] the
    /// test can cut, and Redis.
    pub async fn start_behind_proxy() -> Self {
        Self::start_with(Mode::PostgresRedis, true).await
    }

    /// Starts a server in `mode` on fresh backends, with `tune` applied to its
    /// configuration first.
    pub async fn start_tuned(mode: Mode, tune: impl FnOnce(&mut Config)) -> Self {
        Self::start_configured(mode, false, tune).await
    }

    /// Starts a server in `mode` on fresh backends that `seed` wrote first, given the
    /// configuration the server will run with: how a test builds a store in an older
    /// format before a server of this version opens it.
    pub async fn start_seeded<F, Fut>(mode: Mode, seed: F) -> Self
    where
        F: FnOnce(Config) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        Self::start_full(mode, false, |_| {}, seed).await
    }

    async fn start_with(mode: Mode, proxied: bool) -> Self {
        Self::start_configured(mode, proxied, |_| {}).await
    }

    async fn start_configured(mode: Mode, proxied: bool, tune: impl FnOnce(&mut Config)) -> Self {
        Self::start_full(mode, proxied, tune, |_| async {}).await
    }

    async fn start_full<F, Fut>(
        mode: Mode,
        proxied: bool,
        tune: impl FnOnce(&mut Config),
        seed: F,
    ) -> Self
    where
        F: FnOnce(Config) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        Self::start_engine(mode, proxied, tune, seed, |_| {}).await
    }

    async fn start_engine<F, Fut>(
        mode: Mode,
        proxied: bool,
        tune: impl FnOnce(&mut Config),
        seed: F,
        engine: impl FnOnce(&mut EngineOptions),
    ) -> Self
    where
        F: FnOnce(Config) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        // Clap's defaults, then this test's own backends (the environment never decides).
        let mut config = Args::parse_from(["conflux"]).config;
        config.admin_token = Some(ADMIN_TOKEN.to_owned());
        // The test services `http` tasks call listen on loopback.
        config.egress_allow = "127.0.0.0/8,::1/128".to_owned();
        tune(&mut config);
        config.max_tasks = MAX_TASKS;
        config.max_body_bytes = MAX_BODY_BYTES;
        config.pg_max_connections = 8;
        let mut proxy = None;
        let resources = match mode {
            Mode::PostgresRedis | Mode::Sealed => {
                if mode == Mode::Sealed && config.master_key.is_none() {
                    let key = conflux_engine::crypto::MasterKey::random().expect("a master key");
                    config.master_key = Some(key.to_base64().into());
                }
                let db = TestDatabase::create().await;
                let prefix = unique_prefix();
                config.database_url = Some(db.url.clone());
                if proxied {
                    let p = Proxy::start(upstream_of(&db.url)).await;
                    config.database_url = Some(through(&db.url, &p.addr));
                    proxy = Some(p);
                }
                config.redis_url = Some(redis_url());
                config.redis_prefix = prefix.clone();
                Resources::Shared { db, prefix }
            }
            Mode::Embedded => {
                let dir = tempfile::tempdir().expect("tempdir");
                config.database_url = None;
                config.redis_url = None;
                config.data_dir = dir.path().join("data");
                Resources::Embedded { _dir: dir }
            }
        };
        seed(config.clone()).await;
        let mut server = Self::serve(config, engine).await;
        server.resources = Some(resources);
        server.proxy = proxy;
        server
    }

    /// Another server on the same backends as `self` (a second process of a cluster).
    /// Only meaningful with Postgres + Redis; it owns nothing.
    pub async fn join(&self) -> Self {
        Self::on(self.config.clone()).await
    }

    /// Starts a server in `mode` on fresh backends whose engine runs with `tune`
    /// applied to its options (smaller rounds, say, so that a test's bounds are small).
    pub async fn start_engine_tuned(mode: Mode, tune: impl FnOnce(&mut EngineOptions)) -> Self {
        Self::start_engine(mode, false, |_| {}, |_| async {}, tune).await
    }

    async fn on(config: Config) -> Self {
        Self::serve(config, |_| {}).await
    }

    async fn serve(config: Config, tune: impl FnOnce(&mut EngineOptions)) -> Self {
        let backends = Backends::open(&config).await.expect("open the backends");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let mut runtime = Runtime::new(backends.clone(), &config);
        tune(&mut runtime.engine);
        let task = tokio::spawn(serve(listener, runtime, shutdown.clone()));
        TestServer {
            base,
            config,
            backends,
            proxy: None,
            http: auth::client(),
            shutdown,
            task: Some(task),
            resources: None,
        }
    }

    /// Stops the server cleanly, then drops its database and Redis keys.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let stopped = tokio::time::timeout(PATIENCE, task)
                .await
                .expect("the server stops");
            stopped
                .expect("join")
                .expect("the server ran without error");
        }
        if let Some(Resources::Shared { db, prefix }) = self.resources.take() {
            db.drop_database().await;
            delete_redis_prefix(&prefix).await;
        }
    }

    /// Stops the server cleanly, runs `between` with its configuration while no server
    /// runs, then starts a new server on the same backends (a restarted process).
    pub async fn restart<F, Fut>(mut self, between: F) -> Self
    where
        F: FnOnce(Config) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("the server stops")
                .expect("join")
                .expect("the server ran without error");
        }
        let resources = self.resources.take();
        let proxy = self.proxy.take();
        let config = self.config.clone();
        drop(self);
        between(config.clone()).await;
        let mut next = Self::on(config).await;
        next.resources = resources;
        next.proxy = proxy;
        next
    }

    /// The store's highest committed position.
    pub async fn head(&self) -> u64 {
        self.backends.store.head_position().await.expect("head")
    }

    /// `POST path` with a JSON body → (status, JSON body).
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(self.url(path)).json(&body)).await
    }

    /// `DELETE path` → (status, JSON body or null).
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(self.url(path))).await
    }

    /// `POST path` with raw bytes as `application/json`.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        self.send(req).await
    }

    /// `POST path` with headers.
    pub async fn post_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(&body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }

    /// `GET path` → (status, JSON body).
    /// The `/metrics` text (empty when it cannot be read).
    pub async fn metrics(&self) -> String {
        let Ok(resp) = self.http.get(self.url("/metrics")).send().await else {
            return String::new();
        };
        resp.text().await.unwrap_or_default()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(self.url(path))).await
    }

    /// Opens a WebSocket on `path`, the upgrade carrying the token.
    pub async fn ws_connect(
        &self,
        path: &str,
    ) -> Result<(WsSocket, WsResponse), tokio_tungstenite::tungstenite::Error> {
        let url = format!("{}{path}", self.base.replacen("http://", "ws://", 1));
        tokio_tungstenite::connect_async(auth::ws_request(&url)).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// Creates a workflow (201 expected) and returns its id.
    pub async fn create_workflow(&self, definition: Value) -> String {
        let (status, body) = self.post("/api/v1/workflows", definition).await;
        assert_eq!(status, 201, "create workflow: {body}");
        id_of(&body, "workflow_id")
    }

    /// Starts an execution (202 expected) and returns its id.
    pub async fn execute(&self, workflow_id: &str, input: Value) -> String {
        let path = format!("/api/v1/workflows/{workflow_id}/execute");
        let (status, body) = self.post(&path, json!({ "input": input })).await;
        assert_eq!(status, 202, "execute: {body}");
        assert_eq!(body["status"], "running", "{body}");
        id_of(&body, "execution_id")
    }

    /// Creates `definition` and starts one execution of it.
    pub async fn run(&self, definition: Value, input: Value) -> String {
        let workflow_id = self.create_workflow(definition).await;
        self.execute(&workflow_id, input).await
    }

    /// `GET /api/v1/executions/{id}` (200 expected).
    pub async fn execution(&self, execution_id: &str) -> Value {
        let (status, body) = self
            .get(&format!("/api/v1/executions/{execution_id}"))
            .await;
        assert_eq!(status, 200, "get execution: {body}");
        body
    }

    /// Polls the execution until its status is terminal; fails with the last body after
    /// [`PATIENCE`].
    pub async fn wait_terminal(&self, execution_id: &str) -> Value {
        let started = Instant::now();
        loop {
            let body = self.execution(execution_id).await;
            let status = body["status"].as_str().unwrap_or_default();
            if ["completed", "failed", "cancelled", "compensated"].contains(&status) {
                return body;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "execution {execution_id} did not finish; last body: {body:#}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The whole event log of an execution.
    pub async fn events(&self, execution_id: &str) -> Log {
        self.events_paged(execution_id, 1000).await
    }

    /// The whole event log of an execution, read `limit` events a page.
    pub async fn events_paged(&self, execution_id: &str, limit: usize) -> Log {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let path = format!(
                "/api/v1/executions/{execution_id}/events?after_version={after}&limit={limit}"
            );
            let (status, body) = self.get(&path).await;
            assert_eq!(status, 200, "events: {body}");
            events.extend(body["events"].as_array().cloned().unwrap_or_default());
            match body["next_after_version"].as_u64() {
                Some(next) => after = next,
                None => {
                    let log = Log(events);
                    log.assert_well_formed();
                    return log;
                }
            }
        }
    }

    /// Polls the event log until `done` holds; fails with the log after [`PATIENCE`].
    pub async fn wait_events(
        &self,
        execution_id: &str,
        what: &str,
        done: impl Fn(&Log) -> bool,
    ) -> Log {
        let started = Instant::now();
        loop {
            let log = self.events(execution_id).await;
            if done(&log) {
                return log;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "execution {execution_id}: {what} never happened; log: {:?}",
                log.types()
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for TestServer {
    /// A test that fails half-way still stops its server and gives its backends back.
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(Resources::Shared { db, prefix }) = self.resources.take() {
            let cleanup = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        db.drop_database().await;
                        delete_redis_prefix(&prefix).await;
                    });
                }
            });
            let _ = cleanup.join();
        }
    }
}

/// A string id field of a response body.
/// Serves `app` on `127.0.0.1:0` until the token is cancelled; returns
/// `http://127.0.0.1:<port>` and the token (the test services the server calls).
pub async fn serve_local(app: axum::Router) -> (String, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = CancellationToken::new();
    let shutdown = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    });
    (base, stop)
}

pub fn id_of(body: &Value, field: &str) -> String {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {body}"))
        .to_owned()
}

/// Whether an event concerns a compensation attempt (`TaskCompensated` always does).
fn is_compensation(event: &Value) -> bool {
    event["type"] == "TaskCompensated" || event["data"]["compensation"].as_bool().unwrap_or(false)
}

/// An execution's event log (envelopes as served), with lookups by type and task.
pub struct Log(pub Vec<Value>);

impl Log {
    /// The event types, in order.
    pub fn types(&self) -> Vec<&str> {
        self.0
            .iter()
            .map(|e| e["type"].as_str().unwrap_or("?"))
            .collect()
    }

    /// Indexes (in log order) of the events of type `ty` about task `task` (any task
    /// when `None`), of the task itself or of its compensation.
    pub fn indexes(&self, ty: &str, task: Option<&str>, compensation: bool) -> Vec<usize> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, e)| e["type"] == ty)
            .filter(|(_, e)| task.is_none_or(|t| e["data"]["task_id"] == t))
            .filter(|(_, e)| is_compensation(e) == compensation)
            .map(|(i, _)| i)
            .collect()
    }

    /// How many events of type `ty` concern task `task` itself (any task when `None`).
    pub fn count(&self, ty: &str, task: Option<&str>) -> usize {
        self.indexes(ty, task, false).len()
    }

    /// The index of the only event of type `ty` about task `task` itself.
    pub fn only(&self, ty: &str, task: &str) -> usize {
        let found = self.indexes(ty, Some(task), false);
        assert_eq!(
            found.len(),
            1,
            "exactly one {ty} of `{task}` expected in {:?}",
            self.types()
        );
        found[0]
    }

    /// The index of the only event of type `ty` (of any task).
    pub fn only_of(&self, ty: &str) -> usize {
        let found = self.indexes(ty, None, false);
        assert_eq!(
            found.len(),
            1,
            "exactly one {ty} expected in {:?}",
            self.types()
        );
        found[0]
    }

    /// The event at `index`.
    pub fn at(&self, index: usize) -> &Value {
        &self.0[index]
    }

    /// The attempt numbers of the events of type `ty` about task `task` itself.
    pub fn attempts(&self, ty: &str, task: &str) -> Vec<u64> {
        self.indexes(ty, Some(task), false)
            .into_iter()
            .map(|i| self.0[i]["data"]["attempt"].as_u64().unwrap_or(0))
            .collect()
    }

    /// What holds for every log, complete or not: versions 1, 2, 3… without gaps; an
    /// `ExecutionStarted` first and only there; at most one terminal event, and nothing
    /// after it but the `ExecutionRedriven` of a redrive (which reopens it: its own part
    /// of the log is checked the same way); no task completed twice.
    pub fn assert_well_formed(&self) {
        let types = self.types();
        for (i, e) in self.0.iter().enumerate() {
            assert_eq!(e["version"], i as u64 + 1, "version gap at {i}: {types:?}");
        }
        assert_eq!(types.first(), Some(&"ExecutionStarted"), "{types:?}");
        assert_eq!(self.count("ExecutionStarted", None), 1, "{types:?}");
        let terminal = [
            "ExecutionCompleted",
            "ExecutionFailed",
            "ExecutionCancelled",
        ];
        // Acknowledging a dead letter is recorded after the end and changes nothing.
        let lifecycle: Vec<&str> = types
            .iter()
            .copied()
            .filter(|t| *t != "DeadLetterAcknowledged")
            .collect();
        let ends: Vec<usize> = (0..lifecycle.len())
            .filter(|&i| terminal.contains(&lifecycle[i]))
            .collect();
        let redrives = self.count("ExecutionRedriven", None);
        assert!(
            ends.len() <= 1 + redrives,
            "more than one terminal event: {types:?}"
        );
        for &end in &ends {
            let next = lifecycle.get(end + 1).copied();
            assert!(
                matches!(next, None | Some("ExecutionRedriven")),
                "events after the end: {types:?}"
            );
        }
        let mut completed: Vec<&str> = self
            .indexes("TaskCompleted", None, false)
            .into_iter()
            .map(|i| self.0[i]["data"]["task_id"].as_str().unwrap_or(""))
            .collect();
        let all = completed.len();
        completed.sort_unstable();
        completed.dedup();
        assert_eq!(completed.len(), all, "a task completed twice: {types:?}");
    }

    /// The type of the last event.
    pub fn last_type(&self) -> &str {
        self.0.last().and_then(|e| e["type"].as_str()).unwrap_or("")
    }
}
