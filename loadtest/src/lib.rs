//! # conflux-loadtest — how fast is Conflux, and compared with what
//!
//! Measures Conflux against the raw limits of the Postgres and Redis it runs on, in
//! the same run, so every figure comes with the ceiling it should be read against.
//! The `conflux-loadtest` binary is a thin clap front over [`run_limits`],
//! [`run_store`] and [`suite::run_suite`]; tests call them directly.
//!
//! # Layout
//! - [`runner`]: the [`runner::Probe`] / [`runner::Worker`] traits and the timed,
//!   interleaved round loop the store and limit measurements go through.
//! - [`limits`]: raw Postgres INSERTs, Redis XADDs and round trips — the ceilings.
//! - [`store_bench`]: appends through Conflux's `PgStore`, each beside its ceiling.
//! - [`payload`]: the event, row and envelope every probe writes, built once.
//! - [`sandbox`]: a fresh database and Redis prefix per run, removed afterwards.
//! - [`client`]: the server's HTTP API (timed calls); [`ws`]: its live WebSocket
//!   streams; [`agents`]: agents built into the load tester; [`metrics`]: reading
//!   `/metrics`. Scenarios touch the server through these only, never its store.
//! - [`scenarios`]: the workloads W1..W7 against a running server.
//! - [`suite`]: runs scenarios (and the raw limits) into one report with ratios and
//!   goals; `all` is every scenario.
//! - [`stats`]: rounds, medians and latency histograms.
//! - [`report`]: machine and server context, markdown and JSON output of `store`
//!   and `limits`.
//! - [`progress`]: progress bars on stderr.

pub mod agents;
pub mod client;
pub mod limits;
pub mod metrics;
pub mod payload;
pub mod progress;
pub mod report;
pub mod runner;
pub mod sandbox;
pub mod scenarios;
pub mod slow_hook;
pub mod stats;
pub mod store_bench;
pub mod suite;
pub mod ws;

use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use conflux_engine::store::postgres::{PgStore, PgStoreOptions};

use crate::report::{ComparisonSpec, Report, RunInfo};
use crate::runner::{run_probes, Probe, RunSettings};
use crate::sandbox::Sandbox;

/// Where to connect and how long to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// A Postgres URL whose user may create databases; the run uses a fresh one.
    pub database_url: String,
    /// A Redis URL; the run uses a fresh key prefix.
    pub redis_url: String,
    /// Seconds per round of each measurement.
    pub seconds: f64,
    /// Rounds per measurement; the report shows the median.
    pub rounds: usize,
    /// The command line to record in the report.
    pub command_line: String,
}

impl BenchConfig {
    fn settings(&self) -> Result<RunSettings> {
        let duration = Duration::try_from_secs_f64(self.seconds)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| anyhow!("--seconds must be positive, got {}", self.seconds))?;
        if self.rounds == 0 {
            bail!("--rounds must be at least 1");
        }
        Ok(RunSettings {
            duration,
            rounds: self.rounds,
        })
    }

    fn run_info(&self, scenario: &str) -> RunInfo {
        RunInfo {
            scenario: scenario.to_owned(),
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            command_line: self.command_line.clone(),
            git_commit: report::git_commit(),
            seconds: self.seconds,
            rounds: self.rounds,
        }
    }
}

/// The `limits` scenario: raw Postgres and Redis only.
pub async fn run_limits(config: &BenchConfig) -> Result<Report> {
    let settings = config.settings()?;
    in_sandbox(config, |sandbox| async move {
        limits::prepare(&sandbox).await?;
        let probes = limits::all_probes(&sandbox)?;
        measure(config, "limits", &sandbox, &probes, settings, &[]).await
    })
    .await
}

/// The `store` scenario: Conflux appends and the raw limits, interleaved in one run so
/// each ratio compares figures taken under the same conditions.
pub async fn run_store(config: &BenchConfig) -> Result<Report> {
    let settings = config.settings()?;
    in_sandbox(config, |sandbox| async move {
        limits::prepare(&sandbox).await?;
        let store = PgStore::connect(sandbox.database_url(), &PgStoreOptions::default())
            .await
            .context("connecting the Conflux store to the sandbox database")?;
        let plan = store_bench::plan(&store, &sandbox)?;
        let report = measure(
            config,
            "store",
            &sandbox,
            &plan.probes,
            settings,
            &plan.comparisons,
        )
        .await;
        drop(plan);
        store.pool().close().await;
        report
    })
    .await
}

async fn measure(
    config: &BenchConfig,
    scenario: &str,
    sandbox: &Sandbox,
    probes: &[Box<dyn Probe>],
    settings: RunSettings,
    comparisons: &[ComparisonSpec],
) -> Result<Report> {
    let servers = sandbox.server_info().await?;
    eprintln!(
        "conflux-loadtest {scenario}: database {}, Redis prefix {}, {} measurements × {} rounds × {:?}",
        sandbox.database(),
        sandbox.key_prefix(),
        probes.len(),
        settings.rounds,
        settings.duration
    );
    let measurements = run_probes(probes, settings).await?;
    Ok(Report::new(
        config.run_info(scenario),
        servers,
        measurements,
        comparisons,
    ))
}

/// Runs `body` in a fresh sandbox and tears the sandbox down afterwards, whether the
/// body succeeded, failed, or was interrupted by Ctrl-C.
async fn in_sandbox<F, Fut>(config: &BenchConfig, body: F) -> Result<Report>
where
    F: FnOnce(Sandbox) -> Fut,
    Fut: Future<Output = Result<Report>>,
{
    let sandbox = Sandbox::create(&config.database_url, &config.redis_url).await?;
    let outcome = tokio::select! {
        outcome = body(sandbox.clone()) => outcome,
        Ok(()) = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    let database = sandbox.database().to_owned();
    let cleanup = sandbox.teardown().await;
    match (outcome, cleanup) {
        (Ok(report), Ok(())) => Ok(report),
        (Ok(_), Err(e)) => Err(e.context(format!("cleaning up sandbox {database}"))),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(cleanup)) => {
            eprintln!("also failed to clean up sandbox {database}: {cleanup:#}");
            Err(e)
        }
    }
}
