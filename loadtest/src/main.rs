//! `conflux-loadtest`: parses the command line and dispatches to the library
//! (`conflux_loadtest`), which does the measuring and the reporting.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use conflux_loadtest::report::{current_command_line, Report};
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
    /// Workflow scenarios (W1 chain, W2 diamonds, agent schedule-to-start) against a
    /// running `conflux serve`.
    Runtime(RuntimeArgs),
}

/// Flags of `runtime`.
#[derive(Debug, Args)]
struct RuntimeArgs {
    /// The server to drive.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// W1 runs (one after another).
    #[arg(long, default_value_t = 20)]
    w1_runs: usize,
    /// W2 diamonds submitted at once.
    #[arg(long, default_value_t = 200)]
    w2_executions: usize,
    /// Executions of 5 agent tasks for schedule-to-start.
    #[arg(long, default_value_t = 100)]
    agent_executions: usize,
    /// Polling agents.
    #[arg(long, default_value_t = 4)]
    agents: usize,
    /// Write the JSON results here.
    #[arg(long)]
    out: Option<PathBuf>,
}

async fn run_runtime(args: &RuntimeArgs) -> Result<()> {
    use conflux_loadtest::runtime_bench::{agents, w1, w2, Client};
    let client = Client::new(&args.url)?;
    eprintln!("[1/3] w1-chain: {} runs of a 10-noop chain", args.w1_runs);
    let w1 = w1(&client, args.w1_runs).await?;
    eprintln!(
        "[2/3] w2-diamond: {} diamonds (1 -> 10 -> 1) at once",
        args.w2_executions
    );
    let w2 = w2(&client, args.w2_executions).await?;
    eprintln!(
        "[3/3] agents: {} executions x 5 agent tasks, {} pollers",
        args.agent_executions, args.agents
    );
    let ag = agents(&client, args.agent_executions, args.agents).await?;
    let machine = conflux_loadtest::report::MachineInfo::detect();
    println!("# Conflux runtime benchmark\n");
    println!("- command: `{}`", current_command_line());
    println!(
        "- git commit: {}",
        conflux_loadtest::report::git_commit().unwrap_or_default()
    );
    println!("- machine: {machine:?}\n");
    println!("| workload | result |\n|---|---|");
    println!("| W1 10-noop chain, submit → completed ({} runs) | median {:.1} ms, p95 {:.1} ms ({:.2} ms/step) |", w1.count, w1.p50, w1.p95, w1.p50 / 10.0);
    println!(
        "| W2 {} diamonds 1→10→1 at once ({} tasks) | {:.2} s wall, {:.0} tasks/s |",
        w2.executions, w2.tasks, w2.wall_seconds, w2.tasks_per_second
    );
    println!(
        "| agent schedule-to-start ({} tasks, {} agents) | p50 {:.1} ms, p99 {:.1} ms |",
        ag.count, args.agents, ag.p50, ag.p99
    );
    if let Some(path) = &args.out {
        let json = serde_json::json!({"command": current_command_line(), "machine": machine, "w1_ms": w1, "w2": w2, "schedule_to_start_ms": ag});
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    Ok(())
}

/// Flags every scenario shares.
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
    if let Command::Runtime(args) = &cli.command {
        return run_runtime(args).await;
    }
    let (report, common): (Report, &Common) = match &cli.command {
        Command::Limits(common) => (run_limits(&common.config()).await?, common),
        Command::Store(common) => (run_store(&common.config()).await?, common),
        Command::Runtime(_) => return Ok(()),
    };
    print!("{}", report.to_markdown());
    report.write_files(common.out.as_deref(), common.markdown.as_deref())
}
