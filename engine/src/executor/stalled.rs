//! Work the store could not take: executions whose load or append failed (Postgres
//! unreachable, a statement refused), with the commands they were deciding. They are
//! retried after a delay rather than dropped: a runner result or a fired timer is the
//! only copy there is, so dropping it would leave its execution waiting forever.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::execution::Command;

/// How long stalled work waits before it is tried again, in milliseconds.
const RETRY_AFTER_MS: i64 = 1000;

/// Stalled executions and their commands, oldest first.
#[derive(Default)]
pub struct Stalled {
    commands: HashMap<Uuid, VecDeque<Command>>,
    retry_at: Option<DateTime<Utc>>,
}

impl Stalled {
    /// `execution` stalled with `commands` still to decide (after any it already has).
    pub fn add(
        &mut self,
        execution: Uuid,
        commands: impl IntoIterator<Item = Command>,
        now: DateTime<Utc>,
    ) {
        self.commands.entry(execution).or_default().extend(commands);
        self.retry_at
            .get_or_insert_with(|| now + TimeDelta::milliseconds(RETRY_AFTER_MS));
    }

    /// Whether `execution` is stalled.
    pub fn contains(&self, execution: Uuid) -> bool {
        self.commands.contains_key(&execution)
    }

    /// When stalled work is to be tried again.
    pub fn retry_at(&self) -> Option<DateTime<Utc>> {
        self.retry_at
    }

    /// Every stalled execution with its commands, once the retry is due at `now`.
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<(Uuid, VecDeque<Command>)> {
        if self.retry_at.is_none_or(|at| at > now) {
            return Vec::new();
        }
        self.retry_at = None;
        self.commands.drain().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_work_comes_back_once_due_in_order() {
        let now = Utc::now();
        let e = Uuid::now_v7();
        let mut stalled = Stalled::default();
        stalled.add(e, [Command::Pause], now);
        stalled.add(e, [Command::Resume], now);
        assert!(stalled.contains(e));
        assert!(stalled.take_due(now).is_empty());
        let due = stalled.take_due(stalled.retry_at().expect("a retry time"));
        assert_eq!(
            due,
            vec![(e, VecDeque::from([Command::Pause, Command::Resume]))]
        );
        assert!(!stalled.contains(e) && stalled.retry_at().is_none());
    }
}
