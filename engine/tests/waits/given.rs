//! The harness of the waiting kinds' core tests: given(events).when(command)
//! .then_events(expected), and event and command builders that read like the log.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use conflux_engine::execution::{
    decide, evolve, ApprovalBy, Command, Decision, Effect, ExecutionState, Rejection, TaskStatus,
};
use conflux_schema::access::Role;
use conflux_schema::definition::WorkflowDefinition;
use conflux_schema::event::SCHEMA_VERSION;
use conflux_schema::validate::{validate, Limits, ValidatedWorkflow, ValidationError};
use conflux_schema::{Event, EventEnvelope, EventMetadata, StreamId, StreamType, TaskId};
use serde_json::{json, Value};
use uuid::Uuid;

pub(crate) const EXECUTION: Uuid = Uuid::from_u128(0xE1);
pub(crate) const WORKFLOW: Uuid = Uuid::from_u128(0x1F);

pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid time")
}

pub(crate) fn workflow(definition: Value) -> Arc<ValidatedWorkflow> {
    let def: WorkflowDefinition = serde_json::from_value(definition).expect("a definition");
    Arc::new(validate(def, &Limits::default()).expect("a valid workflow"))
}

pub(crate) fn invalid(task: Value) -> String {
    let def: WorkflowDefinition =
        serde_json::from_value(json!({"name": "w", "tasks": [task]})).expect("a definition");
    match validate(def, &Limits::default()) {
        Err(ValidationError::InvalidTask { reason, .. }) => reason,
        other => panic!("expected invalid_task, got {other:?}"),
    }
}

pub(crate) fn id(raw: &str) -> TaskId {
    TaskId::parse(raw).expect("a task id")
}

pub(crate) struct Given {
    pub(crate) state: ExecutionState,
    pub(crate) log: Vec<EventEnvelope>,
    pub(crate) now: DateTime<Utc>,
}

pub(crate) fn given(wf: &Arc<ValidatedWorkflow>, events: impl IntoIterator<Item = Event>) -> Given {
    Given {
        state: ExecutionState::new(wf.clone()),
        log: Vec::new(),
        now: t0(),
    }
    .apply(events)
}

impl Given {
    pub(crate) fn at(mut self, offset: TimeDelta) -> Self {
        self.now = t0() + offset;
        self
    }

    pub(crate) fn apply(mut self, events: impl IntoIterator<Item = Event>) -> Self {
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

    pub(crate) fn when(self, command: Command) -> When {
        let result = decide(&self.state, command, self.now);
        When {
            given: self,
            result,
        }
    }

    /// `Advance`, committed; a second `Advance` must be empty.
    pub(crate) fn advanced(self) -> Self {
        let decision = decide(&self.state, Command::Advance, self.now).expect("advance");
        let g = self.apply(decision.events);
        let again = decide(&g.state, Command::Advance, g.now).expect("advance");
        assert_eq!(again.events, [], "Advance is not idempotent");
        g
    }

    pub(crate) fn status(&self, task: &str) -> TaskStatus {
        self.state.task(task).expect("a task").status
    }
}

pub(crate) struct When {
    given: Given,
    result: Result<Decision, Rejection>,
}

impl When {
    pub(crate) fn decision(&self) -> &Decision {
        match &self.result {
            Ok(d) => d,
            Err(e) => panic!("expected a decision, got the rejection {e:?}"),
        }
    }

    pub(crate) fn then_events(self, expected: impl IntoIterator<Item = Event>) -> Given {
        let expected: Vec<Event> = expected.into_iter().collect();
        assert_eq!(self.decision().events, expected);
        let events = self.decision().events.clone();
        self.given.apply(events)
    }

    pub(crate) fn then_effects(self, expected: impl IntoIterator<Item = Effect>) -> Self {
        let expected: Vec<Effect> = expected.into_iter().collect();
        assert_eq!(self.decision().effects, expected);
        self
    }

    /// The rejection, and the state unchanged.
    pub(crate) fn then_rejected(self, expected: Rejection) -> Given {
        assert_eq!(self.result, Err(expected));
        self.given
    }
}

pub(crate) fn started() -> Event {
    Event::ExecutionStarted {
        execution_id: EXECUTION,
        workflow_id: WORKFLOW,
        input: json!({}),
        idempotency_key: None,
        parent: None,
    }
}

pub(crate) fn scheduled(task: &str, attempt: u32) -> Event {
    Event::TaskScheduled {
        task_id: id(task),
        attempt,
        compensation: false,
    }
}

pub(crate) fn dispatched(task: &str, attempt: u32, input: Value) -> Event {
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

pub(crate) fn waiting(task: &str, attempt: u32, deadline: Option<DateTime<Utc>>) -> Event {
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

pub(crate) fn completed(task: &str, attempt: u32, output: Value) -> Event {
    Event::TaskCompleted {
        task_id: id(task),
        attempt,
        output,
    }
}

pub(crate) fn signal_received(name: &str, payload: Value) -> Event {
    Event::SignalReceived {
        name: name.into(),
        payload,
    }
}

pub(crate) fn signal(name: &str, payload: Value) -> Command {
    Command::Signal {
        name: name.into(),
        payload,
    }
}

pub(crate) fn decided(task: &str, approve: bool, by: &str, comment: Option<&str>) -> Event {
    Event::ApprovalDecided {
        task_id: id(task),
        attempt: 1,
        approve,
        by: by.into(),
        comment: comment.map(str::to_owned),
    }
}

pub(crate) fn decide_on(
    task: &str,
    approve: bool,
    by: &str,
    role: Role,
    comment: Option<&str>,
) -> Command {
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
