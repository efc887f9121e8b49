//! A run of scenarios against one server, with everything needed to read the numbers
//! later: machine, server mode, commit, the raw Postgres/Redis limits measured in the
//! same run (when reachable), every figure as a ratio to its raw limit, and the goals.
//! `all` is every scenario after `limits`; each `w*` subcommand is a suite of one.
//! A failing scenario is recorded and the suite goes on.

mod markdown;

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::client::Client;
use crate::report::{git_commit, thousands, MachineInfo, Report};
use crate::scenarios::{Figure, RawBasis, RawRatio, Scenario, ScenarioRun};
use crate::{run_limits, BenchConfig};

/// What to run.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// What the report is called (`all`, `w1-chain`…).
    pub title: String,
    /// The server, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// The bearer token sent on every request and WebSocket upgrade (None: none).
    pub token: Option<String>,
    /// The server's mode if given on the command line; otherwise `/ready` says.
    pub mode: Option<String>,
    /// Measure the raw limits first (None: not asked for).
    pub limits: Option<BenchConfig>,
    /// The scenarios, in order.
    pub scenarios: Vec<Scenario>,
    /// The command line to record.
    pub command_line: String,
}

/// The server that was measured.
#[derive(Debug, Clone, Serialize)]
pub struct ServerContext {
    /// Its URL.
    pub url: String,
    /// `embedded`, `postgres+redis`, or None if it did not say.
    pub mode: Option<String>,
    /// Its `/ready` body.
    pub ready: Value,
}

/// One scenario's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioOutcome {
    /// `w1-chain`…
    pub name: String,
    /// What it ran, with sizes.
    pub description: String,
    /// Its parameters.
    pub params: Value,
    /// Its figures and result, if it finished.
    #[serde(flatten)]
    pub run: Option<ScenarioRun>,
    /// Why it did not finish.
    pub error: Option<String>,
}

/// Goals met, missed, and not measurable.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GoalTally {
    /// Met.
    pub met: usize,
    /// Missed.
    pub missed: usize,
    /// Without a value (scenario failed, or n/a).
    pub unknown: usize,
}

/// A whole suite's results and context.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    /// The tool and its version.
    pub tool: String,
    /// `all`, `w1-chain`…
    pub title: String,
    /// When (RFC 3339, UTC).
    pub date: String,
    /// The command line.
    pub command_line: String,
    /// The commit of the working directory.
    pub git_commit: Option<String>,
    /// The machine.
    pub machine: MachineInfo,
    /// The server.
    pub server: ServerContext,
    /// The raw limits of this run, if measured.
    pub limits: Option<Report>,
    /// Why the raw limits are missing, if they are.
    pub limits_note: Option<String>,
    /// Every scenario, in run order.
    pub scenarios: Vec<ScenarioOutcome>,
    /// The goals.
    pub goals: GoalTally,
}

/// Runs the suite: asks the server what it is, measures the raw limits (skipped with a
/// note if Postgres/Redis are unreachable), then each scenario.
pub async fn run_suite(config: &SuiteConfig) -> Result<SuiteReport> {
    let client = Client::new(&config.url, config.token.as_deref())?;
    let ready = client
        .ready()
        .await
        .with_context(|| format!("is a Conflux server running at {}?", config.url))?;
    let mode = config
        .mode
        .clone()
        .or_else(|| ready["mode"].as_str().map(str::to_owned));
    eprintln!(
        "conflux-loadtest {}: server {} (mode {})",
        config.title,
        config.url,
        mode.as_deref().unwrap_or("unknown")
    );
    let (limits, limits_note) = match &config.limits {
        None => (
            None,
            Some("not measured (this subcommand runs no raw limits)".to_owned()),
        ),
        Some(bench) => {
            eprintln!("[limits] raw Postgres INSERTs, Redis XADDs, round trips");
            match run_limits(bench).await {
                Ok(report) => (Some(report), None),
                Err(e) => {
                    eprintln!("[limits] skipped: {e:#}");
                    (None, Some(format!("skipped: {e:#}")))
                }
            }
        }
    };
    let total = config.scenarios.len();
    let mut scenarios = Vec::with_capacity(total);
    for (i, scenario) in config.scenarios.iter().enumerate() {
        let description = scenario.describe();
        eprintln!("[{}/{total}] {}: {description}", i + 1, scenario.name());
        let started = Instant::now();
        let (run, error) = match scenario.run(&client).await {
            Ok(mut run) => {
                if let Some(limits) = &limits {
                    for f in &mut run.figures {
                        f.vs_raw = raw_ratio(f, limits);
                    }
                }
                (Some(run), None)
            }
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        match (&run, &error) {
            (Some(run), _) => eprintln!(
                "      done in {:.1} s: {}",
                run.seconds,
                headline(&run.figures)
            ),
            (_, Some(e)) => eprintln!(
                "      FAILED after {:.1} s: {e}",
                started.elapsed().as_secs_f64()
            ),
            _ => {}
        }
        scenarios.push(ScenarioOutcome {
            name: scenario.name().to_owned(),
            description,
            params: serde_json::to_value(scenario).unwrap_or(Value::Null),
            run,
            error,
        });
    }
    let goals = tally(&scenarios);
    Ok(SuiteReport {
        tool: format!("conflux-loadtest {}", env!("CARGO_PKG_VERSION")),
        title: config.title.clone(),
        date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command_line: config.command_line.clone(),
        git_commit: git_commit(),
        machine: MachineInfo::detect(),
        server: ServerContext {
            url: config.url.clone(),
            mode,
            ready,
        },
        limits,
        limits_note,
        scenarios,
        goals,
    })
}

/// The first figure with its value, for the progress log.
fn headline(figures: &[Figure]) -> String {
    figures
        .first()
        .map(|f| match f.value {
            Some(v) => format!("{} {} {}", f.name, crate::report::figure(v), f.unit),
            None => format!("{} n/a", f.name),
        })
        .unwrap_or_default()
}

fn tally(scenarios: &[ScenarioOutcome]) -> GoalTally {
    let mut t = GoalTally::default();
    for s in scenarios {
        match &s.run {
            Some(run) => {
                for f in run.figures.iter().filter(|f| f.goal.is_some()) {
                    match f.met {
                        Some(true) => t.met += 1,
                        Some(false) => t.missed += 1,
                        None => t.unknown += 1,
                    }
                }
            }
            None => t.unknown += 1,
        }
    }
    t
}

/// `figure` against its raw limit from `limits`, if both exist.
pub fn raw_ratio(figure: &Figure, limits: &Report) -> Option<RawRatio> {
    let (basis, value) = (figure.basis?, figure.value?);
    let m = limits.measurement(basis.measurement_id())?;
    let (raw, text) = match basis {
        RawBasis::PgInsertRate | RawBasis::RedisXaddRate => {
            let raw = m.median_rate;
            let share = value / raw * 100.0;
            (
                raw,
                format!("{share:.1} % of {} ({}/s)", m.info.label, thousands(raw)),
            )
        }
        RawBasis::PgInsertLatency | RawBasis::PgRoundTripLatency => {
            let raw = m.median_p50_us / 1e3;
            let times = value / raw;
            (
                raw,
                format!("{times:.1}× {} p50 ({raw:.2} ms)", m.info.label),
            )
        }
    };
    (raw > 0.0).then(|| RawRatio {
        basis,
        raw,
        ratio: value / raw,
        text,
    })
}

impl SuiteReport {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).context("serialising the report")
    }

    /// The report as markdown.
    pub fn to_markdown(&self) -> String {
        markdown::render(self)
    }

    /// Writes the JSON and/or markdown report where asked.
    pub fn write_files(&self, json: Option<&Path>, markdown: Option<&Path>) -> Result<()> {
        crate::report::write_report_files(json, markdown, || self.to_json(), || self.to_markdown())
    }

    /// The scenario named `name`.
    pub fn scenario(&self, name: &str) -> Option<&ScenarioOutcome> {
        self.scenarios.iter().find(|s| s.name == name)
    }
}
