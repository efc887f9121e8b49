//! `conflux keys create|list|revoke` and `conflux tenants create|list`: access
//! administration through a running server's HTTP API, with the same `--url`/`--token`
//! as the audit commands. The new key's token is printed
//! once, on stdout alone (so `TOKEN=$(conflux keys create … --quiet)` works), and never
//! logged.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::cli::{finish, get_json, pretty, send, CliError, ServerArgs};

/// `conflux keys …`.
#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub action: KeysAction,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What to do with keys.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysAction {
    /// Issue a key; prints its token once.
    Create {
        /// For humans.
        #[arg(long)]
        name: String,
        /// viewer, auditor, operator, developer, admin or agent.
        #[arg(long)]
        role: String,
        /// The key's tenant (default: the caller's; another tenant's needs the system
        /// administrator's token).
        #[arg(long)]
        tenant: Option<String>,
        /// For agent keys: an agent role it may serve (repeat for several).
        #[arg(long = "agent-role")]
        agent_roles: Vec<String>,
        /// When it stops working (RFC 3339).
        #[arg(long)]
        expires_at: Option<String>,
        /// Print only the token.
        #[arg(long)]
        quiet: bool,
    },
    /// List keys (never their secrets).
    List {
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: it stops working on every server within a second.
    Revoke {
        /// The key id (the `<key_id>` of `cfx_<key_id>_<secret>`).
        key_id: String,
    },
    /// Print a new random master key (base64 of 32 bytes) for `CONFLUX_MASTER_KEY`.
    NewMaster,
    /// Re-wrap every tenant data key under `CONFLUX_MASTER_KEY`, so that
    /// `CONFLUX_MASTER_KEY_PREVIOUS` can be dropped. Works on the database directly
    /// (like `conflux bus reset`), while servers run; events are not touched.
    RotateMaster,
}

impl KeysAction {
    /// Whether the action works on the store directly rather than through a server.
    pub fn is_local(&self) -> bool {
        matches!(self, KeysAction::NewMaster | KeysAction::RotateMaster)
    }
}

/// Runs `conflux keys …`; returns the exit code (0 done, 2 error).
pub async fn keys(args: KeysArgs) -> u8 {
    finish(run(args).await)
}

async fn run(args: KeysArgs) -> Result<u8, CliError> {
    let server = &args.server;
    match args.action {
        KeysAction::Create {
            name,
            role,
            tenant,
            agent_roles,
            expires_at,
            quiet,
        } => {
            let mut body = json!({"name": name, "role": role});
            if let Some(tenant) = tenant {
                body["tenant"] = Value::String(tenant);
            }
            if !agent_roles.is_empty() {
                body["agent_roles"] = json!(agent_roles);
            }
            if let Some(at) = expires_at {
                body["expires_at"] = Value::String(at);
            }
            let created: Value = send(server, reqwest::Method::POST, "/api/v1/keys", Some(&body))
                .await?
                .json()
                .await
                .map_err(|e| CliError::Other(format!("the server sent malformed JSON: {e}")))?;
            let token = created["token"].as_str().unwrap_or_default();
            if quiet {
                println!("{token}");
            } else {
                eprintln!(
                    "created key {} ({}, role {} in tenant {}); its token, shown only now:",
                    created["key_id"].as_str().unwrap_or("?"),
                    created["name"].as_str().unwrap_or("?"),
                    created["role"].as_str().unwrap_or("?"),
                    created["tenant"].as_str().unwrap_or("?")
                );
                println!("{token}");
            }
        }
        KeysAction::List { json } => {
            let list = get_json(server, "/api/v1/keys").await?;
            if json {
                println!("{}", pretty(&list));
            } else {
                println!(
                    "{:<32}  {:<16}  {:<10}  {:<9}  {:<25}  name",
                    "key_id", "tenant", "role", "state", "created_at"
                );
                for k in list["items"].as_array().into_iter().flatten() {
                    let state = if k["revoked_at"].is_null() {
                        "active"
                    } else {
                        "revoked"
                    };
                    println!(
                        "{:<32}  {:<16}  {:<10}  {:<9}  {:<25}  {}",
                        k["key_id"].as_str().unwrap_or(""),
                        k["tenant"].as_str().unwrap_or(""),
                        k["role"].as_str().unwrap_or(""),
                        state,
                        k["created_at"].as_str().unwrap_or(""),
                        k["name"].as_str().unwrap_or("")
                    );
                }
            }
        }
        KeysAction::Revoke { key_id } => {
            send(
                server,
                reqwest::Method::DELETE,
                &format!("/api/v1/keys/{key_id}"),
                None,
            )
            .await?;
            eprintln!("revoked key {key_id}");
        }
        KeysAction::NewMaster | KeysAction::RotateMaster => {
            return Err(CliError::Other(
                "this command works on the store, not through a server".into(),
            ))
        }
    }
    Ok(0)
}

/// `conflux tenants …`.
#[derive(Debug, Clone, Args)]
pub struct TenantsArgs {
    #[command(subcommand)]
    pub action: TenantsAction,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What to do with tenants (the system administrator's token only).
#[derive(Debug, Clone, Subcommand)]
pub enum TenantsAction {
    /// Create a tenant (1 to 63 characters of a-z, 0-9 and -).
    Create {
        /// Its name.
        tenant: String,
    },
    /// List tenants.
    List {
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Show a tenant's policy, or set it whole with --allow and --quota (what is
    /// left out goes back to the defaults).
    Policy {
        /// Its name.
        tenant: String,
        /// An egress allowlist entry of the tenant's own (CIDR, address, host name or
        /// `*.suffix`); repeat for more.
        #[arg(long = "allow", value_name = "ENTRY")]
        allow: Vec<String>,
        /// A quota limit of the tenant's own, `NAME=LIMIT` (e.g.
        /// `running_executions=100`); repeat for more.
        #[arg(long = "quota", value_name = "NAME=LIMIT")]
        limits: Vec<String>,
        /// Set the policy even with no --allow and no --quota (back to defaults).
        #[arg(long)]
        reset: bool,
    },
    /// Show a tenant's use of each quota against its limit.
    Usage {
        /// Its name.
        tenant: String,
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Erase every payload of a tenant (destroys its data keys; cannot be undone).
    Erase {
        /// Its name.
        tenant: String,
        /// The name again, to confirm.
        #[arg(long)]
        confirm: String,
    },
}

/// Runs `conflux tenants …`; returns the exit code (0 done, 2 error).
pub async fn tenants(args: TenantsArgs) -> u8 {
    finish(run_tenants(args).await)
}

async fn run_tenants(args: TenantsArgs) -> Result<u8, CliError> {
    let server = &args.server;
    match args.action {
        TenantsAction::Create { tenant } => {
            let body = json!({ "tenant": tenant });
            send(
                server,
                reqwest::Method::POST,
                "/api/v1/tenants",
                Some(&body),
            )
            .await?;
            eprintln!("created tenant {tenant}; issue its first key with: conflux keys create --tenant {tenant} --role admin --name …");
        }
        TenantsAction::Erase { tenant, confirm } => {
            let body = json!({ "confirm": confirm });
            let erased: Value = send(
                server,
                reqwest::Method::DELETE,
                &format!("/api/v1/tenants/{tenant}/data"),
                Some(&body),
            )
            .await?
            .json()
            .await
            .map_err(|e| CliError::Other(format!("the server sent malformed JSON: {e}")))?;
            eprintln!(
                "erased tenant {tenant}'s data: {} data key(s) destroyed (event {} at position {})",
                erased["keys_destroyed"],
                erased["event_id"].as_str().unwrap_or("?"),
                erased["position"]
            );
        }
        TenantsAction::Policy {
            tenant,
            allow,
            limits: quotas,
            reset,
        } => {
            // Field names differ from the global options' (`egress_allow`): clap would
            // fill a subcommand's field from a global one of the same id.
            let path = format!("/api/v1/tenants/{tenant}/policy");
            let policy = if allow.is_empty() && quotas.is_empty() && !reset {
                get_json(server, &path).await?
            } else {
                let mut limits = serde_json::Map::new();
                for q in &quotas {
                    let (name, limit) = q
                        .split_once('=')
                        .and_then(|(n, l)| Some((n.trim(), l.trim().parse::<u64>().ok()?)))
                        .ok_or_else(|| {
                            CliError::Other(format!(
                                "--quota {q}: expected NAME=LIMIT, e.g. running_executions=100"
                            ))
                        })?;
                    limits.insert(name.to_owned(), json!(limit));
                }
                let body = json!({ "egress_allow": allow, "quotas": limits });
                send(server, reqwest::Method::PUT, &path, Some(&body))
                    .await?
                    .json()
                    .await
                    .map_err(|e| CliError::Other(format!("the server sent malformed JSON: {e}")))?
            };
            println!("{}", pretty(&policy));
        }
        TenantsAction::Usage { tenant, json } => {
            let usage = get_json(server, &format!("/api/v1/tenants/{tenant}/usage")).await?;
            if json {
                println!("{}", pretty(&usage));
            } else {
                println!("{:<22}  {:>16}  {:>16}", "quota", "used", "limit");
                for q in usage["quotas"].as_array().into_iter().flatten() {
                    let shown = |v: &Value| match v {
                        Value::Null => "-".to_owned(),
                        v => v.to_string(),
                    };
                    println!(
                        "{:<22}  {:>16}  {:>16}",
                        q["quota"].as_str().unwrap_or(""),
                        shown(&q["used"]),
                        shown(&q["limit"])
                    );
                }
            }
        }
        TenantsAction::List { json } => {
            let list = get_json(server, "/api/v1/tenants").await?;
            if json {
                println!("{}", pretty(&list));
            } else {
                println!("{:<63}  created_at", "tenant");
                for t in list["items"].as_array().into_iter().flatten() {
                    println!(
                        "{:<63}  {}",
                        t["tenant"].as_str().unwrap_or(""),
                        t["created_at"].as_str().unwrap_or("-")
                    );
                }
            }
        }
    }
    Ok(0)
}

/// `conflux keys new-master`: a fresh master key on stdout, its id on stderr.
pub fn new_master() -> anyhow::Result<()> {
    let key = conflux_engine::crypto::MasterKey::random()?;
    eprintln!(
        "a new master key ({}); keep it in a secret store and give it to every server as \
         CONFLUX_MASTER_KEY or CONFLUX_MASTER_KEY_FILE:",
        key.kid()
    );
    println!("{}", key.to_base64());
    Ok(())
}

/// `conflux keys rotate-master`: re-wraps every tenant key under the primary master key,
/// with progress on stderr.
pub async fn rotate_master(backends: &crate::backends::Backends) -> anyhow::Result<()> {
    let Some(keyring) = backends.codec.keyring() else {
        anyhow::bail!(
            "set CONFLUX_MASTER_KEY to the new master key and CONFLUX_MASTER_KEY_PREVIOUS to \
             the old one (payload encryption at rest is off without a master key)"
        );
    };
    let primary = keyring.master().primary().kid().to_owned();
    let before = keyring.vault().master_key_uses().await?;
    for used in &before {
        eprintln!(
            "before: {} tenant key(s) wrapped by {}",
            used.tenant_keys, used.master_kid
        );
    }
    let rewrapped = keyring
        .rotate_master(|n| {
            if n % 100 == 0 {
                eprintln!("re-wrapped {n} tenant key(s)…");
            }
        })
        .await?;
    let after = keyring.vault().master_key_uses().await?;
    let others: Vec<_> = after.iter().filter(|u| u.master_kid != primary).collect();
    eprintln!("re-wrapped {rewrapped} tenant key(s) under {primary}; events were not touched");
    if others.is_empty() {
        eprintln!("every tenant key is wrapped by {primary}: CONFLUX_MASTER_KEY_PREVIOUS can be dropped from every server");
        Ok(())
    } else {
        anyhow::bail!(
            "{} master key id(s) still wrap tenant keys (written meanwhile by a server without the new key?); run again",
            others.len()
        )
    }
}
