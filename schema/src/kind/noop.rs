//! `noop`: does nothing; its output is its resolved input. Useful as a join, a
//! constant, or a placeholder while a workflow is drawn.

use super::{KindRules, Runs, TaskBody};

/// The table entry. Its input is recorded as its output, so it may not hold secrets.
pub(super) const RULES: KindRules = KindRules {
    name: "noop",
    runs: Runs::Builtin,
    secrets_in_input: false,
    compensates: true,
    check,
};

fn check(_body: &TaskBody<'_>, _prefix: &str) -> Result<(), String> {
    Ok(())
}
