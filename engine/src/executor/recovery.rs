//! Rebuilding in-flight work: on start, every open execution's timers, started
//! built-ins and dispatched agent tasks; while running, executions that saw no event for
//! `stale_after` (their engine died) are taken over the same way. Duplicates are
//! harmless: every result is fenced by its attempt.

use chrono::Utc;

use super::children::running_children;
use super::effects::running_builtins;
use super::{Engine, EngineError};
use crate::store::StreamQuery;

impl Engine {
    /// Takes over open executions that saw no event for `stale_after` (e.g. their
    /// engine died): reloads each, re-arms its timers, re-runs started built-ins not
    /// running here and re-queues dispatched agent tasks. Duplicates are harmless: every
    /// result is fenced by its attempt.
    pub(super) async fn sweep(&mut self) {
        let idle_since =
            Utc::now() - chrono::Duration::from_std(self.options.stale_after).unwrap_or_default();
        let idle = match self
            .parts
            .store
            .find_streams(&StreamQuery::IdleExecutions { idle_since }, 1000)
            .await
        {
            Ok(idle) => idle,
            Err(e) => {
                tracing::warn!(error = %e, "looking for idle executions failed");
                return;
            }
        };
        for stream in idle {
            let id = stream.uuid();
            self.states.remove(&id);
            if self.load(id).await.is_none() {
                continue;
            }
            let Some(state) = self.states.get(&id) else {
                continue;
            };
            let mut redo = state.pending_dispatches();
            redo.extend(running_builtins(state));
            if !redo.is_empty() {
                tracing::info!(execution = %id, effects = redo.len(), "taking over an idle execution");
            }
            // A parent waiting for its children is idle too: look at them again; an
            // execution queued for a concurrency slot claims again.
            redo.extend(running_children(state));
            self.concurrency(state);
            let tenant = state.tenant().to_owned();
            self.perform(id, &tenant, redo).await;
            self.mark(id);
        }
    }

    /// Loads every open execution: arms its timers, re-runs built-ins that were started
    /// and re-queues agent tasks that were dispatched but never finished, and advances it.
    pub(super) async fn recover(&mut self) -> Result<(), EngineError> {
        let open = self
            .parts
            .store
            .find_streams(&StreamQuery::OpenExecutions, usize::MAX)
            .await?;
        if !open.is_empty() {
            tracing::info!(executions = open.len(), "recovering open executions");
        }
        for stream in open {
            let id = stream.uuid();
            if self.load(id).await.is_some() {
                if let Some(state) = self.states.get(&id) {
                    let mut redo = state.pending_dispatches();
                    redo.extend(running_builtins(state));
                    redo.extend(running_children(state));
                    self.concurrency(state);
                    let tenant = state.tenant().to_owned();
                    self.perform(id, &tenant, redo).await;
                }
                self.mark(id);
            }
        }
        Ok(())
    }
}
