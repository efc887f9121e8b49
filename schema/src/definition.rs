//! The workflow definition as a client writes it: the body of `POST /api/v1/workflows`.
//!
//! These types describe the *shape* of a definition (serde, defaults, how it
//! round-trips) and, beside the fields they constrain, the rules one task must meet on
//! its own (what each kind needs, retry policy, `${...}` syntax). Whether a definition
//! is a valid workflow as a whole — ids, dependencies, cycles, which tasks a reference
//! may name — is decided by [`crate::validate`], the only way to get a
//! [`crate::validate::ValidatedWorkflow`]. Unknown fields are ignored here, because
//! these types also read stored events (`WorkflowCreated` carries the definition), which
//! must stay readable when a field comes or goes; request bodies are strict at the HTTP
//! edge instead (`conflux-http`'s JSON extractor refuses a field the route does not
//! define).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::reference::{for_each_reference, for_each_reference_in_str, TaskRef};
pub use crate::reference::{references, resolve, reveal, Reference};

/// A workflow definition, exactly as accepted by `POST /api/v1/workflows`. A field not
/// listed here is refused there (`400 invalid_request`, `details.field` names it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct WorkflowDefinition {
    /// Human name; workflows with the same name are versions of one another.
    #[schema(example = "order-fulfilment")]
    pub name: String,
    /// Free text for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form label of the orchestration pattern (e.g. `"custom"`); not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Agent roles this workflow expects, by role name.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentSpec>,
    /// What happens when a task fails for good.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Limit on the whole execution, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// How many executions may run at once per key, and what happens to the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<crate::concurrency::Concurrency>,
    /// The tasks, in any order; `depends_on` gives the graph.
    pub tasks: Vec<TaskSpec>,
}

/// What the workflow expects of the agents serving one role.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, ToSchema)]
pub struct AgentSpec {
    /// Capabilities an agent serving this role should declare.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// Failure policy of an execution.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The execution fails; completed tasks are left as they are.
    #[default]
    Fail,
    /// Saga: run the `compensate` task of every completed task, newest completion first.
    Compensate,
}

pub use crate::kind::map::FailurePolicy;
pub use crate::kind::switch::SwitchCase;
pub use crate::kind::{Approvers, ChildWorkflow, KindRules, Runs, TaskBody, TaskKind};

/// One task of a definition. `${input.x}` and `${tasks.<id>.output.x}` in `input`,
/// `http.url`, `http.headers` and `http.body` are resolved when it is scheduled.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct TaskSpec {
    /// Unique id within the workflow (validated as a [`crate::ids::TaskId`]).
    pub id: String,
    /// How the task is executed.
    pub kind: TaskKind,
    /// Ids of the tasks that must complete before this one starts.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Input, resolved when the task is scheduled.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[schema(value_type = Option<Object>)]
    pub input: Value,
    /// For `agent` tasks: the role whose agents execute it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_role: Option<String>,
    /// Start-to-close limit of one attempt, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Retry policy; absent means one attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Task run to undo this one when the execution compensates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensate: Option<CompensationSpec>,
    /// For `http` tasks: the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSpec>,
    /// For `sleep` tasks: how long, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_ms: Option<u64>,
    /// A CEL expression over `input` and the outputs of upstream tasks
    /// (`tasks.<id>.output`), evaluated once the task's dependencies are done: false →
    /// the task is `skipped` (see [`crate::condition`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "input.amount > 100")]
    pub when: Option<String>,
    /// How the task reacts to upstream tasks that were skipped or failed.
    #[serde(default, skip_serializing_if = "TriggerRule::is_default")]
    pub trigger_rule: TriggerRule,
    /// For `switch` tasks: the cases, in order; the first whose `when` holds is taken.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cases: Vec<SwitchCase>,
    /// For `switch` tasks: the tasks to run when no case holds (none when absent).
    #[serde(default, rename = "default", skip_serializing_if = "Option::is_none")]
    pub default_next: Option<Vec<String>>,
    /// For `map` tasks: the array to run the template for, one item per element — a
    /// reference such as `"${tasks.plan.output.steps}"`, or a literal array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Value>,
    /// For `map` tasks: what each item runs (the shape of a `compensate`); its input and
    /// request may use `${item}`, `${item.x}` and `${index}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<CompensationSpec>,
    /// For `map` tasks: most items running at once (unset: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    /// For `map` tasks: what an item that fails for good does to the map.
    #[serde(default, skip_serializing_if = "FailurePolicy::is_default")]
    pub failure_policy: FailurePolicy,
    /// For `signal` tasks: the name of the signal it waits for (default: its id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// For `approval` tasks: who must approve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Approvers>,
    /// For `workflow` tasks: the workflow the child execution runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<ChildWorkflow>,
    /// For `agent` tasks: capabilities the agent that takes it must all have (each 1 to
    /// 64 characters without `,`; at most 16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// For `agent` tasks: its priority, 1 to 10 (10 is leased first), over its
    /// execution's (`priority` on execute, default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 10)]
    pub priority: Option<u8>,
    /// For `agent`, `http` and `sleep` tasks: a rate limit each attempt waits for
    /// before it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<crate::rate_limit::RateLimit>,
    /// For `agent`, `http`, `sleep` and `noop` tasks: HTTP calls before each attempt
    /// starts (`pre`) and after it succeeds (`post`) that may veto it or annotate the
    /// task (see [`crate::task_hooks`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<crate::task_hooks::TaskHooks>,
}

/// How a task reacts to its upstream tasks once every one of them is done. A task's
/// upstream outcome is `success` (completed, and — after a `switch` — on the branch
/// taken), `skipped`, or `failed` (failed for good; the execution goes on past such a
/// failure only when a downstream task's rule may run after it: `all_done` or
/// `one_success`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    /// Every upstream task succeeded; otherwise the task is skipped.
    #[default]
    AllSuccess,
    /// Every upstream task is done, whatever its outcome.
    AllDone,
    /// At least one upstream task succeeded.
    OneSuccess,
    /// No upstream task failed (skipped ones are fine).
    NoneFailed,
}

impl TriggerRule {
    /// Whether this is the default (`all_success`), which the definition leaves out.
    pub fn is_default(&self) -> bool {
        *self == TriggerRule::AllSuccess
    }

    /// Whether a task with this rule may run after an upstream failure: a failure
    /// upstream of such a task does not end the execution.
    pub fn tolerates_failure(self) -> bool {
        matches!(self, TriggerRule::AllDone | TriggerRule::OneSuccess)
    }
}

impl TaskSpec {
    /// The retry policy in force: the task's own, or the default (one attempt).
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry.clone().unwrap_or_default()
    }

    /// The fields one attempt of the task itself runs.
    pub fn body(&self) -> TaskBody<'_> {
        TaskBody {
            cases: &self.cases,
            default_next: self.default_next.as_deref(),
            items: self.items.as_ref(),
            template: self.template.as_ref(),
            max_parallel: self.max_parallel,
            signal: self.signal.as_deref(),
            approvers: self.approvers.as_ref(),
            workflow: self.workflow.as_ref(),
            requires: &self.requires,
            priority: self.priority,
            rate_limit: self.rate_limit.as_ref(),
            ..TaskBody::common(
                self.kind,
                self.agent_role.as_deref(),
                &self.input,
                self.http.as_ref(),
                self.sleep_ms,
                self.retry.as_ref(),
                self.timeout_seconds,
            )
        }
    }
}

/// When and how often a failed attempt is retried.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
#[serde(default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    #[schema(default = 1, minimum = 1)]
    pub max_attempts: u32,
    /// Delay before the second attempt, in milliseconds.
    #[schema(default = 100)]
    pub initial_interval_ms: u64,
    /// Factor by which the delay grows after each failed attempt (at least 1.0).
    #[schema(default = 2.0, minimum = 1.0)]
    pub backoff_coefficient: f64,
    /// Upper bound of the delay, in milliseconds.
    #[schema(default = 10000)]
    pub max_interval_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            initial_interval_ms: 100,
            backoff_coefficient: 2.0,
            max_interval_ms: 10_000,
        }
    }
}

impl RetryPolicy {
    /// The delay before the next attempt, once attempt number `failed_attempt`
    /// (1-based) has failed: `initial_interval_ms * backoff_coefficient^(failed_attempt - 1)`,
    /// capped at `max_interval_ms`. Attempt 0 is treated as 1. Pure; never panics.
    pub fn delay_for_attempt(&self, failed_attempt: u32) -> Duration {
        let exponent = i32::try_from(failed_attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let cap = self.max_interval_ms as f64;
        let grown = self.initial_interval_ms as f64 * self.backoff_coefficient.powi(exponent);
        // `f64::min` ignores NaN, and `as u64` saturates: the result is always in range.
        let millis = grown.min(cap).max(0.0);
        Duration::from_millis(millis.round() as u64)
    }
}

/// The request an `http` task makes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct HttpSpec {
    /// HTTP method, `GET` unless given.
    #[serde(default = "default_method")]
    #[schema(default = "GET")]
    pub method: String,
    /// Absolute `http://` or `https://` URL; may contain `${...}` references.
    #[serde(default)]
    #[schema(required = true)]
    pub url: String,
    /// Request headers; values may contain `${...}` references.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// JSON body, resolved like a task input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

fn default_method() -> String {
    "GET".to_owned()
}

/// The task that undoes a completed task when an execution compensates.
///
/// Its references may name the task it compensates (whose output is then known) and
/// that task's upstream dependencies.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct CompensationSpec {
    /// How the compensation is executed.
    pub kind: TaskKind,
    /// For `agent` compensations: the role whose agents execute it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_role: Option<String>,
    /// Input, resolved like a task input.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[schema(value_type = Option<Object>)]
    pub input: Value,
    /// For `http` compensations: the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSpec>,
    /// For `sleep` compensations: how long, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_ms: Option<u64>,
    /// Retry policy; absent means one attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Start-to-close limit of one attempt, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// For `agent`, `http` and `sleep`: a rate limit each attempt waits for before it
    /// starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<crate::rate_limit::RateLimit>,
}

impl CompensationSpec {
    /// The retry policy in force: the compensation's own, or the default (one attempt).
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry.clone().unwrap_or_default()
    }

    /// The fields one attempt of the compensation runs.
    pub fn body(&self) -> TaskBody<'_> {
        let common = TaskBody::common(
            self.kind,
            self.agent_role.as_deref(),
            &self.input,
            self.http.as_ref(),
            self.sleep_ms,
            self.retry.as_ref(),
            self.timeout_seconds,
        );
        TaskBody {
            rate_limit: self.rate_limit.as_ref(),
            ..common
        }
    }
}

impl WorkflowDefinition {
    /// Every secret the tasks (and their compensations) reference with
    /// `${secrets.NAME}` in an input or a request, sorted, each once. References that
    /// do not parse are skipped (validation reports them).
    pub fn secret_names(&self) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        let mut add = |value: &Value| {
            if let Ok(found) = crate::reference::secret_names(value) {
                names.extend(found);
            }
        };
        for task in &self.tasks {
            let compensate = task.compensate.as_ref();
            let bodies = [
                (Some(&task.input), task.http.as_ref()),
                (
                    compensate.map(|c| &c.input),
                    compensate.and_then(|c| c.http.as_ref()),
                ),
            ];
            for (input, http) in bodies {
                input.into_iter().for_each(&mut add);
                let Some(http) = http else { continue };
                add(&Value::String(http.url.clone()));
                for value in http.headers.values() {
                    add(&Value::String(value.clone()));
                }
                if let Some(body) = &http.body {
                    add(body);
                }
            }
        }
        names
    }
}

impl TaskSpec {
    /// Checks what this task needs on its own (fields its kind requires, retry policy,
    /// timeout, `${...}` syntax, the same for its `compensate`) and returns its task
    /// references for the graph-level check. The error is a reason for `invalid_task`.
    pub(crate) fn check(&self) -> Result<Vec<TaskRef>, String> {
        let mut refs = Vec::new();
        check_body(&self.body(), "", false, &mut refs)?;
        if let Some(items) = &self.items {
            let mut collect = Collector::new(&mut refs, "", false);
            collect.value(items, "items", false)?;
        }
        if let Some(t) = &self.template {
            if !matches!(t.kind.runs(), Runs::Builtin | Runs::Agent) {
                return Err(format!("template.kind `{}` cannot be a map's item", t.kind));
            }
            let mut body = t.body();
            body.items = None;
            check_body_in(&body, "template.", false, true, &mut refs)?;
        }
        if let Some(when) = &self.when {
            condition_refs(when, "when", &mut refs)?;
        }
        if let Some(hooks) = &self.hooks {
            crate::task_hooks::check(hooks, self.kind)?;
        }
        for (i, case) in self.cases.iter().enumerate() {
            condition_refs(&case.when, &format!("cases[{i}].when"), &mut refs)?;
        }
        if let Some(c) = &self.compensate {
            if !c.kind.rules().compensates {
                return Err(format!(
                    "compensate.kind `{}` cannot compensate a task",
                    c.kind
                ));
            }
            check_body(&c.body(), "compensate.", true, &mut refs)?;
        }
        Ok(refs)
    }
}

fn check_body(
    body: &TaskBody<'_>,
    prefix: &str,
    allow_self: bool,
    refs: &mut Vec<TaskRef>,
) -> Result<(), String> {
    check_body_in(body, prefix, allow_self, false, refs)
}

/// [`check_body`]; `in_template`: whether `${item}` and `${index}` may be used (in a
/// map's template only).
fn check_body_in(
    body: &TaskBody<'_>,
    prefix: &str,
    allow_self: bool,
    in_template: bool,
    refs: &mut Vec<TaskRef>,
) -> Result<(), String> {
    (body.kind.rules().check)(body, prefix)?;
    if body.kind != TaskKind::Map
        && (body.items.is_some() || body.template.is_some() || body.max_parallel.is_some())
    {
        return Err(format!(
            "{prefix}items, template and max_parallel are only for map tasks"
        ));
    }
    if body.kind != TaskKind::Signal && body.signal.is_some() {
        return Err(format!("{prefix}signal is only for signal tasks"));
    }
    if body.kind != TaskKind::Approval && body.approvers.is_some() {
        return Err(format!("{prefix}approvers is only for approval tasks"));
    }
    if body.kind != TaskKind::Workflow && body.workflow.is_some() {
        return Err(format!("{prefix}workflow is only for workflow tasks"));
    }
    if body.kind != TaskKind::Agent && !body.requires.is_empty() {
        return Err(format!("{prefix}requires is only for agent tasks"));
    }
    if body.kind != TaskKind::Agent && body.priority.is_some() {
        return Err(format!("{prefix}priority is only for agent tasks"));
    }
    if let Some(limit) = body.rate_limit {
        if !matches!(
            body.kind,
            TaskKind::Agent | TaskKind::Http | TaskKind::Sleep
        ) {
            return Err(format!(
                "{prefix}rate_limit is only for agent, http and sleep tasks"
            ));
        }
        limit.check().map_err(|e| format!("{prefix}{e}"))?;
    }
    if body.kind != TaskKind::Switch && (!body.cases.is_empty() || body.default_next.is_some()) {
        return Err(format!(
            "{prefix}cases and default are only for switch tasks"
        ));
    }
    if let Some(retry) = body.retry {
        if retry.max_attempts == 0 {
            return Err(format!("{prefix}retry.max_attempts must be at least 1"));
        }
        if !retry.backoff_coefficient.is_finite() || retry.backoff_coefficient < 1.0 {
            return Err(format!(
                "{prefix}retry.backoff_coefficient must be a finite number of at least 1.0"
            ));
        }
    }
    if body.timeout_seconds == Some(0) {
        return Err(format!("{prefix}timeout_seconds must be at least 1"));
    }

    let mut collect = Collector::new(refs, prefix, allow_self);
    collect.in_template = in_template;
    // Secrets go where a request or an agent needs them, never where a value would be
    // recorded (a noop's input is its output).
    collect.value(body.input, "input", body.kind.rules().secrets_in_input)?;
    if let Some(http) = body.http {
        collect.text(&http.url, "http.url")?;
        for value in http.headers.values() {
            collect.text(value, "http.headers")?;
        }
        if let Some(b) = &http.body {
            collect.value(b, "http.body", true)?;
        }
    }
    Ok(())
}

/// Checks a CEL expression at `place` and keeps the tasks it names for the graph-level
/// check (they must be upstream, as `${tasks.<id>}` references must).
fn condition_refs(expression: &str, place: &str, refs: &mut Vec<TaskRef>) -> Result<(), String> {
    let named = crate::condition::check(expression).map_err(|e| format!("{place}: {e}"))?;
    refs.extend(named.into_iter().map(|task| TaskRef {
        task,
        place: place.to_owned(),
        allow_self: false,
    }));
    Ok(())
}

/// Gathers the task references of one task, checking the syntax of all references.
struct Collector<'a> {
    refs: &'a mut Vec<TaskRef>,
    prefix: &'a str,
    allow_self: bool,
    /// Whether `${item}` and `${index}` may be used (a map's template).
    in_template: bool,
}

/// What one field's references hold besides task references.
#[derive(Default)]
struct Found {
    /// The first secret named.
    secret: Option<String>,
    /// Whether `${item...}` or `${index}` was used.
    item: bool,
}

impl<'a> Collector<'a> {
    fn new(refs: &'a mut Vec<TaskRef>, prefix: &'a str, allow_self: bool) -> Self {
        Collector {
            refs,
            prefix,
            allow_self,
            in_template: false,
        }
    }

    /// The references of `value` at `place`; `secrets`: whether `${secrets.NAME}` may
    /// be used there.
    fn value(&mut self, value: &Value, place: &str, secrets: bool) -> Result<(), String> {
        let (refs, prefix, allow_self) = (&mut *self.refs, self.prefix, self.allow_self);
        let mut found = Found::default();
        for_each_reference(value, &mut |r| {
            push(refs, r, prefix, place, allow_self, &mut found)
        })
        .map_err(|e| format!("{prefix}{place}: {e}"))?;
        self.judge(found, place, secrets)
    }

    /// The references of an `http` text field (url, header value): secrets allowed.
    fn text(&mut self, text: &str, place: &str) -> Result<(), String> {
        let (refs, prefix, allow_self) = (&mut *self.refs, self.prefix, self.allow_self);
        let mut found = Found::default();
        for_each_reference_in_str(text, &mut |r| {
            push(refs, r, prefix, place, allow_self, &mut found)
        })
        .map_err(|e| format!("{prefix}{place}: {e}"))?;
        self.judge(found, place, true)
    }

    fn judge(&self, found: Found, place: &str, secrets: bool) -> Result<(), String> {
        let prefix = self.prefix;
        if found.item && !self.in_template {
            return Err(format!(
                "{prefix}{place}: `${{item}}` and `${{index}}` exist only in a map's template"
            ));
        }
        match found.secret {
            Some(name) if !secrets => Err(format!(
                "{prefix}{place} references secret `{name}`: secrets may only be used in the url, headers and body of an http task and in the input of an agent task"
            )),
            _ => Ok(()),
        }
    }
}

/// Keeps a task reference for the graph-level check, and notes secrets and items.
fn push(
    refs: &mut Vec<TaskRef>,
    reference: Reference,
    prefix: &str,
    place: &str,
    allow_self: bool,
    found: &mut Found,
) {
    match reference {
        Reference::TaskOutput { task, .. } => refs.push(TaskRef {
            task,
            place: format!("{prefix}{place}"),
            allow_self,
        }),
        Reference::Secret(name) => {
            found.secret.get_or_insert(name);
        }
        Reference::Item(_) | Reference::Index => found.item = true,
        Reference::Input(_) => {}
    }
}
