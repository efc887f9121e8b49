//! The pure execution core, tested without a server: given events, when a command,
//! then exactly these events (or this rejection). A property test then plays engine
//! and runners over random workflows and checks the invariants on the whole log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use conflux_engine::execution::{
    decide, effects_of, evolve, Command, Decision, Effect, ExecutionState, ExecutionStatus,
    Rejection, TaskRef, TaskStatus, Timer,
};
use conflux_schema::definition::{HttpSpec, TaskKind, WorkflowDefinition};
use conflux_schema::event::SCHEMA_VERSION;
use conflux_schema::validate::{validate, Limits, ValidatedWorkflow};
use conflux_schema::{Event, EventEnvelope, EventMetadata, StreamId, StreamType, TaskId};
use proptest::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

#[path = "execution/budget.rs"]
mod budget;
#[path = "execution/children.rs"]
mod children;
#[path = "execution/concurrency.rs"]
mod concurrency;
#[path = "execution/control_flow.rs"]
mod control_flow;
#[path = "execution/dead_letters.rs"]
mod dead_letters;
#[path = "execution/map.rs"]
mod map;

// ---------------------------------------------------------------------------------
// The harness: given(events).when(command).then_events(expected), written once.
// ---------------------------------------------------------------------------------

const EXECUTION: Uuid = Uuid::from_u128(0xE1);
const WORKFLOW: Uuid = Uuid::from_u128(0x1F);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid time")
}

fn ms(n: i64) -> TimeDelta {
    TimeDelta::milliseconds(n)
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

fn workflow(definition: Value) -> Arc<ValidatedWorkflow> {
    let def: WorkflowDefinition = serde_json::from_value(definition).expect("a definition");
    Arc::new(validate(def, &Limits::default()).expect("a valid workflow"))
}

fn id(raw: &str) -> TaskId {
    TaskId::parse(raw).expect("a task id")
}

fn envelope(version: u64, event: Event, at: DateTime<Utc>) -> EventEnvelope {
    EventEnvelope {
        event_id: Uuid::now_v7(),
        stream_id: StreamId::execution(EXECUTION),
        stream_type: StreamType::Execution,
        version,
        position: version,
        event,
        schema_version: SCHEMA_VERSION,
        metadata: EventMetadata::default(),
        recorded_at: at,
        hash: String::new(),
    }
}

/// An execution and its log, at a point in (test) time.
struct Given {
    state: ExecutionState,
    log: Vec<EventEnvelope>,
    now: DateTime<Utc>,
}

fn given(wf: &Arc<ValidatedWorkflow>, events: impl IntoIterator<Item = Event>) -> Given {
    let g = Given {
        state: ExecutionState::new(wf.clone()),
        log: Vec::new(),
        now: t0(),
    };
    g.apply(events)
}

impl Given {
    /// Moves the clock to `t0 + offset`.
    fn at(mut self, offset: TimeDelta) -> Self {
        self.now = t0() + offset;
        self
    }

    /// Commits `events` at the current time.
    fn apply(mut self, events: impl IntoIterator<Item = Event>) -> Self {
        for event in events {
            let env = envelope(self.state.version() + 1, event, self.now);
            self.state = evolve(self.state, &env);
            self.log.push(env);
        }
        self
    }

    fn when(self, command: Command) -> When {
        let result = decide(&self.state, command, self.now);
        When {
            given: self,
            result,
        }
    }

    /// Runs `Advance`, commits its events, and checks that a second `Advance` is empty.
    fn advanced(self) -> Self {
        let decision = decide(&self.state, Command::Advance, self.now).expect("advance");
        let g = self.apply(decision.events);
        let again = decide(&g.state, Command::Advance, g.now).expect("advance");
        assert_eq!(again.events, [], "Advance is not idempotent");
        g
    }

    fn task(&self, raw: &str) -> &conflux_engine::execution::TaskState {
        self.state.task(raw).expect("a task of the workflow")
    }
}

struct When {
    given: Given,
    result: Result<Decision, Rejection>,
}

impl When {
    fn decision(&self) -> &Decision {
        match &self.result {
            Ok(d) => d,
            Err(e) => panic!("expected a decision, got the rejection {e:?}"),
        }
    }

    /// Asserts the decision's events and commits them.
    fn then_events(self, expected: impl IntoIterator<Item = Event>) -> Given {
        let expected: Vec<Event> = expected.into_iter().collect();
        assert_eq!(self.decision().events, expected);
        let events = self.decision().events.clone();
        self.given.apply(events)
    }

    fn then_effects(self, expected: impl IntoIterator<Item = Effect>) -> Self {
        let expected: Vec<Effect> = expected.into_iter().collect();
        assert_eq!(self.decision().effects, expected);
        self
    }

    /// Commits the decision, whatever it is.
    fn committed(self) -> Given {
        let events = self.decision().events.clone();
        self.given.apply(events)
    }

    fn then_nothing(self) -> Given {
        self.then_events([])
    }

    fn then_rejected(self, expected: Rejection) -> Given {
        assert_eq!(self.result, Err(expected));
        self.given
    }
}

// Event builders, so expectations read like the log.

fn started(input: Value) -> Event {
    Event::ExecutionStarted {
        execution_id: EXECUTION,
        workflow_id: WORKFLOW,
        input,
        idempotency_key: None,
        parent: None,
    }
}

fn scheduled(task: &str, attempt: u32) -> Event {
    Event::TaskScheduled {
        task_id: id(task),
        attempt,
        compensation: false,
    }
}

fn dispatched(task: &str, attempt: u32, input: Value) -> Event {
    Event::TaskDispatched {
        task_id: id(task),
        attempt,
        input,
        deadline: None,
        http: None,
        compensation: false,
        priority: None,
    }
}

fn task_started(task: &str, attempt: u32, deadline: Option<DateTime<Utc>>) -> Event {
    Event::TaskStarted {
        task_id: id(task),
        attempt,
        agent_id: None,
        lease_id: None,
        deadline,
        compensation: false,
        routing: None,
    }
}

fn completed(task: &str, attempt: u32, output: Value) -> Event {
    Event::TaskCompleted {
        task_id: id(task),
        attempt,
        output,
    }
}

fn failed(task: &str, attempt: u32, error: &str, retryable: bool) -> Event {
    Event::TaskFailed {
        task_id: id(task),
        attempt,
        error: error.into(),
        retryable,
        compensation: false,
    }
}

fn retry(task: &str, attempt: u32, due_at: DateTime<Utc>) -> Event {
    Event::TaskRetryScheduled {
        task_id: id(task),
        attempt,
        due_at,
        compensation: false,
    }
}

fn cancelled(task: &str, attempt: u32) -> Event {
    Event::TaskCancelled {
        task_id: id(task),
        attempt,
        compensation: false,
    }
}

fn skipped(task: &str, reason: &str) -> Event {
    Event::TaskSkipped {
        task_id: id(task),
        reason: reason.into(),
    }
}

const SKIPPED_ON_FAILURE: &str = "the execution failed before the task could run";

/// Scheduled and dispatched with a `null` input (the usual for noop tasks here).
fn dead_lettered(task: &str, attempt: u32, error: &str) -> Event {
    Event::TaskDeadLettered {
        task_id: id(task),
        dead_letter_id: conflux_engine::execution::dead_letter_id(EXECUTION, attempt, &id(task)),
        attempts: attempt,
        error: error.into(),
    }
}

fn run(task: &str, attempt: u32) -> [Event; 2] {
    [
        scheduled(task, attempt),
        dispatched(task, attempt, Value::Null),
    ]
}

fn r(task: &str, attempt: u32) -> TaskRef {
    TaskRef::new(id(task), attempt)
}

fn complete(task: &str, attempt: u32, output: Value) -> Command {
    Command::CompleteTask {
        task: r(task, attempt),
        output,
        usage: None,
    }
}

fn fail(task: &str, attempt: u32, error: &str, retryable: bool) -> Command {
    Command::FailTask {
        task: r(task, attempt),
        error: error.into(),
        retryable,
        usage: None,
    }
}

fn start_task(task: &str, attempt: u32) -> Command {
    Command::StartTask {
        task: r(task, attempt),
        agent_id: None,
        lease_id: None,
        routing: None,
    }
}

fn stale(task: &str, attempt: u32, current: u32) -> Rejection {
    Rejection::StaleAttempt {
        task: id(task),
        attempt,
        current,
        compensation: false,
    }
}

fn chain() -> Arc<ValidatedWorkflow> {
    workflow(json!({"name": "chain", "tasks": [
        {"id": "a", "kind": "noop"},
        {"id": "b", "kind": "noop", "depends_on": ["a"]},
        {"id": "c", "kind": "noop", "depends_on": ["b"]}
    ]}))
}

fn diamond() -> Arc<ValidatedWorkflow> {
    workflow(json!({"name": "diamond", "tasks": [
        {"id": "a", "kind": "noop"},
        {"id": "b", "kind": "noop", "depends_on": ["a"]},
        {"id": "c", "kind": "noop", "depends_on": ["a"]},
        {"id": "d", "kind": "noop", "depends_on": ["b", "c"]}
    ]}))
}

// ---------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------

#[test]
fn start_is_only_accepted_once() {
    let wf = chain();
    let start = Command::Start {
        execution_id: EXECUTION,
        workflow_id: WORKFLOW,
        input: json!({"x": 1}),
        idempotency_key: Some("k".into()),
        parent: None,
        budget: None,
        priority: None,
        concurrency_key: None,
    };
    let g = given(&wf, [])
        .when(Command::Advance)
        .then_nothing()
        .when(Command::Pause)
        .then_rejected(Rejection::NotStarted)
        .when(complete("a", 1, json!(null)))
        .then_rejected(Rejection::NotStarted)
        .when(start.clone())
        .then_effects([])
        .then_events([Event::ExecutionStarted {
            execution_id: EXECUTION,
            workflow_id: WORKFLOW,
            input: json!({"x": 1}),
            idempotency_key: Some("k".into()),
            parent: None,
        }]);
    assert_eq!(g.state.status(), ExecutionStatus::Running);
    assert_eq!(g.state.idempotency_key(), Some("k"));
    assert_eq!(g.state.started_at(), Some(t0()));
    g.when(start).then_rejected(Rejection::AlreadyStarted);
}

#[test]
fn a_chain_runs_task_after_task_and_completes_with_the_sink_outputs() {
    let wf = chain();
    let g = given(&wf, [started(json!({}))])
        .when(Command::Advance)
        .then_effects([Effect::RunBuiltin {
            task: r("a", 1),
            kind: TaskKind::Noop,
            input: Value::Null,
            http: None,
            sleep_ms: None,
            timeout: None,
            rate_limit: None,
            hooks: None,
        }])
        .then_events(run("a", 1))
        .when(Command::Advance)
        .then_nothing()
        .when(start_task("a", 1))
        .then_events([task_started("a", 1, None)])
        .when(complete("a", 1, json!({"n": 1})))
        .then_events([completed("a", 1, json!({"n": 1}))])
        .when(Command::Advance)
        .then_events(run("b", 1))
        .when(complete("b", 1, json!(2)))
        .then_events([completed("b", 1, json!(2))])
        .when(Command::Advance)
        .then_events(run("c", 1))
        .when(complete("c", 1, json!("done")))
        .then_events([completed("c", 1, json!("done"))])
        .when(Command::Advance)
        .then_events([Event::ExecutionCompleted {
            output: json!({"c": "done"}),
        }])
        .when(Command::Advance)
        .then_nothing();
    assert_eq!(g.state.status(), ExecutionStatus::Completed);
    assert_eq!(g.state.output(), Some(&json!({"c": "done"})));
    assert_eq!(
        g.state
            .completion_order()
            .map(TaskId::as_str)
            .collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    g.when(Command::Cancel { reason: None })
        .then_rejected(Rejection::Terminal(ExecutionStatus::Completed))
        .when(Command::Resume)
        .then_rejected(Rejection::Terminal(ExecutionStatus::Completed));
}

#[test]
fn a_diamond_fans_out_and_joins_only_after_every_branch() {
    let wf = diamond();
    let g = given(&wf, [started(json!({}))])
        .advanced()
        .when(complete("a", 1, json!(1)))
        .then_events([completed("a", 1, json!(1))])
        .when(Command::Advance)
        .then_events([run("b", 1), run("c", 1)].concat())
        .when(complete("c", 1, json!(3)))
        .then_events([completed("c", 1, json!(3))])
        .when(Command::Advance)
        .then_nothing();
    assert_eq!(g.task("d").status, TaskStatus::Pending);
    assert_eq!(g.state.ready_tasks().count(), 0);
    let g = g
        .when(complete("b", 1, json!(2)))
        .then_events([completed("b", 1, json!(2))]);
    assert_eq!(
        g.state
            .ready_tasks()
            .map(TaskId::as_str)
            .collect::<Vec<_>>(),
        ["d"]
    );
    g.when(Command::Advance).then_events(run("d", 1));
}

#[test]
fn references_resolve_at_dispatch_and_keep_json_types() {
    let wf = workflow(json!({"name": "data", "tasks": [
        {"id": "a", "kind": "agent", "agent_role": "picker",
         "input": {"order": "${input.order_id}", "label": "order ${input.order_id} for ${input.who}",
                   "items": "${input.items}", "literal": "$${input.x}"}},
        {"id": "b", "kind": "http", "depends_on": ["a"],
         "http": {"method": "POST", "url": "http://127.0.0.1:9000/charge/${tasks.a.output.reservation}",
                  "headers": {"x-order": "${input.order_id}"},
                  "body": {"amount": "${input.amount}", "reservation": "${tasks.a.output}"}},
         "input": "${tasks.a.output.reservation}"}
    ]}));
    let input = json!({"order_id": 42, "who": "ann", "items": [1, 2], "amount": 9.5});
    // A template: the `$${` escape is kept (the agent's poll answer reads it back).
    let a_input = json!({"order": 42, "label": "order 42 for ann", "items": [1, 2], "literal": "$${input.x}"});
    let g = given(&wf, [started(input)])
        .when(Command::Advance)
        .then_effects([Effect::EnqueueAgentTask {
            role: "picker".into(),
            task: r("a", 1),
            input: a_input.clone(),
            rate_limit: None,
            pre_hook: None,
        }])
        .then_events([scheduled("a", 1), dispatched("a", 1, a_input.clone())]);
    assert_eq!(g.task("a").input, Some(a_input));
    let resolved = HttpSpec {
        method: "POST".into(),
        url: "http://127.0.0.1:9000/charge/7".into(),
        headers: [("x-order".to_owned(), "42".to_owned())].into(),
        body: Some(json!({"amount": 9.5, "reservation": {"reservation": 7}})),
    };
    g.apply([completed("a", 1, json!({"reservation": 7}))])
        .when(Command::Advance)
        .then_effects([Effect::RunBuiltin {
            task: r("b", 1),
            kind: TaskKind::Http,
            input: json!(7),
            http: Some(resolved.clone()),
            sleep_ms: None,
            timeout: None,
            rate_limit: None,
            hooks: None,
        }])
        .then_events([
            scheduled("b", 1),
            Event::TaskDispatched {
                task_id: id("b"),
                attempt: 1,
                input: json!(7),
                deadline: None,
                http: Some(resolved),
                compensation: false,
                priority: None,
            },
        ]);
}

fn retrying_workflow(max_attempts: u32, timeout: Option<u64>) -> Arc<ValidatedWorkflow> {
    workflow(json!({"name": "retry", "tasks": [
        {"id": "a", "kind": "agent", "agent_role": "w", "timeout_seconds": timeout,
         "retry": {"max_attempts": max_attempts, "initial_interval_ms": 100,
                   "backoff_coefficient": 2.0, "max_interval_ms": 150}},
        {"id": "b", "kind": "noop", "depends_on": ["a"]}
    ]}))
}

#[test]
fn retryable_failures_retry_with_backoff_until_attempts_run_out() {
    let wf = retrying_workflow(3, None);
    let due2 = t0() + ms(1000 + 100);
    let g = given(&wf, [started(json!({}))])
        .advanced()
        .at(secs(1))
        .when(fail("a", 1, "flaky", true))
        .then_events([failed("a", 1, "flaky", true)])
        .when(Command::Advance)
        .then_effects([Effect::ArmTimer(Timer::Retry {
            task: r("a", 2),
            due_at: due2,
        })])
        .then_events([retry("a", 2, due2)]);
    assert_eq!(g.task("a").status, TaskStatus::Retrying);
    assert_eq!((g.task("a").attempt, g.task("a").attempts), (2, 1));
    let timer = Command::TimerFired(Timer::Retry {
        task: r("a", 2),
        due_at: due2,
    });
    // Too early: nothing. On time: the planned attempt runs.
    let g = g
        .at(ms(1050))
        .when(timer.clone())
        .then_nothing()
        .when(Command::Advance)
        .then_nothing()
        .at(ms(1100))
        .when(timer.clone())
        .then_events([scheduled("a", 2), dispatched("a", 2, json!(null))])
        .when(timer)
        .then_nothing()
        .when(complete("a", 1, json!("late")))
        .then_rejected(stale("a", 1, 2))
        .at(secs(2))
        .when(fail("a", 2, "flaky", true))
        .then_events([failed("a", 2, "flaky", true)])
        .when(Command::Advance)
        // 100 * 2 = 200 ms, capped at max_interval_ms = 150.
        .then_events([retry("a", 3, t0() + ms(2150))])
        .at(ms(2150))
        .advanced()
        .when(fail("a", 3, "flaky", true))
        .then_events([failed("a", 3, "flaky", true)])
        .when(Command::Advance)
        .then_events([
            skipped("b", SKIPPED_ON_FAILURE),
            dead_lettered("a", 3, "flaky"),
            Event::ExecutionFailed {
                error: "task `a` failed: flaky".into(),
                failed_task: Some(id("a")),
            },
        ]);
    assert_eq!(g.state.status(), ExecutionStatus::Failed);
    assert_eq!(g.task("a").attempts, 3);
    assert_eq!(g.task("b").status, TaskStatus::Skipped);
}

#[test]
fn a_non_retryable_failure_fails_the_task_for_good() {
    let wf = retrying_workflow(3, None);
    let g = given(&wf, [started(json!({}))])
        .advanced()
        .when(fail("a", 1, "bad input", false))
        .then_events([failed("a", 1, "bad input", false)])
        .when(Command::Advance)
        .then_events([
            skipped("b", SKIPPED_ON_FAILURE),
            dead_lettered("a", 1, "bad input"),
            Event::ExecutionFailed {
                error: "task `a` failed: bad input".into(),
                failed_task: Some(id("a")),
            },
        ]);
    assert_eq!(g.state.status(), ExecutionStatus::Failed);
    assert_eq!(g.state.error(), Some("task `a` failed: bad input"));
    g.when(fail("a", 1, "again", false))
        .then_rejected(stale("a", 1, 1));
}

#[test]
fn an_attempt_that_passes_its_deadline_times_out_and_is_retried() {
    let wf = retrying_workflow(2, Some(30));
    let deadline = t0() + secs(31);
    let g = given(&wf, [started(json!({}))])
        .advanced()
        .at(secs(1))
        .when(Command::StartTask {
            task: r("a", 1),
            agent_id: Some(Uuid::from_u128(7)),
            lease_id: Some(Uuid::from_u128(8)),
            routing: None,
        })
        .then_effects([Effect::ArmTimer(Timer::AttemptDeadline {
            task: r("a", 1),
            deadline,
        })])
        .then_events([Event::TaskStarted {
            task_id: id("a"),
            attempt: 1,
            agent_id: Some(Uuid::from_u128(7)),
            lease_id: Some(Uuid::from_u128(8)),
            deadline: Some(deadline),
            compensation: false,
            routing: None,
        }]);
    assert_eq!(g.task("a").deadline, Some(deadline));
    assert_eq!(
        g.state.pending_timers(),
        [Timer::AttemptDeadline {
            task: r("a", 1),
            deadline
        }]
    );
    let fire = Command::TimerFired(Timer::AttemptDeadline {
        task: r("a", 1),
        deadline,
    });
    let g = g
        .when(start_task("a", 1))
        .then_rejected(stale("a", 1, 1))
        .at(secs(30))
        .when(fire.clone())
        .then_nothing()
        .at(secs(31))
        .when(fire.clone())
        .then_events([Event::TaskTimedOut {
            task_id: id("a"),
            attempt: 1,
            compensation: false,
        }])
        .when(fire)
        .then_nothing()
        .when(Command::Advance)
        .then_events([retry("a", 2, deadline + ms(100))]);
    assert_eq!(g.task("a").error.as_deref(), Some("attempt 1 timed out"));
    // The agent of the timed-out attempt reports late: fenced.
    g.when(complete("a", 1, json!(1)))
        .then_rejected(stale("a", 1, 2))
        .when(Command::Heartbeat { task: r("a", 1) })
        .then_rejected(stale("a", 1, 2))
        .when(complete("a", 3, json!(1)))
        .then_rejected(stale("a", 3, 2))
        .when(complete("zz", 1, json!(1)))
        .then_rejected(Rejection::UnknownTask("zz".into()));
}

#[test]
fn a_result_is_accepted_once() {
    let wf = chain();
    given(&wf, [started(json!({}))])
        .advanced()
        .when(complete("a", 1, json!(1)))
        .then_events([completed("a", 1, json!(1))])
        .when(complete("a", 1, json!(1)))
        .then_rejected(stale("a", 1, 1))
        .when(fail("a", 1, "x", true))
        .then_rejected(stale("a", 1, 1))
        .when(complete("b", 1, json!(1)))
        .then_rejected(stale("b", 1, 0));
}

#[test]
fn a_heartbeat_moves_the_deadline_and_the_old_timer_then_does_nothing() {
    let wf = retrying_workflow(1, Some(30));
    let g = given(&wf, [started(json!({}))])
        .advanced()
        .apply([task_started("a", 1, Some(t0() + secs(30)))])
        .at(secs(20))
        .when(Command::Heartbeat { task: r("a", 1) })
        .then_effects([Effect::ArmTimer(Timer::AttemptDeadline {
            task: r("a", 1),
            deadline: t0() + secs(50),
        })])
        .then_events([Event::TaskHeartbeat {
            task_id: id("a"),
            attempt: 1,
            deadline: Some(t0() + secs(50)),
            compensation: false,
        }]);
    assert_eq!(g.task("a").deadline, Some(t0() + secs(50)));
    let old = Timer::AttemptDeadline {
        task: r("a", 1),
        deadline: t0() + secs(30),
    };
    let new = Timer::AttemptDeadline {
        task: r("a", 1),
        deadline: t0() + secs(50),
    };
    assert_eq!(g.state.pending_timers(), std::slice::from_ref(&new));
    g.at(secs(30))
        .when(Command::TimerFired(old))
        .then_nothing()
        .at(secs(50))
        .when(Command::TimerFired(new))
        .then_events([Event::TaskTimedOut {
            task_id: id("a"),
            attempt: 1,
            compensation: false,
        }]);
}

#[test]
fn while_paused_nothing_is_dispatched_and_resume_dispatches_what_waited() {
    let wf = diamond();
    let g = given(&wf, [started(json!({}))])
        .advanced()
        .when(Command::Resume)
        .then_rejected(Rejection::InvalidState {
            status: ExecutionStatus::Running,
            command: "resume",
        })
        .when(Command::Pause)
        .then_events([Event::ExecutionPaused {}])
        .when(Command::Pause)
        .then_rejected(Rejection::InvalidState {
            status: ExecutionStatus::Paused,
            command: "pause",
        })
        // The attempt already running finishes and is recorded.
        .when(complete("a", 1, json!(1)))
        .then_events([completed("a", 1, json!(1))])
        .when(Command::Advance)
        .then_nothing();
    assert_eq!(g.state.status(), ExecutionStatus::Paused);
    assert_eq!(g.state.to_json()["status"], "paused");
    assert_eq!(g.state.ready_tasks().count(), 2);
    g.when(Command::Resume)
        .then_events([Event::ExecutionResumed {}])
        .when(Command::Advance)
        .then_events([run("b", 1), run("c", 1)].concat());
}

#[test]
fn a_retry_that_falls_due_while_paused_runs_on_resume() {
    let wf = retrying_workflow(2, None);
    let due = t0() + ms(100);
    let g = given(&wf, [started(json!({}))])
        .advanced()
        .apply([failed("a", 1, "x", true)])
        .advanced()
        .when(Command::Pause)
        .then_events([Event::ExecutionPaused {}])
        .at(secs(5))
        .when(Command::TimerFired(Timer::Retry {
            task: r("a", 2),
            due_at: due,
        }))
        .then_nothing();
    assert_eq!(
        g.state.pending_timers(),
        [Timer::Retry {
            task: r("a", 2),
            due_at: due
        }]
    );
    g.when(Command::Resume)
        .then_events([Event::ExecutionResumed {}])
        .when(Command::Advance)
        .then_events(run("a", 2));
}

#[test]
fn cancel_cancels_attempts_in_flight_and_fences_their_late_results() {
    let wf = diamond();
    let g = given(&wf, [started(json!({}))])
        .advanced()
        .apply([completed("a", 1, json!(1))])
        .advanced()
        .apply([task_started("b", 1, None)])
        .when(Command::Cancel {
            reason: Some("operator".into()),
        })
        .then_events([
            cancelled("b", 1),
            cancelled("c", 1),
            skipped("d", "the execution was cancelled"),
            Event::ExecutionCancelled {
                reason: Some("operator".into()),
            },
        ]);
    assert_eq!(g.state.status(), ExecutionStatus::Cancelled);
    assert_eq!(g.task("b").status, TaskStatus::Cancelled);
    assert_eq!(g.state.pending_timers(), []);
    g.when(complete("b", 1, json!(2)))
        .then_rejected(stale("b", 1, 1))
        .when(start_task("c", 1))
        .then_rejected(stale("c", 1, 1))
        .when(Command::Advance)
        .then_nothing()
        .when(Command::Cancel { reason: None })
        .then_rejected(Rejection::Terminal(ExecutionStatus::Cancelled))
        .when(Command::Pause)
        .then_rejected(Rejection::Terminal(ExecutionStatus::Cancelled));
}

/// `a`, `b`, `c` and `e` compensate; `f` does not; `d` fails; `e` is still running.
fn saga() -> Arc<ValidatedWorkflow> {
    saga_with_timeout(None)
}

fn saga_with_timeout(timeout_seconds: Option<u64>) -> Arc<ValidatedWorkflow> {
    let undo = |task: &str| json!({"kind": "agent", "agent_role": "undo", "input": {"undo": format!("${{tasks.{task}.output}}")}});
    workflow(
        json!({"name": "saga", "on_failure": "compensate", "timeout_seconds": timeout_seconds, "tasks": [
            {"id": "a", "kind": "noop", "compensate": undo("a")},
            {"id": "b", "kind": "noop", "compensate": undo("b")},
            {"id": "c", "kind": "noop", "compensate": undo("c")},
            {"id": "f", "kind": "noop"},
            {"id": "e", "kind": "noop", "compensate": undo("e")},
            {"id": "d", "kind": "noop", "depends_on": ["a"]},
            {"id": "z", "kind": "noop", "depends_on": ["d", "e"]}
        ]}),
    )
}

fn comp(event: Event) -> Event {
    match event {
        Event::TaskScheduled {
            task_id, attempt, ..
        } => Event::TaskScheduled {
            task_id,
            attempt,
            compensation: true,
        },
        Event::TaskDispatched {
            task_id,
            attempt,
            input,
            ..
        } => Event::TaskDispatched {
            task_id,
            attempt,
            input,
            deadline: None,
            http: None,
            compensation: true,
            priority: None,
        },
        Event::TaskFailed {
            task_id,
            attempt,
            error,
            retryable,
            ..
        } => Event::TaskFailed {
            task_id,
            attempt,
            error,
            retryable,
            compensation: true,
        },
        other => other,
    }
}

fn undo(task: &str) -> [Event; 2] {
    [
        comp(scheduled(task, 1)),
        comp(dispatched(task, 1, json!({"undo": format!("out-{task}")}))),
    ]
}

fn compensated(task: &str) -> Event {
    Event::TaskCompensated {
        task_id: id(task),
        attempt: Some(1),
        output: json!("undone"),
    }
}

fn saga_until_failure() -> Given {
    let wf = saga();
    given(&wf, [started(json!({}))])
        .advanced()
        .apply([
            completed("b", 1, json!("out-b")),
            completed("f", 1, json!("out-f")),
            completed("a", 1, json!("out-a")),
            completed("c", 1, json!("out-c")),
        ])
        .advanced()
        .apply([failed("d", 1, "boom", false)])
        .when(Command::Advance)
        .then_events(
            [
                vec![
                    cancelled("e", 1),
                    skipped("z", SKIPPED_ON_FAILURE),
                    dead_lettered("d", 1, "boom"),
                    Event::CompensationStarted {
                        failed_task: Some(id("d")),
                        error: Some("task `d` failed: boom".into()),
                    },
                ],
                undo("c").to_vec(),
            ]
            .concat(),
        )
}

#[test]
fn compensations_run_one_at_a_time_newest_completion_first() {
    let g = saga_until_failure();
    assert_eq!(g.state.status(), ExecutionStatus::Compensating);
    let g = g
        .when(Command::Advance)
        .then_nothing()
        .when(Command::Pause)
        .then_rejected(Rejection::InvalidState {
            status: ExecutionStatus::Compensating,
            command: "pause",
        })
        // The forward attempt of `e` was cancelled: its result is stale now.
        .when(complete("e", 1, json!(1)))
        .then_rejected(stale("e", 1, 1))
        .when(Command::CompleteTask {
            task: TaskRef::compensation(id("c"), 1),
            output: json!("undone"),
            usage: None,
        })
        .then_events([compensated("c")])
        .when(Command::Advance)
        .then_events(undo("a"))
        .apply([compensated("a")])
        .when(Command::Advance)
        .then_events(undo("b"))
        .apply([compensated("b")])
        .when(Command::Advance)
        .then_events([Event::ExecutionFailed {
            error: "task `d` failed: boom".into(),
            failed_task: Some(id("d")),
        }]);
    assert_eq!(g.state.status(), ExecutionStatus::Compensated);
    let body = g.state.to_json();
    assert_eq!(body["status"], "compensated");
    for (task, status) in [
        ("a", "compensated"),
        ("b", "compensated"),
        ("c", "compensated"),
        ("f", "completed"),
        ("e", "cancelled"),
        ("d", "failed"),
        ("z", "skipped"),
    ] {
        assert_eq!(body["tasks"][task]["status"], status, "task {task}");
    }
    assert_eq!(body["tasks"]["c"]["compensation"]["status"], "completed");
    assert!(body["tasks"]["f"].get("compensation").is_none());
}

#[test]
fn a_failed_compensation_stops_the_saga() {
    let g = saga_until_failure()
        .when(Command::FailTask {
            task: TaskRef::compensation(id("c"), 1),
            error: "cannot undo".into(),
            retryable: true,
            usage: None,
        })
        .then_events([comp(failed("c", 1, "cannot undo", true))])
        .when(Command::Advance)
        .then_events([
            Event::CompensationFailed {
                task_id: id("c"),
                error: "cannot undo".into(),
            },
            Event::ExecutionFailed {
                error: "task `d` failed: boom; the compensation of task `c` failed: cannot undo"
                    .into(),
                failed_task: Some(id("d")),
            },
        ]);
    assert_eq!(g.state.status(), ExecutionStatus::Failed);
    assert_eq!(g.task("a").status, TaskStatus::Completed);
    assert!(g.state.compensation("a").is_none());
    assert_eq!(
        g.state.compensation("c").and_then(|c| c.error.as_deref()),
        Some("cannot undo")
    );
}

#[test]
fn the_workflow_deadline_compensates_under_a_compensate_policy_even_while_paused() {
    let wf = saga_with_timeout(Some(60));
    let deadline = t0() + secs(60);
    let g = given(&wf, [started(json!({}))])
        .advanced()
        .apply([
            completed("a", 1, json!("out-a")),
            completed("c", 1, json!("out-c")),
        ])
        .advanced()
        .when(Command::Pause)
        .then_events([Event::ExecutionPaused {}])
        .at(secs(60))
        .when(Command::TimerFired(Timer::ExecutionDeadline { deadline }))
        .then_events(
            [
                vec![
                    cancelled("b", 1),
                    cancelled("f", 1),
                    cancelled("e", 1),
                    cancelled("d", 1),
                    skipped("z", SKIPPED_ON_FAILURE),
                    Event::CompensationStarted {
                        failed_task: None,
                        error: Some("workflow timed out".into()),
                    },
                ],
                undo("c").to_vec(),
            ]
            .concat(),
        );
    assert_eq!(g.state.status(), ExecutionStatus::Compensating);
    // The deadline does not interrupt the saga.
    g.when(Command::TimerFired(Timer::ExecutionDeadline { deadline }))
        .then_nothing()
        .apply([compensated("c")])
        .when(Command::Advance)
        .then_events(undo("a"))
        .apply([compensated("a")])
        .when(Command::Advance)
        .then_events([Event::ExecutionFailed {
            error: "workflow timed out".into(),
            failed_task: None,
        }]);
}

#[test]
fn a_saga_with_nothing_to_compensate_ends_compensated() {
    let wf = workflow(json!({"name": "s", "on_failure": "compensate", "tasks": [
        {"id": "a", "kind": "noop"},
        {"id": "b", "kind": "noop", "depends_on": ["a"]}
    ]}));
    let g = given(&wf, [started(json!({}))])
        .advanced()
        .apply([completed("a", 1, json!(1))])
        .advanced()
        .apply([failed("b", 1, "x", false)])
        .when(Command::Advance)
        .then_events([
            dead_lettered("b", 1, "x"),
            Event::CompensationStarted {
                failed_task: Some(id("b")),
                error: Some("task `b` failed: x".into()),
            },
            Event::ExecutionFailed {
                error: "task `b` failed: x".into(),
                failed_task: Some(id("b")),
            },
        ]);
    assert_eq!(g.state.status(), ExecutionStatus::Compensated);
}

#[test]
fn the_workflow_deadline_fails_the_execution() {
    let wf = workflow(json!({"name": "slow", "timeout_seconds": 60, "tasks": [
        {"id": "a", "kind": "sleep", "sleep_ms": 1000000},
        {"id": "b", "kind": "noop", "depends_on": ["a"]}
    ]}));
    let deadline = t0() + secs(60);
    let start = Command::Start {
        execution_id: EXECUTION,
        workflow_id: WORKFLOW,
        input: json!({}),
        idempotency_key: None,
        parent: None,
        budget: None,
        priority: None,
        concurrency_key: None,
    };
    let g = given(&wf, [])
        .when(start)
        .then_effects([Effect::ArmTimer(Timer::ExecutionDeadline { deadline })])
        .then_events([started(json!({}))])
        .advanced();
    assert_eq!(g.state.deadline(), Some(deadline));
    assert_eq!(
        g.state.pending_timers(),
        [Timer::ExecutionDeadline { deadline }]
    );
    let fire = Command::TimerFired(Timer::ExecutionDeadline { deadline });
    let g = g
        .at(secs(59))
        .when(fire.clone())
        .then_nothing()
        .at(secs(60))
        .when(fire.clone())
        .then_events([
            cancelled("a", 1),
            skipped("b", SKIPPED_ON_FAILURE),
            Event::ExecutionFailed {
                error: "workflow timed out".into(),
                failed_task: None,
            },
        ]);
    assert_eq!(g.state.status(), ExecutionStatus::Failed);
    g.when(fire).then_nothing();
}

#[test]
fn advance_is_idempotent() {
    let wf = diamond();
    let g = given(&wf, [started(json!({}))]);
    let first = decide(&g.state, Command::Advance, g.now).expect("advance");
    assert_eq!(first.events, run("a", 1));
    let g = g.apply(first.events);
    for _ in 0..3 {
        assert!(decide(&g.state, Command::Advance, g.now)
            .expect("advance")
            .is_empty());
    }
}

#[test]
fn to_json_has_the_api_shape() {
    let wf = diamond();
    let agent = Uuid::from_u128(99);
    let g = given(&wf, [started(json!({"k": "v"}))])
        .advanced()
        .at(secs(1))
        .apply([
            Event::TaskStarted {
                task_id: id("a"),
                attempt: 1,
                agent_id: Some(agent),
                lease_id: None,
                deadline: None,
                compensation: false,
                routing: None,
            },
            completed("a", 1, json!({"ok": true})),
        ])
        .advanced();
    let t1 = t0() + secs(1);
    assert_eq!(
        g.state.to_json(),
        json!({
            "execution_id": EXECUTION,
            "workflow_id": WORKFLOW,
            "status": "running",
            "input": {"k": "v"},
            "output": null,
            "error": null,
            "started_at": t0(),
            "completed_at": null,
            "version": 9,
            "tasks": {
                "a": {"status": "completed", "attempts": 1, "started_at": t1, "completed_at": t1,
                      "output": {"ok": true}, "error": null, "agent_id": agent},
                "b": {"status": "scheduled", "attempts": 1, "started_at": null, "completed_at": null,
                      "output": null, "error": null, "agent_id": null},
                "c": {"status": "scheduled", "attempts": 1, "started_at": null, "completed_at": null,
                      "output": null, "error": null, "agent_id": null},
                "d": {"status": "pending", "attempts": 0, "started_at": null, "completed_at": null,
                      "output": null, "error": null, "agent_id": null}
            }
        })
    );
    assert_eq!(ExecutionState::new(wf).to_json()["status"], "pending");
}

#[test]
fn replay_rebuilds_the_state_and_ignores_duplicate_deliveries() {
    let wf = retrying_workflow(3, Some(30));
    let g = given(&wf, [started(json!({}))])
        .advanced()
        .apply([task_started("a", 1, Some(t0() + secs(30)))]);
    let replayed = ExecutionState::replay(wf.clone(), &g.log);
    assert_eq!(replayed, g.state);
    assert_eq!(replayed.version(), 4);
    // A duplicate delivery of an applied event changes nothing, not even the version.
    let again = evolve(replayed.clone(), &g.log[1]);
    assert_eq!(again, replayed);
    // After a restart, the timers and dispatches come back from the log alone.
    assert_eq!(
        replayed.pending_timers(),
        [Timer::AttemptDeadline {
            task: r("a", 1),
            deadline: t0() + secs(30)
        }]
    );
    let before_start = ExecutionState::replay(wf, &g.log[..3]);
    assert_eq!(
        before_start.pending_dispatches(),
        [Effect::EnqueueAgentTask {
            role: "w".into(),
            task: r("a", 1),
            input: Value::Null,
            rate_limit: None,
            pre_hook: None,
        }]
    );
}

#[test]
fn events_that_do_not_apply_only_bump_the_version() {
    let wf = chain();
    let g = given(&wf, [started(json!({}))]).advanced();
    let before = g.state.clone();
    let g = g.apply([
        completed("c", 1, json!(1)),
        completed("a", 7, json!(1)),
        started(json!({"other": true})),
        Event::ExecutionResumed {},
    ]);
    assert_eq!(g.state.version(), before.version() + 4);
    assert_eq!(g.state.to_json()["tasks"], before.to_json()["tasks"]);
    assert_eq!(g.state.input(), &json!({}));
}

#[test]
fn rejections_map_to_api_codes() {
    assert_eq!(Rejection::NotStarted.code(), "not_found");
    assert_eq!(Rejection::UnknownTask("x".into()).code(), "not_found");
    assert_eq!(stale("a", 1, 2).code(), "stale_attempt");
    assert_eq!(Rejection::AlreadyStarted.code(), "conflict");
    assert_eq!(
        Rejection::Terminal(ExecutionStatus::Failed).code(),
        "conflict"
    );
    let invalid = Rejection::InvalidState {
        status: ExecutionStatus::Paused,
        command: "pause",
    };
    assert_eq!(invalid.code(), "conflict");
    assert_eq!(
        invalid.to_string(),
        "cannot pause an execution that is paused"
    );
}

#[test]
fn effects_of_a_logged_event_equal_the_decision_effects() {
    let wf = retrying_workflow(3, Some(30));
    let g = given(&wf, [started(json!({}))]);
    let decision = decide(&g.state, Command::Advance, g.now).expect("advance");
    let from_events: Vec<Effect> = decision
        .events
        .iter()
        .flat_map(|e| effects_of(&wf, e, g.now))
        .collect();
    assert_eq!(from_events, decision.effects);
    assert_eq!(
        effects_of(&wf, &started(json!({})), t0()),
        Vec::<Effect>::new()
    );
}

// ---------------------------------------------------------------------------------
// Property: random workflows played by a simulated engine and simulated runners.
// ---------------------------------------------------------------------------------

/// xorshift64*: the simulator's choices, reproducible from the case's seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A random DAG of `n` tasks (edges only from lower to higher index), each task reading
/// its first dependency's output (unless its trigger rule may run it after a skip or a
/// failure), half of them with a compensation reading their own; some with a `when`
/// (constant, or on an upstream output), a trigger rule, or as a `switch` choosing
/// among its dependents.
fn random_workflow(
    rng: &mut Rng,
    n: usize,
    compensate: bool,
) -> (Arc<ValidatedWorkflow>, Vec<Vec<usize>>) {
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(n);
    for i in 0..n {
        let mut mine = BTreeSet::new();
        for _ in 0..rng.below(4).min(i as u64) {
            mine.insert(rng.below(i as u64) as usize);
        }
        deps.push(mine.into_iter().collect());
    }
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, mine) in deps.iter().enumerate() {
        for &d in mine {
            dependents[d].push(i);
        }
    }
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let mine = &deps[i];
        let condition = |rng: &mut Rng| match (rng.below(3), mine.first()) {
            (0, _) => "true".to_owned(),
            (1, Some(d)) => format!("tasks.t{d}.output.attempt == 1"),
            _ => "false".to_owned(),
        };
        let rule = if rng.chance(25) {
            ["all_done", "one_success", "none_failed"][rng.below(3) as usize]
        } else {
            "all_success"
        };
        let reads_dep = rule == "all_success";
        let kind = match rng.below(10) {
            0 => "signal",
            1 => "workflow",
            2..=4 => "noop",
            _ => "agent",
        };
        let mut task = json!({
            "id": format!("t{i}"),
            "kind": kind,
            "agent_role": "worker",
            "depends_on": mine.iter().map(|d| format!("t{d}")).collect::<Vec<_>>(),
            "input": match mine.first() {
                Some(d) if reads_dep => json!({"from": format!("${{tasks.t{d}.output}}")}),
                _ => json!({"root": i}),
            },
            "retry": {"max_attempts": 1 + rng.below(3), "initial_interval_ms": rng.below(3) * 100,
                      "backoff_coefficient": 2.0, "max_interval_ms": 1000},
        });
        if rule != "all_success" {
            task["trigger_rule"] = json!(rule);
        }
        if rng.chance(15) {
            task["when"] = json!(condition(rng));
        }
        if !dependents[i].is_empty() && rng.chance(10) {
            let pick = |rng: &mut Rng| {
                dependents[i]
                    .iter()
                    .filter(|_| rng.chance(50))
                    .map(|d| format!("t{d}"))
                    .collect::<Vec<_>>()
            };
            let cases: Vec<Value> = (0..1 + rng.below(2))
                .map(|_| json!({"when": condition(rng), "next": pick(rng)}))
                .collect();
            task = json!({
                "id": format!("t{i}"),
                "kind": "switch",
                "depends_on": task["depends_on"].clone(),
                "input": task["input"].clone(),
                "cases": cases,
                "default": pick(rng),
            });
            if rule != "all_success" {
                task["trigger_rule"] = json!(rule);
            }
        } else if rng.chance(10) {
            let items: Vec<u64> = (0..rng.below(5)).collect();
            task = json!({
                "id": format!("t{i}"),
                "kind": "map",
                "depends_on": task["depends_on"].clone(),
                "items": items,
                "template": {
                    "kind": if rng.chance(50) { "noop" } else { "agent" },
                    "agent_role": "worker",
                    "input": {"item": "${item}", "at": "${index}"},
                    "retry": {"max_attempts": 1 + rng.below(2), "initial_interval_ms": 50},
                    "timeout_seconds": 10,
                },
                "failure_policy": if rng.chance(50) { "fail_fast" } else { "collect" },
            });
            if rng.chance(50) {
                task["max_parallel"] = json!(1 + rng.below(2));
            }
            if rule != "all_success" {
                task["trigger_rule"] = json!(rule);
            }
        } else {
            if rng.chance(50) {
                task["timeout_seconds"] = json!(10);
            }
            if kind == "signal" {
                task["signal"] = json!(format!("s{}", rng.below(3)));
            }
            if kind == "workflow" {
                task["workflow"] = json!({"name": "child"});
                if let Some(o) = task.as_object_mut() {
                    o.remove("agent_role");
                }
            }
            if rng.chance(50) {
                task["compensate"] = json!({
                    "kind": "agent", "agent_role": "undo",
                    "input": format!("${{tasks.t{i}.output}}"),
                    "retry": {"max_attempts": 1 + rng.below(2), "initial_interval_ms": 50},
                    "timeout_seconds": 10,
                });
            }
        }
        tasks.push(task);
    }
    let mut def = json!({
        "name": "random",
        "on_failure": if compensate { "compensate" } else { "fail" },
        "tasks": tasks,
    });
    if rng.chance(25) {
        def["timeout_seconds"] = json!(600);
    }
    (workflow(def), deps)
}

/// The engine and the runners, played by one loop.
struct Sim {
    wf: Arc<ValidatedWorkflow>,
    state: Option<ExecutionState>,
    log: Vec<EventEnvelope>,
    now: DateTime<Utc>,
    /// Attempts handed out by dispatch effects → whether their runner started them.
    inflight: BTreeMap<TaskRef, bool>,
    /// Attempts that can no longer report (finished, timed out, cancelled).
    finished: Vec<TaskRef>,
    armed: BTreeSet<Timer>,
    ever_armed: BTreeSet<Timer>,
    rng: Rng,
    /// Signals sent so far.
    signals: u64,
    /// Child executions started (`StartChild`), and those cancelled (`CancelChild`).
    children: BTreeSet<TaskRef>,
    cancelled_children: BTreeSet<TaskRef>,
}

impl Sim {
    fn st(&self) -> &ExecutionState {
        self.state.as_ref().expect("a state")
    }

    fn commit(&mut self, decision: Decision) {
        for event in decision.events {
            let before = self.st().version();
            let env = envelope(before + 1, event, self.now);
            let state = evolve(self.state.take().expect("a state"), &env);
            assert_eq!(state.version(), before + 1, "one version per event");
            self.state = Some(state);
            self.log.push(env);
        }
        for effect in decision.effects {
            match effect {
                Effect::RunBuiltin { task, .. } | Effect::EnqueueAgentTask { task, .. } => {
                    assert!(
                        self.inflight.insert(task, false).is_none(),
                        "dispatched twice"
                    );
                }
                Effect::ArmTimer(timer) => {
                    self.armed.insert(timer.clone());
                    self.ever_armed.insert(timer);
                }
                // A child runs and then reports, as an attempt already started does.
                Effect::StartChild { task, .. } => {
                    assert!(self.children.insert(task.clone()), "child started twice");
                    assert!(
                        self.inflight.insert(task, true).is_none(),
                        "dispatched twice"
                    );
                }
                // An attempt cancelled before its dispatch (e.g. while paused) has no
                // child: cancelling it finds nothing, which the shell ignores.
                Effect::CancelChild { task, .. } => {
                    assert!(
                        self.cancelled_children.insert(task),
                        "child cancelled twice"
                    );
                }
            }
        }
        let state = self.state.take().expect("a state");
        let finished = &mut self.finished;
        self.inflight.retain(|task, _| {
            let track = if task.compensation {
                state.compensation(task.task.as_str())
            } else {
                state.task(task.task.as_str())
            };
            let live = track.is_some_and(|t| t.accepts_result(task.attempt));
            if !live {
                finished.push(task.clone());
            }
            live
        });
        self.state = Some(state);
    }

    fn send(&mut self, command: Command) -> Result<(), Rejection> {
        let decision = decide(self.st(), command, self.now)?;
        self.commit(decision);
        Ok(())
    }

    /// Sends signal `s<k>` (payloads numbered, so the log shows which one a task got):
    /// accepted while running or paused, refused while compensating or for a name no
    /// task waits for.
    fn signal(&mut self, k: u64) {
        self.signals += 1;
        let name = format!("s{k}");
        let payload = json!({"signal": name, "n": self.signals});
        let status = self.st().status();
        match self.send(Command::Signal { name, payload }) {
            Ok(()) => assert!(matches!(
                status,
                ExecutionStatus::Running | ExecutionStatus::Paused
            )),
            Err(Rejection::UnknownSignal(_)) => {}
            Err(Rejection::InvalidState { .. }) => {
                assert_eq!(status, ExecutionStatus::Compensating)
            }
            Err(e) => panic!("signal refused: {e:?}"),
        }
    }

    /// The signal number a `signal` task waits for right now, if any.
    fn awaited_signal(&self) -> Option<u64> {
        (0..self.wf.len()).find_map(|i| {
            let task = &self.wf.tasks()[i];
            let waiting = task.kind == TaskKind::Signal
                && self.st().task_at(i)?.status == TaskStatus::Running;
            let name = task.signal.as_deref()?;
            waiting.then(|| name.trim_start_matches('s').parse().ok())?
        })
    }

    fn advance(&mut self) {
        let decision = decide(self.st(), Command::Advance, self.now).expect("advance");
        self.commit(decision);
        let again = decide(self.st(), Command::Advance, self.now).expect("advance");
        assert_eq!(again.events, [], "Advance is not idempotent");
    }

    /// Fires the earliest armed timer; the workflow deadline only when `deadline` allows.
    fn fire_earliest_timer(&mut self, deadline: bool) {
        let earliest = self
            .armed
            .iter()
            .filter(|t| deadline || !matches!(t, Timer::ExecutionDeadline { .. }))
            .min_by_key(|t| t.due_at())
            .cloned();
        let Some(timer) = earliest else {
            return;
        };
        self.armed.remove(&timer);
        self.now = self.now.max(timer.due_at());
        self.send(Command::TimerFired(timer))
            .expect("timers are never rejected");
    }

    fn act_on_an_attempt(&mut self, fail_percent: u64) {
        let k = self.rng.below(self.inflight.len() as u64) as usize;
        let Some((task, started)) = self.inflight.iter().nth(k).map(|(t, s)| (t.clone(), *s))
        else {
            return;
        };
        if !started {
            self.send(Command::StartTask {
                task: task.clone(),
                agent_id: None,
                lease_id: None,
                routing: None,
            })
            .expect("a dispatched attempt starts");
            self.inflight.insert(task, true);
            return;
        }
        let roll = self.rng.below(100);
        let output = json!({"task": task.task.as_str(), "attempt": task.attempt, "compensation": task.compensation});
        let command = if roll < fail_percent {
            Command::FailTask {
                task,
                error: "boom".into(),
                retryable: self.rng.chance(60),
                usage: None,
            }
        } else if roll < fail_percent * 2 {
            let track = if task.compensation {
                self.st().compensation(task.task.as_str())
            } else {
                self.st().task(task.task.as_str())
            };
            match track.and_then(|t| t.deadline) {
                Some(deadline) => {
                    self.now = self.now.max(deadline);
                    let fire = Command::TimerFired(Timer::AttemptDeadline { task, deadline });
                    let decision = decide(self.st(), fire, self.now).expect("a deadline timer");
                    assert!(matches!(
                        decision.events.as_slice(),
                        [Event::TaskTimedOut { .. }]
                    ));
                    self.commit(decision);
                    return;
                }
                None => Command::CompleteTask {
                    task,
                    output,
                    usage: None,
                },
            }
        } else if roll < 85 {
            // Half the results report what they spent (tokens only, so sums are exact).
            let usage = self.rng.chance(50).then(|| conflux_schema::usage::Usage {
                cost: 0.0,
                input_tokens: self.rng.below(100),
                output_tokens: 0,
            });
            Command::CompleteTask {
                task,
                output,
                usage,
            }
        } else {
            Command::Heartbeat { task }
        };
        self.send(command).expect("the current attempt reports");
    }
}

/// Plays one random execution to its end, checking every invariant; returns how many
/// child executions it started and how many of those it cancelled.
fn simulate(n: usize, seed: u64, compensate: bool) -> (usize, usize) {
    let mut rng = Rng::new(seed);
    let (wf, deps) = random_workflow(&mut rng, n, compensate);
    let fail_percent = [0, 2, 8, 20][rng.below(4) as usize];
    let pause_percent = [0, 2][rng.below(2) as usize];
    let cancels = rng.chance(20);
    let budget = rng.chance(30).then(|| conflux_schema::usage::Budget {
        max_cost: None,
        max_tokens: Some(1 + rng.below(500)),
    });
    let mut sim = Sim {
        wf: wf.clone(),
        state: Some(ExecutionState::new(wf.clone())),
        log: Vec::new(),
        now: t0(),
        inflight: BTreeMap::new(),
        finished: Vec::new(),
        armed: BTreeSet::new(),
        ever_armed: BTreeSet::new(),
        rng,
        signals: 0,
        children: BTreeSet::new(),
        cancelled_children: BTreeSet::new(),
    };
    sim.send(Command::Start {
        execution_id: EXECUTION,
        workflow_id: WORKFLOW,
        input: json!({"seed": seed.to_string()}),
        idempotency_key: None,
        parent: None,
        budget,
        priority: None,
        concurrency_key: None,
    })
    .expect("start");
    for step in 0..100_000 {
        sim.advance();
        if sim.st().is_terminal() {
            break;
        }
        if step % 97 == 0 {
            check_restart_views(&sim);
        }
        sim.now += ms(sim.rng.below(300) as i64);
        let status = sim.st().status();
        let roll = sim.rng.below(1000);
        if roll < pause_percent * 10 && status == ExecutionStatus::Running {
            sim.send(Command::Pause).expect("pause a running execution");
        } else if roll < 60 && status == ExecutionStatus::Paused {
            sim.send(Command::Resume)
                .expect("resume a paused execution");
        } else if roll < 63 && cancels {
            sim.send(Command::Cancel { reason: None }).expect("cancel");
        } else if roll < 90 && !sim.finished.is_empty() {
            let late = sim.finished[sim.rng.below(sim.finished.len() as u64) as usize].clone();
            let result = sim.send(Command::CompleteTask {
                task: late,
                output: json!("late"),
                usage: None,
            });
            assert!(
                matches!(result, Err(Rejection::StaleAttempt { .. })),
                "{result:?}"
            );
        } else if roll < 120 {
            let deadline = sim.rng.chance(5);
            sim.fire_earliest_timer(deadline);
        } else if roll < 135 {
            let k = sim.rng.below(4);
            sim.signal(k);
        } else if !sim.inflight.is_empty() {
            sim.act_on_an_attempt(fail_percent);
        } else if status == ExecutionStatus::Paused {
            sim.send(Command::Resume).expect("resume");
        } else if let Some(k) = sim.awaited_signal() {
            sim.signal(k);
        } else if !sim.armed.is_empty() {
            sim.fire_earliest_timer(true);
        } else {
            panic!("stuck: {:#}", sim.st().to_json());
        }
    }
    assert!(
        sim.st().is_terminal(),
        "not terminal: {:#}",
        sim.st().to_json()
    );
    check_log(&sim, &deps);
    check_children(&sim);
    check_budget(&sim);
    check_restart_views(&sim);
    let replayed = ExecutionState::replay(wf, &sim.log);
    assert_eq!(&replayed, sim.st());
    assert_eq!(replayed.to_json(), sim.st().to_json());
    let duplicate = &sim.log[sim.log.len() / 2];
    assert_eq!(&evolve(replayed, duplicate), sim.st());
    let cancelled = sim.children.intersection(&sim.cancelled_children).count();
    (sim.children.len(), cancelled)
}

#[test]
fn the_simulation_starts_children_and_cancels_some_with_their_parent() {
    let (mut started, mut cancelled) = (0, 0);
    for seed in 1..40 {
        let (s, c) = simulate(60, seed, seed % 2 == 0);
        started += s;
        cancelled += c;
    }
    assert!(started > 20, "only {started} children started");
    assert!(cancelled > 0, "no child was ever cancelled");
}

/// Once the usage recorded passes the budget, no task (or item) is scheduled or
/// dispatched again, only compensations; and an execution still running then fails (or
/// compensates) with `budget_exceeded`.
fn check_budget(sim: &Sim) {
    let mut budget = None;
    let mut tokens = 0u64;
    let mut over_at_run = None;
    let mut ended = false;
    for env in &sim.log {
        match &env.event {
            Event::BudgetSet { budget: b } => budget = b.max_tokens,
            Event::UsageRecorded { usage, .. } => {
                tokens += usage.input_tokens;
                if budget.is_some_and(|max| tokens > max) && over_at_run.is_none() {
                    over_at_run = Some(!ended);
                }
            }
            Event::CompensationStarted { .. }
            | Event::ExecutionFailed { .. }
            | Event::ExecutionCancelled { .. }
            | Event::ExecutionCompleted { .. } => ended = true,
            Event::TaskScheduled {
                compensation: false,
                task_id,
                ..
            }
            | Event::TaskDispatched {
                compensation: false,
                task_id,
                ..
            } => assert!(
                over_at_run.is_none(),
                "{task_id} dispatched past the budget"
            ),
            _ => {}
        }
    }
    // (A cancel during the saga ends it with the cancel's reason instead.)
    if over_at_run == Some(true) && sim.st().status() != ExecutionStatus::Cancelled {
        let error = sim.st().error().unwrap_or_default();
        assert!(error.starts_with("budget_exceeded"), "{error}");
    }
}

/// Every child execution started either reported its end to its attempt, or was
/// cancelled when its attempt ended without it: no child is left running unheard. A child
/// whose attempt reported is never cancelled.
fn check_children(sim: &Sim) {
    let reported = |task: &TaskRef| {
        sim.log.iter().any(|e| match &e.event {
            Event::TaskCompleted {
                task_id, attempt, ..
            }
            | Event::TaskFailed {
                task_id,
                attempt,
                compensation: false,
                ..
            } => *task_id == task.task && *attempt == task.attempt,
            _ => false,
        })
    };
    for task in &sim.children {
        let cancelled = sim.cancelled_children.contains(task);
        assert!(
            reported(task) != cancelled,
            "child of {task:?}: reported {}, cancelled {cancelled}",
            reported(task)
        );
    }
}

/// What a restarted engine would rebuild is what the live one armed and sent.
fn check_restart_views(sim: &Sim) {
    for timer in sim.st().pending_timers() {
        assert!(sim.ever_armed.contains(&timer), "{timer:?} was never armed");
    }
    for effect in sim.st().pending_dispatches() {
        let task = match effect {
            Effect::RunBuiltin { task, .. } | Effect::EnqueueAgentTask { task, .. } => task,
            other => panic!("not a dispatch: {other:?}"),
        };
        assert_eq!(sim.inflight.get(&task), Some(&false), "{task:?}");
    }
}

fn check_log(sim: &Sim, deps: &[Vec<usize>]) {
    let index = |task: &TaskId| sim.wf.index_of(task).expect("a task of the workflow");
    let compensable = |task: &TaskId| sim.wf.tasks()[index(task)].compensate.is_some();
    let mut outputs: HashMap<TaskId, Value> = HashMap::new();
    let mut skipped_tasks: BTreeSet<TaskId> = BTreeSet::new();
    let mut failed_tasks: BTreeSet<TaskId> = BTreeSet::new();
    let input = sim.st().input().clone();
    let mut completion_order: Vec<TaskId> = Vec::new();
    let mut compensated_in_order: Vec<TaskId> = Vec::new();
    let mut saga_failed = false;
    let mut kept: HashMap<String, std::collections::VecDeque<Value>> = HashMap::new();
    let mut paused = false;
    let mut compensating: Option<TaskId> = None;
    for (k, env) in sim.log.iter().enumerate() {
        assert_eq!(env.version, k as u64 + 1);
        if let Some(item) = item_event(&env.event) {
            check_item_event(sim, item, &env.event);
            continue;
        }
        if paused {
            assert!(
                !matches!(
                    env.event,
                    Event::TaskScheduled { .. } | Event::TaskDispatched { .. }
                ),
                "{:?} while paused",
                env.event
            );
        }
        match &env.event {
            Event::ExecutionPaused {} => paused = true,
            Event::ExecutionResumed {} | Event::CompensationStarted { .. } => paused = false,
            Event::TaskCompensated { task_id, .. } => {
                assert_eq!(compensating.take().as_ref(), Some(task_id));
            }
            Event::TaskScheduled {
                task_id,
                compensation: false,
                attempt,
            } => {
                let t = index(task_id);
                let spec = &sim.wf.tasks()[t];
                for d in &deps[t] {
                    let dep = &sim.wf.task_ids()[*d];
                    let dep_spec = &sim.wf.tasks()[*d];
                    let took = outputs.get(dep).is_some_and(|o| {
                        dep_spec.kind != TaskKind::Switch
                            || o["next"]
                                .as_array()
                                .is_some_and(|n| n.iter().any(|v| v == task_id.as_str()))
                    });
                    if spec.trigger_rule.is_default() {
                        assert!(took, "{task_id} scheduled before {dep} succeeded");
                    } else {
                        let settled = outputs.contains_key(dep)
                            || skipped_tasks.contains(dep)
                            || failed_tasks.contains(dep);
                        assert!(settled, "{task_id} scheduled before {dep} settled");
                    }
                }
                if let (Some(when), 1) = (&spec.when, attempt) {
                    let read = |id: &str| outputs.get(&TaskId::parse(id).ok()?).cloned();
                    let verdict = conflux_schema::condition::evaluate(when, &input, &read);
                    assert_ne!(verdict, Ok(false), "{task_id} ran though `{when}` is false");
                }
            }
            Event::TaskSkipped { task_id, reason } => {
                skipped_tasks.insert(task_id.clone());
                let spec = &sim.wf.tasks()[index(task_id)];
                if let (Some(when), true) = (&spec.when, reason.starts_with("when `")) {
                    let read = |id: &str| outputs.get(&TaskId::parse(id).ok()?).cloned();
                    let verdict = conflux_schema::condition::evaluate(when, &input, &read);
                    assert_eq!(verdict, Ok(false), "{task_id} skipped: {reason}");
                }
            }
            Event::TaskFailed {
                task_id,
                compensation: false,
                ..
            }
            | Event::TaskTimedOut {
                task_id,
                compensation: false,
                ..
            } => {
                failed_tasks.insert(task_id.clone());
            }
            Event::TaskDispatched {
                task_id,
                input,
                compensation,
                priority: None,
                ..
            } => {
                let t = index(task_id);
                if sim.wf.tasks()[t].kind == TaskKind::Map {
                    let items = sim.wf.tasks()[t].items.clone();
                    assert_eq!(Some(input), items.as_ref(), "a map records its items");
                    continue;
                }
                let reads_dep = sim.wf.tasks()[t].input.get("from").is_some();
                let expected = if *compensation {
                    outputs[task_id].clone()
                } else {
                    match deps[t].first() {
                        Some(d) if reads_dep => json!({"from": outputs[&sim.wf.task_ids()[*d]]}),
                        _ => json!({"root": t}),
                    }
                };
                assert_eq!(input, &expected, "the input of {task_id}");
            }
            Event::SignalReceived { name, payload } => {
                kept.entry(name.clone())
                    .or_default()
                    .push_back(payload.clone());
            }
            Event::TaskCompleted {
                task_id, output, ..
            } => {
                let spec = &sim.wf.tasks()[index(task_id)];
                if spec.kind == TaskKind::Signal {
                    let name = spec.signal.clone().unwrap_or_else(|| task_id.to_string());
                    let oldest = kept.get_mut(&name).and_then(|q| q.pop_front());
                    assert_eq!(
                        oldest.as_ref(),
                        Some(output),
                        "{task_id} got another signal"
                    );
                }
                assert!(
                    outputs.insert(task_id.clone(), output.clone()).is_none(),
                    "{task_id} completed twice"
                );
                completion_order.push(task_id.clone());
            }
            Event::TaskScheduled {
                task_id,
                attempt: 1,
                compensation: true,
            } => {
                assert!(
                    outputs.contains_key(task_id),
                    "{task_id} compensated but never completed"
                );
                let open = compensating.replace(task_id.clone());
                assert_eq!(open, None, "two compensations at once");
                compensated_in_order.push(task_id.clone());
            }
            Event::CompensationFailed { .. } => saga_failed = true,
            _ => {}
        }
    }
    let expected: Vec<TaskId> = completion_order
        .iter()
        .rev()
        .filter(|t| compensable(t))
        .cloned()
        .collect();
    let status = sim.st().status();
    match status {
        ExecutionStatus::Compensated => assert_eq!(compensated_in_order, expected),
        _ => assert_eq!(compensated_in_order, expected[..compensated_in_order.len()]),
    }
    if saga_failed {
        assert_eq!(status, ExecutionStatus::Failed);
    }
    if status == ExecutionStatus::Completed {
        for (i, id) in sim.wf.task_ids().iter().enumerate() {
            let settled = outputs.contains_key(id)
                || skipped_tasks.contains(id)
                || (failed_tasks.contains(id)
                    && sim.st().task_at(i).is_some_and(|t| !t.status.is_live()));
            assert!(settled, "{id} never settled in a completed execution");
        }
    }
    for i in 0..sim.wf.len() {
        let task = sim.st().task_at(i).expect("a task");
        assert!(
            !task.status.is_live(),
            "task {i} is {} in a terminal execution",
            task.status
        );
    }
    for (_, item) in sim.st().items() {
        let t = sim.st().task(item.as_str()).expect("an item");
        assert!(
            !t.status.is_live(),
            "{item} is {} in a terminal execution",
            t.status
        );
    }
    assert_eq!(sim.st().pending_timers(), []);
    assert_eq!(sim.st().pending_dispatches(), []);
}

/// The map item an event is about, if it is about one.
fn item_event(event: &Event) -> Option<&TaskId> {
    event.task_id().filter(|t| t.item_of().is_some())
}

/// An item's dispatch carries its element and its index.
fn check_item_event(sim: &Sim, item: &TaskId, event: &Event) {
    let Some((map, k)) = item.item_of() else {
        return;
    };
    let spec = &sim.wf.tasks()[sim.wf.index_of_str(map).expect("the item's map")];
    if let Event::TaskDispatched { input, .. } = event {
        let element = spec.items.as_ref().and_then(|items| items.get(k)).cloned();
        assert_eq!(
            input,
            &json!({"item": element, "at": k}),
            "the input of {item}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_executions_keep_every_invariant(
        n in 1usize..=200,
        seed in any::<u64>(),
        compensate in any::<bool>(),
    ) {
        simulate(n, seed, compensate);
    }
}
