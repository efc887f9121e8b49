//! The HTTP side of a Conflux server, as API.md describes it, and nothing else: the
//! scenarios never reach into the store. Every call is timed ([`Answer::elapsed`]:
//! request sent → whole body read) so scenarios can report HTTP latencies.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The longest any one request may take (long polls wait at most 60 s server-side), so
/// a server that stops answering fails the scenario instead of hanging it.
const REQUEST_LIMIT: Duration = Duration::from_secs(120);

/// A client of one Conflux server; cheap to clone (one connection pool).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// One HTTP exchange, whatever its status.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// The body as JSON (`null` if it was not JSON).
    pub body: Value,
    /// The `Server-Timing` header, if the server sent one.
    pub server_timing: Option<String>,
    /// Request sent → whole body read.
    pub elapsed: Duration,
}

impl Answer {
    /// The API error code (`error.code`) of a 4xx/5xx body, if any.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

/// A request the server answered with a status other than 2xx.
#[derive(Debug, thiserror::Error)]
#[error("{method} {path} answered {status}: {body}")]
pub struct ApiFailure {
    /// The method.
    pub method: Method,
    /// The path.
    pub path: String,
    /// The status.
    pub status: StatusCode,
    /// The (JSON) body.
    pub body: Value,
}

impl Client {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8080`) that sends
    /// `token`, when given, as `Authorization: Bearer <token>` on every request and
    /// WebSocket upgrade.
    pub fn new(base: &str, token: Option<&str>) -> Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            headers.insert(reqwest::header::AUTHORIZATION, bearer(token)?);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .timeout(REQUEST_LIMIT)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
        })
    }

    /// The bearer token it sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `path` on the server as a WebSocket URL (`http` → `ws`, `https` → `wss`).
    pub fn ws_url(&self, path: &str) -> String {
        let base = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.base.clone()
        };
        format!("{base}{path}")
    }

    /// Sends one request with an optional JSON body (already serialised) and returns
    /// the answer whatever its status; errors only when no answer came.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let started = Instant::now();
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}: no answer from {}", self.base))?;
        let status = resp.status();
        let server_timing = resp
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("{method} {path}: reading the body"))?;
        let elapsed = started.elapsed();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            body,
            server_timing,
            elapsed,
        })
    }

    /// Sends a request and fails with [`ApiFailure`] unless the status is 2xx.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Answer> {
        let bytes = body.map(serde_json::to_vec).transpose()?;
        let answer = self.request(method.clone(), path, bytes).await?;
        if !answer.status.is_success() {
            return Err(ApiFailure {
                method,
                path: path.to_owned(),
                status: answer.status,
                body: answer.body,
            }
            .into());
        }
        Ok(answer)
    }

    /// `POST path` with a JSON body; the 2xx answer.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Answer> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// `GET path`; the 2xx answer.
    pub async fn get(&self, path: &str) -> Result<Answer> {
        self.call(Method::GET, path, None).await
    }

    /// Creates a workflow; its id and the answer.
    pub async fn create(&self, definition: &Value) -> Result<(String, Answer)> {
        let answer = self.post("/api/v1/workflows", definition).await?;
        let id = string_field(&answer.body, "workflow_id")?;
        Ok((id, answer))
    }

    /// Starts an execution of `workflow_id` with an empty input; its id and the answer.
    pub async fn execute(&self, workflow_id: &str) -> Result<(String, Answer)> {
        let answer = self
            .post(
                &format!("/api/v1/workflows/{workflow_id}/execute"),
                &json!({"input": {}}),
            )
            .await?;
        let id = string_field(&answer.body, "execution_id")?;
        Ok((id, answer))
    }

    /// `GET /api/v1/workflows/{id}/status`.
    pub async fn workflow_status(&self, workflow_id: &str) -> Result<Answer> {
        self.get(&format!("/api/v1/workflows/{workflow_id}/status"))
            .await
    }

    /// The whole event log of an execution, page by page.
    pub async fn execution_events(&self, execution_id: &str) -> Result<Vec<Value>> {
        let mut events: Vec<Value> = Vec::new();
        loop {
            let after = events
                .last()
                .and_then(|e| e["version"].as_u64())
                .unwrap_or(0);
            let page = self
                .get(&format!(
                    "/api/v1/executions/{execution_id}/events?after_version={after}&limit=1000"
                ))
                .await?;
            let new = match page.body["events"].as_array() {
                Some(new) if !new.is_empty() => new.clone(),
                _ => return Ok(events),
            };
            events.extend(new);
        }
    }

    /// Registers an agent serving `roles`; its id.
    pub async fn register_agent(
        &self,
        name: &str,
        roles: &[&str],
        capabilities: &[&str],
        capacity: u32,
    ) -> Result<String> {
        let answer = self
            .post(
                "/api/v1/agents",
                &json!({"name": name, "roles": roles, "capabilities": capabilities, "capacity": capacity}),
            )
            .await?;
        string_field(&answer.body, "agent_id")
    }

    /// One long poll: the leased tasks (possibly none).
    pub async fn poll(&self, agent_id: &str, max: usize, wait: Duration) -> Result<Vec<Value>> {
        let path = format!(
            "/api/v1/agents/{agent_id}/poll?max={max}&wait_ms={}",
            wait.as_millis()
        );
        let answer = self.post(&path, &json!({})).await?;
        Ok(answer.body["tasks"].as_array().cloned().unwrap_or_default())
    }

    /// Completes a leased attempt with `output`.
    pub async fn complete(&self, lease_id: &str, output: &Value) -> Result<()> {
        self.post(
            &format!("/api/v1/tasks/{lease_id}/complete"),
            &json!({"output": output}),
        )
        .await?;
        Ok(())
    }

    /// `GET /ready`'s body (also when it answers 503).
    pub async fn ready(&self) -> Result<Value> {
        Ok(self.request(Method::GET, "/ready", None).await?.body)
    }

    /// `GET /metrics` as text; None when the server has no metrics (404/503).
    pub async fn metrics(&self) -> Result<Option<String>> {
        let resp = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .context("GET /metrics")?;
        if !resp.status().is_success() {
            return Ok(None);
        }
        Ok(Some(resp.text().await.context("reading /metrics")?))
    }
}

/// `Bearer <token>` as a header value marked sensitive (never shown in debug output).
pub fn bearer(token: &str) -> Result<reqwest::header::HeaderValue> {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| anyhow!("the token is not a valid HTTP header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// `body[field]` as a string, or an error naming what was missing.
pub fn string_field(body: &Value, field: &str) -> Result<String> {
    body[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no {field} in {body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_urls_follow_the_scheme() -> Result<()> {
        assert_eq!(
            Client::new("http://127.0.0.1:8080/", None)?.ws_url("/ws/executions/x"),
            "ws://127.0.0.1:8080/ws/executions/x"
        );
        assert_eq!(
            Client::new("https://example.com", None)?.ws_url("/ws"),
            "wss://example.com/ws"
        );
        Ok(())
    }
}
