//! Executions this engine saw end, with the version they ended at.
//!
//! Terminal executions leave the state cache at once, but the bus keeps delivering the
//! events that ended them (the engine appends faster than its own events come back).
//! Without this record every such delivery looked like an uncached execution and
//! reloaded its whole log from the store: after a burst of short executions the engine
//! spent seconds replaying finished logs while new executions waited behind them.

use std::collections::{HashMap, VecDeque};

use uuid::Uuid;

/// A bounded record of finished executions (oldest forgotten first).
#[derive(Debug)]
pub struct Finished {
    versions: HashMap<Uuid, u64>,
    order: VecDeque<Uuid>,
    capacity: usize,
}

impl Finished {
    /// Remembers at most `capacity` executions.
    pub fn new(capacity: usize) -> Self {
        Self {
            versions: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// `execution` ended at `version`.
    pub fn record(&mut self, execution: Uuid, version: u64) {
        if self.versions.insert(execution, version).is_none() {
            self.order.push_back(execution);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.versions.remove(&old);
                }
            }
        }
    }

    /// Whether the event at `version` of `execution` is one this engine already saw
    /// the execution end with (nothing to fold).
    pub fn covers(&self, execution: Uuid, version: u64) -> bool {
        self.versions.get(&execution).is_some_and(|v| version <= *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_versions_up_to_the_end_and_forgets_the_oldest() {
        let mut finished = Finished::new(2);
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        finished.record(a, 10);
        assert!(finished.covers(a, 10) && finished.covers(a, 1));
        assert!(!finished.covers(a, 11), "a later event is news");
        finished.record(b, 5);
        finished.record(c, 5);
        assert!(!finished.covers(a, 1), "the oldest is forgotten");
        assert!(finished.covers(b, 5) && finished.covers(c, 5));
    }
}
