//! Performing the effects of committed decisions: built-in runs (their outcomes come
//! back as commands), agent-queue tickets and timers. Effects run only after their
//! events committed, so a crash can repeat an effect but never perform one that the log
//! does not hold.

use std::time::Duration;

use conflux_schema::definition::{HttpSpec, Runs, TaskKind};
use serde_json::Value;
use uuid::Uuid;

use super::Engine;
use crate::execution::{Command, Effect, ExecutionState, TaskRef};
use crate::queue::Ticket;
use crate::runner::{BuiltinRunner, Outcome};
use crate::secrets::{unescape, RevealError, Secrets};
use crate::task_hooks::{self, HookOutcome};
use conflux_schema::task_hooks::{HookPhase, TaskHooks};

impl Engine {
    /// Performs effects of committed events.
    pub(super) async fn perform(&mut self, execution: Uuid, tenant: &str, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::ArmTimer(timer) => self.timers.arm(execution, timer),
                Effect::StartChild {
                    task,
                    workflow,
                    input,
                } => self.start_child(execution, tenant, &task, workflow, input),
                Effect::CancelChild { task, reason } => {
                    self.cancel_child(execution, tenant, &task, reason)
                }
                Effect::RunBuiltin {
                    task,
                    kind,
                    input,
                    http,
                    sleep_ms,
                    timeout,
                    rate_limit,
                    hooks,
                } => {
                    if !self.running.insert((execution, task.clone())) {
                        continue;
                    }
                    let runner = self.parts.runner.clone();
                    let secrets = self.parts.secrets.clone();
                    let queue = self.parts.queue.clone();
                    let tenant = tenant.to_owned();
                    let results = self.results_tx.clone();
                    tokio::spawn(async move {
                        // A rate-limited attempt starts once it has its token: the
                        // decision that dispatched it did not start it.
                        if let Some(limit) = &rate_limit {
                            let start =
                                match crate::rate::await_token(&*queue, &tenant, limit, &input)
                                    .await
                                {
                                    Ok(()) => Command::StartTask {
                                        task: task.clone(),
                                        agent_id: None,
                                        lease_id: None,
                                        routing: None,
                                    },
                                    Err(error) => Command::FailTask {
                                        task: task.clone(),
                                        error,
                                        retryable: false,
                                        usage: None,
                                    },
                                };
                            let failed = matches!(start, Command::FailTask { .. });
                            let _ = results.send((execution, start));
                            if failed {
                                return;
                            }
                        }
                        let pre = hooks.as_ref().and_then(|h| h.pre.as_ref());
                        let post = hooks.as_ref().and_then(|h| h.post.as_ref());
                        if let Some(hook) = pre {
                            let phase = HookPhase::Pre;
                            let outcome = task_hooks::call(
                                &runner, &tenant, execution, &task, phase, hook, &input,
                            )
                            .await;
                            if !relay_hook(&results, execution, outcome) {
                                return;
                            }
                        }
                        let builtin = Builtin {
                            kind,
                            input: &input,
                            http: http.as_ref(),
                            sleep_ms,
                            timeout,
                        };
                        let mut outcome = builtin.run(&runner, &secrets, &tenant).await;
                        if let (Some(hook), Outcome::Completed(output)) = (post, &outcome) {
                            let phase = HookPhase::Post;
                            let answer = task_hooks::call(
                                &runner, &tenant, execution, &task, phase, hook, output,
                            )
                            .await;
                            if let HookOutcome::Stop(Command::FailTask {
                                error, retryable, ..
                            }) = &answer
                            {
                                outcome = Outcome::Failed {
                                    error: error.clone(),
                                    retryable: *retryable,
                                };
                            } else {
                                relay_hook(&results, execution, answer);
                            }
                        }
                        let label = match &outcome {
                            Outcome::Completed(_) => "completed",
                            Outcome::Failed {
                                retryable: true, ..
                            } => "failed_retryable",
                            Outcome::Failed {
                                retryable: false, ..
                            } => "failed",
                        };
                        metrics::counter!("conflux_tasks_total", "kind" => kind.as_str(), "outcome" => label)
                            .increment(1);
                        let _ = results.send((execution, outcome_command(task, outcome)));
                    });
                }
                Effect::EnqueueAgentTask {
                    role,
                    task,
                    input,
                    rate_limit,
                    pre_hook,
                } => {
                    let queue = self.parts.queue.clone();
                    let codec = self.parts.codec.clone();
                    let Some(hook) = pre_hook else {
                        let (agent_role, requires) = conflux_schema::kind::split_queue(&role);
                        if !requires.is_empty() {
                            if let Some(reason) = self
                                .unroutable(tenant, agent_role, &requires, &task.task)
                                .await
                            {
                                // Recorded on the task, so its body says why it waits.
                                let note = Command::NoteUnroutable {
                                    task: task.clone(),
                                    reason,
                                };
                                let _ = self.results_tx.send((execution, note));
                            }
                        }
                        let ticket = Ticket {
                            rate_limit,
                            ..Ticket::for_attempt(execution, tenant, &task, role, input)
                        };
                        queue_ticket(&*queue, &codec, ticket).await;
                        continue;
                    };
                    // Its hook may take up to 30 s: called off the engine's loop, the
                    // ticket queued once it said go on.
                    let runner = self.parts.runner.clone();
                    let results = self.results_tx.clone();
                    let tenant = tenant.to_owned();
                    tokio::spawn(async move {
                        let phase = HookPhase::Pre;
                        let outcome = task_hooks::call(
                            &runner, &tenant, execution, &task, phase, &hook, &input,
                        )
                        .await;
                        if relay_hook(&results, execution, outcome) {
                            let ticket = Ticket {
                                rate_limit,
                                ..Ticket::for_attempt(execution, &tenant, &task, role, input)
                            };
                            queue_ticket(&*queue, &codec, ticket).await;
                        }
                    });
                }
            }
        }
    }
}

/// Puts an agent attempt's ticket on its queue: its input sealed (the queue — Redis —
/// holds it as stored), its queue noted when it is one of its own (a task that requires
/// capabilities, or of a priority other than the default, waits in a queue its role's
/// pollers with those capabilities read). A failure is logged; the attempt's deadline,
/// if any, retries it.
async fn queue_ticket(
    queue: &dyn crate::queue::TaskQueue,
    codec: &crate::crypto::PayloadCodec,
    mut ticket: Ticket,
) {
    let execution = ticket.execution_id;
    if let Err(e) = codec
        .seal_json(&ticket.tenant, execution, &mut ticket.input)
        .await
    {
        tracing::error!(execution = %execution, task = %ticket.task_id, error = %e, "sealing an agent task's input failed; its deadline will retry it");
        return;
    }
    let (agent_role, _) = conflux_schema::kind::split_queue(&ticket.role);
    if agent_role != ticket.role {
        if let Err(e) = queue
            .note_queue(&ticket.tenant, agent_role, &ticket.role)
            .await
        {
            tracing::warn!(execution = %execution, error = %e, "noting a task queue failed; the ticket may wait until it is noted again");
        }
    }
    if let Err(e) = queue.enqueue(&ticket).await {
        tracing::error!(execution = %execution, task = %ticket.task_id, error = %e, "enqueueing an agent task failed");
    }
}

impl Engine {
    /// Counts (`conflux_tasks_unroutable_total`) and logs a task that no registered
    /// agent of `tenant` could take — none serves `role` with every capability in
    /// `requires` — and says why. The task waits all the same (an agent may register
    /// later).
    async fn unroutable(
        &self,
        tenant: &str,
        role: &str,
        requires: &[&str],
        task: &conflux_schema::TaskId,
    ) -> Option<String> {
        let agents = match self.fleet.of_tenant(&*self.parts.store, tenant).await {
            Ok(agents) => agents,
            Err(e) => {
                tracing::debug!(error = %e, "reading the fleet failed");
                return None;
            }
        };
        let able = agents.iter().any(|a| {
            a.state == conflux_schema::api::AgentState::Active
                && a.roles.iter().any(|r| r == role)
                && requires
                    .iter()
                    .all(|c| a.capabilities.iter().any(|h| h == c))
        });
        if able {
            return None;
        }
        metrics::counter!("conflux_tasks_unroutable_total", "tenant" => tenant.to_owned(), "role" => role.to_owned())
            .increment(1);
        tracing::warn!(%tenant, %role, task = %task, requires = ?requires, "no registered agent can take this task: none of its role has every capability it requires");
        Some(format!(
            "no registered agent of role {role:?} has every capability it requires ({})",
            requires.join(", ")
        ))
    }
}

/// One built-in attempt as dispatch recorded it: its input and request are templates
/// (`${secrets.NAME}` kept, `${` escaped).
struct Builtin<'a> {
    kind: TaskKind,
    input: &'a Value,
    http: Option<&'a HttpSpec>,
    sleep_ms: Option<u64>,
    timeout: Option<Duration>,
}

impl Builtin<'_> {
    /// Reads the templates back — an `http` request with the tenant's secret values
    /// put in, in memory only — runs the attempt, and takes every value put in back
    /// out of its outcome (an error quoting the request, a response echoing a header).
    /// A secret that no longer exists fails the attempt for good, naming it.
    async fn run(&self, runner: &BuiltinRunner, secrets: &Secrets, tenant: &str) -> Outcome {
        let failed = |e: RevealError| Outcome::Failed {
            retryable: e.retryable(),
            error: e.to_string(),
        };
        let input = match unescape(self.input) {
            Ok(input) => input,
            Err(e) => return failed(e),
        };
        let Some(template) = self.http else {
            return runner
                .run(self.kind, &input, None, self.sleep_ms, self.timeout)
                .await;
        };
        let (sent, redactor) = match secrets.reveal_http(tenant, template).await {
            Ok(revealed) => revealed,
            Err(e) => return failed(e),
        };
        let outcome = runner
            .run_shown(
                tenant,
                self.kind,
                &input,
                Some((&sent, template)),
                self.sleep_ms,
                self.timeout,
            )
            .await;
        match outcome {
            Outcome::Completed(output) => Outcome::Completed(redactor.value(output)),
            Outcome::Failed { error, retryable } => Outcome::Failed {
                error: redactor.text(&error),
                retryable,
            },
        }
    }
}

/// Sends what a hook's answer records; returns whether the attempt goes on.
fn relay_hook(
    results: &tokio::sync::mpsc::UnboundedSender<(Uuid, Command)>,
    execution: Uuid,
    outcome: HookOutcome,
) -> bool {
    match outcome {
        HookOutcome::Proceed(annotate) => {
            if let Some(annotate) = annotate {
                let _ = results.send((execution, annotate));
            }
            true
        }
        HookOutcome::Stop(fail) => {
            let _ = results.send((execution, fail));
            false
        }
    }
}

/// Built-in attempts that started but have no result: their runner died with the
/// process that ran them, so recovery runs them again (built-ins are at-least-once).
pub(super) fn running_builtins(state: &ExecutionState) -> Vec<Effect> {
    use crate::execution::TaskStatus;
    let mut effects = Vec::new();
    let workflow = state.workflow();
    let items = state.items().map(|(_, id)| id);
    for id in workflow.task_ids().iter().chain(items) {
        let tracks = [
            (state.task(id.as_str()), false),
            (state.compensation(id.as_str()), true),
        ]
        .map(|(track, compensation)| (track, compensation, workflow.body_for(id, compensation)));
        for (track, compensation, body) in tracks {
            let (Some(t), Some(body)) = (track, body) else {
                continue;
            };
            if t.status != TaskStatus::Running || body.kind.runs() != Runs::Builtin {
                continue;
            }
            effects.push(Effect::RunBuiltin {
                task: TaskRef {
                    task: id.clone(),
                    attempt: t.attempt,
                    compensation,
                },
                kind: body.kind,
                input: t.input.clone().unwrap_or_default(),
                http: t.http.clone(),
                sleep_ms: body.sleep_ms,
                timeout: body.timeout(),
                // Running already: it took its token before it started.
                rate_limit: None,
                hooks: if compensation {
                    None
                } else {
                    // Its `pre` hook said go on already, if it has one.
                    workflow.hooks_of(id).map(|h| TaskHooks {
                        pre: h
                            .pre
                            .clone()
                            .filter(|_| t.pre_hook_passed != Some(t.attempt)),
                        post: h.post.clone(),
                    })
                },
            });
        }
    }
    effects
}

/// The command that records a built-in's outcome. The event store cannot hold a NUL
/// character (Postgres `jsonb` refuses it, and the API refuses it from clients): an
/// output holding one fails the attempt for good, and one in an error message is
/// replaced, so that every outcome can be recorded, the same way in every mode.
fn outcome_command(task: TaskRef, outcome: Outcome) -> Command {
    match outcome {
        Outcome::Completed(output) if holds_nul(&output) => Command::FailTask {
            task,
            error: "the output holds a NUL character (\\u0000), which cannot be recorded".into(),
            retryable: false,
            usage: None,
        },
        Outcome::Completed(output) => Command::CompleteTask {
            task,
            output,
            usage: None,
        },
        Outcome::Failed { error, retryable } => Command::FailTask {
            task,
            error: error.replace('\0', "\u{FFFD}"),
            retryable,
            usage: None,
        },
    }
}

/// Whether a string or a key anywhere in `value` holds a NUL character.
fn holds_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}
