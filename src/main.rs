//! `conflux`: the one binary. Parses the command line and hands over to the library.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use conflux::app::{self, Runtime, Surface};
use conflux::backends::Backends;
use conflux::config::Config;
use conflux::keys_cli::{KeysAction, KeysArgs};
use conflux::{cli, shutdown, telemetry};

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
    /// Run every role in one process: HTTP API, engine and outbox relay.
    Serve,
    /// Apply database migrations and exit (also done at every start).
    Migrate,
    /// Run only the HTTP API (command and query routes).
    Api,
    /// Run only the command API: the write routes (workflows, executions, agents and
    /// leases, keys, tenants), with /health, /ready and /metrics.
    #[command(name = "command-api")]
    WriteApi,
    /// Run only the query API: the read routes (workflows, executions, audit, live
    /// WebSockets, the OpenAPI document), with /health, /ready and /metrics.
    #[command(name = "query-api")]
    ReadApi,
    /// Run only the engine (graph executor); needs Redis to share work with other processes.
    Engine,
    /// Run only the outbox relay (store → bus).
    Relay,
    /// Run only the projector (read models); `conflux projector rebuild` drops them and
    /// replays the whole log.
    Projector(ProjectorArgs),
    /// Inspect or reset the bus (the Redis prefix) this store publishes to.
    Bus(BusArgs),
    /// Create, list or revoke API keys on a running server.
    Keys(conflux::keys_cli::KeysArgs),
    /// Create or list tenants on a running server (the system administrator's token).
    Tenants(conflux::keys_cli::TenantsArgs),
    /// Put (create or rotate), list or delete the tenant's secrets on a running server.
    Secrets(conflux::secrets_cli::SecretsArgs),
    /// Create, list, get, pause, resume or delete the tenant's schedules on a running
    /// server.
    Schedules(conflux::schedules_cli::SchedulesArgs),
    /// Print an execution's event log, read from a running server.
    Events(cli::EventsArgs),
    /// Show an execution as it stood after a version, rebuilt from its log.
    Replay(cli::ReplayArgs),
    /// Verify an execution's hash chain (exit 0 valid, 1 invalid, 2 error).
    Verify(cli::VerifyArgs),
}

/// Flags of `conflux projector`.
#[derive(Debug, Args)]
struct ProjectorArgs {
    #[command(subcommand)]
    action: Option<ProjectorAction>,
}

/// Flags of `conflux bus`.
#[derive(Debug, Args)]
struct BusArgs {
    #[command(subcommand)]
    action: BusAction,
}

#[derive(Debug, Subcommand)]
enum BusAction {
    /// Show whose events the bus holds and whether this store may use it (exit 0 yes,
    /// 1 refused).
    Status,
    /// Clear this prefix's events, consumer groups and agent queues, record this store
    /// as the bus's owner and republish the store's log (servers on this store pick up
    /// within a second).
    Reset {
        /// Confirm: without it nothing is deleted.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectorAction {
    /// Drop every read model and replay the whole event log into fresh tables, with a
    /// progress bar; prints the events replayed per second.
    Rebuild,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.config.dump_config {
        println!("{}", serde_json::to_string_pretty(&cli.config.dump())?);
        return Ok(());
    }
    // The audit commands are HTTP clients: no backends, no logging on stdout.
    let exit = match &cli.command {
        Command::Events(args) => Some(cli::events(args.clone()).await),
        Command::Replay(args) => Some(cli::replay(args.clone()).await),
        Command::Verify(args) => Some(cli::verify(args.clone()).await),
        Command::Keys(args) if !args.action.is_local() => {
            Some(conflux::keys_cli::keys(args.clone()).await)
        }
        Command::Tenants(args) => Some(conflux::keys_cli::tenants(args.clone()).await),
        Command::Secrets(args) => Some(conflux::secrets_cli::secrets(args.clone()).await),
        Command::Schedules(args) => Some(conflux::schedules_cli::schedules(args.clone()).await),
        _ => None,
    };
    if let Some(code) = exit {
        std::process::exit(i32::from(code));
    }
    telemetry::init(cli.config.log_format, &cli.config.log);
    let stop = shutdown::on_signal();
    let bind = || async {
        tokio::net::TcpListener::bind(cli.config.addr)
            .await
            .with_context(|| format!("binding {}", cli.config.addr))
    };
    match cli.command {
        Command::Serve => {
            let listener = bind().await?;
            let rt = Runtime::new(Backends::open(&cli.config).await?, &cli.config);
            app::serve(listener, rt, stop).await
        }
        Command::Migrate => {
            let backends = Backends::open(&cli.config).await?;
            tracing::info!(mode = backends.mode, "migrations applied");
            Ok(())
        }
        Command::Api | Command::WriteApi | Command::ReadApi => {
            let surface = match cli.command {
                Command::WriteApi => Surface::Commands,
                Command::ReadApi => Surface::Queries,
                _ => Surface::All,
            };
            let listener = bind().await?;
            let rt = Runtime::new(Backends::open(&cli.config).await?, &cli.config);
            app::start_guard(&rt, stop.clone()).await;
            app::serve_http(listener, &rt, surface, stop).await
        }
        Command::Engine => {
            let rt = Runtime::new(Backends::open(&cli.config).await?, &cli.config);
            tracing::info!(mode = rt.backends.mode, "engine running");
            app::start_guard(&rt, stop.clone()).await;
            app::spawn_engine(&rt, stop).await.context("engine task")
        }
        Command::Relay => {
            let rt = Runtime::new(Backends::open(&cli.config).await?, &cli.config);
            tracing::info!(mode = rt.backends.mode, "relay running");
            app::start_guard(&rt, stop.clone()).await;
            app::spawn_relay(&rt, stop).await.context("relay task")
        }
        Command::Projector(ProjectorArgs { action: None }) => {
            let rt = Runtime::new(Backends::open(&cli.config).await?, &cli.config);
            tracing::info!(mode = rt.backends.mode, "projector running");
            app::start_guard(&rt, stop.clone()).await;
            app::spawn_projector(&rt, stop)
                .await
                .context("projector task")
        }
        Command::Projector(ProjectorArgs {
            action: Some(ProjectorAction::Rebuild),
        }) => {
            let rt = Runtime::new(Backends::open(&cli.config).await?, &cli.config);
            conflux::rebuild::rebuild(&rt).await
        }
        Command::Bus(BusArgs {
            action: BusAction::Status,
        }) => {
            let rt = Runtime::new(Backends::open(&cli.config).await?, &cli.config);
            let code = conflux::bus_admin::status(&rt).await?;
            std::process::exit(i32::from(code));
        }
        Command::Bus(BusArgs {
            action: BusAction::Reset { yes },
        }) => {
            let rt = Runtime::new(Backends::open(&cli.config).await?, &cli.config);
            conflux::bus_admin::reset(&rt, yes).await
        }
        Command::Keys(KeysArgs {
            action: KeysAction::NewMaster,
            ..
        }) => conflux::keys_cli::new_master(),
        Command::Keys(KeysArgs {
            action: KeysAction::RotateMaster,
            ..
        }) => {
            let backends = Backends::open(&cli.config).await?;
            conflux::keys_cli::rotate_master(&backends).await
        }
        Command::Events(_)
        | Command::Replay(_)
        | Command::Verify(_)
        | Command::Keys(_)
        | Command::Tenants(_)
        | Command::Secrets(_)
        | Command::Schedules(_) => Ok(()),
    }
}
