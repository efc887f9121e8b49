//! W7: fair shares between tenants. Tenant A submits a backlog at once (2,000 diamonds,
//! W2's shape); from a second later tenant B submits one small execution at a time (one
//! `noop`, or with `--w7-agent` one `agent` task served by B's own agents) every
//! interval. The figure is how long B's first task waits while A's backlog is being
//! worked off: the engine is shared, and one tenant's backlog must not become another
//! tenant's queue.
//!
//! B's latency is taken two ways: client side, execute request sent → B's `TaskStarted`
//! read on B's workflow stream (opened before the run); server side, `ExecutionStarted`
//! → `TaskStarted` by their `recorded_at`. Both are reported for the probes submitted
//! while A still had tasks left, which are the ones that measure fairness (later probes
//! find an idle server). A's drain — first submit → A's last task completed — is read
//! from `conflux_tasks_total` on `/metrics` every 50 ms, less B's own tasks, so that A
//! costs the server no live stream of its ~100,000 events.
//!
//! Tenants and keys are created for the run (`w7-a-<tag>`, `w7-b-<tag>`), so the token
//! must be the system administrator's.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::shapes::{chain, diamond, Step};
use super::{run_tag, Figure, Goal, Outcome, RawBasis};
use crate::agents::{AgentPool, Work};
use crate::client::{string_field, Client};
use crate::metrics::Scrape;
use crate::progress::Progress;
use crate::stats::{MicrosHistogram, Millis};
use crate::ws::{execution_of, recorded_at, Frame, Watch};

/// How long the whole run may take.
const LIMIT: Duration = Duration::from_secs(600);
/// How often `/metrics` is read for A's progress.
const SCRAPE_EVERY: Duration = Duration::from_millis(50);

/// W7 sizes.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[group(id = "w7")]
pub struct Params {
    /// W7: tenant A's executions (diamonds), submitted at once.
    #[arg(id = "w7-backlog", long = "w7-backlog", default_value_t = 2000)]
    pub backlog: usize,
    /// W7: parallel tasks in the middle of each of A's diamonds.
    #[arg(id = "w7-width", long = "w7-width", default_value_t = 10)]
    pub width: usize,
    /// W7: tenant B's executions (probes), one every interval.
    #[arg(id = "w7-probes", long = "w7-probes", default_value_t = 40)]
    pub probes: usize,
    /// W7: milliseconds between two of B's probes.
    #[arg(id = "w7-interval-ms", long = "w7-interval-ms", default_value_t = 100)]
    pub interval_ms: u64,
    /// W7: milliseconds from A's first submit to B's first probe.
    #[arg(id = "w7-delay-ms", long = "w7-delay-ms", default_value_t = 1000)]
    pub delay_ms: u64,
    /// W7: B's probes run one `agent` task (B's own polling agents) instead of a `noop`.
    #[arg(id = "w7-agent", long = "w7-agent")]
    pub agent: bool,
}

/// W7's result.
#[derive(Debug, Clone, Serialize)]
pub struct W7 {
    /// A's executions.
    pub backlog: usize,
    /// A's tasks.
    pub backlog_tasks: usize,
    /// First submit sent → every one of A's executes answered, seconds.
    pub backlog_submit_seconds: f64,
    /// First submit sent → A's last task completed (from `/metrics`), seconds.
    pub backlog_drain_seconds: Option<f64>,
    /// `backlog_tasks / backlog_drain_seconds`.
    pub backlog_tasks_per_second: Option<f64>,
    /// B's probes, and the kind of their one task.
    pub probes: usize,
    /// `noop` or `agent`.
    pub probe_kind: &'static str,
    /// B's probes submitted while A still had tasks left.
    pub probes_during_backlog: usize,
    /// Execute sent → B's `TaskStarted` read, probes during A's backlog (client clock).
    pub start_client: Option<Millis>,
    /// `ExecutionStarted` → `TaskStarted` by `recorded_at`, probes during A's backlog.
    pub start_server: Option<Millis>,
    /// The same two over every probe.
    pub start_client_all: Option<Millis>,
    /// See `start_client_all`.
    pub start_server_all: Option<Millis>,
    /// Every probe: (ms after A's first submit it was sent, client ms, server ms).
    pub samples: Vec<(f64, f64, f64)>,
}

/// One of B's probes as it is observed.
#[derive(Default)]
struct Probe {
    sent: Option<Instant>,
    execution_started: Option<DateTime<Utc>>,
    task_started: Option<(Instant, DateTime<Utc>)>,
    completed: bool,
}

/// Runs W7.
pub async fn run(client: &Client, p: &Params) -> Result<W7> {
    let tag = run_tag();
    let b_tenant = format!("w7-b-{tag}");
    let a = tenant_client(client, &format!("w7-a-{tag}"), "developer", None).await?;
    let b = tenant_client(client, &b_tenant, "developer", None).await?;
    let role = format!("w7-{tag}");
    let (backlog_wf, _) = a
        .create(&diamond("w7-backlog", p.width))
        .await
        .context("creating A's workflow")?;
    let step = if p.agent {
        Step::Agent(&role)
    } else {
        Step::Noop
    };
    let (probe_wf, _) = b
        .create(&chain("w7-probe", 1, step))
        .await
        .context("creating B's workflow")?;
    let agents = if p.agent {
        let agent = tenant_client(client, &b_tenant, "agent", Some(&role)).await?;
        Some(AgentPool::start(&agent, &role, 2, Duration::from_secs(20), Work::Nothing).await?)
    } else {
        None
    };
    let mut watch = Watch::workflow(&b, &probe_wf).await?;
    let noop_done = |scrape: &Scrape| {
        scrape
            .value(
                "conflux_tasks_total",
                &[("kind", "noop"), ("outcome", "completed")],
            )
            .unwrap_or(0.0) as u64
    };
    let baseline = client
        .metrics()
        .await?
        .map(|text| noop_done(&Scrape::parse(&text)));
    let backlog_tasks = p.backlog * (p.width.max(1) + 2);
    let bar = Progress::bar(p.probes as u64, "w7-fairness");
    bar.message("A submitting");

    let started = Instant::now();
    let burst = {
        let a = a.clone();
        let (workflow, n) = (backlog_wf.clone(), p.backlog);
        tokio::spawn(async move {
            futures::future::try_join_all((0..n).map(|_| a.execute(&workflow))).await?;
            Ok::<_, anyhow::Error>(started.elapsed().as_secs_f64())
        })
    };
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel();
    let submitter = {
        let b = b.clone();
        let workflow = probe_wf.clone();
        let (delay, interval, n) = (
            Duration::from_millis(p.delay_ms),
            Duration::from_millis(p.interval_ms),
            p.probes,
        );
        tokio::spawn(async move {
            for i in 0..n {
                tokio::time::sleep_until((started + delay + interval * i as u32).into()).await;
                let sent = Instant::now();
                let (execution, _) = b.execute(&workflow).await?;
                if sent_tx.send((execution, sent)).is_err() {
                    break;
                }
            }
            Ok::<_, anyhow::Error>(())
        })
    };

    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut probes: HashMap<String, Probe> = HashMap::new();
    let mut scrape = tokio::time::interval(SCRAPE_EVERY);
    let mut drained_at: Option<Instant> = None;
    let mut submitted = 0usize;
    let probes_done = |probes: &HashMap<String, Probe>| {
        probes
            .values()
            .filter(|pr| pr.sent.is_some() && pr.task_started.is_some())
            .count()
    };
    loop {
        let backlog_done = drained_at.is_some() || baseline.is_none();
        if backlog_done && submitted == p.probes && probes_done(&probes) == p.probes {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => bail!(
                "W7: not over within {LIMIT:?} ({} of {} probes started, backlog {})",
                probes_done(&probes), p.probes,
                if drained_at.is_some() { "drained" } else { "not drained" }
            ),
            Some((execution, sent)) = sent_rx.recv() => {
                submitted += 1;
                probes.entry(execution).or_default().sent = Some(sent);
            }
            received = watch.events.recv() => {
                let received = received.ok_or_else(|| anyhow!("W7: B's stream closed early"))?;
                let Frame::Event(e) = &received.frame else { continue };
                let Some(id) = execution_of(e) else { continue };
                let probe = probes.entry(id.to_owned()).or_default();
                match e["type"].as_str() {
                    Some("ExecutionStarted") => probe.execution_started = Some(recorded_at(e)?),
                    Some("TaskStarted") if probe.task_started.is_none() => {
                        probe.task_started = Some((received.at, recorded_at(e)?));
                        bar.set(probes_done(&probes) as u64);
                    }
                    Some("TaskCompleted") => probe.completed = true,
                    _ => {}
                }
            }
            _ = scrape.tick(), if drained_at.is_none() && baseline.is_some() => {
                let Some(text) = client.metrics().await? else { continue };
                let at = Instant::now();
                let done = noop_done(&Scrape::parse(&text));
                // B's noops count too: take off those seen completed (at most the few
                // in flight are missed, which ends the drain a scrape early at worst).
                let b_done = if p.agent { 0 } else { probes.values().filter(|pr| pr.completed).count() };
                let a_done = done
                    .saturating_sub(baseline.unwrap_or(0))
                    .saturating_sub(b_done as u64);
                if a_done >= backlog_tasks as u64 {
                    drained_at = Some(at);
                    bar.message("A drained");
                } else {
                    bar.message(format!("A {a_done}/{backlog_tasks} tasks"));
                }
            }
        }
    }
    bar.finish();
    let backlog_submit_seconds = burst.await.map_err(|e| anyhow!("A's burst: {e}"))??;
    submitter
        .await
        .map_err(|e| anyhow!("B's submitter: {e}"))??;
    watch.stop().await?;
    if let Some(agents) = agents {
        agents.stop().await?;
    }

    let (mut client_backlog, mut server_backlog) =
        (MicrosHistogram::new()?, MicrosHistogram::new()?);
    let (mut client_all, mut server_all) = (MicrosHistogram::new()?, MicrosHistogram::new()?);
    let mut samples = Vec::new();
    let mut during = 0;
    for probe in probes.values() {
        let (Some(sent), Some((seen, task_at)), Some(exec_at)) =
            (probe.sent, probe.task_started, probe.execution_started)
        else {
            continue;
        };
        let client_side = seen.saturating_duration_since(sent);
        let server_side = (task_at - exec_at).num_microseconds().unwrap_or(0);
        client_all.record(client_side);
        server_all.record_micros(server_side);
        if drained_at.is_none_or(|d| sent < d) {
            during += 1;
            client_backlog.record(client_side);
            server_backlog.record_micros(server_side);
        }
        samples.push((
            sent.duration_since(started).as_secs_f64() * 1e3,
            client_side.as_secs_f64() * 1e3,
            server_side as f64 / 1e3,
        ));
    }
    samples.sort_by(|x, y| x.0.total_cmp(&y.0));
    let drain = drained_at.map(|d| d.duration_since(started).as_secs_f64().max(1e-9));
    Ok(W7 {
        backlog: p.backlog,
        backlog_tasks,
        backlog_submit_seconds,
        backlog_drain_seconds: drain,
        backlog_tasks_per_second: drain.map(|d| backlog_tasks as f64 / d),
        probes: p.probes,
        probe_kind: if p.agent { "agent" } else { "noop" },
        probes_during_backlog: during,
        start_client: client_backlog.summary(),
        start_server: server_backlog.summary(),
        start_client_all: client_all.summary(),
        start_server_all: server_all.summary(),
        samples,
    })
}

/// Creates `tenant` (if needed) and a key of `role` in it (serving `agent_role`, for an
/// agent key) with the administrator's `client`; a client of that key.
async fn tenant_client(
    client: &Client,
    tenant: &str,
    role: &str,
    agent_role: Option<&str>,
) -> Result<Client> {
    let created = client
        .request(
            reqwest::Method::POST,
            "/api/v1/tenants",
            Some(serde_json::to_vec(&json!({"tenant": tenant}))?),
        )
        .await?;
    if !created.status.is_success() && created.status != reqwest::StatusCode::CONFLICT {
        bail!(
            "W7 creates its two tenants, so it needs the system administrator's token \
             (--token / CONFLUX_TOKEN): POST /api/v1/tenants answered {}: {}",
            created.status,
            created.body
        );
    }
    let mut body = json!({"name": format!("w7 {role}"), "role": role, "tenant": tenant});
    if let Some(agent_role) = agent_role {
        body["agent_roles"] = json!([agent_role]);
    }
    let key = client
        .post("/api/v1/keys", &body)
        .await
        .with_context(|| format!("creating a {role} key in tenant {tenant}"))?;
    Client::new(client.base(), Some(&string_field(&key.body, "token")?))
}

impl Outcome for W7 {
    fn figures(&self) -> Vec<Figure> {
        let client = self.start_client.as_ref();
        let server = self.start_server.as_ref();
        vec![
            Figure::new(
                "B: execute → first TaskStarted seen, p50 (during A's backlog)",
                client.map(|m| m.p50),
                "ms",
            )
            .basis(RawBasis::PgInsertLatency),
            Figure::new(
                "B: execute → first TaskStarted seen, p99 (during A's backlog)",
                client.map(|m| m.p99),
                "ms",
            )
            .goal(Goal::Below(50.0))
            .basis(RawBasis::PgInsertLatency),
            Figure::new(
                "B: ExecutionStarted → TaskStarted (server), p50",
                server.map(|m| m.p50),
                "ms",
            ),
            Figure::new(
                "B: ExecutionStarted → TaskStarted (server), p99",
                server.map(|m| m.p99),
                "ms",
            ),
            Figure::new(
                "A: first submit → backlog drained",
                self.backlog_drain_seconds,
                "s",
            ),
            Figure::new("A: tasks/s", self.backlog_tasks_per_second, "tasks/s")
                .basis(RawBasis::RedisXaddRate),
        ]
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = vec![format!(
            "W7: tenant A {} diamonds ({} tasks) at once, submitted in {:.2} s; tenant B {} \
             probes of one {} task, {} of them while A still had tasks left. B's latency: \
             client from execute sent to TaskStarted on B's workflow stream; server from \
             ExecutionStarted to TaskStarted by recorded_at. A's drain from /metrics \
             (conflux_tasks_total), read every {} ms.",
            self.backlog,
            self.backlog_tasks,
            self.backlog_submit_seconds,
            self.probes,
            self.probe_kind,
            self.probes_during_backlog,
            SCRAPE_EVERY.as_millis()
        )];
        if let (Some(all), Some(server)) = (&self.start_client_all, &self.start_server_all) {
            notes.push(format!(
                "W7: over all {} probes, client p50 / p99 {:.1} / {:.1} ms, server {:.1} / {:.1} ms.",
                all.count, all.p50, all.p99, server.p50, server.p99
            ));
        }
        if self.backlog_drain_seconds.is_none() {
            notes.push(
                "W7: the server has no /metrics, so A's drain was not measured and every \
                 probe counts as during the backlog."
                    .into(),
            );
        }
        if self.probes_during_backlog < 20 {
            notes.push(format!(
                "W7: only {} probes fell within A's backlog; a p99 of so few is their maximum.",
                self.probes_during_backlog
            ));
        }
        notes
    }
}
