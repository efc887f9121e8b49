//! The process's one tail of the event log: it reads every committed event once, in
//! position order, and publishes it to the [`Registry`] under the keys of its streams —
//! the execution's, and its workflow's.
//!
//! An execution's workflow is learned from its `ExecutionStarted` as the tail passes it.
//! An execution that started before this feed did (the process restarted) is looked up
//! once, from the first event of its stream, and only if some client watches a workflow
//! at all; the answer is kept until the execution ends. Both are exact: a workflow's
//! clients get every event of its executions, however old the executions are.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use conflux_engine::store::{EventStore, StoreError};
use conflux_schema::{Event, EventEnvelope, StreamId, StreamType};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::registry::{event_text, Key, Registry};

/// How often the feed looks for commits made by other processes.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// Events read from the store at once.
const READ_BATCH: usize = 1000;
/// How often an idle feed checks that the store did not go back below its tail.
const REWIND_CHECK: std::time::Duration = std::time::Duration::from_secs(1);
/// The most executions whose workflow is remembered; past it the memory is cleared and
/// rebuilt (by lookups) as events come.
const MAX_KNOWN: usize = 100_000;

/// Starts tailing `store` from its current head into `registry` until `shutdown`; then
/// closes the registry (every subscription ends).
pub(super) async fn start(
    store: Arc<dyn EventStore>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) {
    let mut after = store.head_position().await.unwrap_or(0);
    let mut commits = store.commits();
    let mut routes = Routes::new(store.clone());
    let mut rewound_at = std::time::Instant::now();
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            match store.read_all(after, READ_BATCH).await {
                Ok(events) if !events.is_empty() => {
                    let (done, failed) = routes.publish(&events, &registry).await;
                    after = done.unwrap_or(after);
                    match failed {
                        // A full batch: there may be more at once. Otherwise the log
                        // was read to its end; a commit since then has moved `commits`.
                        None if events.len() == READ_BATCH => continue,
                        None => {}
                        Some(e) => {
                            tracing::warn!(error = %e, "the live feed could not route an event")
                        }
                    }
                }
                Ok(_) => {
                    // The log was read to its end. A store restored from a backup (or
                    // recreated) goes back below what was tailed: follow it there, or
                    // its new events would wait until they passed the old head.
                    if rewound_at.elapsed() >= REWIND_CHECK {
                        rewound_at = std::time::Instant::now();
                        if let Ok(head) = store.head_position().await {
                            if head < after {
                                tracing::warn!(head, tailed = after, "the store went back (restored or recreated?); the live feed follows it");
                                after = head;
                                continue;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "the live feed could not read the store"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = commits.changed() => {}
                _ = tokio::time::sleep(POLL_EVERY) => {}
            }
        }
        registry.close();
    });
}

/// Which keys an event is published under, knowing each execution's workflow.
pub(super) struct Routes {
    store: Arc<dyn EventStore>,
    /// Execution → its workflow (None: a stream without an `ExecutionStarted`).
    workflow_of: HashMap<Uuid, Option<Uuid>>,
}

impl Routes {
    pub(super) fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            workflow_of: HashMap::new(),
        }
    }

    /// Publishes `events` (in position order) one by one. Returns the position of the
    /// last one published (None if none was) and, if it stopped early, why: the rest
    /// is to be read again.
    pub(super) async fn publish(
        &mut self,
        events: &[EventEnvelope],
        registry: &Registry,
    ) -> (Option<u64>, Option<StoreError>) {
        let mut done = None;
        for e in events {
            let keys = match self.keys(e, registry).await {
                Ok(keys) => keys,
                Err(error) => return (done, Some(error)),
            };
            if !keys.is_empty() {
                registry.publish(&keys, e.position, || event_text(e));
            }
            if matches!(
                e.event,
                Event::ExecutionCompleted { .. }
                    | Event::ExecutionFailed { .. }
                    | Event::ExecutionCancelled { .. }
            ) {
                // Its last event (should another come, it is looked up again).
                self.workflow_of.remove(&e.stream_id.uuid());
            }
            done = Some(e.position);
        }
        (done, None)
    }

    /// The keys of `e`: its execution's and that execution's workflow's, or its
    /// workflow's; none for other streams.
    async fn keys(
        &mut self,
        e: &EventEnvelope,
        registry: &Registry,
    ) -> Result<Vec<Key>, StoreError> {
        let id = e.stream_id.uuid();
        match e.stream_id.stream_type() {
            StreamType::Workflow => return Ok(vec![Key::Workflow(id)]),
            StreamType::Agent
            | StreamType::Tenant
            | StreamType::Key
            | StreamType::Schedule
            | StreamType::Concurrency
            | StreamType::Hook => return Ok(Vec::new()),
            StreamType::Execution => {}
        }
        let workflow = match &e.event {
            Event::ExecutionStarted { workflow_id, .. } => {
                self.remember(id, Some(*workflow_id));
                Some(*workflow_id)
            }
            _ => match self.workflow_of.get(&id) {
                Some(known) => *known,
                // Nobody watches a workflow: whoever subscribes later reads this event
                // from the store (it committed before they subscribed).
                None if !registry.watches_workflows() => None,
                None => {
                    let workflow = self.look_up(&e.stream_id).await?;
                    self.remember(id, workflow);
                    workflow
                }
            },
        };
        let mut keys = vec![Key::Execution(id)];
        keys.extend(workflow.map(Key::Workflow));
        Ok(keys)
    }

    /// The workflow of an execution, from its first event.
    async fn look_up(&self, stream: &StreamId) -> Result<Option<Uuid>, StoreError> {
        let first = self.store.read_stream(stream, 0, 1).await?;
        Ok(first.first().and_then(|e| match &e.event {
            Event::ExecutionStarted { workflow_id, .. } => Some(*workflow_id),
            _ => None,
        }))
    }

    fn remember(&mut self, execution: Uuid, workflow: Option<Uuid>) {
        if self.workflow_of.len() >= MAX_KNOWN {
            self.workflow_of.clear();
        }
        self.workflow_of.insert(execution, workflow);
    }

    /// Executions whose workflow is remembered now.
    #[cfg(test)]
    pub(super) fn known(&self) -> usize {
        self.workflow_of.len()
    }
}
