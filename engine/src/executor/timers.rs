//! The timer index: timers are events first (deadlines and due times recorded in the
//! log) and entries here second, rebuilt from `pending_timers` whenever an execution is
//! loaded. Firing a timer that no longer applies is harmless, so duplicates are fine.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::execution::Timer;

/// Armed timers, soonest first.
#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(DateTime<Utc>, Uuid, Timer)>>,
    armed: HashSet<(Uuid, Timer)>,
}

impl Timers {
    /// Arms `timer` for `execution` (once: arming an armed timer does nothing).
    pub fn arm(&mut self, execution: Uuid, timer: Timer) {
        if self.armed.insert((execution, timer.clone())) {
            self.heap.push(Reverse((timer.due_at(), execution, timer)));
        }
    }

    /// When the next timer is due.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.heap.peek().map(|Reverse((due, _, _))| *due)
    }

    /// Removes and returns every timer due at or before `now`.
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<(Uuid, Timer)> {
        let mut due = Vec::new();
        while self
            .heap
            .peek()
            .is_some_and(|Reverse((at, _, _))| *at <= now)
        {
            if let Some(Reverse((_, execution, timer))) = self.heap.pop() {
                self.armed.remove(&(execution, timer.clone()));
                due.push((execution, timer));
            }
        }
        due
    }

    /// How many timers are armed.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_order_once() {
        let mut t = Timers::default();
        let now = Utc::now();
        let e = Uuid::now_v7();
        let later = Timer::ExecutionDeadline {
            deadline: now + chrono::Duration::seconds(10),
        };
        let soon = Timer::ExecutionDeadline {
            deadline: now - chrono::Duration::seconds(1),
        };
        t.arm(e, later.clone());
        t.arm(e, soon.clone());
        t.arm(e, soon.clone());
        assert_eq!(t.len(), 2);
        assert_eq!(t.take_due(now), vec![(e, soon)]);
        assert!(t.take_due(now).is_empty());
        assert_eq!(t.next_due(), Some(later.due_at()));
    }
}
