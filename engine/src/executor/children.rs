//! Child executions, the shell's side: starting the child a `workflow` task's attempt
//! runs, cancelling, pausing and resuming it with its parent, and telling the parent
//! when it ended.
//!
//! Every step is idempotent, so it may be repeated by recovery, a sweep or a second
//! engine: a child's id is a function of its parent attempt (a second start is a
//! conflict), a command to a child that already ended is refused and ignored, and a
//! result for a parent attempt that is no longer current is rejected as stale. What a
//! crash may lose is repeated: a parent whose child attempt is running re-performs
//! `StartChild` on recovery and on each sweep while idle, which starts a child that was
//! never started and reports one that ended unheard.

use conflux_schema::definition::ChildWorkflow;
use conflux_schema::{EventMetadata, ParentLink, StreamId};
use serde_json::Value;
use uuid::Uuid;

use super::Engine;
use crate::commands::{CommandError, ExecutionCommands, StartExtra};
use crate::execution::{
    child_execution_id, link_for, parent_command, Command, ExecutionState, Rejection, TaskRef,
};
use crate::secrets::unescape;

/// The default of [`super::EngineOptions::max_workflow_depth`].
pub const DEFAULT_MAX_WORKFLOW_DEPTH: u32 = 10;

/// Starts and steers child executions; cheap to clone (one per spawned step).
#[derive(Clone)]
pub(super) struct Children {
    commands: ExecutionCommands,
    max_depth: u32,
}

/// What is asked of a running child.
#[derive(Clone, Copy, Debug)]
pub(super) enum Steer {
    Pause,
    Resume,
}

impl Children {
    pub(super) fn new(commands: ExecutionCommands, max_depth: u32) -> Self {
        Self {
            commands,
            max_depth,
        }
    }

    /// Starts the child of `link`'s attempt in `tenant`, or finds it started. Returns
    /// the command its parent must record now, if any: a failure (no such workflow, too
    /// deep), or the result of a child that already ended. A store error returns None:
    /// the parent's next sweep tries again.
    async fn start(
        &self,
        tenant: &str,
        link: ParentLink,
        workflow: &ChildWorkflow,
        input: &Value,
    ) -> Option<(Uuid, Command)> {
        let parent = link.execution_id;
        let task = TaskRef::new(link.task_id.clone(), link.attempt);
        let child = child_execution_id(parent, &task);
        let fail = |error: String| {
            let command = Command::FailTask {
                task: task.clone(),
                error,
                retryable: false,
                usage: None,
            };
            Some((parent, command))
        };
        match self.ended(child).await {
            Ok(Some(found)) => return found,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(execution = %parent, child = %child, error = %e, "looking for a child execution failed; the next sweep tries again");
                return None;
            }
        }
        if link.depth > self.max_depth {
            return fail(format!(
                "starting workflow {workflow} would nest executions {} deep, deeper than the limit of {} (CONFLUX_MAX_WORKFLOW_DEPTH)",
                link.depth, self.max_depth
            ));
        }
        let catalog = self.commands.catalog();
        let workflow_id = match catalog
            .resolve(tenant, &workflow.name, workflow.version)
            .await
        {
            Ok(Some(id)) => id,
            Ok(None) => return fail(format!("workflow {workflow} does not exist in this tenant")),
            Err(e) => {
                tracing::warn!(execution = %parent, error = %e, "resolving a child's workflow failed; the next sweep tries again");
                return None;
            }
        };
        let input = match unescape(input) {
            Ok(input) => input,
            Err(e) => return fail(e.to_string()),
        };
        let metadata = EventMetadata {
            actor: Some("engine".into()),
            tenant_id: Some(tenant.to_owned()),
            correlation_id: Some(StreamId::execution(parent).to_string()),
            causation_id: Some(format!("{parent}/{}#{}", task.task, task.attempt)),
            request_id: None,
        };
        match self
            .commands
            .start_with(
                workflow_id,
                child,
                input,
                None,
                metadata,
                StartExtra {
                    parent: Some(link),
                    budget: None,
                    priority: None,
                },
            )
            .await
        {
            Ok(_) | Err(CommandError::Rejected(Rejection::AlreadyStarted)) => None,
            Err(CommandError::Store(e)) => {
                tracing::warn!(execution = %parent, child = %child, error = %e, "starting a child execution failed; the next sweep tries again");
                None
            }
            Err(e) => fail(format!("cannot start workflow {workflow}: {e}")),
        }
    }

    /// Whether child `child` exists: `Some(command)` if it does (the command its parent
    /// records if it ended), None if it was never started. Reads one event unless the
    /// child ended.
    async fn ended(&self, child: Uuid) -> Result<Option<Option<(Uuid, Command)>>, CommandError> {
        let store = self.commands.store();
        let stream = StreamId::execution(child);
        let version = store.stream_version(&stream).await?;
        if version == 0 {
            return Ok(None);
        }
        let last = store.read_stream(&stream, version - 1, 1).await?;
        if !last.first().is_some_and(|e| e.event.is_terminal()) {
            return Ok(Some(None));
        }
        let Some((state, _)) = self.commands.load(child).await? else {
            return Ok(Some(None));
        };
        Ok(Some(parent_command(&state)))
    }

    /// Records `command` (cancel, pause, resume) on child `child` of `tenant`; one that
    /// no longer applies (the child ended, or is already paused) is ignored.
    async fn tell(&self, tenant: &str, child: Uuid, command: Command) {
        let metadata = EventMetadata {
            actor: Some("engine".into()),
            tenant_id: Some(tenant.to_owned()),
            ..EventMetadata::default()
        };
        let name = command.name();
        match self
            .commands
            .record(child, metadata, |_, _| Ok(command.clone()))
            .await
        {
            Ok(_) | Err(CommandError::Rejected(_)) | Err(CommandError::NotFound(_)) => {}
            Err(e) => {
                tracing::warn!(child = %child, error = %e, "could not {name} a child execution")
            }
        }
    }
}

/// `StartChild` for every running child attempt of `state`, rebuilt from what its
/// dispatch recorded: what recovery and sweeps re-perform, so a child that was never
/// started starts, and one that ended unheard is reported.
pub(super) fn running_children(state: &ExecutionState) -> Vec<crate::execution::Effect> {
    state
        .running_children()
        .into_iter()
        .filter_map(|task| {
            let t = state.task(task.task.as_str())?;
            let workflow = state
                .workflow()
                .body_for(&task.task, false)?
                .workflow?
                .clone();
            Some(crate::execution::Effect::StartChild {
                input: t.input.clone().unwrap_or_default(),
                task,
                workflow,
            })
        })
        .collect()
}

impl Engine {
    /// Starts (or finds) the child of attempt `task` of `execution`, in the background;
    /// what its parent must record comes back as a result.
    pub(super) fn start_child(
        &self,
        execution: Uuid,
        tenant: &str,
        task: &TaskRef,
        workflow: ChildWorkflow,
        input: Value,
    ) {
        let Some(link) = self.states.get(&execution).and_then(|s| link_for(s, task)) else {
            return;
        };
        let children = self.children.clone();
        let results = self.results_tx.clone();
        let tenant = tenant.to_owned();
        tokio::spawn(async move {
            if let Some(found) = children.start(&tenant, link, &workflow, &input).await {
                let _ = results.send(found);
            }
        });
    }

    /// Cancels the child of attempt `task` of `execution`, in the background.
    pub(super) fn cancel_child(
        &self,
        execution: Uuid,
        tenant: &str,
        task: &TaskRef,
        reason: String,
    ) {
        let child = child_execution_id(execution, task);
        self.tell_child(
            tenant,
            child,
            Command::Cancel {
                reason: Some(reason),
            },
        );
    }

    /// Pauses or resumes every running child of `state`, in the background.
    pub(super) fn steer_children(&self, execution: Uuid, state: &ExecutionState, steer: Steer) {
        let command = match steer {
            Steer::Pause => Command::Pause,
            Steer::Resume => Command::Resume,
        };
        for task in state.running_children() {
            let child = child_execution_id(execution, &task);
            self.tell_child(state.tenant(), child, command.clone());
        }
    }

    fn tell_child(&self, tenant: &str, child: Uuid, command: Command) {
        let children = self.children.clone();
        let tenant = tenant.to_owned();
        tokio::spawn(async move { children.tell(&tenant, child, command).await });
    }

    /// `state` ended: if it is a child, its parent records the result; if it has a
    /// concurrency key, its slot goes to the next in line.
    pub(super) fn ended(&mut self, state: &ExecutionState) {
        if let Some((parent, command)) = parent_command(state) {
            self.on_result(parent, command);
        }
        self.concurrency(state);
    }

    /// Gives back the slot of `state` (ended) or claims one for it (queued), in the
    /// background: a failure is logged, and the next sweep or end tries again.
    pub(super) fn concurrency(&self, state: &ExecutionState) {
        if state.concurrency_key().is_none() {
            return;
        }
        let queued = state.status() == conflux_schema::status::ExecutionStatus::Queued;
        if !queued && !state.is_terminal() {
            return;
        }
        let slots = self.slots.clone();
        let state = state.clone();
        let metadata = EventMetadata {
            tenant_id: Some(state.tenant().to_owned()),
            ..self.metadata.clone()
        };
        tokio::spawn(async move {
            let done = if queued {
                slots.claim(&state, &metadata).await
            } else {
                slots.release(&state, &metadata).await
            };
            if let Err(e) = done {
                tracing::warn!(execution = ?state.execution_id(), error = %e, "a concurrency slot claim or release failed; the next sweep tries again");
            }
        });
    }
}
