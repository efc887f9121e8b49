//! Concurrency keys ([`conflux_schema::concurrency`]): the slots of each key live on a
//! stream of their own, `concurrency-<uuid>`, so that every server agrees on who holds
//! one through the store's optimistic concurrency (an append at a stale version is a
//! conflict, and the claim is decided again), and the log shows who ran when.
//!
//! - An execution whose workflow has `concurrency` starts `queued`
//!   (`ExecutionQueued { key }`); the command API then [`ConcurrencySlots::claim`]s a
//!   slot: with one it is admitted (`ExecutionAdmitted`), else it waits, or it (or the
//!   oldest running one) is cancelled, per the strategy.
//! - When an execution with a key ends, the engine [`ConcurrencySlots::release`]s its
//!   slot and admits the oldest waiting execution of the key.
//! - Crashes between those steps heal: a claim that finds the key full first frees the
//!   slots of holders that already ended, and the engine's sweeps claim again for
//!   executions still queued (a claim repeated is harmless).

mod slots;

pub use slots::{Change, Slots};

use conflux_schema::{EventMetadata, NewEvent, StreamId};
use uuid::Uuid;

use crate::commands::{CommandError, ExecutionCommands};
use crate::execution::{Command, ExecutionState};
use crate::store::{read_whole_stream, StoreError};

/// Appends tried before a claim or release gives up on conflicts (each conflict means
/// another claim or release of the key went through, so this bounds a burst of that many
/// at once on one key).
const MAX_ATTEMPTS: usize = 1000;

/// Pause after a conflict, at most (a random share of it, so that contenders spread).
const BACKOFF_MICROS: u64 = 2000;

/// Claims and releases slots of concurrency keys; cheap to clone.
#[derive(Clone)]
pub struct ConcurrencySlots {
    commands: ExecutionCommands,
}

/// What a claim or release works on: the limit, the key and the key's stream.
struct Scope<'a> {
    limit: &'a conflux_schema::concurrency::Concurrency,
    key: &'a str,
    stream: StreamId,
    execution: Uuid,
}

impl ConcurrencySlots {
    /// Slots kept in `commands`' store; executions admitted and cancelled through it.
    pub fn new(commands: ExecutionCommands) -> Self {
        Self { commands }
    }

    fn scope(state: &ExecutionState) -> Option<Scope<'_>> {
        let definition = state.workflow().definition();
        let limit = definition.concurrency.as_ref()?;
        let key = state.concurrency_key()?;
        let execution = state.execution_id()?;
        let stream = StreamId::concurrency(state.tenant(), &definition.name, key);
        Some(Scope {
            limit,
            key,
            stream,
            execution,
        })
    }

    /// Claims a slot for `state`'s (queued) execution and carries out what that
    /// decides: admit it, leave it waiting, or cancel it or the oldest running one.
    /// Holders that already ended are freed first. Repeating a claim is harmless.
    pub async fn claim(
        &self,
        state: &ExecutionState,
        metadata: &EventMetadata,
    ) -> Result<(), CommandError> {
        let Some(scope) = Self::scope(state) else {
            return Ok(());
        };
        let execution = scope.execution;
        let max = scope.limit.max_running;
        for _ in 0..MAX_ATTEMPTS {
            let (slots, version) = self.read(&scope.stream).await?;
            // Heal: slots of executions that ended without giving them back.
            let mut ended = Vec::new();
            if slots.running.len() >= max as usize {
                for holder in &slots.running {
                    if self.has_ended(*holder).await? {
                        ended.push(*holder);
                    }
                }
            }
            let mut change = slots.release_all(&ended, max);
            let claim = slots
                .after(&change)
                .claim(execution, scope.limit, scope.key);
            change.events.extend(claim.events);
            change.admit.extend(claim.admit);
            change.cancel.extend(claim.cancel);
            if self
                .settle(&scope.stream, version, change, metadata)
                .await?
            {
                return Ok(());
            }
            backoff().await;
        }
        Err(conflict(&scope.stream))
    }

    /// Gives back the slot (or the place in line) of `state`'s execution, which ended,
    /// and admits the oldest waiting executions into the slots that frees.
    pub async fn release(
        &self,
        state: &ExecutionState,
        metadata: &EventMetadata,
    ) -> Result<(), CommandError> {
        let Some(scope) = Self::scope(state) else {
            return Ok(());
        };
        for _ in 0..MAX_ATTEMPTS {
            let (slots, version) = self.read(&scope.stream).await?;
            let change = slots.release(scope.execution, scope.limit.max_running);
            if change.events.is_empty() {
                return Ok(());
            }
            if self
                .settle(&scope.stream, version, change, metadata)
                .await?
            {
                return Ok(());
            }
            backoff().await;
        }
        Err(conflict(&scope.stream))
    }

    /// The key's slots and its stream's version.
    async fn read(&self, stream: &StreamId) -> Result<(Slots, u64), CommandError> {
        let log = read_whole_stream(&**self.commands.store(), stream).await?;
        let version = log.last().map_or(0, |e| e.version);
        Ok((Slots::fold(log.iter().map(|e| &e.event)), version))
    }

    /// Appends `change`'s events at `version` and carries it out: false on a conflict
    /// (nothing done: decide again).
    async fn settle(
        &self,
        stream: &StreamId,
        version: u64,
        change: Change,
        metadata: &EventMetadata,
    ) -> Result<bool, CommandError> {
        if !self.append(stream, version, &change, metadata).await? {
            return Ok(false);
        }
        self.carry_out(change, metadata).await;
        Ok(true)
    }

    /// Appends `change`'s events at `version`: false on a conflict (decide again).
    async fn append(
        &self,
        stream: &StreamId,
        version: u64,
        change: &Change,
        metadata: &EventMetadata,
    ) -> Result<bool, CommandError> {
        if change.events.is_empty() {
            return Ok(true);
        }
        let events = change
            .events
            .iter()
            .map(|e| NewEvent::new(e.clone(), metadata.clone()))
            .collect();
        match self.commands.store().append(stream, version, events).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether execution `id` ended (or does not exist).
    async fn has_ended(&self, id: Uuid) -> Result<bool, CommandError> {
        Ok(self
            .commands
            .load(id)
            .await?
            .is_none_or(|(state, _)| state.is_terminal()))
    }

    /// Admits and cancels what `change` says. An execution that moved on (already
    /// admitted, ended) is left as it is; a failure is logged: a sweep claims again
    /// for executions still queued.
    async fn carry_out(&self, change: Change, metadata: &EventMetadata) {
        let commands = change.admit.into_iter().map(|e| (e, Command::Admit)).chain(
            change.cancel.into_iter().map(|(e, reason)| {
                (
                    e,
                    Command::Cancel {
                        reason: Some(reason),
                    },
                )
            }),
        );
        for (execution, command) in commands {
            let done = self
                .commands
                .record(execution, metadata.clone(), |_, _| Ok(command.clone()))
                .await;
            match done {
                Ok(_) | Err(CommandError::Rejected(_)) | Err(CommandError::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(%execution, error = %e, "admitting or cancelling for a concurrency key failed; a sweep tries again");
                }
            }
        }
    }
}

/// A short random pause after a conflict.
async fn backoff() {
    let micros = u64::from(Uuid::new_v4().as_u128() as u16) % BACKOFF_MICROS;
    tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
}

fn conflict(stream: &StreamId) -> CommandError {
    CommandError::Store(StoreError::Backend(format!(
        "concurrency key stream {stream} kept changing; a sweep tries again"
    )))
}
