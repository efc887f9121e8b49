//! Every setting Conflux reads, with its default, its environment variable and its
//! flag. Precedence: flag, then environment, then default. `--dump-config` prints what
//! is in force, with secrets redacted.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde_json::{json, Value};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(
        long,
        global = true,
        env = "CONFLUX_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub addr: SocketAddr,

    /// Postgres URL. Unset: the embedded SQLite store in the data directory.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Redis URL. Unset: the in-process bus (one process only).
    #[arg(long, global = true, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Directory of the embedded store, created if missing.
    #[arg(
        long,
        global = true,
        env = "CONFLUX_DATA_DIR",
        default_value = "./conflux-data"
    )]
    pub data_dir: PathBuf,

    /// Prefix of every Redis key Conflux uses.
    #[arg(
        long,
        global = true,
        env = "CONFLUX_REDIS_PREFIX",
        default_value = "conflux:"
    )]
    pub redis_prefix: String,

    /// Postgres connection pool size.
    #[arg(
        long,
        global = true,
        env = "CONFLUX_PG_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub pg_max_connections: u32,

    /// Largest accepted request body, in bytes (larger: 413).
    #[arg(long, global = true, env = "CONFLUX_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most tasks a workflow may have (larger: 422 too_many_tasks).
    #[arg(
        long,
        global = true,
        env = "CONFLUX_MAX_TASKS",
        default_value_t = 10_000
    )]
    pub max_tasks: usize,

    /// The start-to-close limit, in seconds, of every task attempt whose task names no
    /// `timeout_seconds` (at least 1): an agent that dies holding a task does not leave
    /// it waiting forever.
    #[arg(
        long,
        global = true,
        env = "CONFLUX_DEFAULT_TASK_TIMEOUT_SECONDS",
        default_value_t = conflux_schema::validate::DEFAULT_TASK_TIMEOUT_SECONDS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub default_task_timeout_seconds: u64,

    /// How deep `workflow` tasks may nest child executions (a top-level execution is
    /// depth 0, its children 1, …; at least 1): a task whose child would be deeper
    /// fails for good, naming the limit. Definitions that start themselves again are
    /// refused at create whatever this is.
    #[arg(
        long,
        global = true,
        env = "CONFLUX_MAX_WORKFLOW_DEPTH",
        default_value_t = conflux_engine::executor::DEFAULT_MAX_WORKFLOW_DEPTH,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_workflow_depth: u32,

    /// Seconds after its last poll or heartbeat at which an agent counts as `stale`
    /// (at least 1).
    #[arg(
        long,
        global = true,
        env = "CONFLUX_AGENT_STALE_AFTER_SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub agent_stale_after_seconds: u64,

    /// Seconds after its last poll or heartbeat at which an agent counts as `offline`
    /// (at least the stale threshold).
    #[arg(
        long,
        global = true,
        env = "CONFLUX_AGENT_OFFLINE_AFTER_SECONDS",
        default_value_t = 90,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub agent_offline_after_seconds: u64,

    /// How long an open execution may go without a new event before an engine takes it
    /// over (re-arms its timers, re-runs its started built-ins): covers an engine that
    /// died while other engines keep running. Checked every half of this.
    #[arg(
        long,
        global = true,
        env = "CONFLUX_ENGINE_STALE_AFTER_MS",
        default_value_t = 30_000
    )]
    pub engine_stale_after_ms: u64,

    /// The system administrator's bootstrap token (at least 32 characters). Unset: the
    /// token in `<data dir>/admin-token`, generated (mode 0600) on the first start that
    /// finds no API key. Clients send it as `Authorization: Bearer <token>`.
    #[arg(
        long,
        global = true,
        env = "CONFLUX_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,

    /// A JWKS file of the identity provider whose bearer JWTs are accepted (RSA, EC or
    /// Ed25519 keys). Needs `CONFLUX_JWT_ISSUER` and `CONFLUX_JWT_AUDIENCE`.
    #[arg(long, global = true, env = "CONFLUX_JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<PathBuf>,

    /// The `iss` accepted JWTs carry.
    #[arg(long, global = true, env = "CONFLUX_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The `aud` accepted JWTs carry.
    #[arg(long, global = true, env = "CONFLUX_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// The JWT claim naming the caller's tenant (absent from a token: `default`).
    #[arg(
        long,
        global = true,
        env = "CONFLUX_JWT_TENANT_CLAIM",
        default_value = "tenant"
    )]
    pub jwt_tenant_claim: String,

    /// The JWT claim naming the caller's role.
    #[arg(
        long,
        global = true,
        env = "CONFLUX_JWT_ROLE_CLAIM",
        default_value = "role"
    )]
    pub jwt_role_claim: String,

    /// How long a stream token (`POST /api/v1/stream-tokens`) opens its live stream, in
    /// seconds (1 to 3600).
    #[arg(
        long,
        global = true,
        env = "CONFLUX_STREAM_TOKEN_TTL_SECS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub stream_token_ttl_secs: u64,

    /// Requests per second each caller (key, or the admin token) may make, with bursts
    /// of twice that; over it: `429 rate_limited` with `Retry-After`. `0`: no limit.
    #[arg(
        long,
        global = true,
        env = "CONFLUX_RATE_LIMIT",
        default_value_t = 2_000
    )]
    pub rate_limit: u32,

    /// Development only: when the bus (Redis prefix) holds another store's events or
    /// is ahead of this store (a recreated or restored database), reset it at once
    /// instead of refusing to serve (`/ready` 503) until `conflux bus reset`.
    #[arg(
        long,
        global = true,
        env = "CONFLUX_BUS_RESET_ON_MISMATCH",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub bus_reset_on_mismatch: bool,

    /// The master key for payload encryption at rest: base64 of 32 bytes (make one with
    /// `conflux keys new-master`). Set: every payload (inputs, outputs, errors, HTTP
    /// requests) is stored sealed with AES-256-GCM. Unset: payloads are stored as sent.
    #[arg(
        long,
        global = true,
        env = "CONFLUX_MASTER_KEY",
        hide_env_values = true,
        conflicts_with = "master_key_file"
    )]
    pub master_key: Option<HiddenValue>,

    /// A file holding the master key (as `CONFLUX_MASTER_KEY`), e.g. a mounted secret.
    #[arg(long, global = true, env = "CONFLUX_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,

    /// During a master key rotation: the previous master key, still accepted for the
    /// data keys not yet re-wrapped (`conflux keys rotate-master`).
    #[arg(
        long,
        global = true,
        env = "CONFLUX_MASTER_KEY_PREVIOUS",
        hide_env_values = true,
        conflicts_with = "master_key_previous_file"
    )]
    pub master_key_previous: Option<HiddenValue>,

    /// A file holding the previous master key.
    #[arg(long, global = true, env = "CONFLUX_MASTER_KEY_PREVIOUS_FILE")]
    pub master_key_previous_file: Option<PathBuf>,

    /// What `http` tasks may call besides public addresses: comma-separated CIDRs
    /// (`10.1.0.0/16`), addresses, host names and `*.suffix` patterns, or `*`
    /// (everything). Loopback, link-local (cloud metadata), private and unique-local
    /// addresses are denied otherwise. For local development:
    /// `CONFLUX_EGRESS_ALLOW=127.0.0.0/8,::1/128`.
    #[arg(long, global = true, env = "CONFLUX_EGRESS_ALLOW", default_value = "")]
    pub egress_allow: String,

    /// What callers with the `viewer` role see of payloads: `visible` (as everyone
    /// else) or `hidden` (`{"redacted": "hidden"}`).
    #[arg(
        long,
        global = true,
        env = "CONFLUX_VIEWER_PAYLOADS",
        value_enum,
        default_value = "visible"
    )]
    pub viewer_payloads: ViewerPayloads,

    /// The default quotas of every tenant.
    #[command(flatten)]
    pub quotas: crate::quota_config::QuotaDefaults,

    /// The engine's round sizes.
    #[command(flatten)]
    pub engine_rounds: crate::engine_config::EngineRounds,

    /// Webhook delivery settings.
    #[command(flatten)]
    pub hooks: crate::hook_config::HookSettings,

    /// Log format: `text` or `json`.
    #[arg(
        long,
        global = true,
        env = "CONFLUX_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `conflux_engine=debug`.
    #[arg(long, global = true, env = "CONFLUX_LOG", default_value = "info")]
    pub log: String,

    /// Print the configuration in force (secrets redacted) and exit.
    #[arg(long, global = true)]
    pub dump_config: bool,
}

fn redact(url: &Option<String>) -> Value {
    match url {
        None => Value::Null,
        Some(u) => {
            // Hide a password: scheme://user:secret@host → scheme://user:***@host
            let shown = match (u.find("://"), u.rfind('@')) {
                (Some(s), Some(at)) if at > s => {
                    let creds = &u[s + 3..at];
                    match creds.split_once(':') {
                        Some((user, _)) => format!("{}{}:***{}", &u[..s + 3], user, &u[at..]),
                        None => u.clone(),
                    }
                }
                _ => u.clone(),
            };
            Value::String(shown)
        }
    }
}

impl Config {
    /// The configuration as JSON, with passwords in URLs redacted.
    pub fn dump(&self) -> Value {
        json!({
            "addr": self.addr.to_string(),
            "database_url": redact(&self.database_url),
            "redis_url": redact(&self.redis_url),
            "data_dir": self.data_dir.display().to_string(),
            "redis_prefix": self.redis_prefix,
            "pg_max_connections": self.pg_max_connections,
            "max_body_bytes": self.max_body_bytes,
            "max_tasks": self.max_tasks,
            "default_task_timeout_seconds": self.default_task_timeout_seconds,
            "max_workflow_depth": self.max_workflow_depth,
            "agent_stale_after_seconds": self.agent_stale_after_seconds,
            "agent_offline_after_seconds": self.agent_offline_after_seconds,
            "engine_stale_after_ms": self.engine_stale_after_ms,
            "bus_reset_on_mismatch": self.bus_reset_on_mismatch,
            "rate_limit": self.rate_limit,
            "jwt_jwks_file": self.jwt_jwks_file.as_ref().map(|p| p.display().to_string()),
            "jwt_issuer": self.jwt_issuer,
            "jwt_audience": self.jwt_audience,
            "stream_token_ttl_secs": self.stream_token_ttl_secs,
            "admin_token": self.admin_token.as_ref().map(|_| "***"),
            "master_key": (self.master_key.is_some() || self.master_key_file.is_some()).then_some("***"),
            "master_key_previous": (self.master_key_previous.is_some() || self.master_key_previous_file.is_some()).then_some("***"),
            "viewer_payloads": format!("{:?}", self.viewer_payloads).to_lowercase(),
            "egress_allow": self.egress_allow,
            "quotas": self.quotas.dump(),
            "engine_rounds": self.engine_rounds.dump(),
            "hooks": self.hooks.dump(),
            "log_format": format!("{:?}", self.log_format).to_lowercase(),
            "log": self.log,
            "mode": if self.database_url.is_some() { "postgres" } else { "embedded" },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_keys_are_never_printed() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            config: Config,
        }
        let key = "c2VjcmV0LW1hc3Rlci1rZXktYnl0ZXMtMzItbG9uZyE=";
        let cli = <Cli as clap::Parser>::parse_from(["conflux", "--master-key", key]);
        assert_eq!(cli.config.master_key, Some(HiddenValue(key.to_owned())));
        assert!(!format!("{:?}", cli.config).contains(key));
        assert!(!cli.config.dump().to_string().contains(key));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact(&Some("postgres://u:secret@h/db".into())),
            json!("postgres://u:***@h/db")
        );
        assert_eq!(
            redact(&Some("redis://127.0.0.1:6379".into())),
            json!("redis://127.0.0.1:6379")
        );
        assert_eq!(redact(&None), Value::Null);
    }
}

/// What `viewer` callers see of payloads (`CONFLUX_VIEWER_PAYLOADS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ViewerPayloads {
    /// Payloads as everyone sees them.
    Visible,
    /// `{"redacted": "hidden"}` in place of every payload.
    Hidden,
}

/// A configuration value that must never be printed (a master key): its `Debug` is
/// `***`, so a `Config` in a log line, a panic or a test failure shows no key.
#[derive(Clone, PartialEq, Eq)]
pub struct HiddenValue(pub String);

impl std::fmt::Debug for HiddenValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for HiddenValue {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl From<String> for HiddenValue {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// Reads a master key given inline or in a file; errors name the source, never the key.
fn read_master_key(
    inline: &Option<HiddenValue>,
    file: &Option<PathBuf>,
    what: &str,
) -> anyhow::Result<Option<conflux_engine::crypto::MasterKey>> {
    use anyhow::Context;
    let text = match (inline, file) {
        (Some(HiddenValue(text)), _) => text.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {what} from {}", path.display()))?,
        (None, None) => return Ok(None),
    };
    conflux_engine::crypto::MasterKey::parse_base64(&text)
        .map(Some)
        .with_context(|| format!("{what} is unusable"))
}

impl Config {
    /// The master keys configured (None: encryption at rest is off). A previous key
    /// without a current one is an error.
    pub fn master_keys(&self) -> anyhow::Result<Option<conflux_engine::crypto::MasterKeys>> {
        let primary = read_master_key(
            &self.master_key,
            &self.master_key_file,
            "CONFLUX_MASTER_KEY",
        )?;
        let previous = read_master_key(
            &self.master_key_previous,
            &self.master_key_previous_file,
            "CONFLUX_MASTER_KEY_PREVIOUS",
        )?;
        match (primary, previous) {
            (None, None) => Ok(None),
            (None, Some(_)) => anyhow::bail!(
                "CONFLUX_MASTER_KEY_PREVIOUS is set without CONFLUX_MASTER_KEY (the new key)"
            ),
            (Some(primary), previous) => {
                let keys = conflux_engine::crypto::MasterKeys::new(primary);
                Ok(Some(match previous {
                    Some(previous) => keys.with_previous(previous),
                    None => keys,
                }))
            }
        }
    }
}
