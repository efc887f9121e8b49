//! The slots of one concurrency key, the pure part: the fold of its stream (who holds a
//! slot, who waits, oldest first) and what a claim or a release records.

use conflux_schema::concurrency::{Concurrency, ConcurrencyStrategy};
use conflux_schema::Event;
use uuid::Uuid;

/// Who holds a slot of a key and who waits for one, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slots {
    /// Executions holding a slot.
    pub running: Vec<Uuid>,
    /// Executions waiting for one (strategy `queue`).
    pub waiting: Vec<Uuid>,
}

/// What a claim or a release records on the key's stream, and what it then does to
/// executions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    /// Events for the key's stream.
    pub events: Vec<Event>,
    /// Executions that got a slot: they are admitted.
    pub admit: Vec<Uuid>,
    /// Executions to cancel (over the limit), with the reason.
    pub cancel: Vec<(Uuid, String)>,
}

impl Slots {
    /// The slots after `events` (a key's stream, in order).
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut slots = Slots::default();
        for e in events {
            slots.apply(e);
        }
        slots
    }

    /// The slots after `change`'s events.
    pub fn after(&self, change: &Change) -> Slots {
        let mut slots = self.clone();
        for e in &change.events {
            slots.apply(e);
        }
        slots
    }

    fn apply(&mut self, e: &Event) {
        match e {
            Event::ConcurrencySlotTaken { execution_id } => {
                self.waiting.retain(|w| w != execution_id);
                if !self.running.contains(execution_id) {
                    self.running.push(*execution_id);
                }
            }
            Event::ConcurrencySlotAwaited { execution_id }
                if !self.running.contains(execution_id) && !self.waiting.contains(execution_id) =>
            {
                self.waiting.push(*execution_id);
            }
            Event::ConcurrencySlotFreed { execution_id } => {
                self.running.retain(|r| r != execution_id);
                self.waiting.retain(|w| w != execution_id);
            }
            _ => {}
        }
    }

    /// What execution `execution`, just started with key limit `limit`, gets: a slot
    /// (admitted), a place in line, or — over the limit — its own cancellation
    /// (`cancel_newest`) or the oldest running one's (`cancel_in_progress`). A claim
    /// repeated for an execution that holds or awaits a slot changes nothing (it is
    /// admitted again if it holds one: admitting is idempotent).
    pub fn claim(&self, execution: Uuid, limit: &Concurrency, key: &str) -> Change {
        if self.running.contains(&execution) {
            return Change {
                admit: vec![execution],
                ..Change::default()
            };
        }
        if self.waiting.contains(&execution) {
            return Change::default();
        }
        let max = limit.max_running as usize;
        let full = self.running.len() >= max;
        match limit.strategy {
            // Behind whoever waits already, even if a slot looks free.
            ConcurrencyStrategy::Queue if full || !self.waiting.is_empty() => Change {
                events: vec![Event::ConcurrencySlotAwaited {
                    execution_id: execution,
                }],
                ..Change::default()
            },
            ConcurrencyStrategy::CancelNewest if full => Change {
                cancel: vec![(
                    execution,
                    format!("concurrency: key {key:?} already runs {max} (strategy cancel_newest)"),
                )],
                ..Change::default()
            },
            ConcurrencyStrategy::CancelInProgress if full => {
                let victims = &self.running[..self.running.len() + 1 - max];
                let mut events: Vec<Event> = victims
                    .iter()
                    .map(|v| Event::ConcurrencySlotFreed { execution_id: *v })
                    .collect();
                events.push(Event::ConcurrencySlotTaken {
                    execution_id: execution,
                });
                Change {
                    events,
                    admit: vec![execution],
                    cancel: victims
                        .iter()
                        .map(|v| {
                            (
                                *v,
                                format!(
                                    "concurrency: replaced by execution {execution} of key {key:?} (strategy cancel_in_progress)"
                                ),
                            )
                        })
                        .collect(),
                }
            }
            _ => Change {
                events: vec![Event::ConcurrencySlotTaken {
                    execution_id: execution,
                }],
                admit: vec![execution],
                ..Change::default()
            },
        }
    }

    /// What the end of execution `execution` records: its slot freed (or its place in
    /// line given up) and, for each slot now free, the oldest waiting execution
    /// admitted. Nothing when it held or awaited nothing.
    pub fn release(&self, execution: Uuid, max_running: u32) -> Change {
        self.release_all(&[execution], max_running)
    }

    /// [`Slots::release`] for several executions at once.
    pub fn release_all(&self, ended: &[Uuid], max_running: u32) -> Change {
        let mut after = self.clone();
        let mut change = Change::default();
        for execution in ended {
            if after.running.contains(execution) || after.waiting.contains(execution) {
                let freed = Event::ConcurrencySlotFreed {
                    execution_id: *execution,
                };
                after.apply(&freed);
                change.events.push(freed);
            }
        }
        if change.events.is_empty() {
            return change;
        }
        while after.running.len() < max_running as usize && !after.waiting.is_empty() {
            let next = after.waiting[0];
            let taken = Event::ConcurrencySlotTaken { execution_id: next };
            after.apply(&taken);
            change.events.push(taken);
            change.admit.push(next);
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max: u32, strategy: ConcurrencyStrategy) -> Concurrency {
        Concurrency {
            key: "input.k".into(),
            max_running: max,
            strategy,
        }
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn after(slots: &Slots, change: &Change) -> Slots {
        slots.after(change)
    }

    #[test]
    fn the_queue_admits_up_to_the_limit_then_in_order_of_arrival() {
        let l = limit(2, ConcurrencyStrategy::Queue);
        let mut s = Slots::default();
        for n in 1..=4 {
            let c = s.claim(id(n), &l, "k");
            assert_eq!(c.admit, if n <= 2 { vec![id(n)] } else { vec![] });
            assert!(c.cancel.is_empty());
            s = after(&s, &c);
        }
        assert_eq!(
            (s.running.clone(), s.waiting.clone()),
            (vec![id(1), id(2)], vec![id(3), id(4)])
        );
        assert_eq!(
            s.claim(id(3), &l, "k"),
            Change::default(),
            "a repeated claim changes nothing"
        );
        let c = s.release(id(1), 2);
        assert_eq!(c.admit, vec![id(3)]);
        s = after(&s, &c);
        // A waiting execution that ends (cancelled) gives up its place.
        let c = s.release(id(4), 2);
        assert!(c.admit.is_empty());
        s = after(&s, &c);
        assert_eq!(
            (s.running.clone(), s.waiting.clone()),
            (vec![id(2), id(3)], vec![])
        );
        assert_eq!(s.release(id(9), 2), Change::default());
    }

    #[test]
    fn cancel_newest_cancels_the_newcomer_and_cancel_in_progress_the_oldest() {
        let newest = limit(1, ConcurrencyStrategy::CancelNewest);
        let s = after(
            &Slots::default(),
            &Slots::default().claim(id(1), &newest, "k"),
        );
        let c = s.claim(id(2), &newest, "k");
        assert_eq!((c.events.clone(), c.admit.clone()), (vec![], vec![]));
        assert_eq!(
            c.cancel.iter().map(|(e, _)| *e).collect::<Vec<_>>(),
            vec![id(2)]
        );

        let in_progress = limit(2, ConcurrencyStrategy::CancelInProgress);
        let mut s = Slots::default();
        for n in 1..=2 {
            s = after(&s, &s.claim(id(n), &in_progress, "k"));
        }
        let c = s.claim(id(3), &in_progress, "k");
        assert_eq!(c.admit, vec![id(3)]);
        assert_eq!(
            c.cancel.iter().map(|(e, _)| *e).collect::<Vec<_>>(),
            vec![id(1)]
        );
        assert_eq!(after(&s, &c).running, vec![id(2), id(3)]);
    }
}
