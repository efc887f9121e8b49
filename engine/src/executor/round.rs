//! Rounds: which executions are decided together, and when a round may start.
//!
//! A round takes executions from the ready lanes ([`FairQueue`], one lane per tenant)
//! round-robin until it holds its budget of events — `round_events` while one tenant
//! has work, the smaller `shared_round_events` while several have — decides each once,
//! appends them all with one `append_many` and then performs their effects in the same
//! order. Before each
//! round the engine folds in whatever the bus has delivered (read-ahead) and, while its
//! own appends are more than `max_unread` positions ahead of what it has read back,
//! waits for the bus: so the part of the bus in front of another tenant's new execution
//! stays short, and so does the round in flight when it is read.
//!
//! [`FairQueue`]: super::FairQueue

use std::collections::VecDeque;

use chrono::Utc;
use conflux_schema::{EventEnvelope, EventMetadata, StreamId};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::chain::MAX_COMMANDS;
use super::{chain, Engine, PACE_WAIT, READ_AHEAD_BATCHES, UNKNOWN_TENANT};
use crate::bus::Delivery;
use crate::commands::into_new;
use crate::execution::Command;
use crate::execution::{evolve, ExecutionState};
use crate::store::{AppendRequest, StoreError};

impl Engine {
    /// Folds in every batch the bus has already delivered (at most
    /// `READ_AHEAD_BATCHES`), so that an execution of another tenant that the bus holds
    /// behind a backlog is in the ready lanes before the next round is formed. While this
    /// engine's own appends are more than `max_unread` positions ahead of what it read,
    /// it waits for the bus first (unless the bus has stopped handing anything).
    pub(super) async fn read_ahead(
        &mut self,
        deliveries: &mut mpsc::Receiver<Vec<Delivery>>,
        acks: &mut Vec<u64>,
    ) {
        let mut batches = 0;
        loop {
            // Past the cap, rounds go first — unless the engine is running ahead.
            if batches >= READ_AHEAD_BATCHES && !self.running_ahead() {
                break;
            }
            let batch = match deliveries.try_recv() {
                Ok(batch) => batch,
                Err(_) if self.reader_stalled || !self.running_ahead() => break,
                Err(_) => match tokio::time::timeout(PACE_WAIT, deliveries.recv()).await {
                    Ok(Some(batch)) => batch,
                    Ok(None) => break,
                    Err(_) => {
                        tracing::debug!(
                            appended_to = self.appended_to,
                            read_to = self.read_to,
                            "the bus handed nothing while the engine waited for it"
                        );
                        self.reader_stalled = true;
                        break;
                    }
                },
            };
            batches += 1;
            self.apply_deliveries(batch, acks).await;
        }
        if !self.running_ahead() {
            self.reader_stalled = false;
        }
    }

    /// Whether this engine's appends are more than `max_unread` positions ahead of what
    /// it has read from the bus.
    fn running_ahead(&self) -> bool {
        self.appended_to > self.read_to.saturating_add(self.options.max_unread)
    }

    /// Adds to `acks` the bus entries whose executions have been decided since.
    pub(super) fn ack_decided(&mut self, acks: &mut Vec<u64>) {
        let (ready, pending) = (&self.ready, &self.pending);
        self.unacked.retain(|(position, id)| {
            let waiting = ready.contains(id) || pending.contains_key(id);
            if !waiting {
                acks.push(*position);
            }
            waiting
        });
    }

    /// Queues `id` for a coming round in its tenant's lane (the lane of unknown tenants
    /// if its state is not in memory).
    pub(super) fn mark(&mut self, id: Uuid) {
        let tenant = self
            .states
            .get(&id)
            .map_or(UNKNOWN_TENANT, ExecutionState::tenant);
        self.ready.push(tenant, id);
    }

    /// Decides and appends until no execution has anything more to record (or 64
    /// rounds went by).
    pub(super) async fn rounds(&mut self) {
        for _ in 0..64 {
            if !self.round().await {
                return;
            }
        }
    }

    /// One round: executions taken from the ready lanes round-robin until the round
    /// holds its budget of events, at most one chained decision per execution, all
    /// appended together. Executions with more to do go back to their lanes after the
    /// append, for a later round. Returns whether anything was appended, or (when
    /// nothing was) whether work is still waiting.
    pub(super) async fn round(&mut self) -> bool {
        if self.ready.is_empty() && !self.pending.is_empty() {
            // Every execution with commands is queued; this only guards that promise.
            let ids: Vec<Uuid> = self.pending.keys().copied().collect();
            for id in ids {
                self.mark(id);
            }
        }
        let now = Utc::now();
        let mut budget = if self.ready.lanes() > 1 {
            self.options.shared_round_events
        } else {
            self.options.round_events
        }
        .max(1);
        let mut requests = Vec::new();
        let mut decided = Vec::new();
        // Executions to queue again after this round (never twice in one round: a
        // second decision would be made at the version the first one already takes).
        let mut again = Vec::new();
        while budget > 0 {
            let Some(id) = self.ready.pop() else { break };
            budget -= 1;
            if !self.states.contains_key(&id) && self.load(id).await.is_none() {
                let waiting = self.pending.remove(&id).into_iter().flatten();
                if self.stalled.contains(id) {
                    self.stalled.add(id, waiting, now);
                }
                continue;
            }
            let Some(state) = self.states.get(&id) else {
                // Terminal: late results and timers have nothing left to do.
                self.pending.remove(&id);
                continue;
            };
            let commands: Vec<Command> = match self.pending.get_mut(&id) {
                Some(queue) => {
                    let n = queue.len().min(MAX_COMMANDS);
                    queue.drain(..n).collect()
                }
                None => Vec::new(),
            };
            if self.pending.get(&id).is_some_and(VecDeque::is_empty) {
                self.pending.remove(&id);
            }
            let had_command = !commands.is_empty();
            let decision = match chain(state, commands.clone(), now) {
                Ok(d) => d,
                Err(rejection) => {
                    tracing::debug!(execution = %id, %rejection, "commands no longer apply");
                    if self.pending.contains_key(&id) {
                        again.push(id);
                    }
                    continue;
                }
            };
            if decision.is_empty() {
                if had_command && self.pending.contains_key(&id) {
                    again.push(id);
                }
                continue;
            }
            budget = budget.saturating_sub(decision.events.len().saturating_sub(1));
            let tenant = state.tenant().to_owned();
            requests.push(AppendRequest {
                stream: StreamId::execution(id),
                expected_version: state.version(),
                // The engine acts in the execution's tenant.
                events: into_new(
                    &decision,
                    &EventMetadata {
                        tenant_id: Some(tenant.clone()),
                        ..self.metadata.clone()
                    },
                ),
            });
            decided.push((id, tenant, decision, commands));
        }
        if requests.is_empty() {
            for id in again {
                self.mark(id);
            }
            return !self.ready.is_empty();
        }
        let results = self.parts.store.append_many(requests).await;
        let mut progressed = false;
        for ((id, tenant, decision, commands), result) in decided.into_iter().zip(results) {
            match result {
                Ok(envelopes) => {
                    progressed = true;
                    if let Some(last) = envelopes.last() {
                        self.appended_to = self.appended_to.max(last.position);
                    }
                    self.commit(id, &envelopes);
                    self.perform(id, &tenant, decision.effects).await;
                    // Advance once more on the committed state (a chain stops at
                    // `MAX_LINKS`, and takes at most `MAX_COMMANDS`); usually an
                    // empty decision.
                    if self.states.contains_key(&id) {
                        again.push(id);
                    }
                }
                Err(StoreError::Conflict { .. }) => {
                    // Another process appended first: reload and decide again, the
                    // commands included (a runner's result has no other copy; one that
                    // no longer applies is rejected then).
                    let queue = self.pending.entry(id).or_default();
                    for command in commands.into_iter().rev() {
                        queue.push_front(command);
                    }
                    self.states.remove(&id);
                    self.ready.push(tenant.as_str(), id);
                    progressed = true;
                }
                Err(e) => {
                    // The command is the only copy of a runner result or a timer: keep it.
                    tracing::warn!(execution = %id, error = %e, "appending a decision failed; will retry");
                    self.states.remove(&id);
                    let waiting = self.pending.remove(&id).into_iter().flatten();
                    self.stalled
                        .add(id, commands.into_iter().chain(waiting), now);
                }
            }
        }
        for id in again {
            self.mark(id);
        }
        progressed
    }

    fn commit(&mut self, id: Uuid, envelopes: &[EventEnvelope]) {
        if let Some(state) = self.states.remove(&id) {
            let state = envelopes.iter().fold(state, evolve);
            if !state.is_terminal() {
                self.states.insert(id, state);
            } else {
                self.finished.record(id, state.version());
                self.pending.remove(&id);
                self.ended(&state);
            }
        }
    }
}
