//! The projector's pure fold, without any database: the rows it produces do not
//! depend on how the log is cut into batches, nor on whether the projection restarted
//! between batches (reloading an execution's state from its log up to the checkpoint),
//! and workflow summaries count each execution under its current status only.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use conflux_engine::execution::{decide, evolve, Command, ExecutionState, TaskRef};
use conflux_projector::fold::Projection;
use conflux_projector::rows::{Changes, ExecutionRow, TaskRow, WorkflowRow};
use conflux_schema::definition::WorkflowDefinition;
use conflux_schema::event::SCHEMA_VERSION;
use conflux_schema::validate::{validate, Limits, ValidatedWorkflow};
use conflux_schema::{Event, EventEnvelope, EventMetadata, StreamId, StreamType, TaskId};
use serde_json::json;
use uuid::Uuid;

const WORKFLOW: Uuid = Uuid::from_u128(1);

fn workflow() -> (WorkflowDefinition, Arc<ValidatedWorkflow>) {
    let def: WorkflowDefinition = serde_json::from_value(json!({
        "name": "fold", "tasks": [
            {"id": "a", "kind": "noop", "input": {"x": "${input.x}"}},
            {"id": "b", "kind": "noop", "depends_on": ["a"]},
            {"id": "c", "kind": "noop", "depends_on": ["a"],
             "retry": {"max_attempts": 2, "initial_interval_ms": 1}},
            {"id": "d", "kind": "noop", "depends_on": ["b", "c"]}
        ]
    }))
    .expect("definition");
    let validated = Arc::new(validate(def.clone(), &Limits::default()).expect("valid"));
    (def, validated)
}

/// The log of a workflow creation and two executions, interleaved by position: one
/// completes (with a failed-then-retried attempt of `c`), one is cancelled midway.
fn log() -> Vec<EventEnvelope> {
    let (def, wf) = workflow();
    let now = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("time");
    let mut out = vec![EventEnvelope {
        event_id: Uuid::from_u128(100),
        stream_id: StreamId::workflow(WORKFLOW),
        stream_type: StreamType::Workflow,
        version: 1,
        position: 1,
        event: Event::WorkflowCreated {
            workflow_id: WORKFLOW,
            name: "fold".into(),
            version: 1,
            definition: Box::new(def),
        },
        schema_version: SCHEMA_VERSION,
        metadata: EventMetadata::default(),
        recorded_at: now,
        hash: String::new(),
    }];
    let ids = [Uuid::from_u128(11), Uuid::from_u128(12)];
    let mut states: Vec<ExecutionState> = ids
        .iter()
        .map(|_| ExecutionState::new(wf.clone()))
        .collect();
    let run = |states: &mut Vec<ExecutionState>,
               which: usize,
               command: Command,
               out: &mut Vec<EventEnvelope>| {
        // The clock moves a second per event, so retry timers come due.
        let now = now + chrono::TimeDelta::seconds(out.len() as i64);
        let decision = decide(&states[which], command, now).expect("accepted");
        for event in decision.events {
            let env = EventEnvelope {
                event_id: Uuid::now_v7(),
                stream_id: StreamId::execution(ids[which]),
                stream_type: StreamType::Execution,
                version: states[which].version() + 1,
                position: out.len() as u64 + 1,
                event,
                schema_version: SCHEMA_VERSION,
                metadata: EventMetadata::default(),
                recorded_at: now,
                hash: String::new(),
            };
            states[which] = evolve(states[which].clone(), &env);
            out.push(env);
        }
    };
    for (which, id) in ids.iter().enumerate() {
        let start = Command::Start {
            execution_id: *id,
            workflow_id: WORKFLOW,
            input: json!({"x": which}),
            idempotency_key: None,
            parent: None,
            budget: None,
            priority: None,
            concurrency_key: None,
        };
        run(&mut states, which, start, &mut out);
        run(&mut states, which, Command::Advance, &mut out);
    }
    let t = |id: &str, attempt| TaskRef::new(TaskId::parse(id).expect("task id"), attempt);
    for which in 0..2 {
        run(
            &mut states,
            which,
            Command::StartTask {
                task: t("a", 1),
                agent_id: None,
                lease_id: None,
                routing: None,
            },
            &mut out,
        );
        run(
            &mut states,
            which,
            Command::CompleteTask {
                task: t("a", 1),
                output: json!({"a": which}),
                usage: None,
            },
            &mut out,
        );
        run(&mut states, which, Command::Advance, &mut out);
    }
    run(
        &mut states,
        1,
        Command::Cancel {
            reason: Some("enough".into()),
        },
        &mut out,
    );
    run(
        &mut states,
        0,
        Command::StartTask {
            task: t("c", 1),
            agent_id: None,
            lease_id: None,
            routing: None,
        },
        &mut out,
    );
    run(
        &mut states,
        0,
        Command::FailTask {
            task: t("c", 1),
            error: "flaky".into(),
            retryable: true,
            usage: None,
        },
        &mut out,
    );
    run(&mut states, 0, Command::Advance, &mut out);
    for timer in states[0].pending_timers() {
        run(&mut states, 0, Command::TimerFired(timer), &mut out);
    }
    run(&mut states, 0, Command::Advance, &mut out);
    for (task, attempt) in [("b", 1), ("c", 2)] {
        run(
            &mut states,
            0,
            Command::StartTask {
                task: t(task, attempt),
                agent_id: None,
                lease_id: None,
                routing: None,
            },
            &mut out,
        );
        run(
            &mut states,
            0,
            Command::CompleteTask {
                task: t(task, attempt),
                output: json!({}),
                usage: None,
            },
            &mut out,
        );
        run(&mut states, 0, Command::Advance, &mut out);
    }
    run(
        &mut states,
        0,
        Command::StartTask {
            task: t("d", 1),
            agent_id: None,
            lease_id: None,
            routing: None,
        },
        &mut out,
    );
    run(
        &mut states,
        0,
        Command::CompleteTask {
            task: t("d", 1),
            output: json!({"done": true}),
            usage: None,
        },
        &mut out,
    );
    run(&mut states, 0, Command::Advance, &mut out);
    assert!(states[0].is_terminal() && states[1].is_terminal());
    out
}

/// The newest row per key, as the tables would hold after every upsert.
#[derive(Default, Debug, PartialEq)]
struct Tables {
    workflows: BTreeMap<Uuid, WorkflowRow>,
    executions: BTreeMap<Uuid, ExecutionRow>,
    tasks: BTreeMap<(Uuid, String), TaskRow>,
}

impl Tables {
    fn upsert(&mut self, changes: Changes) {
        for w in changes.workflows {
            self.workflows.insert(w.workflow_id, w);
        }
        for e in changes.executions {
            self.executions.insert(e.execution_id, e);
        }
        for t in changes.tasks {
            self.tasks.insert((t.execution_id, t.task_id.clone()), t);
        }
    }
}

/// Folds `log` in batches cut at `cuts`, restarting the projection after each batch
/// the way the projector does (loading what `missing` lists from "the database" and
/// the log up to the checkpoint).
fn fold(log: &[EventEnvelope], cuts: &[usize]) -> Tables {
    let (_, wf) = workflow();
    let mut tables = Tables::default();
    let mut bounds = cuts.to_vec();
    bounds.push(log.len());
    let mut from = 0;
    for to in bounds {
        let batch = &log[from..to];
        let mut projection = Projection::new();
        let missing = projection.missing(batch);
        for id in missing.definitions {
            projection.insert_definition(id, wf.clone());
        }
        for id in missing.workflows {
            projection.insert_workflow(id, tables.workflows.get(&id).cloned());
        }
        for id in missing.executions {
            let stream = StreamId::execution(id);
            let before: Vec<&EventEnvelope> = log[..from]
                .iter()
                .filter(|e| e.stream_id == stream)
                .collect();
            let state = ExecutionState::replay(wf.clone(), before.iter().copied());
            projection.insert_execution(state, before.last().map_or(0, |e| e.position));
            if !projection.has_workflow(WORKFLOW) {
                projection.insert_workflow(WORKFLOW, tables.workflows.get(&WORKFLOW).cloned());
            }
        }
        for env in batch {
            projection.apply(env);
        }
        tables.upsert(projection.take_changes());
        from = to;
    }
    tables
}

#[test]
fn rows_do_not_depend_on_batching_or_restarts() {
    let log = log();
    let whole = fold(&log, &[]);
    for cut in 1..log.len() {
        assert_eq!(fold(&log, &[cut]), whole, "cut at {cut}");
    }
    let every_event: Vec<usize> = (1..log.len()).collect();
    assert_eq!(fold(&log, &every_event), whole);
}

#[test]
fn summaries_count_each_execution_once_under_its_current_status() {
    let tables = fold(&log(), &[]);
    let row = &tables.workflows[&WORKFLOW];
    assert_eq!(row.executions["completed"], 1, "{row:?}");
    assert_eq!(row.executions["cancelled"], 1, "{row:?}");
    assert_eq!(row.executions["running"], 0, "{row:?}");
    assert_eq!(row.latest_execution_id, Some(Uuid::from_u128(12)));
    assert_eq!(row.status, "cancelled");
    let done = &tables.executions[&Uuid::from_u128(11)];
    assert_eq!(done.status, "completed");
    let c = &tables.tasks[&(Uuid::from_u128(11), "c".to_owned())];
    assert_eq!((c.status.as_str(), c.attempts), ("completed", 2));
    assert_eq!(tables.tasks.len(), 8);
}
