//! `workflow`: starts a child execution of a named workflow of the same tenant (its
//! latest version, or the one pinned) with the task's resolved input; the task's output
//! is the child's output, and the child failing or being cancelled fails the task.
//!
//! The parent reaches the child: cancelling the parent (or the attempt timing out, or
//! the execution failing around it) cancels the child, and pausing or resuming the
//! parent pauses or resumes it. The child's body names its parent
//! (`parent: {execution_id, task_id, attempt, depth}`) and the parent's task entry
//! names the child (`child_execution_id`). A definition whose named workflows lead back
//! to itself is refused at create; how deep children may nest at run time is bounded
//! by the server (`CONFLUX_MAX_WORKFLOW_DEPTH`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{KindRules, Runs, TaskBody};
use crate::ids::WorkflowName;

/// The table entry. A child execution runs it.
pub(super) const RULES: KindRules = KindRules {
    name: "workflow",
    runs: Runs::Child,
    secrets_in_input: false,
    compensates: false,
    check,
};

/// The workflow a `workflow` task starts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChildWorkflow {
    /// The workflow's name, in the parent's tenant.
    pub name: String,
    /// The version to run (1, 2, …); absent: the latest when the task is dispatched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub version: Option<u32>,
}

impl std::fmt::Display for ChildWorkflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.version {
            Some(v) => write!(f, "`{}` version {v}", self.name),
            None => write!(f, "`{}` (latest version)", self.name),
        }
    }
}

fn check(body: &TaskBody<'_>, prefix: &str) -> Result<(), String> {
    let Some(child) = body.workflow else {
        return Err(format!(
            "{prefix}workflow is required for a workflow task ({{\"name\", \"version\"?}})"
        ));
    };
    WorkflowName::parse(&child.name).map_err(|e| format!("{prefix}workflow.name: {e}"))?;
    if child.version == Some(0) {
        return Err(format!("{prefix}workflow.version must be at least 1"));
    }
    Ok(())
}
