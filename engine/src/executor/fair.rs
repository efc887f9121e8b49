//! Fair shares of the engine's rounds: one FIFO lane per tenant, served round-robin.
//!
//! Why: the engine decides executions in rounds, and which executions a round takes is
//! the one queue of work every tenant shares. Taken as one set, a tenant that submits
//! thousands of executions at once makes every round as large as its backlog, and another
//! tenant's first task waits behind all of it. With a [`FairQueue`] a round takes a
//! bounded amount of work one item per lane per turn, so an execution whose tenant has
//! nothing else waiting is taken within one turn of the lanes — at most one item of every
//! other busy tenant before it — however long the others' lanes are. Within a lane the
//! order stays first in, first out, and a lane that empties leaves the turn (it comes back
//! at the end when its tenant has work again), so a tenant cannot bank turns while idle.
//!
//! Every tenant weighs the same. Weights would be deficit round robin: a lane served
//! `weight` items per turn instead of one; nothing asks for them yet.
//!
//! Pure: no I/O, no clock. An item is queued at most once (pushing a queued item again
//! does nothing), which is what the engine wants of an execution: it is either waiting
//! for its next decision or it is not.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

/// Items waiting in per-key FIFO lanes, handed out one lane at a time, round-robin.
///
/// The engine keys executions by tenant. `push` and `pop` are O(1) (hash lookups); a
/// key is cloned only when its lane is created, so one busy tenant costs no allocation
/// per item.
#[derive(Debug, Clone)]
pub struct FairQueue<K, T> {
    /// The waiting items of each key with any, oldest first.
    lanes: HashMap<K, VecDeque<T>>,
    /// The keys with a non-empty lane, the one to serve next first.
    turn: VecDeque<K>,
    /// Every waiting item, so that an item is queued once.
    queued: HashSet<T>,
}

impl<K, T> Default for FairQueue<K, T> {
    fn default() -> Self {
        Self {
            lanes: HashMap::new(),
            turn: VecDeque::new(),
            queued: HashSet::new(),
        }
    }
}

impl<K, T> FairQueue<K, T>
where
    K: Hash + Eq + Clone,
    T: Hash + Eq + Clone,
{
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `item` at the end of `key`'s lane; a key without waiting items joins the
    /// end of the turn. Returns false (and changes nothing) if `item` is already queued,
    /// in whichever lane.
    pub fn push<Q>(&mut self, key: &Q, item: T) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if !self.queued.insert(item.clone()) {
            return false;
        }
        match self.lanes.get_mut(key) {
            Some(lane) => lane.push_back(item),
            None => {
                let key = key.to_owned();
                self.lanes.insert(key.clone(), VecDeque::from([item]));
                self.turn.push_back(key);
            }
        }
        true
    }

    /// The oldest item of the lane whose turn it is; that lane then goes to the end of
    /// the turn (or leaves it, if it is now empty). None when nothing waits.
    pub fn pop(&mut self) -> Option<T> {
        let key = self.turn.pop_front()?;
        let lane = self.lanes.get_mut(&key)?;
        let item = lane.pop_front()?;
        if lane.is_empty() {
            self.lanes.remove(&key);
        } else {
            self.turn.push_back(key);
        }
        self.queued.remove(&item);
        Some(item)
    }

    /// Whether `item` is waiting.
    pub fn contains(&self, item: &T) -> bool {
        self.queued.contains(item)
    }

    /// How many items wait, over every lane.
    pub fn len(&self) -> usize {
        self.queued.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// How many keys have items waiting.
    pub fn lanes(&self) -> usize {
        self.turn.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut FairQueue<String, u32>) -> Vec<u32> {
        std::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn one_lane_is_first_in_first_out() {
        let mut q = FairQueue::new();
        for i in 0..5 {
            assert!(q.push("a", i));
        }
        assert_eq!((q.len(), q.lanes()), (5, 1));
        assert_eq!(drain(&mut q), vec![0, 1, 2, 3, 4]);
        assert!(q.is_empty() && q.lanes() == 0);
    }

    #[test]
    fn lanes_take_turns_one_item_each() {
        let mut q = FairQueue::new();
        for i in 0..4 {
            q.push("a", i);
        }
        q.push("b", 100);
        q.push("c", 200);
        q.push("b", 101);
        assert_eq!(drain(&mut q), vec![0, 100, 200, 1, 101, 2, 3]);
    }

    #[test]
    fn a_late_tenant_waits_one_turn_whatever_the_backlog() {
        let mut q = FairQueue::new();
        for i in 0..10_000 {
            q.push("a", i);
        }
        // The backlog is being served when the other tenant's first item arrives.
        assert_eq!(q.pop(), Some(0));
        assert_eq!(q.pop(), Some(1));
        q.push("b", 99_999);
        let order = drain(&mut q);
        let b = order.iter().position(|&i| i == 99_999);
        assert_eq!(b, Some(1), "one item of the busy lane, then the newcomer");
        assert_eq!(order.len(), 9_999);
    }

    #[test]
    fn items_are_queued_once() {
        let mut q = FairQueue::new();
        assert!(q.push("a", 1));
        assert!(!q.push("a", 1));
        assert!(!q.push("b", 1), "queued is queued, whatever the lane");
        assert!(q.contains(&1) && q.len() == 1 && q.lanes() == 1);
        assert_eq!(q.pop(), Some(1));
        assert!(!q.contains(&1));
        assert!(q.push("b", 1), "a popped item may come back");
        assert_eq!(q.pop(), Some(1));
    }

    #[test]
    fn an_emptied_lane_rejoins_at_the_end() {
        let mut q = FairQueue::new();
        q.push("a", 1);
        q.push("b", 2);
        q.push("b", 3);
        assert_eq!(q.pop(), Some(1));
        // `a` left the turn when it emptied; coming back, it queues behind `b`.
        q.push("a", 4);
        assert_eq!(drain(&mut q), vec![2, 4, 3]);
    }

    #[test]
    fn the_turn_carries_over_between_rounds() {
        // A round takes a few items and stops; the next round goes on from the next lane,
        // so a lane's place in the turn is not reset by a round boundary.
        let mut q = FairQueue::new();
        for i in 0..3 {
            q.push("a", i);
            q.push("b", 10 + i);
            q.push("c", 20 + i);
        }
        let round = |q: &mut FairQueue<String, u32>| -> Vec<u32> {
            (0..2).filter_map(|_| q.pop()).collect()
        };
        assert_eq!(round(&mut q), vec![0, 10]);
        assert_eq!(round(&mut q), vec![20, 1]);
        assert_eq!(round(&mut q), vec![11, 21]);
    }

    #[test]
    fn every_lane_gets_an_equal_share_of_a_bounded_round() {
        // Property: whatever the backlog sizes, in any prefix of pops each non-empty lane
        // got within one item of every other non-empty lane.
        let sizes = [1_000usize, 3, 50, 1];
        let mut q = FairQueue::new();
        for (lane, &n) in sizes.iter().enumerate() {
            for i in 0..n {
                q.push(lane.to_string().as_str(), (lane * 10_000 + i) as u32);
            }
        }
        let mut served = [0usize; 4];
        while let Some(item) = q.pop() {
            served[item as usize / 10_000] += 1;
            let active = (0..4).filter(|&l| served[l] < sizes[l]).map(|l| served[l]);
            let (lo, hi) = active.fold((usize::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
            assert!(lo == usize::MAX || hi - lo <= 1, "{served:?}");
        }
        assert_eq!(served, sizes);
    }
}
