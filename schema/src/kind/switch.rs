//! `switch`: chooses a branch. The engine's core evaluates its `cases` in order (CEL,
//! over `input` and upstream outputs) in the decision that dispatches it, and completes
//! it at once with `{"case": <index or "default" or null>, "next": [task ids]}`; every
//! direct dependent it did not choose sees it as a skipped upstream (see
//! [`crate::definition::TriggerRule`]). That the `next` lists name direct dependents is
//! a graph-level rule, checked by [`crate::validate`].

use super::{KindRules, Runs, TaskBody};

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
