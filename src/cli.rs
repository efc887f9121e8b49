//! The audit subcommands — `conflux events`, `conflux replay`, `conflux verify` — as a
//! client of a running server's HTTP API (API.md "Audit and replay"). Going through the
//! API rather than the database means an operator needs no database credentials and
//! sees exactly what any other client sees.
//!
//! Exit codes: 0 success (for `verify`: the chain is valid), 1 the chain does not
//! verify, 2 any error (server unreachable, unknown id, bad arguments).

use std::io::Write;
use std::time::Duration;

use clap::Args;
use serde_json::Value;
use uuid::Uuid;

/// Exit code of a successful command (and of a valid chain).
pub const EXIT_OK: u8 = 0;
/// Exit code of `verify` when the stored chain does not verify.
pub const EXIT_INVALID: u8 = 1;
/// Exit code of any error.
pub const EXIT_ERROR: u8 = 2;

/// Which server to talk to, and as whom.
#[derive(Clone, Args)]
pub struct ServerArgs {
    /// Base URL of a running Conflux server (before or after a subcommand).
    #[arg(
        long,
        env = "CONFLUX_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Bearer token (an API key, or the administrator's token) sent as
    /// `Authorization: Bearer <token>`.
    #[arg(long, env = "CONFLUX_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

impl std::fmt::Debug for ServerArgs {
    /// Never shows the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerArgs")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// `conflux events`: an execution's event log.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// The execution id.
    pub execution_id: Uuid,
    /// Print the raw log, one JSON envelope per line.
    #[arg(long, conflicts_with = "json")]
    pub ndjson: bool,
    /// Print the log as one JSON array.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `conflux replay`: the execution as it stood after a version.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The execution id.
    pub execution_id: Uuid,
    /// Replay up to this version (default: the last one).
    #[arg(long)]
    pub to_version: Option<u64>,
    /// Print the server's JSON answer.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `conflux verify`: recompute the execution's hash chain.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The execution id.
    pub execution_id: Uuid,
    /// Print the server's JSON answer.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Why a command could not do its job.
#[derive(Debug)]
pub(crate) enum CliError {
    /// Nothing answered at the URL.
    Unreachable { url: String, reason: String },
    /// The server answered with an error body.
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The server refused the token (or its absence): `401`.
    Unauthorized,
    /// Anything else (a malformed answer, a broken stream, stdout closed).
    Other(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Unreachable { url, reason } => write!(
                f,
                "cannot reach a Conflux server at {url} ({reason}).\n\
                 Start one with `conflux serve`, or point --url / CONFLUX_URL at a running one."
            ),
            CliError::Api {
                status,
                code,
                message,
            } => write!(f, "the server answered {status} {code}: {message}"),
            CliError::Unauthorized => {
                f.write_str("the server refused the token: set CONFLUX_TOKEN or --token")
            }
            CliError::Other(message) => f.write_str(message),
        }
    }
}

/// Prints an execution's events: a table, raw NDJSON, or a JSON array. The log is read
/// as an NDJSON stream and printed as it arrives, so a long log is never held whole.
pub async fn events(args: EventsArgs) -> u8 {
    let path = format!(
        "/api/v1/executions/{}/events?format=ndjson",
        args.execution_id
    );
    let mut out = std::io::stdout().lock();
    let mut count = 0usize;
    let result = async {
        let resp = get(&args.server, &path).await?;
        if args.json {
            out_line(&mut out, "[")?;
        } else if !args.ndjson {
            out_line(
                &mut out,
                &format!("{:>7}  {:<19}  {:<22}  DATA", "VERSION", "RECORDED", "TYPE"),
            )?;
        }
        for_each_line(resp, |line| {
            count += 1;
            if args.ndjson {
                return out_line(&mut out, line);
            }
            if args.json {
                let sep = if count > 1 { "," } else { "" };
                return out_line(&mut out, &format!("{sep}{line}"));
            }
            let event: Value = serde_json::from_str(line)
                .map_err(|e| CliError::Other(format!("the server sent a malformed event: {e}")))?;
            out_line(&mut out, &table_row(&event))
        })
        .await?;
        if args.json {
            out_line(&mut out, "]")?;
        }
        Ok(())
    }
    .await;
    finish(result.map(|()| EXIT_OK))
}

/// One table row: version, time (to the second), type, and the data cut to one line.
fn table_row(event: &Value) -> String {
    let time = event["recorded_at"].as_str().unwrap_or("");
    let data = event["data"].to_string();
    let data = if data.chars().count() > 60 {
        format!("{}…", data.chars().take(59).collect::<String>())
    } else {
        data
    };
    format!(
        "{:>7}  {:<19}  {:<22}  {data}",
        event["version"].as_u64().unwrap_or(0),
        time.get(..19).unwrap_or(time),
        event["type"].as_str().unwrap_or("?"),
    )
}

/// Prints the execution as it stood after a version: status and every task, or JSON.
pub async fn replay(args: ReplayArgs) -> u8 {
    let mut path = format!("/api/v1/executions/{}/replay", args.execution_id);
    if let Some(v) = args.to_version {
        path.push_str(&format!("?to_version={v}"));
    }
    let result = async {
        let body = get_json(&args.server, &path).await?;
        let mut out = std::io::stdout().lock();
        if args.json {
            return out_line(&mut out, &pretty(&body));
        }
        let state = &body["state"];
        let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
        out_line(
            &mut out,
            &format!(
                "execution {} after version {}\nstatus:    {}\nstarted:   {}\ncompleted: {}\ntasks:",
                args.execution_id,
                body["to_version"],
                text(&state["status"]),
                text(&state["started_at"]),
                text(&state["completed_at"]),
            ),
        )?;
        if let Some(tasks) = state["tasks"].as_object() {
            for (id, task) in tasks {
                out_line(
                    &mut out,
                    &format!(
                        "  {id:<24} {:<12} attempts {}",
                        text(&task["status"]),
                        task["attempts"]
                    ),
                )?;
            }
        }
        if let Some(error) = state["error"].as_str() {
            out_line(&mut out, &format!("error:     {error}"))?;
        }
        Ok(())
    }
    .await;
    finish(result.map(|()| EXIT_OK))
}

/// Verifies the execution's hash chain: exit 0 when valid, 1 when not.
pub async fn verify(args: VerifyArgs) -> u8 {
    let path = format!("/api/v1/executions/{}/verify", args.execution_id);
    let result = async {
        let body = get_json(&args.server, &path).await?;
        let valid = body["valid"].as_bool() == Some(true);
        let mut out = std::io::stdout().lock();
        let text = if args.json {
            pretty(&body)
        } else if valid {
            format!(
                "valid: {} events, head hash {}",
                body["events"],
                body["head_hash"].as_str().unwrap_or("-")
            )
        } else {
            format!(
                "INVALID: first bad version {} (of {} events)",
                body["first_bad_version"], body["events"]
            )
        };
        out_line(&mut out, &text)?;
        Ok(if valid { EXIT_OK } else { EXIT_INVALID })
    }
    .await;
    finish(result)
}

/// Reports an error on stderr and turns it into [`EXIT_ERROR`].
pub(crate) fn finish(result: Result<u8, CliError>) -> u8 {
    let _ = std::io::stdout().flush();
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        EXIT_ERROR
    })
}

pub(crate) fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn out_line(out: &mut impl Write, line: &str) -> Result<(), CliError> {
    writeln!(out, "{line}").map_err(|e| CliError::Other(format!("cannot write output: {e}")))
}

/// GETs `path` on the server (see [`send`]).
async fn get(server: &ServerArgs, path: &str) -> Result<reqwest::Response, CliError> {
    send(server, reqwest::Method::GET, path, None).await
}

/// Sends `method path` (with a JSON `body`) to the server, with its token when one is
/// given; a `401` becomes [`CliError::Unauthorized`], any other non-2xx answer
/// [`CliError::Api`].
pub(crate) async fn send(
    server: &ServerArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<reqwest::Response, CliError> {
    let base = server.url.trim_end_matches('/');
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| CliError::Other(format!("cannot build an HTTP client: {e}")))?;
    let mut req = client.request(method, format!("{base}{path}"));
    if let Some(body) = body {
        req = req.json(body);
    }
    if let Some(token) = &server.token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.map_err(|e| {
        if e.is_connect() || e.is_timeout() {
            CliError::Unreachable {
                url: base.to_owned(),
                reason: root_cause(&e),
            }
        } else {
            CliError::Other(format!("request to {base} failed: {}", source_chain(&e)))
        }
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Err(CliError::Unauthorized);
    }
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    Err(CliError::Api {
        status: status.as_u16(),
        code: body["error"]["code"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned(),
        message: body["error"]["message"]
            .as_str()
            .unwrap_or("no error message")
            .to_owned(),
    })
}

pub(crate) async fn get_json(server: &ServerArgs, path: &str) -> Result<Value, CliError> {
    get(server, path)
        .await?
        .json()
        .await
        .map_err(|e| CliError::Other(format!("the server sent malformed JSON: {e}")))
}

/// Calls `each` with every non-empty line of the body, as chunks arrive.
async fn for_each_line(
    mut resp: reqwest::Response,
    mut each: impl FnMut(&str) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let mut buf = Vec::new();
    let broken = |e: reqwest::Error| CliError::Other(format!("the event stream broke off: {e}"));
    while let Some(chunk) = resp.chunk().await.map_err(broken)? {
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            emit(&line, &mut each)?;
        }
    }
    emit(&buf, &mut each)
}

fn emit(line: &[u8], each: &mut impl FnMut(&str) -> Result<(), CliError>) -> Result<(), CliError> {
    let line = std::str::from_utf8(line)
        .map_err(|e| CliError::Other(format!("the server sent invalid UTF-8: {e}")))?
        .trim();
    if line.is_empty() {
        Ok(())
    } else {
        each(line)
    }
}

/// The innermost error ("Connection refused"), which is what a person needs to read.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(s) = cause.source() {
        cause = s;
    }
    cause.to_string()
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::table_row;

    #[test]
    fn a_table_row_is_one_short_line() {
        let event = serde_json::json!({"version": 3, "recorded_at": "2025-01-02T03:04:05.678Z",
            "type": "TaskCompleted", "data": {"output": "x".repeat(200)}});
        let row = table_row(&event);
        assert!(row.contains("2025-01-02T03:04:05") && !row.contains(".678"));
        assert!(
            row.contains("TaskCompleted") && row.chars().count() < 130,
            "{row}"
        );
    }
}
