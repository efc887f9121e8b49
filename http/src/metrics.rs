//! `GET /metrics`: Prometheus text. Conflux code records through the `metrics` facade
//! (counters and histograms where things happen); this module installs the Prometheus
//! recorder once per process and renders it, after running the hooks that refresh
//! gauges read at scrape time (e.g. circuit-breaker states).
//!
//! Two process gauges are always refreshed at scrape time, because a leak shows in
//! them first and nothing else would reveal it: tokio tasks alive
//! (`conflux_runtime_alive_tasks`: a task left behind per connection or per request
//! grows it), and the resident set size (`conflux_process_resident_memory_bytes`, from
//! `/proc/self/status`; absent where there is no `/proc`). Gauges that belong to another
//! crate (open WebSocket clients, circuit breakers) are that crate's [`ScrapeHook`]s,
//! handed to [`router`] by the binary.

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::ApiError;

/// Something that refreshes gauges just before a scrape.
pub type ScrapeHook = Arc<dyn Fn() + Send + Sync>;

/// Latency buckets (seconds) for every `*_seconds` histogram.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's recorder handle, installed on first use. Returns None if another
/// recorder was installed first (then `/metrics` answers 503).
pub fn handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "conflux_events_appended_total",
        "Events committed to the event store by this process."
    );
    metrics::describe_counter!(
        "conflux_tasks_total",
        "Task attempts finished, by kind and outcome."
    );
    metrics::describe_histogram!(
        "conflux_task_schedule_to_start_seconds",
        "TaskScheduled to TaskStarted of agent tasks."
    );
    metrics::describe_counter!(
        "conflux_http_requests_total",
        "HTTP requests answered, by method, route and status."
    );
    metrics::describe_histogram!(
        "conflux_http_request_duration_seconds",
        "HTTP request durations, by method and route."
    );
    metrics::describe_gauge!(
        "conflux_ws_connections",
        "WebSocket clients connected to /ws/executions and /ws/workflows now."
    );
    metrics::describe_gauge!(
        "conflux_runtime_alive_tasks",
        "Tokio tasks alive in this process's runtime."
    );
    metrics::describe_gauge!(
        "conflux_process_resident_memory_bytes",
        "Resident set size of this process (VmRSS)."
    );
    metrics::describe_gauge!(
        "conflux_http_circuit_breaker_state",
        "Per-host circuit breaker: 0 closed, 1 half-open, 2 open."
    );
    metrics::describe_counter!(
        "conflux_hook_attempts_total",
        "Webhook delivery attempts, by outcome (delivered: a 2xx answer; failed)."
    );
    metrics::describe_counter!(
        "conflux_hook_dead_lettered_total",
        "Webhook deliveries given up after every attempt failed."
    );
}

/// `GET /metrics`.
pub fn router(hooks: Vec<ScrapeHook>) -> Router {
    let _ = handle();
    Router::new()
        .route("/metrics", get(render))
        .with_state(Arc::new(hooks))
}

async fn render(State(hooks): State<Arc<Vec<ScrapeHook>>>) -> impl IntoResponse {
    process_gauges();
    for hook in hooks.iter() {
        hook();
    }
    match handle() {
        Some(h) => ([(CONTENT_TYPE, "text/plain; version=0.0.4")], h.render()).into_response(),
        None => ApiError::unavailable("metrics recorder not installed").into_response(),
    }
}

/// Sets the process gauges (see the module docs) to their values now.
fn process_gauges() {
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    metrics::gauge!("conflux_runtime_alive_tasks").set(tasks as f64);
    if let Some(bytes) = resident_memory_bytes() {
        metrics::gauge!("conflux_process_resident_memory_bytes").set(bytes as f64);
    }
}

/// This process's resident set size (`VmRSS` of `/proc/self/status`), None without
/// `/proc`.
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    vm_rss(&status)
}

/// The `VmRSS:   1234 kB` line of a `/proc/<pid>/status` text, in bytes.
fn vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::vm_rss;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tconflux\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(vm_rss(status), Some(12345 * 1024));
        assert_eq!(vm_rss("Name:\tx\n"), None);
    }
}
