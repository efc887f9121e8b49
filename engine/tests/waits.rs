//! The waiting kinds in the pure core (`signal`, `approval`): given events, when a
//! command, then exactly these events (or this rejection).

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use conflux_engine::execution::{
    decide, evolve, ApprovalBy, Command, Decision, Effect, ExecutionState, ExecutionStatus,
    Rejection, TaskRef, TaskStatus, Timer,
};
use conflux_schema::access::Role;
use conflux_schema::definition::WorkflowDefinition;
use conflux_schema::event::SCHEMA_VERSION;
use conflux_schema::validate::{validate, Limits, ValidatedWorkflow, ValidationError};
use conflux_schema::{Event, EventEnvelope, EventMetadata, StreamId, StreamType, TaskId};
use serde_json::{json, Value};
use uuid::Uuid;

const EXECUTION: Uuid = Uuid::from_u128(0xE1);
const WORKFLOW: Uuid = Uuid::from_u128(0x1F);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid time")
}

fn workflow(definition: Value) -> Arc<ValidatedWorkflow> {
    let def: WorkflowDefinition = serde_json::from_value(definition).expect("a definition");
    Arc::new(validate(def, &Limits::default()).expect("a valid workflow"))
}

fn invalid(task: Value) -> String {
    let def: WorkflowDefinition =
        serde_json::from_value(json!({"name": "w", "tasks": [task]})).expect("a definition");
    match validate(def, &Limits::default()) {
        Err(ValidationError::InvalidTask { reason, .. }) => reason,
        other => panic!("expected invalid_task, got {other:?}"),
    }
}

fn id(raw: &str) -> TaskId {
    TaskId::parse(raw).expect("a task id")
}

struct Given {
    state: ExecutionState,
    log: Vec<EventEnvelope>,
    now: DateTime<Utc>,
}

fn given(wf: &Arc<ValidatedWorkflow>, events: impl IntoIterator<Item = Event>) -> Given {
    Given {
        state: ExecutionState::new(wf.clone()),
        log: Vec::new(),
        now: t0(),
    }
    .apply(events)
}

impl Given {
    fn at(mut self, offset: TimeDelta) -> Self {
        self.now = t0() + offset;
        self
    }

    fn apply(mut self, events: impl IntoIterator<Item = Event>) -> Self {
        for event in events {
            let env = EventEnvelope {
                event_id: Uuid::now_v7(),
                stream_id: StreamId::execution(EXECUTION),
                stream_type: StreamType::Execution,
                version: self.state.version() + 1,
                position: self.state.version() + 1,
                event,
                schema_version: SCHEMA_VERSION,
                metadata: EventMetadata::default(),
                recorded_at: self.now,
                hash: String::new(),
            };
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

    /// `Advance`, committed; a second `Advance` must be empty.
    fn advanced(self) -> Self {
        let decision = decide(&self.state, Command::Advance, self.now).expect("advance");
        let g = self.apply(decision.events);
        let again = decide(&g.state, Command::Advance, g.now).expect("advance");
        assert_eq!(again.events, [], "Advance is not idempotent");
        g
    }

    fn status(&self, task: &str) -> TaskStatus {
        self.state.task(task).expect("a task").status
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

    /// The rejection, and the state unchanged.
    fn then_rejected(self, expected: Rejection) -> Given {
        assert_eq!(self.result, Err(expected));
        self.given
    }
}

fn started() -> Event {
    Event::ExecutionStarted {
        execution_id: EXECUTION,
        workflow_id: WORKFLOW,
        input: json!({}),
        idempotency_key: None,
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
    }
}

fn waiting(task: &str, attempt: u32, deadline: Option<DateTime<Utc>>) -> Event {
    Event::TaskStarted {
        task_id: id(task),
        attempt,
        agent_id: None,
        lease_id: None,
        deadline,
        compensation: false,
    }
}

fn completed(task: &str, attempt: u32, output: Value) -> Event {
    Event::TaskCompleted {
        task_id: id(task),
        attempt,
        output,
    }
}

fn signal_received(name: &str, payload: Value) -> Event {
    Event::SignalReceived {
        name: name.into(),
        payload,
    }
}

fn signal(name: &str, payload: Value) -> Command {
    Command::Signal {
        name: name.into(),
        payload,
    }
}

fn decided(task: &str, approve: bool, by: &str, comment: Option<&str>) -> Event {
    Event::ApprovalDecided {
        task_id: id(task),
        attempt: 1,
        approve,
        by: by.into(),
        comment: comment.map(str::to_owned),
    }
}

fn decide_on(task: &str, approve: bool, by: &str, role: Role, comment: Option<&str>) -> Command {
    Command::DecideApproval {
        task: task.into(),
        decision: ApprovalBy {
            by: by.into(),
            role,
            approve,
            comment: comment.map(str::to_owned),
        },
    }
}

/// `a` (noop) → `wait` (signal "go") → `after` (noop reading the payload).
fn signalled() -> Arc<ValidatedWorkflow> {
    workflow(json!({"name": "signalled", "tasks": [
        {"id": "a", "kind": "noop"},
        {"id": "wait", "kind": "signal", "signal": "go", "depends_on": ["a"]},
        {"id": "after", "kind": "noop", "depends_on": ["wait"], "input": "${tasks.wait.output.n}"},
    ]}))
}

/// `a` (noop), then `a` completed: the signal task is next.
fn at_the_signal(wf: &Arc<ValidatedWorkflow>) -> Given {
    given(
        wf,
        [
            started(),
            scheduled("a", 1),
            dispatched("a", 1, Value::Null),
            completed("a", 1, Value::Null),
        ],
    )
}

#[test]
fn a_signal_that_arrives_while_its_task_waits_completes_it_in_the_same_decision() {
    let wf = signalled();
    let g = at_the_signal(&wf)
        .when(Command::Advance)
        .then_effects([])
        .then_events([
            scheduled("wait", 1),
            dispatched("wait", 1, Value::Null),
            waiting("wait", 1, None),
        ]);
    assert_eq!(g.status("wait"), TaskStatus::Running);
    let body = g.state.to_json();
    assert_eq!(
        body["tasks"]["wait"]["waiting_for"],
        json!({"signal": "go"})
    );
    assert_eq!(g.state.pending_timers(), [], "no default deadline");
    assert_eq!(g.state.pending_dispatches(), [], "nothing runs a wait");
    let g = g
        .when(signal("go", json!({"n": 7})))
        .then_events([
            signal_received("go", json!({"n": 7})),
            completed("wait", 1, json!({"n": 7})),
        ])
        .advanced();
    assert_eq!(g.state.kept_signals("go"), 0);
    assert_eq!(g.state.to_json()["tasks"]["wait"].get("waiting_for"), None);
    let dispatched_after = g.log.iter().find_map(|e| match &e.event {
        Event::TaskDispatched { task_id, input, .. } if task_id.as_str() == "after" => {
            Some(input.clone())
        }
        _ => None,
    });
    assert_eq!(dispatched_after, Some(json!(7)));
}

#[test]
fn a_signal_sent_before_its_task_is_reached_is_kept_and_consumed_at_dispatch() {
    let wf = signalled();
    let g = given(&wf, [started(), scheduled("a", 1)])
        .when(signal("go", json!("early")))
        .then_events([signal_received("go", json!("early"))]);
    assert_eq!(g.state.kept_signals("go"), 1);
    assert_eq!(g.status("wait"), TaskStatus::Pending);
    let g = g.apply([
        dispatched("a", 1, Value::Null),
        completed("a", 1, Value::Null),
    ]);
    // One decision: the wait is dispatched, starts, consumes the kept signal, and its
    // dependent is dispatched too (Advance runs to rest).
    let g = g.when(Command::Advance).then_events([
        scheduled("wait", 1),
        dispatched("wait", 1, Value::Null),
        waiting("wait", 1, None),
        completed("wait", 1, json!("early")),
        scheduled("after", 1),
        dispatched("after", 1, Value::Null),
    ]);
    assert_eq!(g.state.kept_signals("go"), 0);
    let again = decide(&g.state, Command::Advance, g.now).expect("advance");
    assert_eq!(again.events, []);
    let replayed = ExecutionState::replay(wf, &g.log);
    assert_eq!(replayed, g.state);
}

#[test]
fn signals_of_one_name_are_consumed_oldest_first_one_per_task() {
    let wf = workflow(json!({"name": "two", "tasks": [
        {"id": "first", "kind": "signal", "signal": "s"},
        {"id": "second", "kind": "signal", "signal": "s"},
    ]}));
    let g = given(&wf, [started()])
        .when(signal("s", json!(1)))
        .then_events([signal_received("s", json!(1))])
        .when(signal("s", json!(2)))
        .then_events([signal_received("s", json!(2))])
        .when(signal("s", json!(3)))
        .then_events([signal_received("s", json!(3))])
        .when(Command::Advance)
        .then_events([
            scheduled("first", 1),
            dispatched("first", 1, Value::Null),
            waiting("first", 1, None),
            completed("first", 1, json!(1)),
            scheduled("second", 1),
            dispatched("second", 1, Value::Null),
            waiting("second", 1, None),
            completed("second", 1, json!(2)),
            Event::ExecutionCompleted {
                output: json!({"first": 1, "second": 2}),
            },
        ]);
    assert_eq!(g.state.kept_signals("s"), 1);
    let g = g.advanced();
    assert_eq!(g.state.status(), ExecutionStatus::Completed);
    assert_eq!(g.state.output(), Some(&json!({"first": 1, "second": 2})));
    let replayed = ExecutionState::replay(wf, &g.log);
    assert_eq!(replayed, g.state);
}

#[test]
fn the_signal_name_defaults_to_the_task_id_and_unknown_names_are_refused() {
    let wf = workflow(json!({"name": "w", "tasks": [{"id": "ready", "kind": "signal"}]}));
    let g = given(&wf, [started()])
        .when(signal("go", json!(1)))
        .then_rejected(Rejection::UnknownSignal("go".into()));
    assert_eq!(g.state.version(), 1);
    g.when(signal("ready", json!(1)))
        .then_events([signal_received("ready", json!(1))]);
    let not_started = given(&wf, []).when(signal("ready", Value::Null));
    not_started.then_rejected(Rejection::NotStarted);
}

#[test]
fn a_signal_to_a_finished_execution_is_refused() {
    let wf = workflow(json!({"name": "w", "tasks": [{"id": "s", "kind": "signal"}]}));
    let done = given(&wf, [started()])
        .advanced()
        .when(signal("s", json!("x")))
        .then_events([
            signal_received("s", json!("x")),
            completed("s", 1, json!("x")),
        ])
        .advanced();
    assert_eq!(done.state.status(), ExecutionStatus::Completed);
    done.when(signal("s", json!("late")))
        .then_rejected(Rejection::Terminal(ExecutionStatus::Completed));
    let cancelled = given(&wf, [started(), Event::ExecutionCancelled { reason: None }]);
    cancelled
        .when(signal("s", Value::Null))
        .then_rejected(Rejection::Terminal(ExecutionStatus::Cancelled));
}

#[test]
fn a_paused_execution_keeps_signals_and_a_waiting_task_still_completes() {
    let wf = workflow(json!({"name": "w", "tasks": [
        {"id": "s", "kind": "signal"}, {"id": "n", "kind": "noop", "depends_on": ["s"]},
    ]}));
    let g = given(&wf, [started()])
        .advanced()
        .apply([Event::ExecutionPaused {}])
        .when(signal("s", json!(5)))
        .then_events([signal_received("s", json!(5)), completed("s", 1, json!(5))]);
    let nothing = decide(&g.state, Command::Advance, g.now).expect("advance");
    assert_eq!(nothing.events, [], "paused: nothing new is dispatched");
    assert_eq!(g.status("s"), TaskStatus::Completed);
}

#[test]
fn a_wait_with_timeout_seconds_times_out_and_retries_per_its_policy() {
    let wf = workflow(json!({"name": "w", "tasks": [
        {"id": "s", "kind": "signal", "timeout_seconds": 5, "retry": {"max_attempts": 2, "initial_interval_ms": 0}},
    ]}));
    let deadline = t0() + TimeDelta::seconds(5);
    let g = given(&wf, [started()])
        .when(Command::Advance)
        .then_effects([Effect::ArmTimer(Timer::AttemptDeadline {
            task: TaskRef::new(id("s"), 1),
            deadline,
        })])
        .then_events([
            scheduled("s", 1),
            dispatched("s", 1, Value::Null),
            waiting("s", 1, Some(deadline)),
        ])
        .at(TimeDelta::seconds(5))
        .when(Command::TimerFired(Timer::AttemptDeadline {
            task: TaskRef::new(id("s"), 1),
            deadline,
        }))
        .then_events([Event::TaskTimedOut {
            task_id: id("s"),
            attempt: 1,
            compensation: false,
        }])
        .advanced();
    assert_eq!(g.status("s"), TaskStatus::Running);
    assert_eq!(g.state.task("s").map(|t| t.attempt), Some(2));
    // A signal now completes attempt 2.
    g.when(signal("s", json!("ok"))).then_events([
        signal_received("s", json!("ok")),
        completed("s", 2, json!("ok")),
    ]);
}

/// `gate` (approval by two of admin/operator) → `ship` (noop).
fn gated() -> Arc<ValidatedWorkflow> {
    workflow(json!({"name": "gated", "tasks": [
        {"id": "gate", "kind": "approval", "approvers": {"roles": ["admin", "operator"], "count": 2},
         "retry": {"max_attempts": 3}},
        {"id": "ship", "kind": "noop", "depends_on": ["gate"], "input": "${tasks.gate.output.approved_by}"},
    ]}))
}

#[test]
fn two_distinct_approvers_complete_an_approval_and_the_same_key_cannot_approve_twice() {
    let wf = gated();
    let g = given(&wf, [started()]).when(Command::Advance).then_events([
        scheduled("gate", 1),
        dispatched("gate", 1, Value::Null),
        waiting("gate", 1, None),
    ]);
    assert_eq!(
        g.state.to_json()["tasks"]["gate"]["waiting_for"],
        json!({"approvals": {"needed": 2, "given": 0, "approved_by": [], "roles": ["admin", "operator"]}})
    );
    let g = g
        .when(decide_on("gate", true, "key:viewer", Role::Developer, None))
        .then_rejected(Rejection::NotApprover {
            task: id("gate"),
            role: "developer".into(),
            roles: "admin, operator".into(),
        })
        .when(decide_on("gate", true, "key:a", Role::Admin, Some("fine")))
        .then_events([decided("gate", true, "key:a", Some("fine"))])
        .when(decide_on("gate", true, "key:a", Role::Admin, None))
        .then_rejected(Rejection::AlreadyDecided {
            task: id("gate"),
            by: "key:a".into(),
        });
    assert_eq!(g.state.approvals("gate"), Some((1, 2)));
    assert_eq!(
        g.state.to_json()["tasks"]["gate"]["waiting_for"]["approvals"]["approved_by"],
        json!(["key:a"])
    );
    let g = g
        .when(decide_on("gate", true, "key:b", Role::Operator, None))
        .then_events([
            decided("gate", true, "key:b", None),
            completed(
                "gate",
                1,
                json!({"approved_by": ["key:a", "key:b"], "comments": ["fine", null]}),
            ),
        ])
        .advanced();
    assert_eq!(g.status("ship"), TaskStatus::Scheduled);
    g.when(decide_on("gate", true, "key:c", Role::Admin, None))
        .then_rejected(Rejection::NotWaiting {
            task: id("gate"),
            reason: "it is completed".into(),
        });
}

#[test]
fn one_reject_fails_an_approval_for_good() {
    let wf = gated();
    let g = given(&wf, [started()])
        .advanced()
        .when(decide_on("gate", true, "key:a", Role::Admin, None))
        .then_events([decided("gate", true, "key:a", None)])
        .when(decide_on(
            "gate",
            false,
            "key:b",
            Role::Operator,
            Some("no"),
        ))
        .then_events([
            decided("gate", false, "key:b", Some("no")),
            Event::TaskFailed {
                task_id: id("gate"),
                attempt: 1,
                error: "rejected by key:b: no".into(),
                retryable: false,
                compensation: false,
            },
        ])
        .advanced();
    // Three attempts allowed, but a reject is not retried.
    assert_eq!(g.state.status(), ExecutionStatus::Failed);
    assert_eq!(g.status("ship"), TaskStatus::Skipped);
}

#[test]
fn decisions_on_tasks_that_are_not_waiting_approvals_are_refused_and_change_nothing() {
    let wf = workflow(json!({"name": "w", "tasks": [
        {"id": "first", "kind": "noop"},
        {"id": "gate", "kind": "approval", "depends_on": ["first"], "approvers": {"roles": ["admin"]}},
    ]}));
    let g = given(&wf, [started(), scheduled("first", 1)]);
    let version = g.state.version();
    let g = g
        .when(decide_on("gate", true, "key:a", Role::Admin, None))
        .then_rejected(Rejection::NotWaiting {
            task: id("gate"),
            reason: "it has not been reached yet".into(),
        })
        .when(decide_on("first", true, "key:a", Role::Admin, None))
        .then_rejected(Rejection::NotWaiting {
            task: id("first"),
            reason: "it is a noop task, not an approval".into(),
        })
        .when(decide_on("nope", true, "key:a", Role::Admin, None))
        .then_rejected(Rejection::UnknownTask("nope".into()))
        .when(decide_on("bad id!", true, "key:a", Role::Admin, None))
        .then_rejected(Rejection::UnknownTask("bad id!".into()));
    assert_eq!(g.state.version(), version);
    // One approval of count 1 completes it.
    let g = g
        .apply([
            dispatched("first", 1, Value::Null),
            completed("first", 1, Value::Null),
        ])
        .advanced()
        .when(decide_on("gate", true, "admin", Role::Admin, None))
        .then_events([
            decided("gate", true, "admin", None),
            completed(
                "gate",
                1,
                json!({"approved_by": ["admin"], "comments": [null]}),
            ),
        ]);
    assert_eq!(g.status("gate"), TaskStatus::Completed);
}

#[test]
fn the_rejections_map_to_their_api_codes() {
    assert_eq!(Rejection::UnknownSignal("x".into()).code(), "not_found");
    let task = id("t");
    let not_waiting = Rejection::NotWaiting {
        task: task.clone(),
        reason: "r".into(),
    };
    assert_eq!(not_waiting.code(), "conflict");
    let twice = Rejection::AlreadyDecided {
        task: task.clone(),
        by: "key:a".into(),
    };
    assert_eq!(twice.code(), "conflict");
    let role = Rejection::NotApprover {
        task,
        role: "viewer".into(),
        roles: "admin".into(),
    };
    assert_eq!(role.code(), "forbidden");
}

#[test]
fn waiting_kinds_are_validated_by_their_own_rules() {
    let reason = invalid(json!({"id": "g", "kind": "approval"}));
    assert!(reason.contains("approvers is required"), "{reason}");
    let reason = invalid(json!({"id": "g", "kind": "approval", "approvers": {"roles": []}}));
    assert!(reason.contains("approvers.roles"), "{reason}");
    let reason = invalid(
        json!({"id": "g", "kind": "approval", "approvers": {"roles": ["admin"], "count": 0}}),
    );
    assert!(reason.contains("approvers.count"), "{reason}");
    let reason =
        invalid(json!({"id": "g", "kind": "approval", "approvers": {"roles": ["viewer"]}}));
    assert!(reason.contains("\"viewer\""), "{reason}");
    let reason = invalid(json!({"id": "g", "kind": "approval", "approvers": {"roles": ["boss"]}}));
    assert!(reason.contains("\"boss\""), "{reason}");
    let reason = invalid(json!({"id": "s", "kind": "signal", "signal": "no spaces"}));
    assert!(reason.contains("signal"), "{reason}");
    let reason = invalid(json!({"id": "s", "kind": "noop",
        "compensate": {"kind": "signal"}}));
    assert!(reason.contains("cannot compensate"), "{reason}");
    // A wait without timeout_seconds has no deadline; other kinds get the default.
    let wf = workflow(json!({"name": "w", "tasks": [
        {"id": "s", "kind": "signal"}, {"id": "n", "kind": "noop"},
    ]}));
    assert_eq!(wf.body_of(0, false).and_then(|b| b.timeout()), None);
    assert!(wf.body_of(1, false).and_then(|b| b.timeout()).is_some());
}

#[test]
fn signal_payloads_and_approval_comments_are_customer_data() {
    let mut event = signal_received("s", json!({"secret": 1}));
    assert!(event.has_payload());
    let mut seen = 0;
    event.for_each_payload_mut(&mut |_| seen += 1);
    let mut comment = decided("g", true, "key:a", Some("why"));
    assert!(comment.has_payload());
    comment.for_each_payload_mut(&mut |_| seen += 1);
    assert_eq!(seen, 2);
    assert!(!decided("g", true, "key:a", None).has_payload());
}
