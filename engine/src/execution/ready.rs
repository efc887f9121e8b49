//! The ready set: which tasks have every dependency settled but are not judged yet.
//!
//! A dependency settles when it completes, is skipped, or fails for good where the
//! failure does not end the execution (a downstream trigger rule tolerates it). A
//! ready task is then judged by `Advance`: its trigger rule and `when` decide whether
//! it runs or is skipped.
//!
//! It is kept incrementally, as Kahn's algorithm does: one counter per task starts at
//! the task's in-degree ([`ValidatedWorkflow::in_degrees`]) and drops by one when a
//! dependency completes ([`ValidatedWorkflow::dependents`]). A task enters the set when
//! its counter reaches zero, so a step never rescans the whole graph: completing a task
//! costs its out-degree, scheduling one costs a set removal.

use std::collections::BTreeSet;

use conflux_schema::validate::ValidatedWorkflow;

/// In-degree counters and the tasks whose counter reached zero and that are not
/// scheduled yet, by task index (ascending, so iteration is deterministic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReadySet {
    remaining: Vec<u32>,
    ready: BTreeSet<u32>,
}

impl ReadySet {
    /// Counters at each task's in-degree; nothing is ready before [`ReadySet::start`].
    pub(crate) fn new(workflow: &ValidatedWorkflow) -> Self {
        ReadySet {
            remaining: workflow.in_degrees(),
            ready: BTreeSet::new(),
        }
    }

    /// The execution started: every root is ready.
    pub(crate) fn start(&mut self, workflow: &ValidatedWorkflow) {
        self.ready.extend(workflow.roots().iter().copied());
    }

    /// Task `index` settled: its dependents' counters drop by one, and each dependent
    /// whose counter reaches zero and for which `still_pending` holds becomes ready.
    /// Must be called at most once per task (evolve guarantees it).
    pub(crate) fn settled(
        &mut self,
        workflow: &ValidatedWorkflow,
        index: usize,
        still_pending: impl Fn(usize) -> bool,
    ) {
        for &dependent in workflow.dependents(index) {
            if let Some(counter) = self.remaining.get_mut(dependent as usize) {
                *counter = counter.saturating_sub(1);
                if *counter == 0 && still_pending(dependent as usize) {
                    self.ready.insert(dependent);
                }
            }
        }
    }

    /// Undoes [`ReadySet::settled`] for task `index` (a redrive made it pending
    /// again): its dependents' counters go up by one and none of them is ready.
    pub(crate) fn unsettled(&mut self, workflow: &ValidatedWorkflow, index: usize) {
        for &dependent in workflow.dependents(index) {
            if let Some(counter) = self.remaining.get_mut(dependent as usize) {
                *counter = counter.saturating_add(1);
            }
            self.ready.remove(&dependent);
        }
    }

    /// Adds `index` to the ready set (a redrive made it pending again, every
    /// dependency settled).
    pub(crate) fn insert(&mut self, index: usize) {
        if let Ok(index) = u32::try_from(index) {
            self.ready.insert(index);
        }
    }

    /// Removes `index` from the ready set (it was scheduled, or skipped).
    pub(crate) fn take(&mut self, index: usize) {
        if let Ok(index) = u32::try_from(index) {
            self.ready.remove(&index);
        }
    }

    /// The ready tasks, ascending by index.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.ready.iter().map(|&i| i as usize)
    }

    /// How many dependencies of `index` have not settled yet.
    pub(crate) fn remaining(&self, index: usize) -> u32 {
        self.remaining.get(index).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conflux_schema::definition::WorkflowDefinition;
    use conflux_schema::validate::{validate, Limits};

    fn diamond() -> ValidatedWorkflow {
        let def: WorkflowDefinition = serde_json::from_value(serde_json::json!({
            "name": "d",
            "tasks": [
                {"id": "a", "kind": "noop"},
                {"id": "b", "kind": "noop", "depends_on": ["a"]},
                {"id": "c", "kind": "noop", "depends_on": ["a"]},
                {"id": "d", "kind": "noop", "depends_on": ["b", "c"]}
            ]
        }))
        .unwrap();
        validate(def, &Limits::default()).unwrap()
    }

    #[test]
    fn join_becomes_ready_only_after_every_dependency() {
        let wf = diamond();
        let mut ready = ReadySet::new(&wf);
        assert_eq!(ready.iter().count(), 0);
        ready.start(&wf);
        assert_eq!(ready.iter().collect::<Vec<_>>(), [0]);
        ready.take(0);
        ready.settled(&wf, 0, |_| true);
        assert_eq!(ready.iter().collect::<Vec<_>>(), [1, 2]);
        ready.take(1);
        ready.settled(&wf, 1, |_| true);
        assert_eq!(ready.iter().collect::<Vec<_>>(), [2]);
        assert_eq!(ready.remaining(3), 1);
        ready.take(2);
        ready.settled(&wf, 2, |_| true);
        assert_eq!(ready.iter().collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn a_task_that_is_no_longer_pending_does_not_become_ready() {
        let wf = diamond();
        let mut ready = ReadySet::new(&wf);
        ready.start(&wf);
        ready.take(0);
        ready.settled(&wf, 0, |i| i != 2);
        assert_eq!(ready.iter().collect::<Vec<_>>(), [1]);
    }
}
