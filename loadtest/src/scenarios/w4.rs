//! W4: planning cost. Creates (and so validates) a 10,000-task layered DAG (fan-out
//! 10) and a 100,000-task chain, a few times each, and reports the client round trip
//! and the server-side time.
//!
//! The server does not report its own time in the create answer, so the server-side
//! time is taken from a `Server-Timing` header if the server sends one, otherwise from
//! its `conflux_http_request_duration_seconds` histogram (the `_sum` growth of
//! `POST /api/v1/workflows` across one request, scraped before and after), otherwise it
//! is "n/a" and only the round trip is reported. A definition over the server's limits
//! (413 `payload_too_large`, 422 `too_many_tasks`) is reported with the settings that
//! would admit it, not treated as a crash.

use anyhow::Result;
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use super::shapes::{chain, layered_dag, task_count, Step};
use super::{Figure, Goal, Outcome};
use crate::client::Client;
use crate::metrics::Scrape;
use crate::progress::Progress;
use crate::stats::median;

const ROUTE: [(&str, &str); 2] = [("method", "POST"), ("route", "/api/v1/workflows")];
const DURATION_SUM: &str = "conflux_http_request_duration_seconds_sum";
const DURATION_COUNT: &str = "conflux_http_request_duration_seconds_count";

/// W4 sizes.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[group(id = "w4")]
pub struct Params {
    /// W4: tasks in the layered DAG.
    #[arg(id = "w4-dag-tasks", long = "w4-dag-tasks", default_value_t = 10_000)]
    pub dag_tasks: usize,
    /// W4: dependents per task in the DAG.
    #[arg(id = "w4-fanout", long = "w4-fanout", default_value_t = 10)]
    pub fanout: usize,
    /// W4: tasks in the chain.
    #[arg(
        id = "w4-chain-tasks",
        long = "w4-chain-tasks",
        default_value_t = 100_000
    )]
    pub chain_tasks: usize,
    /// W4: creates of each definition (the median is reported).
    #[arg(id = "w4-repeats", long = "w4-repeats", default_value_t = 3)]
    pub repeats: usize,
}

/// Where the server-side time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerTimeSource {
    /// The `Server-Timing` header.
    ServerTiming,
    /// The server's request-duration histogram in `/metrics`.
    Metrics,
    /// Not available.
    None,
}

/// One definition's creates.
#[derive(Debug, Clone, Serialize)]
pub struct Shape {
    /// `dag` or `chain`.
    pub shape: String,
    /// Tasks.
    pub tasks: usize,
    /// Request body size.
    pub body_bytes: usize,
    /// Round trips of accepted creates, ms.
    pub round_trip_ms: Vec<f64>,
    /// Server-side times of accepted creates, ms.
    pub server_ms: Vec<f64>,
    /// Where `server_ms` came from.
    pub server_time_source: ServerTimeSource,
    /// Why the server refused it, with the settings that would admit it.
    pub rejected: Option<String>,
    /// A failure other than a limit (the scenario goes on).
    pub error: Option<String>,
}

impl Shape {
    fn median_round_trip(&self) -> Option<f64> {
        (!self.round_trip_ms.is_empty()).then(|| median(&self.round_trip_ms))
    }

    fn median_server(&self) -> Option<f64> {
        (!self.server_ms.is_empty()).then(|| median(&self.server_ms))
    }
}

/// W4's result.
#[derive(Debug, Clone, Serialize)]
pub struct W4 {
    /// The DAG's creates.
    pub dag: Shape,
    /// The chain's creates.
    pub chain: Shape,
}

/// Runs W4.
pub async fn run(client: &Client, p: &Params) -> Result<W4> {
    let dag = layered_dag("w4-dag", p.dag_tasks, p.fanout);
    let dag = create_repeatedly(client, "dag", &dag, p.repeats).await?;
    let long = chain("w4-chain", p.chain_tasks, Step::Noop);
    let long = create_repeatedly(client, "chain", &long, p.repeats).await?;
    Ok(W4 { dag, chain: long })
}

async fn create_repeatedly(
    client: &Client,
    shape: &str,
    definition: &Value,
    repeats: usize,
) -> Result<Shape> {
    let body = serde_json::to_vec(definition)?;
    let tasks = task_count(definition);
    let mut out = Shape {
        shape: shape.to_owned(),
        tasks,
        body_bytes: body.len(),
        round_trip_ms: Vec::new(),
        server_ms: Vec::new(),
        server_time_source: ServerTimeSource::None,
        rejected: None,
        error: None,
    };
    let bar = Progress::bar(
        repeats as u64,
        &format!("w4-planning {shape} ({tasks} tasks)"),
    );
    for _ in 0..repeats.max(1) {
        let before = scrape(client).await;
        let answer = match client
            .request(Method::POST, "/api/v1/workflows", Some(body.clone()))
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                out.error = Some(format!("{e:#}"));
                break;
            }
        };
        let after = scrape(client).await;
        bar.inc();
        let status = answer.status.as_u16();
        if status == 413 || answer.error_code() == Some("too_many_tasks") {
            out.rejected = Some(format!(
                "server limit: {status} {} — start it with CONFLUX_MAX_TASKS={} CONFLUX_MAX_BODY_BYTES={}",
                answer.error_code().unwrap_or("?"),
                tasks.max(10_000),
                round_up_mib(body.len()),
            ));
            break;
        }
        if !answer.status.is_success() {
            out.error = Some(format!(
                "POST /api/v1/workflows answered {status}: {}",
                answer.body
            ));
            break;
        }
        out.round_trip_ms.push(answer.elapsed.as_secs_f64() * 1e3);
        if let Some(ms) = answer.server_timing.as_deref().and_then(server_timing_ms) {
            out.server_ms.push(ms);
            out.server_time_source = ServerTimeSource::ServerTiming;
        } else if let Some(ms) = before
            .zip(after)
            .and_then(|(b, a)| histogram_delta_ms(&b, &a))
        {
            out.server_ms.push(ms);
            out.server_time_source = ServerTimeSource::Metrics;
        }
    }
    bar.finish();
    Ok(out)
}

async fn scrape(client: &Client) -> Option<Scrape> {
    client
        .metrics()
        .await
        .ok()
        .flatten()
        .map(|t| Scrape::parse(&t))
}

/// The one request's duration between two scrapes, if exactly one create happened.
fn histogram_delta_ms(before: &Scrape, after: &Scrape) -> Option<f64> {
    let count =
        after.value(DURATION_COUNT, &ROUTE)? - before.value(DURATION_COUNT, &ROUTE).unwrap_or(0.0);
    let sum =
        after.value(DURATION_SUM, &ROUTE)? - before.value(DURATION_SUM, &ROUTE).unwrap_or(0.0);
    ((count - 1.0).abs() < 0.5).then_some(sum * 1e3)
}

/// The total of a `Server-Timing` header (`name;dur=12.3, …`), in ms: the entry named
/// `total` if there is one, else the sum of every `dur`.
pub fn server_timing_ms(header: &str) -> Option<f64> {
    let entries: Vec<(&str, f64)> = header
        .split(',')
        .filter_map(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            let name = parts.next()?;
            let dur = parts.find_map(|p| p.strip_prefix("dur="))?.parse().ok()?;
            Some((name, dur))
        })
        .collect();
    if entries.is_empty() {
        return None;
    }
    Some(
        entries
            .iter()
            .find(|(name, _)| *name == "total")
            .map_or_else(|| entries.iter().map(|(_, d)| d).sum(), |(_, d)| *d),
    )
}

/// `bytes` rounded up to whole MiB (at least 1 MiB), as a byte count.
fn round_up_mib(bytes: usize) -> usize {
    const MIB: usize = 1 << 20;
    bytes.div_ceil(MIB).max(1) * MIB
}

impl Outcome for W4 {
    fn figures(&self) -> Vec<Figure> {
        let (d, c) = (&self.dag, &self.chain);
        vec![
            Figure::new(
                format!("{}-task DAG create+validate, server time (median)", d.tasks),
                d.median_server(),
                "ms",
            )
            .goal(Goal::Below(50.0)),
            Figure::new(
                format!("{}-task DAG round trip (median)", d.tasks),
                d.median_round_trip(),
                "ms",
            ),
            Figure::new(
                format!(
                    "{}-task chain create+validate, server time (median)",
                    c.tasks
                ),
                c.median_server(),
                "ms",
            ),
            Figure::new(
                format!("{}-task chain round trip (median)", c.tasks),
                c.median_round_trip(),
                "ms",
            ),
        ]
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for s in [&self.dag, &self.chain] {
            let what = format!("W4 {} ({} tasks, {} bytes)", s.shape, s.tasks, s.body_bytes);
            if let Some(r) = &s.rejected {
                notes.push(format!("{what}: rejected by a {r}."));
            }
            if let Some(e) = &s.error {
                notes.push(format!("{what}: failed: {e}."));
            }
            match s.server_time_source {
                ServerTimeSource::ServerTiming => notes.push(format!("{what}: server time from the Server-Timing header.")),
                ServerTimeSource::Metrics => notes.push(format!(
                    "{what}: the server reports no time of its own (no Server-Timing header); server time is \
                     the growth of conflux_http_request_duration_seconds_sum for POST /api/v1/workflows \
                     across each request (/metrics scraped before and after)."
                )),
                ServerTimeSource::None if !s.round_trip_ms.is_empty() => notes.push(format!(
                    "{what}: no server-side time available (no Server-Timing header, no request histogram); \
                     round trip only."
                )),
                ServerTimeSource::None => {}
            }
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_prefers_total() {
        assert_eq!(server_timing_ms("db;dur=2.5, app;dur=1.5"), Some(4.0));
        assert_eq!(
            server_timing_ms("validate;dur=1, total;dur=7.25"),
            Some(7.25)
        );
        assert_eq!(server_timing_ms("cache;desc=hit"), None);
    }

    #[test]
    fn limits_round_up_to_mebibytes() {
        assert_eq!(round_up_mib(1), 1 << 20);
        assert_eq!(round_up_mib((1 << 20) + 1), 2 << 20);
    }

    #[test]
    fn the_histogram_delta_needs_exactly_one_request() {
        let before = Scrape::parse(
            "conflux_http_request_duration_seconds_sum{method=\"POST\",route=\"/api/v1/workflows\"} 0.5\n\
             conflux_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/workflows\"} 2\n",
        );
        let after = Scrape::parse(
            "conflux_http_request_duration_seconds_sum{method=\"POST\",route=\"/api/v1/workflows\"} 0.52\n\
             conflux_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/workflows\"} 3\n",
        );
        let ms = histogram_delta_ms(&before, &after).unwrap_or(-1.0);
        assert!((ms - 20.0).abs() < 1e-6, "{ms}");
        assert_eq!(histogram_delta_ms(&after, &after), None);
    }
}
