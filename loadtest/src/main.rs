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
    let (report, common): (Report, &Common) = match &cli.command {
        Command::Limits(common) => (run_limits(&common.config()).await?, common),
        Command::Store(common) => (run_store(&common.config()).await?, common),
    };
    print!("{}", report.to_markdown());
    report.write_files(common.out.as_deref(), common.markdown.as_deref())
}
