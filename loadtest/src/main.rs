//! `conflux-loadtest`: parses the command line and dispatches to the library
//! (`conflux_loadtest`), which does the measuring and the reporting.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use conflux_loadtest::report::{current_command_line, Report};
use conflux_loadtest::scenarios::{w1, w2, w3, w4, w5, w6, w7, w8, w9, Scenario};
use conflux_loadtest::suite::{run_suite, SuiteConfig};
use conflux_loadtest::{run_limits, run_store, BenchConfig};

/// Conflux load generator and benchmark report.
#[derive(Debug, Parser)]
#[command(name = "conflux-loadtest", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Raw limits only: Postgres INSERTs, Redis XADDs, round trips.
    Limits(Common),
    /// Conflux store appends and the raw limits, in one run, with ratios.
    Store(Common),
    /// W1: chain of 10 noop tasks, 20 runs one after another (submit → completed on
    /// the WebSocket).
    #[command(name = "w1-chain")]
    W1Chain(One<w1::Params>),
    /// W2: 200 diamonds (1 → 10 → 1) submitted at once: wall time, tasks/s.
    #[command(name = "w2-diamond")]
    W2Diamond(One<w2::Params>),
    /// W3: sustained rate of noop and agent executions: throughput,
    /// schedule-to-start, events/s, projector lag, HTTP latencies.
    #[command(name = "w3-sustained")]
    W3Sustained(One<w3::Params>),
    /// W4: create+validate a 10,000-task DAG and a 100,000-task chain.
    #[command(name = "w4-planning")]
    W4Planning(One<w4::Params>),
    /// W5: 1,000 WebSocket subscribers on 50 executions under load: commit → client
    /// latency, exactly-once in-order delivery.
    #[command(name = "w5-fanout")]
    W5Fanout(One<w5::Params>),
    /// W6: chain of 40 agent tasks of ~10 ms CPU each: submit → completed.
    #[command(name = "w6-chain40")]
    W6Chain40(One<w6::Params>),
    /// W7: tenant A submits 2,000 diamonds at once, tenant B one small execution every
    /// 100 ms from a second later: B's execute → first TaskStarted p50/p99 during A's
    /// backlog, and A's drain time. Needs the administrator's token (it makes tenants).
    #[command(name = "w7-fairness")]
    W7Fairness(One<w7::Params>),
    /// W8: 100 schedules firing every second for 30 s: tick → ExecutionStarted
    /// lateness p50/p99, and ticks started twice or missing (both must be 0).
    #[command(name = "w8-schedules")]
    W8Schedules(One<w8::Params>),
    /// W9: one map of 10,000 noop items, all at once: submit → completed, items/s.
    #[command(name = "w9-map")]
    W9Map(One<w9::Params>),
    /// `limits`, then every scenario, into one report (JSON and markdown) with ratios
    /// to the raw limits and the goals.
    All(Box<AllArgs>),
    /// W1, W2 and W3 against a running server (kept for the README's command).
    Runtime(Box<RuntimeArgs>),
}

/// Where the server is and where the report goes.
#[derive(Debug, Args)]
struct Target {
    /// The server to drive.
    #[arg(long, env = "CONFLUX_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Bearer token (an API key, or the administrator's token) sent as
    /// `Authorization: Bearer <token>` on every request and WebSocket upgrade.
    #[arg(long, env = "CONFLUX_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The server's mode for the report (default: what its `/ready` says).
    #[arg(long)]
    mode: Option<String>,
    /// Write the JSON report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the markdown report here (it is always printed to stdout).
    #[arg(long)]
    markdown: Option<PathBuf>,
}

/// Flags of a one-scenario subcommand.
#[derive(Debug, Args)]
struct One<P: Args> {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    params: P,
}

/// Flags of `all`.
#[derive(Debug, Args)]
struct AllArgs {
    #[command(flatten)]
    target: Target,
    /// Postgres URL for the raw limits (its user must be able to CREATE DATABASE).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Redis URL for the raw limits.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Seconds per round of each raw limit.
    #[arg(long, default_value_t = 2.0)]
    limits_seconds: f64,
    /// Rounds of each raw limit.
    #[arg(long, default_value_t = 1)]
    limits_rounds: usize,
    /// Do not measure the raw limits.
    #[arg(long)]
    no_limits: bool,
    /// Scenarios to leave out (comma-separated, e.g. `w4-planning,w5-fanout`).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    #[command(flatten)]
    w1: w1::Params,
    #[command(flatten)]
    w2: w2::Params,
    #[command(flatten)]
    w3: w3::Params,
    #[command(flatten)]
    w4: w4::Params,
    #[command(flatten)]
    w5: w5::Params,
    #[command(flatten)]
    w6: w6::Params,
    #[command(flatten)]
    w7: w7::Params,
    #[command(flatten)]
    w8: w8::Params,
    #[command(flatten)]
    w9: w9::Params,
}

/// Flags of `runtime`.
#[derive(Debug, Args)]
struct RuntimeArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    w1: w1::Params,
    #[command(flatten)]
    w2: w2::Params,
    #[command(flatten)]
    w3: w3::Params,
}

/// Flags `limits` and `store` share.
#[derive(Debug, Args)]
struct Common {
    /// Postgres URL; its user must be able to CREATE DATABASE (the run uses a fresh one).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Redis URL; the run uses a fresh key prefix.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Seconds per round of each measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Rounds per measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Write the JSON report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the markdown report here (it is always printed to stdout).
    #[arg(long)]
    markdown: Option<PathBuf>,
}

impl Common {
    fn config(&self) -> BenchConfig {
        BenchConfig {
            database_url: self.database_url.clone(),
            redis_url: self.redis_url.clone(),
            seconds: self.seconds,
            rounds: self.rounds,
            command_line: current_command_line(),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let (title, target, limits, scenarios) = match cli.command {
        Command::Limits(common) => return raw(run_limits(&common.config()).await?, &common),
        Command::Store(common) => return raw(run_store(&common.config()).await?, &common),
        Command::W1Chain(one) => single(one, Scenario::W1Chain),
        Command::W2Diamond(one) => single(one, Scenario::W2Diamond),
        Command::W3Sustained(one) => single(one, Scenario::W3Sustained),
        Command::W4Planning(one) => single(one, Scenario::W4Planning),
        Command::W5Fanout(one) => single(one, Scenario::W5Fanout),
        Command::W6Chain40(one) => single(one, Scenario::W6Chain40),
        Command::W7Fairness(one) => single(one, Scenario::W7Fairness),
        Command::W8Schedules(one) => single(one, Scenario::W8Schedules),
        Command::W9Map(one) => single(one, Scenario::W9Map),
        Command::Runtime(args) => {
            let RuntimeArgs { target, w1, w2, w3 } = *args;
            let scenarios = vec![
                Scenario::W1Chain(w1),
                Scenario::W2Diamond(w2),
                Scenario::W3Sustained(w3),
            ];
            ("runtime", target, None, scenarios)
        }
        Command::All(args) => {
            let a = *args;
            let limits = (!a.no_limits).then(|| BenchConfig {
                database_url: a.database_url,
                redis_url: a.redis_url,
                seconds: a.limits_seconds,
                rounds: a.limits_rounds,
                command_line: current_command_line(),
            });
            let scenarios: Vec<Scenario> = vec![
                Scenario::W1Chain(a.w1),
                Scenario::W2Diamond(a.w2),
                Scenario::W3Sustained(a.w3),
                Scenario::W4Planning(a.w4),
                Scenario::W5Fanout(a.w5),
                Scenario::W6Chain40(a.w6),
                Scenario::W7Fairness(a.w7),
                Scenario::W8Schedules(a.w8),
                Scenario::W9Map(a.w9),
            ];
            let known: Vec<&str> = scenarios.iter().map(Scenario::name).collect();
            if let Some(bad) = a.skip.iter().find(|s| !known.contains(&s.as_str())) {
                anyhow::bail!("--skip {bad}: not a scenario (one of {})", known.join(", "));
            }
            let scenarios = scenarios
                .into_iter()
                .filter(|s| !a.skip.iter().any(|k| k == s.name()))
                .collect();
            ("all", a.target, limits, scenarios)
        }
    };
    let config = SuiteConfig {
        title: title.to_owned(),
        url: target.url,
        token: target.token,
        mode: target.mode,
        limits,
        scenarios,
        command_line: current_command_line(),
    };
    let report = run_suite(&config).await?;
    print!("{}", report.to_markdown());
    report.write_files(target.out.as_deref(), target.markdown.as_deref())
}

fn single<P: Args>(
    one: One<P>,
    scenario: fn(P) -> Scenario,
) -> (&'static str, Target, Option<BenchConfig>, Vec<Scenario>) {
    let s = scenario(one.params);
    (s.name(), one.target, None, vec![s])
}

fn raw(report: Report, common: &Common) -> Result<()> {
    print!("{}", report.to_markdown());
    report.write_files(common.out.as_deref(), common.markdown.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_scenario_takes_its_sizes() {
        let cli = Cli::parse_from([
            "conflux-loadtest",
            "all",
            "--no-limits",
            "--w1-runs",
            "2",
            "--w3-rate",
            "5",
            "--skip",
            "w4-planning,w5-fanout",
        ]);
        let Command::All(a) = cli.command else {
            panic!("not all");
        };
        assert_eq!((a.w1.runs, a.w3.load.rate), (2, 5.0));
        assert_eq!(a.skip, ["w4-planning", "w5-fanout"]);
    }
}
