//! Results and heartbeats by lease. The lease is found through the log (the partial
//! index on `TaskStarted.lease_id` names its execution), and the attempt it was issued
//! for is read from that `TaskStarted`, so a report of an attempt that is no longer
//! current is answered [`AgentError::StaleLease`] precisely and records nothing.

use conflux_schema::access::Role;
use serde_json::Value;
use uuid::Uuid;

use super::{AgentError, Agents, Caller};
use crate::access::Principal;
use crate::commands::{lease_of, CommandError};
use crate::execution::{Command, ExecutionState, Rejection, TaskRef};
use crate::store::StreamQuery;

/// What an agent reports about its lease.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// The attempt succeeded with `output`.
    Complete {
        /// The task's output.
        output: Value,
        /// What the attempt spent, if the agent said.
        usage: Option<conflux_schema::usage::Usage>,
    },
    /// The attempt failed; `retryable` lets the task's retry policy run it again.
    Fail {
        /// What went wrong, for humans.
        error: String,
        /// Whether another attempt may succeed.
        retryable: bool,
        /// What the attempt spent, if the agent said.
        usage: Option<conflux_schema::usage::Usage>,
    },
    /// The agent is still working: the attempt's deadline moves on.
    Heartbeat,
}

impl Report {
    /// What was recorded, as the API names it: `completed`, `failed` or `heartbeat`.
    pub fn recorded(&self) -> &'static str {
        match self {
            Report::Complete { .. } => "completed",
            Report::Fail { .. } => "failed",
            Report::Heartbeat => "heartbeat",
        }
    }

    fn command(&self, task: TaskRef) -> Command {
        match self {
            Report::Complete { output, usage } => Command::CompleteTask {
                task,
                output: output.clone(),
                usage: *usage,
            },
            Report::Fail {
                error,
                retryable,
                usage,
            } => Command::FailTask {
                task,
                error: error.clone(),
                retryable: *retryable,
                usage: *usage,
            },
            Report::Heartbeat => Command::Heartbeat { task },
        }
    }
}

/// A report that was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    /// The lease reported on.
    pub lease_id: Uuid,
    /// Its execution.
    pub execution_id: Uuid,
    /// The attempt the lease was issued for.
    pub task: TaskRef,
    /// What was recorded ([`Report::recorded`]).
    pub recorded: &'static str,
}

impl Agents {
    /// Records `report` against the attempt lease `lease_id` was issued for, in the
    /// caller's tenant. Refused, recording nothing, with [`AgentError::NotFound`] for an
    /// unknown lease or one of another tenant's execution, [`AgentError::StaleLease`] when
    /// the attempt is no longer current, [`AgentError::Forbidden`] when the caller's
    /// agent key does not serve the agent role of the lease's task, and
    /// [`AgentError::Unavailable`] while the bus is not this store's.
    pub async fn report(
        &self,
        lease_id: Uuid,
        report: Report,
        caller: &Caller,
    ) -> Result<Reported, AgentError> {
        self.serving()?;
        let stream = self
            .commands
            .store()
            .find_streams(&StreamQuery::Lease(lease_id), 1)
            .await?
            .pop()
            .ok_or_else(|| AgentError::NotFound(format!("lease {lease_id} not found")))?;
        let execution_id = stream.uuid();
        let mut attempt = None;
        let mut holder = None;
        let mut leased_at = None;
        let mut report = report;
        let mut cleaned = false;
        let mut hooked = false;
        let recorded = loop {
            // The input the attempt was given, when it references secrets and the report
            // has not been cleaned of their values yet (then nothing is recorded).
            let mut given_secrets = None;
            // A success of a task with a `post` hook, not yet put to it.
            let mut post_hook = None;
            let recorded = self
                .commands
                .record(execution_id, caller.metadata.clone(), |state, log| {
                    let lease = lease_of(log, lease_id)
                        .ok_or_else(|| CommandError::NotFound(format!("lease {lease_id}")))?;
                    holder = lease.agent;
                    leased_at = Some(lease.at);
                    let task = lease.task;
                    may_report(caller.principal.as_ref(), state, &task)?;
                    attempt = Some(task.clone());
                    if !cleaned && !matches!(report, Report::Heartbeat) {
                        if let Some(input) = input_with_secrets(log, &task) {
                            given_secrets = Some(input.clone());
                            return Err(CommandError::Forbidden("cleaned first".into()));
                        }
                    }
                    let hook = match (&report, task.compensation, hooked) {
                        (Report::Complete { .. }, false, false) => state
                            .workflow()
                            .hooks_of(&task.task)
                            .and_then(|h| h.post.clone()),
                        _ => None,
                    };
                    if let Some(hook) = hook {
                        if state
                            .task(task.task.as_str())
                            .is_some_and(|t| t.accepts_result(task.attempt))
                        {
                            post_hook = Some((hook, task));
                            return Err(CommandError::Forbidden("post hook first".into()));
                        }
                    }
                    Ok(report.command(task))
                })
                .await;
            if let Some((hook, task)) = post_hook {
                report = self
                    .post_hook((lease_id, execution_id), caller, &task, &hook, report)
                    .await?;
                hooked = true;
                continue;
            }
            let Some(input) = given_secrets else {
                break recorded;
            };
            // An agent that echoes a secret it was given must not put it in the log.
            report = self
                .cleaned(caller.metadata.tenant(), &input, report)
                .await?;
            cleaned = true;
        };
        // The lease's slot of its agent's capacity: freed by a result (or by learning
        // that the attempt is over), moved on by a heartbeat.
        if let (Some(agent), false) = (holder, matches!(recorded, Err(CommandError::NotFound(_)))) {
            let until = match (&report, &recorded) {
                (Report::Heartbeat, Ok(done)) => attempt
                    .as_ref()
                    .and_then(|t| match t.compensation {
                        true => done.state.compensation(t.task.as_str()),
                        false => done.state.task(t.task.as_str()),
                    })
                    .and_then(|t| t.deadline)
                    .map(Some),
                (Report::Heartbeat, Err(_)) | (_, _) => Some(None),
            };
            if let Some(until) = until {
                if let Err(e) = self.queue.free_lease(agent, lease_id, until).await {
                    tracing::warn!(agent = %agent, error = %e, "updating an agent's lease slots failed; they expire with the attempt");
                }
            }
        }
        match recorded {
            Ok(done) => {
                if let Report::Complete {
                    usage: Some(usage), ..
                }
                | Report::Fail {
                    usage: Some(usage), ..
                } = &report
                {
                    count_usage(&done.state, usage);
                }
            }
            Err(CommandError::Rejected(
                Rejection::StaleAttempt { .. } | Rejection::Terminal(_),
            )) => return Err(AgentError::StaleLease(lease_id)),
            // Another tenant's execution: answered exactly as an unknown lease (the
            // store's message would name the execution).
            Err(CommandError::NotFound(_)) => {
                return Err(AgentError::NotFound(format!("lease {lease_id} not found")))
            }
            Err(e) => return Err(e.into()),
        }
        let task =
            attempt.ok_or_else(|| AgentError::NotFound(format!("lease {lease_id} not found")))?;
        if let (Some(agent), Some(at), Report::Complete { .. } | Report::Fail { .. }) =
            (holder, leased_at, &report)
        {
            let ok = matches!(report, Report::Complete { .. });
            let took = (chrono::Utc::now() - at).to_std().unwrap_or_default();
            if let Err(e) = self.queue.agent_finished(agent, ok, took).await {
                tracing::warn!(agent = %agent, error = %e, "counting an agent's result failed");
            }
        }
        if let Report::Complete { .. } | Report::Fail { .. } = report {
            metrics::counter!("conflux_tasks_total", "kind" => "agent", "outcome" => report.recorded())
                .increment(1);
        }
        Ok(Reported {
            lease_id,
            execution_id,
            task,
            recorded: report.recorded(),
        })
    }
}

impl Agents {
    /// Puts an agent's success to its task's `post` hook: annotations are recorded
    /// first; a veto, or a hook that failed, turns the report into a failure (a veto's
    /// not retried).
    async fn post_hook(
        &self,
        (lease_id, execution_id): (Uuid, Uuid),
        caller: &Caller,
        task: &TaskRef,
        hook: &conflux_schema::task_hooks::HookCall,
        report: Report,
    ) -> Result<Report, AgentError> {
        let Report::Complete { output, usage } = &report else {
            return Ok(report);
        };
        let outcome = crate::task_hooks::call(
            &self.hooks,
            caller.metadata.tenant(),
            execution_id,
            task,
            conflux_schema::task_hooks::HookPhase::Post,
            hook,
            output,
        )
        .await;
        match outcome {
            crate::task_hooks::HookOutcome::Proceed(None) => Ok(report),
            crate::task_hooks::HookOutcome::Proceed(Some(annotate)) => {
                let recorded = self
                    .commands
                    .record(execution_id, caller.metadata.clone(), move |_, _| {
                        Ok(annotate.clone())
                    })
                    .await;
                match recorded {
                    Ok(_) => Ok(report),
                    Err(CommandError::Rejected(_)) => Err(AgentError::StaleLease(lease_id)),
                    Err(e) => Err(e.into()),
                }
            }
            crate::task_hooks::HookOutcome::Stop(Command::FailTask {
                error, retryable, ..
            }) => Ok(Report::Fail {
                error,
                retryable,
                usage: *usage,
            }),
            crate::task_hooks::HookOutcome::Stop(_) => Ok(report),
        }
    }
}

/// Adds reported `usage` to the per-tenant, per-workflow usage counters
/// (`conflux_usage_cost_micros_total` — the cost in millionths, counters being whole
/// numbers — and `conflux_usage_tokens_total{direction}`).
fn count_usage(state: &ExecutionState, usage: &conflux_schema::usage::Usage) {
    let tenant = state.tenant().to_owned();
    let workflow = state.workflow().name().as_str().to_owned();
    let micros = (usage.cost * 1e6).round() as u64;
    metrics::counter!("conflux_usage_cost_micros_total", "tenant" => tenant.clone(), "workflow" => workflow.clone())
        .increment(micros);
    for (direction, n) in [
        ("input", usage.input_tokens),
        ("output", usage.output_tokens),
    ] {
        metrics::counter!("conflux_usage_tokens_total", "tenant" => tenant.clone(), "workflow" => workflow.clone(), "direction" => direction)
            .increment(n);
    }
}

impl Agents {
    /// `report` with the values of the secrets `input` references put back as
    /// `${secrets.NAME}`.
    async fn cleaned(
        &self,
        tenant: &str,
        input: &Value,
        report: Report,
    ) -> Result<Report, AgentError> {
        let Some(secrets) = &self.secrets else {
            return Ok(report);
        };
        let redactor = secrets
            .redactor(tenant, input)
            .await
            .map_err(|e| AgentError::Unavailable(e.to_string()))?;
        Ok(match report {
            Report::Complete { output, usage } => Report::Complete {
                output: redactor.value(output),
                usage,
            },
            Report::Fail {
                error,
                retryable,
                usage,
            } => Report::Fail {
                error: redactor.text(&error),
                retryable,
                usage,
            },
            Report::Heartbeat => Report::Heartbeat,
        })
    }
}

/// The input attempt `task` was dispatched with, if it references a secret.
fn input_with_secrets<'a>(
    log: &'a [conflux_schema::EventEnvelope],
    task: &TaskRef,
) -> Option<&'a Value> {
    log.iter().rev().find_map(|e| match &e.event {
        conflux_schema::Event::TaskDispatched {
            task_id,
            attempt,
            compensation,
            input,
            ..
        } if *task_id == task.task
            && *attempt == task.attempt
            && *compensation == task.compensation =>
        {
            conflux_schema::reference::secret_names(input)
                .is_ok_and(|names| !names.is_empty())
                .then_some(input)
        }
        _ => None,
    })
}

/// An `agent` key reports only tasks of the agent roles on it: the attempt's role is
/// read from the definition in the state the command is decided on (no extra read).
fn may_report(
    who: Option<&Principal>,
    state: &ExecutionState,
    task: &TaskRef,
) -> Result<(), CommandError> {
    let Some(who) = who.filter(|w| w.role == Some(Role::Agent)) else {
        return Ok(());
    };
    let workflow = state.workflow();
    let spec = workflow.index_of(&task.task).and_then(|i| workflow.task(i));
    let role = spec.and_then(|s| match (&s.compensate, task.compensation) {
        (Some(c), true) => c.agent_role.as_deref(),
        (_, false) => s.agent_role.as_deref(),
        (None, true) => None,
    });
    match role {
        Some(role) if who.may_serve(role) => Ok(()),
        _ => Err(CommandError::Forbidden(
            "this agent key does not serve the agent role of this lease's task".into(),
        )),
    }
}
