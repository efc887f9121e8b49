//! Webhook delivery settings (`CONFLUX_HOOK_*`): how often and how patiently a failing
//! delivery is retried before it is dead-lettered.

use std::time::Duration;

use clap::Args;
use conflux_engine::hooks::worker::HookOptions;
use serde_json::{json, Value};

/// Webhook delivery settings.
#[derive(Debug, Clone, Args)]
pub struct HookSettings {
    /// Attempts per event before its delivery is dead-lettered.
    #[arg(
        long,
        global = true,
        env = "CONFLUX_HOOK_MAX_ATTEMPTS",
        default_value_t = 8
    )]
    pub hook_max_attempts: u32,

    /// The wait after a delivery's first failure, in milliseconds; doubled after each
    /// further one, at most 5 minutes.
    #[arg(
        long,
        global = true,
        env = "CONFLUX_HOOK_BACKOFF_MS",
        default_value_t = 1000
    )]
    pub hook_backoff_ms: u64,

    /// How long one delivery attempt may take, in seconds.
    #[arg(
        long,
        global = true,
        env = "CONFLUX_HOOK_TIMEOUT_SECONDS",
        default_value_t = 10
    )]
    pub hook_timeout_seconds: u64,

    /// How long a server's claim on a hook lasts without renewal, in seconds (at least
    /// 3 × the timeout): how soon another server takes over a crashed one's hooks.
    #[arg(
        long,
        global = true,
        env = "CONFLUX_HOOK_LEASE_SECONDS",
        default_value_t = 30
    )]
    pub hook_lease_seconds: u64,
}

impl HookSettings {
    /// The worker's options.
    pub fn options(&self) -> HookOptions {
        HookOptions {
            max_attempts: self.hook_max_attempts.max(1),
            backoff_base: Duration::from_millis(self.hook_backoff_ms),
            timeout: Duration::from_secs(self.hook_timeout_seconds.max(1)),
            lease: Duration::from_secs(self.hook_lease_seconds.max(1)),
            ..HookOptions::default()
        }
    }

    /// For `--dump-config`.
    pub fn dump(&self) -> Value {
        json!({
            "max_attempts": self.hook_max_attempts,
            "backoff_ms": self.hook_backoff_ms,
            "timeout_seconds": self.hook_timeout_seconds,
            "lease_seconds": self.hook_lease_seconds,
        })
    }
}
