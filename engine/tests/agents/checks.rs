//! The checks, each run once per backend (see `main.rs`).

use std::time::Duration;

use chrono::Utc;
use conflux_engine::agents::{AgentError, Registration, Report};
use conflux_engine::bus::ownership::BusStatus;
use conflux_engine::execution::Command;
use conflux_schema::access::Role;
use conflux_schema::{Event, StreamId};
use serde_json::json;
use uuid::Uuid;

use crate::world::{admin, key, one_agent_task, registration, wait, World};

/// A registered agent is leased the ticket of its role (the lease recorded as
/// `TaskStarted` by `agent:<id>`, with the resolved input and a deadline); a heartbeat
/// and a completion by lease are recorded against that attempt.
pub async fn register_poll_heartbeat_complete(w: &World) {
    let boss = admin();
    let agent_id = w.register(&boss, &["picker"]).await;
    let agent = w
        .agents
        .agent("default", agent_id)
        .await
        .expect("read")
        .expect("the agent is registered");
    assert_eq!(
        (agent.tenant.as_str(), agent.roles.as_slice()),
        ("default", &["picker".to_owned()][..])
    );
    let stream = w
        .store()
        .read_stream(&StreamId::agent(agent_id), 0, 10)
        .await
        .expect("agent stream");
    assert!(
        matches!(&stream[..], [e] if matches!(&e.event, Event::AgentRegistered { name, .. } if name == "worker")),
        "{stream:?}"
    );

    let execution = w
        .start(&boss, one_agent_task("pick", "picker"), json!({"order": 7}))
        .await;
    let lease = w.lease(agent_id, &boss).await;
    assert_eq!(
        (
            lease.execution_id,
            lease.task_id.as_str(),
            lease.attempt,
            lease.compensation
        ),
        (execution, "work", 1, false)
    );
    assert_eq!(lease.input, json!({"order": 7}));
    let deadline = lease.deadline.expect("a 30 s attempt has a deadline");
    assert!(
        deadline > Utc::now() + chrono::Duration::seconds(20),
        "{deadline}"
    );

    let log = w.log(execution).await;
    let started = log.last().expect("events");
    match &started.event {
        Event::TaskStarted {
            agent_id: Some(a),
            lease_id: Some(l),
            attempt: 1,
            ..
        } => assert_eq!((*a, *l), (agent_id, lease.lease_id)),
        other => panic!("expected TaskStarted, got {other:?}"),
    }
    assert_eq!(
        started.metadata.actor.as_deref(),
        Some(format!("agent:{agent_id}").as_str())
    );

    let beat = w
        .agents
        .report(lease.lease_id, Report::Heartbeat, &boss)
        .await
        .expect("heartbeat");
    assert_eq!(beat.recorded, "heartbeat");
    let done = w
        .agents
        .report(
            lease.lease_id,
            Report::Complete {
                output: json!({"picked": 7}),
                usage: None,
            },
            &boss,
        )
        .await
        .expect("complete");
    assert_eq!(
        (
            done.lease_id,
            done.execution_id,
            done.task.task.as_str(),
            done.task.attempt,
            done.recorded
        ),
        (lease.lease_id, execution, "work", 1, "completed")
    );
    let log = w.log(execution).await;
    match &log.last().expect("events").event {
        Event::TaskCompleted {
            task_id, output, ..
        } => {
            assert_eq!((task_id.as_str(), output), ("work", &json!({"picked": 7})))
        }
        other => panic!("expected TaskCompleted, got {other:?}"),
    }
    // Nothing else waits for the agent.
    let more = w
        .agents
        .poll(agent_id, wait(Duration::ZERO), &boss)
        .await
        .expect("poll");
    assert!(more.is_empty(), "{more:?}");
}

/// A lease whose attempt already finished, or whose execution was cancelled, is
/// `StaleLease` for every report and records nothing; a ticket of a cancelled execution
/// is dropped by the poll instead of leased.
pub async fn a_stale_lease_records_nothing(w: &World) {
    let boss = admin();
    let agent_id = w.register(&boss, &["picker"]).await;
    let execution = w
        .start(
            &boss,
            one_agent_task("stale", "picker"),
            json!({"order": 1}),
        )
        .await;
    let lease = w.lease(agent_id, &boss).await;
    let complete = Report::Complete {
        output: json!({}),
        usage: None,
    };
    w.agents
        .report(lease.lease_id, complete.clone(), &boss)
        .await
        .expect("complete");
    let before = w.log(execution).await.len();
    let fail = Report::Fail {
        error: "too late".into(),
        retryable: true,
        usage: None,
    };
    for report in [complete.clone(), fail.clone(), Report::Heartbeat] {
        match w.agents.report(lease.lease_id, report, &boss).await {
            Err(AgentError::StaleLease(l)) => assert_eq!(l, lease.lease_id),
            other => panic!("expected StaleLease, got {other:?}"),
        }
    }
    assert_eq!(
        w.log(execution).await.len(),
        before,
        "a stale lease recorded something"
    );

    // A lease of an execution cancelled while the agent works.
    let cancelled = w
        .start(
            &boss,
            one_agent_task("cancelled", "picker"),
            json!({"order": 2}),
        )
        .await;
    let lease = w.lease(agent_id, &boss).await;
    w.commands
        .record(cancelled, boss.metadata.clone(), |_, _| {
            Ok(Command::Cancel { reason: None })
        })
        .await
        .expect("cancel");
    let before = w.log(cancelled).await;
    assert_eq!(
        before.last().map(|e| e.event.type_name()),
        Some("ExecutionCancelled")
    );
    for report in [complete, fail, Report::Heartbeat] {
        assert!(matches!(
            w.agents.report(lease.lease_id, report, &boss).await,
            Err(AgentError::StaleLease(_))
        ),);
    }
    assert_eq!(w.log(cancelled).await.len(), before.len());

    // A ticket of an execution cancelled before any agent took it is dropped.
    let dropped = w
        .start(
            &boss,
            one_agent_task("dropped", "picker"),
            json!({"order": 3}),
        )
        .await;
    w.commands
        .record(dropped, boss.metadata.clone(), |_, _| {
            Ok(Command::Cancel { reason: None })
        })
        .await
        .expect("cancel");
    let before = w.log(dropped).await.len();
    let leases = w
        .agents
        .poll(agent_id, wait(Duration::from_millis(200)), &boss)
        .await
        .expect("poll");
    assert!(leases.is_empty(), "{leases:?}");
    assert_eq!(w.log(dropped).await.len(), before);
    assert_eq!(w.queue.depth("default", "picker").await.expect("depth"), 0);
}

/// An agent key serves only the agent roles on it: registering or polling an agent of
/// another role is `RolesNotServed`, reporting a lease of another role's task is
/// `Forbidden`; each records nothing. Other callers may serve any role.
pub async fn agent_keys_serve_only_their_roles(w: &World) {
    let boss = admin();
    let picker = key("default", Role::Agent, &["picker"]);
    let head = w.head().await;
    match w
        .agents
        .register(registration("p", &["picker", "packer"]), &picker)
        .await
    {
        Err(AgentError::RolesNotServed { refused, allowed }) => {
            assert_eq!(
                (refused, allowed),
                (vec!["packer".to_owned()], vec!["picker".to_owned()])
            )
        }
        other => panic!("expected RolesNotServed, got {other:?}"),
    }
    assert_eq!(
        w.head().await,
        head,
        "a refused registration recorded something"
    );
    w.register(&picker, &["picker"]).await;

    // A packer agent, registered by a developer key, takes a lease.
    let developer = key("default", Role::Developer, &[]);
    let packer_id = w.register(&developer, &["packer"]).await;
    assert!(matches!(
        w.agents
            .poll(packer_id, wait(Duration::ZERO), &picker)
            .await,
        Err(AgentError::RolesNotServed { .. })
    ));
    let execution = w
        .start(&boss, one_agent_task("pack", "packer"), json!({"order": 4}))
        .await;
    let lease = w.lease(packer_id, &developer).await;
    let before = w.log(execution).await.len();
    for report in [
        Report::Complete {
            output: json!({}),
            usage: None,
        },
        Report::Heartbeat,
    ] {
        assert!(
            matches!(
                w.agents.report(lease.lease_id, report, &picker).await,
                Err(AgentError::Forbidden(_))
            ),
            "a picker key reports no packer lease"
        );
    }
    assert_eq!(w.log(execution).await.len(), before, "nothing recorded");
    let packer = key("default", Role::Agent, &["packer"]);
    w.agents
        .report(
            lease.lease_id,
            Report::Complete {
                output: json!({}),
                usage: None,
            },
            &packer,
        )
        .await
        .expect("a packer key reports its lease");
}

/// Another tenant's agent, and a lease of another tenant's execution, are `NotFound`,
/// exactly as unknown ones; each tenant's own work goes through.
pub async fn another_tenants_agents_and_leases_are_not_found(w: &World) {
    let boss = admin();
    let acme = key("acme", Role::Admin, &[]);
    let acme_agent = w.register(&acme, &["picker"]).await;
    assert!(w
        .agents
        .agent("default", acme_agent)
        .await
        .expect("read")
        .is_none());
    assert!(w
        .agents
        .agent("acme", acme_agent)
        .await
        .expect("read")
        .is_some());
    match w.agents.poll(acme_agent, wait(Duration::ZERO), &boss).await {
        Err(AgentError::NotFound(what)) => {
            assert_eq!(what, format!("agent {acme_agent} not found"))
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let unknown = Uuid::now_v7();
    assert!(matches!(
        w.agents.poll(unknown, wait(Duration::ZERO), &acme).await,
        Err(AgentError::NotFound(_))
    ));

    // A default agent of the same role never takes acme's ticket.
    let default_agent = w.register(&boss, &["picker"]).await;
    let execution = w
        .start(
            &acme,
            one_agent_task("acme-pick", "picker"),
            json!({"order": 5}),
        )
        .await;
    let none = w
        .agents
        .poll(default_agent, wait(Duration::from_millis(200)), &boss)
        .await
        .expect("poll");
    assert!(none.is_empty(), "{none:?}");
    let lease = w.lease(acme_agent, &acme).await;
    assert_eq!(lease.execution_id, execution);
    let before = w.log(execution).await.len();
    for caller in [&boss, &key("default", Role::Agent, &["picker"])] {
        assert!(
            matches!(
                w.agents
                    .report(lease.lease_id, Report::Heartbeat, caller)
                    .await,
                Err(AgentError::NotFound(_))
            ),
            "another tenant's lease is not found"
        );
    }
    assert!(matches!(
        w.agents
            .report(Uuid::now_v7(), Report::Heartbeat, &acme)
            .await,
        Err(AgentError::NotFound(_))
    ));
    assert_eq!(w.log(execution).await.len(), before);
    w.agents
        .report(
            lease.lease_id,
            Report::Complete {
                output: json!({}),
                usage: None,
            },
            &acme,
        )
        .await
        .expect("acme reports its own lease");
}

/// While the bus is not this store's, polls and reports are `Unavailable` (no ticket
/// is taken, nothing recorded); once it is again, the waiting ticket is leased.
pub async fn nothing_is_served_while_the_bus_is_not_the_stores(w: &World) {
    let boss = admin();
    let agent_id = w.register(&boss, &["picker"]).await;
    let execution = w
        .start(
            &boss,
            one_agent_task("fenced", "picker"),
            json!({"order": 6}),
        )
        .await;
    for status in [
        BusStatus::Checking,
        BusStatus::Refused {
            reason: "another store's events".into(),
        },
    ] {
        w.bus.send_replace(status);
        assert!(matches!(
            w.agents.poll(agent_id, wait(Duration::ZERO), &boss).await,
            Err(AgentError::Unavailable(_))
        ));
        assert!(matches!(
            w.agents
                .report(Uuid::now_v7(), Report::Heartbeat, &boss)
                .await,
            Err(AgentError::Unavailable(_))
        ));
    }
    assert_eq!(
        w.queue.depth("default", "picker").await.expect("depth"),
        1,
        "the ticket waits"
    );
    w.bus.send_replace(BusStatus::Owned {
        generation: Uuid::now_v7(),
    });
    let lease = w.lease(agent_id, &boss).await;
    assert_eq!(lease.execution_id, execution);
}

/// A registration without a name, without roles, with an empty role or a capacity of 0
/// is `Invalid` and records nothing.
pub async fn registrations_are_validated(w: &World) {
    let boss = admin();
    let head = w.head().await;
    for bad in [
        registration(" ", &["picker"]),
        registration("a", &[]),
        registration("a", &["picker", " "]),
        Registration {
            capacity: 0,
            cost: None,
            ..registration("a", &["picker"])
        },
    ] {
        assert!(
            matches!(
                w.agents.register(bad.clone(), &boss).await,
                Err(AgentError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        w.head().await,
        head,
        "a refused registration recorded something"
    );
}
