//! `approval`: waits until `approvers.count` distinct callers holding one of
//! `approvers.roles` approve it (`POST /api/v1/executions/{id}/tasks/{task_id}/approve`);
//! one reject fails it for good. Its output is `{"approved_by", "comments"}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{KindRules, Runs, TaskBody};
use crate::access::{Permission, Role};

/// The table entry. Nothing runs it: the attempt waits for decisions.
pub(super) const RULES: KindRules = KindRules {
    name: "approval",
    runs: Runs::Waits,
    secrets_in_input: false,
    compensates: false,
    check,
};

/// Who must approve an `approval` task.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, ToSchema)]
pub struct Approvers {
    /// Roles whose holders may decide (`operator`, `developer` or `admin`: the roles
    /// that may call the approve and reject routes).
    #[serde(default)]
    pub roles: Vec<String>,
    /// How many distinct callers must approve (at least 1).
    #[serde(default = "one")]
    #[schema(default = 1, minimum = 1)]
    pub count: u32,
}

fn one() -> u32 {
    1
}

impl Approvers {
    /// Whether a caller acting with `role` may decide.
    pub fn admits(&self, role: Role) -> bool {
        self.roles.iter().any(|r| r == role.as_str())
    }
}

fn check(body: &TaskBody<'_>, prefix: &str) -> Result<(), String> {
    let Some(approvers) = body.approvers else {
        return Err(format!(
            "{prefix}approvers is required for an approval task"
        ));
    };
    if approvers.count == 0 {
        return Err(format!("{prefix}approvers.count must be at least 1"));
    }
    if approvers.roles.is_empty() {
        return Err(format!(
            "{prefix}approvers.roles must name at least one role"
        ));
    }
    for name in &approvers.roles {
        let may_decide = Role::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .is_some_and(|r| r.allows(Permission::Operate));
        if !may_decide {
            return Err(format!(
                "{prefix}approvers.roles: {name:?} is not a role that may approve (operator, developer, admin)"
            ));
        }
    }
    Ok(())
}
