//! `map`: dynamic fan-out. Its `items` (resolved when it is dispatched: a reference to
//! an array, or a literal one) become one item each, `<task>[<index>]`, running its
//! `template` with `${item}` and `${index}`, at most `max_parallel` at once, each with
//! the template's retry policy and deadline. Output: the items' outputs in input order.
//! `failure_policy: fail_fast` fails the map on the first item that fails for good;
//! `collect` runs every item and puts `null` for a failed one.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{KindRules, Runs, TaskBody};

/// What an item of a `map` that fails for good does to the map.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// The map fails at once: live items are cancelled, pending ones skipped.
    #[default]
    FailFast,
    /// Every item runs; the map completes, a failed item's output being `null`.
    Collect,
}

impl FailurePolicy {
    /// Whether this is the default (`fail_fast`), which the definition leaves out.
    pub fn is_default(&self) -> bool {
        *self == FailurePolicy::FailFast
    }
}

/// Most items one map may have.
pub const MAX_ITEMS: usize = 10_000;

/// The table entry. A map has nothing of its own to undo.
pub(super) const RULES: KindRules = KindRules {
    name: "map",
    runs: Runs::Items,
    secrets_in_input: false,
    compensates: false,
    check,
};

fn check(body: &TaskBody<'_>, prefix: &str) -> Result<(), String> {
    match body.items {
        None => return Err(format!("{prefix}items is required for a map task")),
        Some(Value::Array(items)) if items.len() > MAX_ITEMS => {
            return Err(format!(
                "{prefix}items has {} elements, more than {MAX_ITEMS}",
                items.len()
            ))
        }
        Some(Value::Array(_) | Value::String(_)) => {}
        Some(_) => {
            return Err(format!(
            "{prefix}items must be an array or a reference to one (\"${{tasks.<id>.output...}}\")"
        ))
        }
    }
    if body.template.is_none() {
        return Err(format!("{prefix}template is required for a map task"));
    }
    if body.max_parallel == Some(0) {
        return Err(format!("{prefix}max_parallel must be at least 1"));
    }
    Ok(())
}
