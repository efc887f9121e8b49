//! `switch`: chooses a branch. The engine's core evaluates its `cases` in order (CEL,
//! over `input` and upstream outputs) in the decision that dispatches it, and completes
//! it at once with `{"case": <index or "default" or null>, "next": [task ids]}`; every
//! direct dependent it did not choose sees it as a skipped upstream (see
//! [`crate::definition::TriggerRule`]). That the `next` lists name direct dependents is
//! a graph-level rule, checked by [`crate::validate`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{KindRules, Runs, TaskBody};

/// One case of a `switch`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct SwitchCase {
    /// A CEL expression, as in a task's `when`.
    pub when: String,
    /// The tasks this case runs: direct dependents of the switch.
    pub next: Vec<String>,
}

/// The table entry. A switch has nothing to undo, so it compensates nothing.
pub(super) const RULES: KindRules = KindRules {
    name: "switch",
    runs: Runs::Inline,
    secrets_in_input: false,
    compensates: false,
    check,
};

fn check(body: &TaskBody<'_>, prefix: &str) -> Result<(), String> {
    if body.cases.is_empty() {
        return Err(format!("{prefix}cases is required for a switch task"));
    }
    Ok(())
}
