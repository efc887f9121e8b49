//! `conflux secrets put|list|delete`: a tenant's secrets through a running server's
//! HTTP API, with the same `--url`/`--token` as `conflux keys`. A value is read from a
//! file (`--value-file`) or stdin, never from a flag, so it never shows in `ps` or in a
//! shell's history; it is never printed.

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::{finish, get_json, pretty, send, CliError, ServerArgs};

/// `conflux secrets …`.
#[derive(Debug, Clone, Args)]
pub struct SecretsArgs {
    #[command(subcommand)]
    pub action: SecretsAction,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What to do with secrets (an `admin` or `developer` key; the caller's tenant).
#[derive(Debug, Clone, Subcommand)]
pub enum SecretsAction {
    /// Set a secret's value: creates it, or rotates it if it exists. The value is read
    /// from `--value-file`, or from stdin (one trailing newline is dropped).
    Put {
        /// Its name (`A-Z`, `a-z`, `0-9`, `_`; not starting with a digit).
        name: String,
        /// Read the value from this file (as is) instead of stdin.
        #[arg(long)]
        value_file: Option<PathBuf>,
    },
    /// List the secrets' names and times (never their values).
    List {
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Delete a secret; a workflow that still references it fails the attempt that
    /// needs it.
    Delete {
        /// Its name.
        name: String,
    },
}

/// Runs `conflux secrets …`; returns the exit code (0 done, 2 error).
pub async fn secrets(args: SecretsArgs) -> u8 {
    finish(run(args).await)
}

/// The value to store: the file's bytes, or stdin without one trailing newline.
fn read_value(file: Option<&PathBuf>) -> Result<String, CliError> {
    match file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            CliError::Other(format!(
                "cannot read the value from {}: {e}",
                path.display()
            ))
        }),
        None => {
            let mut value = String::new();
            std::io::stdin()
                .read_to_string(&mut value)
                .map_err(|e| CliError::Other(format!("cannot read the value from stdin: {e}")))?;
            if value.ends_with('\n') {
                value.pop();
                if value.ends_with('\r') {
                    value.pop();
                }
            }
            Ok(value)
        }
    }
}

async fn run(args: SecretsArgs) -> Result<u8, CliError> {
    let server = &args.server;
    match args.action {
        SecretsAction::Put { name, value_file } => {
            let value = read_value(value_file.as_ref())?;
            let create = json!({"name": name, "value": value});
            match send(
                server,
                reqwest::Method::POST,
                "/api/v1/secrets",
                Some(&create),
            )
            .await
            {
                Ok(_) => eprintln!("created secret {name}"),
                Err(CliError::Api { status: 409, .. }) => {
                    let path = format!("/api/v1/secrets/{name}");
                    let rotate = json!({"value": value});
                    send(server, reqwest::Method::PUT, &path, Some(&rotate)).await?;
                    eprintln!("rotated secret {name}");
                }
                Err(e) => return Err(e),
            }
        }
        SecretsAction::List { json } => {
            let list = get_json(server, "/api/v1/secrets").await?;
            if json {
                println!("{}", pretty(&list));
            } else {
                println!("{:<32}  {:<32}  {:<32}", "name", "created_at", "updated_at");
                for s in list["secrets"].as_array().into_iter().flatten() {
                    println!(
                        "{:<32}  {:<32}  {:<32}",
                        s["name"].as_str().unwrap_or(""),
                        s["created_at"].as_str().unwrap_or(""),
                        s["updated_at"].as_str().unwrap_or("")
                    );
                }
            }
        }
        SecretsAction::Delete { name } => {
            let path = format!("/api/v1/secrets/{name}");
            send(server, reqwest::Method::DELETE, &path, None).await?;
            eprintln!("deleted secret {name}");
        }
    }
    Ok(0)
}
