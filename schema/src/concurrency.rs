//! Concurrency keys: how many executions of a workflow may run at once per key, and
//! what happens to those over the limit.
//!
//! `"concurrency": {"key": "<CEL>", "max_running": N, "strategy": "queue" |
//! "cancel_in_progress" | "cancel_newest"}` on a workflow. The key is CEL over the
//! execution's input (`input.customer`, `'all'`) giving a string or a number; it is
//! computed when the execution starts. Each key of each workflow name in a tenant has
//! its own slots, kept as events on a stream of its own (`concurrency-<uuid>`), so every
//! server agrees through the store's optimistic concurrency and an auditor can replay
//! who held a slot when. Keys never share slots: one key's backlog cannot delay another.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The most executions one key may run at once.
pub const MAX_RUNNING: u32 = 10_000;

/// What happens to an execution that starts while its key is at its limit.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyStrategy {
    /// It waits, `queued`, and runs when a slot frees (oldest first).
    #[default]
    Queue,
    /// It runs; the oldest running execution of the key is cancelled to make room.
    CancelInProgress,
    /// It is cancelled at once.
    CancelNewest,
}

impl ConcurrencyStrategy {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            ConcurrencyStrategy::Queue => "queue",
            ConcurrencyStrategy::CancelInProgress => "cancel_in_progress",
            ConcurrencyStrategy::CancelNewest => "cancel_newest",
        }
    }
}

/// A workflow's concurrency limit.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    /// CEL over the execution's input naming its key: a string or a number.
    #[schema(example = "input.customer")]
    pub key: String,
    /// Most executions of one key running (or paused, or compensating) at once.
    #[schema(minimum = 1, example = 2)]
    pub max_running: u32,
    /// What happens to an execution over the limit (default `queue`).
    #[serde(default)]
    pub strategy: ConcurrencyStrategy,
}

impl Concurrency {
    /// Why the limit cannot be used: a key that is not CEL over `input` alone, or a
    /// `max_running` outside 1 to [`MAX_RUNNING`].
    pub fn check(&self) -> Result<(), String> {
        let read =
            crate::condition::check(&self.key).map_err(|e| format!("concurrency.key: {e}"))?;
        if !read.is_empty() {
            return Err("concurrency.key may read `input` only, not `tasks`".to_owned());
        }
        if !(1..=MAX_RUNNING).contains(&self.max_running) {
            return Err(format!(
                "concurrency.max_running must be 1 to {MAX_RUNNING}, got {}",
                self.max_running
            ));
        }
        Ok(())
    }

    /// The key of an execution with this `input`.
    pub fn key_for(&self, input: &Value) -> Result<String, String> {
        crate::condition::evaluate_key(&self.key, input)
            .map_err(|e| format!("concurrency.key: {e}"))
    }
}
