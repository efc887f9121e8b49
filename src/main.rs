//! `conflux`: the one binary. Parses the command line and hands over to the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use conflux::backends::Backends;
use conflux::config::Config;
use conflux::{app, shutdown, telemetry};

/// Conflux — an event-sourced workflow engine.
///
/// With no DATABASE_URL, Conflux runs on an embedded SQLite store in CONFLUX_DATA_DIR
/// and an in-process bus: `conflux serve` works on a fresh machine.
#[derive(Debug, Parser)]
#[command(name = "conflux", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    config: Config,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every role in one process: HTTP API and the outbox relay.
    Serve,
    /// Apply database migrations and exit (also done at every start).
    Migrate,
    /// Run only the outbox relay (store → bus).
    Relay,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.config.dump_config {
        println!("{}", serde_json::to_string_pretty(&cli.config.dump())?);
        return Ok(());
    }
    telemetry::init(cli.config.log_format, &cli.config.log);
    let stop = shutdown::on_signal();
    match cli.command {
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(cli.config.addr)
                .await
                .with_context(|| format!("binding {}", cli.config.addr))?;
            let backends = Backends::open(&cli.config).await?;
            app::serve(listener, backends, stop).await
        }
        Command::Migrate => {
            let backends = Backends::open(&cli.config).await?;
            tracing::info!(mode = backends.mode, "migrations applied");
            Ok(())
        }
        Command::Relay => {
            let backends = Backends::open(&cli.config).await?;
            tracing::info!(mode = backends.mode, "relay running");
            app::spawn_relay(&backends, stop)
                .await
                .context("relay task")
        }
    }
}
