//! `agent`: executed by an external agent that leases it from `agent_role`'s queue
//! and reports its result; its input may hold secrets (revealed at lease time).

use super::{KindRules, Runs, TaskBody};

/// The table entry.
pub(super) const RULES: KindRules = KindRules {
    name: "agent",
    runs: Runs::Agent,
    secrets_in_input: true,
    compensates: true,
    check,
};

fn check(body: &TaskBody<'_>, prefix: &str) -> Result<(), String> {
    if body.agent_role.is_none_or(|r| r.trim().is_empty()) {
        return Err(format!("{prefix}agent_role is required for an agent task"));
    }
    if let Some(role) = body.agent_role.filter(|r| r.chars().any(char::is_control)) {
        return Err(format!(
            "{prefix}agent_role {role:?} must not contain control characters"
        ));
    }
    if body.requires.len() > MAX_REQUIRES {
        return Err(format!(
            "{prefix}requires names {} capabilities, more than {MAX_REQUIRES}",
            body.requires.len()
        ));
    }
    for capability in body.requires {
        check_capability(capability).map_err(|e| format!("{prefix}requires: {e}"))?;
    }
    if let Some(priority) = body.priority {
        check_priority(priority).map_err(|e| format!("{prefix}{e}"))?;
    }
    Ok(())
}

/// Most capabilities one task may require.
pub const MAX_REQUIRES: usize = 16;

/// The separator between a role and a task's required capabilities in the name of the
/// queue the task waits in (a control character: no role or capability holds one).
const QUEUE_SEPARATOR: char = '\u{1f}';

/// Whether `name` may name a capability (of an agent, or required by a task): 1 to 64
/// characters, no control characters and no `,`. The error says which rule it broke.
pub fn check_capability(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > 64 {
        return Err(format!("capability {name:?} must be 1 to 64 characters"));
    }
    if name.chars().any(|c| c.is_control() || c == ',') {
        return Err(format!(
            "capability {name:?} must not contain ',' or control characters"
        ));
    }
    Ok(())
}

/// The queue an agent task of `role` requiring `requires` waits in: `role` itself when
/// it requires nothing, else `role␟cap1,cap2` (sorted, without duplicates), which only
/// agents holding every one of those capabilities read.
pub fn queue_of(role: &str, requires: &[String]) -> String {
    if requires.is_empty() {
        return role.to_owned();
    }
    let mut caps: Vec<&str> = requires.iter().map(String::as_str).collect();
    caps.sort_unstable();
    caps.dedup();
    format!("{role}{QUEUE_SEPARATOR}{}", caps.join(","))
}

/// The priority of work nobody gave one.
pub const DEFAULT_PRIORITY: u8 = 5;

/// The separator between a queue and its priority in the name of a queue of a priority
/// other than [`DEFAULT_PRIORITY`] (a control character, like [`QUEUE_SEPARATOR`]).
const PRIORITY_SEPARATOR: char = '\u{1e}';

/// Why `priority` is not one: it must be 1 to 10 (10 is leased first).
pub fn check_priority(priority: u8) -> Result<(), String> {
    if (1..=10).contains(&priority) {
        Ok(())
    } else {
        Err(format!("priority must be 1 to 10, got {priority}"))
    }
}

/// The queue of work of `priority` of queue `queue` ([`queue_of`]): `queue` itself at
/// the default priority, else `queue␞<priority>`.
pub fn queue_at(queue: &str, priority: u8) -> String {
    if priority == DEFAULT_PRIORITY {
        queue.to_owned()
    } else {
        format!("{queue}{PRIORITY_SEPARATOR}{priority}")
    }
}

/// The priority of the work in queue `queue` ([`queue_at`]).
pub fn priority_of(queue: &str) -> u8 {
    queue
        .rsplit_once(PRIORITY_SEPARATOR)
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(DEFAULT_PRIORITY)
}

/// The role and the required capabilities a queue name (of [`queue_of`], perhaps of a
/// priority, [`queue_at`]) stands for.
pub fn split_queue(queue: &str) -> (&str, Vec<&str>) {
    let queue = queue
        .split_once(PRIORITY_SEPARATOR)
        .map_or(queue, |(q, _)| q);
    match queue.split_once(QUEUE_SEPARATOR) {
        Some((role, caps)) => (role, caps.split(',').collect()),
        None => (queue, Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_of_a_priority_keep_their_role_and_requirements() {
        let q = queue_at(&queue_of("r", &["gpu".into()]), 9);
        assert_eq!(split_queue(&q), ("r", vec!["gpu"]));
        assert_eq!((priority_of(&q), priority_of("r")), (9, DEFAULT_PRIORITY));
        assert_eq!(queue_at("r", DEFAULT_PRIORITY), "r");
        assert_eq!(split_queue(&queue_at("r", 1)), ("r", vec![]));
        assert!(check_priority(0).is_err() && check_priority(11).is_err());
        assert!(check_priority(1).is_ok() && check_priority(10).is_ok());
    }

    #[test]
    fn queues_name_their_role_and_sorted_requirements() {
        assert_eq!(queue_of("r", &[]), "r");
        let q = queue_of("r", &["python".into(), "gpu".into(), "gpu".into()]);
        assert_eq!(split_queue(&q), ("r", vec!["gpu", "python"]));
        assert_eq!(split_queue("plain"), ("plain", vec![]));
        assert!(check_capability("cuda-12").is_ok());
        assert!(check_capability("a,b").is_err());
        assert!(check_capability("").is_err());
    }
}
