//! Who listens to what: the feed's subscribers by stream key, each with a bounded queue
//! of its own.
//!
//! A [`Key`] is an execution (its stream) or a workflow (its stream and its executions').
//! [`Registry::publish`] hands one event's frame — serialised once, shared by every
//! queue — to the subscribers of the event's keys only, so an event costs one queue push
//! and one wake per subscriber that wants it, and nothing for the others. A subscriber
//! whose queue is full is marked lagged and dropped from the registry; its connection
//! tells the client so. A [`Subscription`] leaves the registry when it is dropped, and an
//! emptied key is removed, so nothing outlives its connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use conflux_schema::EventEnvelope;
use serde::Serialize;
use tokio::sync::mpsc;
use uuid::Uuid;

/// What a connection listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Key {
    /// One execution's stream.
    Execution(Uuid),
    /// A workflow's stream and the streams of all its executions.
    Workflow(Uuid),
}

/// One event as sent to clients: its position and its `{"type":"event",…}` text, built
/// once by the feed and shared (a reference count) by every queue it is in.
#[derive(Debug, Clone)]
pub(super) struct Frame {
    pub(super) position: u64,
    pub(super) text: Utf8Bytes,
}

/// `{"type":"event","event":<envelope>}`, the text of an event frame: the
/// `LiveFrame::Event` of `conflux_schema::api`, borrowing the envelope so the feed never
/// clones one (a test checks the two serialise alike).
#[derive(Serialize)]
struct EventFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    event: &'a EventEnvelope,
}

/// The text of `e`'s event frame.
pub(super) fn event_text(e: &EventEnvelope) -> Utf8Bytes {
    let frame = EventFrame {
        kind: "event",
        event: e,
    };
    match serde_json::to_string(&frame) {
        Ok(text) => text.into(),
        // An envelope is plain data with string keys: this cannot happen.
        Err(error) => {
            tracing::error!(%error, position = e.position, "an event frame could not be serialised");
            format!(
                r#"{{"type":"event","event":{{"position":{}}}}}"#,
                e.position
            )
            .into()
        }
    }
}

/// One subscriber's end in the registry.
struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Frame>,
    lagged: Arc<AtomicBool>,
}

#[derive(Default)]
struct Topics {
    by_key: HashMap<Key, Vec<Subscriber>>,
    /// Keys of [`Key::Workflow`] in `by_key`.
    workflows: usize,
    next_id: u64,
    /// The feed has stopped: subscriptions are closed at once.
    closed: bool,
}

/// The subscribers of one process's feed, by key.
pub(super) struct Registry {
    topics: Mutex<Topics>,
    /// Frames a subscriber may have waiting before it counts as lagging.
    capacity: usize,
}

/// What [`Subscription::recv`] gives.
#[derive(Debug)]
pub(super) enum Next {
    /// The next event.
    Frame(Frame),
    /// The subscriber fell more than the queue's capacity behind; events were lost.
    Lagged,
    /// The feed stopped (shutdown).
    Closed,
}

impl Registry {
    pub(super) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            topics: Mutex::new(Topics::default()),
            capacity: capacity.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Topics> {
        // Nothing panics while holding the lock; a poisoned map is still consistent.
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts queueing every event published for `key` from now on.
    pub(super) fn subscribe(self: &Arc<Self>, key: Key) -> Subscription {
        let (tx, rx) = mpsc::channel(self.capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        let mut topics = self.lock();
        let id = topics.next_id;
        topics.next_id += 1;
        if !topics.closed {
            if matches!(key, Key::Workflow(_)) && !topics.by_key.contains_key(&key) {
                topics.workflows += 1;
            }
            topics.by_key.entry(key).or_default().push(Subscriber {
                id,
                tx,
                lagged: lagged.clone(),
            });
        }
        Subscription {
            rx,
            lagged,
            registry: self.clone(),
            key,
            id,
        }
    }

    /// Whether anyone listens to a workflow (only then does the feed need to know which
    /// workflow an execution belongs to).
    pub(super) fn watches_workflows(&self) -> bool {
        self.lock().workflows > 0
    }

    /// Queues one event for the subscribers of `keys`; `text` (the frame) is only built
    /// if there is one. Returns how many subscribers it was queued for.
    pub(super) fn publish(
        &self,
        keys: &[Key],
        position: u64,
        text: impl FnOnce() -> Utf8Bytes,
    ) -> usize {
        let mut topics = self.lock();
        if !keys.iter().any(|k| topics.by_key.contains_key(k)) {
            return 0;
        }
        let frame = Frame {
            position,
            text: text(),
        };
        let mut queued = 0;
        for key in keys {
            let Some(subscribers) = topics.by_key.get_mut(key) else {
                continue;
            };
            subscribers.retain(|s| match s.tx.try_send(frame.clone()) {
                Ok(()) => {
                    queued += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Dropping the sender also wakes the subscriber, which then sees it.
                    s.lagged.store(true, Ordering::Release);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            if subscribers.is_empty() {
                topics.remove_key(*key);
            }
        }
        queued
    }

    /// Closes every subscription (the feed stopped): each ends as [`Next::Closed`].
    pub(super) fn close(&self) {
        let mut topics = self.lock();
        topics.closed = true;
        topics.by_key.clear();
        topics.workflows = 0;
    }

    /// Subscribers registered now, over every key.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().by_key.values().map(Vec::len).sum()
    }

    fn remove(&self, key: Key, id: u64) {
        let mut topics = self.lock();
        if let Some(subscribers) = topics.by_key.get_mut(&key) {
            subscribers.retain(|s| s.id != id);
            if subscribers.is_empty() {
                topics.remove_key(key);
            }
        }
    }
}

impl Topics {
    fn remove_key(&mut self, key: Key) {
        if self.by_key.remove(&key).is_some() && matches!(key, Key::Workflow(_)) {
            self.workflows -= 1;
        }
    }
}

/// One connection's queue of events for its key; leaves the registry when dropped.
pub(super) struct Subscription {
    rx: mpsc::Receiver<Frame>,
    lagged: Arc<AtomicBool>,
    registry: Arc<Registry>,
    key: Key,
    id: u64,
}

impl Subscription {
    /// The next event, waiting for it; a lag is reported as soon as it happened, before
    /// whatever is still queued (which the client gets again when it resumes).
    pub(super) async fn recv(&mut self) -> Next {
        if self.lagged.load(Ordering::Acquire) {
            return Next::Lagged;
        }
        match self.rx.recv().await {
            _ if self.lagged.load(Ordering::Acquire) => Next::Lagged,
            Some(frame) => Next::Frame(frame),
            None => Next::Closed,
        }
    }

    /// The next event if one is queued now (and no lag happened).
    pub(super) fn try_recv(&mut self) -> Option<Frame> {
        if self.lagged.load(Ordering::Acquire) {
            return None;
        }
        self.rx.try_recv().ok()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.registry.remove(self.key, self.id);
    }
}
