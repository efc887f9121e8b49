//! `conflux schedules create|list|get|pause|resume|delete`: the caller's tenant's
//! schedules through a running server's HTTP API, with the same `--url`/`--token` as
//! `conflux keys`.

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::cli::{finish, get_json, pretty, send, CliError, ServerArgs};

/// `conflux schedules …`.
#[derive(Debug, Clone, Args)]
pub struct SchedulesArgs {
    #[command(subcommand)]
    pub action: SchedulesAction,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What to do with schedules (reading needs a `viewer` key or more; changing, an
/// `operator`, `developer` or `admin` key).
#[derive(Debug, Clone, Subcommand)]
pub enum SchedulesAction {
    /// Start a workflow on a cron: prints the schedule.
    Create {
        /// The workflow (id) each tick starts.
        #[arg(long)]
        workflow: Uuid,
        /// The cron expression, 5 fields or 6 with seconds first (quote it).
        #[arg(long)]
        cron: String,
        /// The IANA time zone it is read in (default `UTC`).
        #[arg(long)]
        timezone: Option<String>,
        /// The input of every execution, as JSON (default `{}`).
        #[arg(long)]
        input: Option<String>,
        /// `skip` (default), `allow` or `cancel_previous`.
        #[arg(long)]
        overlap: Option<String>,
        /// `none`, `latest` (default) or `all`.
        #[arg(long)]
        catch_up: Option<String>,
    },
    /// List the schedules (every page).
    List {
        /// Print the server's JSON items.
        #[arg(long)]
        json: bool,
    },
    /// Print one schedule.
    Get {
        /// Its id.
        id: Uuid,
    },
    /// Pause a schedule: its ticks start nothing until it is resumed.
    Pause {
        /// Its id.
        id: Uuid,
    },
    /// Resume a paused schedule.
    Resume {
        /// Its id.
        id: Uuid,
    },
    /// Delete a schedule; executions it started go on.
    Delete {
        /// Its id.
        id: Uuid,
    },
}

/// Runs `conflux schedules …`; returns the exit code (0 done, 2 error).
pub async fn schedules(args: SchedulesArgs) -> u8 {
    finish(run(args).await)
}

async fn json_of(resp: reqwest::Response) -> Result<Value, CliError> {
    resp.json()
        .await
        .map_err(|e| CliError::Other(format!("the server sent malformed JSON: {e}")))
}

/// `POST /api/v1/schedules/{id}/{verb}`; prints the schedule.
async fn change(server: &ServerArgs, id: Uuid, verb: &str) -> Result<(), CliError> {
    let path = format!("/api/v1/schedules/{id}/{verb}");
    let resp = send(server, reqwest::Method::POST, &path, None).await?;
    println!("{}", pretty(&json_of(resp).await?));
    Ok(())
}

async fn run(args: SchedulesArgs) -> Result<u8, CliError> {
    let server = &args.server;
    match args.action {
        SchedulesAction::Create {
            workflow,
            cron,
            timezone,
            input,
            overlap,
            catch_up,
        } => {
            let input: Option<Value> = input
                .map(|raw| serde_json::from_str(&raw))
                .transpose()
                .map_err(|e| CliError::Other(format!("--input is not JSON: {e}")))?;
            let mut body = json!({"workflow": workflow, "cron": cron});
            for (field, value) in [
                ("timezone", timezone.map(Value::String)),
                ("input", input),
                ("overlap", overlap.map(Value::String)),
                ("catch_up", catch_up.map(Value::String)),
            ] {
                if let Some(value) = value {
                    body[field] = value;
                }
            }
            let resp = send(
                server,
                reqwest::Method::POST,
                "/api/v1/schedules",
                Some(&body),
            )
            .await?;
            println!("{}", pretty(&json_of(resp).await?));
        }
        SchedulesAction::List { json } => {
            let mut items = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let path = match &cursor {
                    Some(c) => format!("/api/v1/schedules?limit=1000&cursor={c}"),
                    None => "/api/v1/schedules?limit=1000".to_owned(),
                };
                let page = get_json(server, &path).await?;
                items.extend(page["items"].as_array().cloned().unwrap_or_default());
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => break,
                }
            }
            if json {
                println!("{}", pretty(&Value::Array(items)));
            } else {
                println!(
                    "{:<36}  {:<20}  {:<16}  {:<7}  {:<25}",
                    "id", "cron", "timezone", "status", "next_tick_at"
                );
                for s in &items {
                    let text = |f: &str| s[f].as_str().unwrap_or("").to_owned();
                    println!(
                        "{:<36}  {:<20}  {:<16}  {:<7}  {:<25}",
                        text("id"),
                        text("cron"),
                        text("timezone"),
                        text("status"),
                        text("next_tick_at")
                    );
                }
            }
        }
        SchedulesAction::Get { id } => {
            let schedule = get_json(server, &format!("/api/v1/schedules/{id}")).await?;
            println!("{}", pretty(&schedule));
        }
        SchedulesAction::Pause { id } => change(server, id, "pause").await?,
        SchedulesAction::Resume { id } => change(server, id, "resume").await?,
        SchedulesAction::Delete { id } => {
            let path = format!("/api/v1/schedules/{id}");
            send(server, reqwest::Method::DELETE, &path, None).await?;
            eprintln!("deleted schedule {id}");
        }
    }
    Ok(0)
}
