//! What every check runs on: the backends (a fresh Postgres database and Redis prefix,
//! or a temporary SQLite file and in-memory queues), the service over them, and the
//! steps a test takes in the engine's place.

use std::sync::Arc;
use std::time::Duration;

use conflux_engine::access::Principal;
use conflux_engine::agents::{Agents, Caller, Lease, PollOptions, Registration};
use conflux_engine::bus::ownership::BusStatus;
use conflux_engine::catalog::WorkflowCatalog;
use conflux_engine::commands::ExecutionCommands;
use conflux_engine::execution::{Command, Effect};
use conflux_engine::queue::local::LocalTaskQueue;
use conflux_engine::queue::redis::RedisTaskQueue;
use conflux_engine::queue::{TaskQueue, Ticket};
use conflux_engine::store::postgres::{PgStore, PgStoreOptions};
use conflux_engine::store::sqlite::SqliteStore;
use conflux_engine::store::{read_whole_stream, EventStore};
use conflux_engine::testing::{delete_redis_prefix, redis_url, unique_prefix, TestDatabase};
use conflux_schema::access::{Role, TenantName};
use conflux_schema::{EventEnvelope, EventMetadata, StreamId};
use serde_json::{json, Value};
use tokio::sync::watch;
use uuid::Uuid;

/// The backends one test runs on, and what it gives back afterwards.
pub struct Backend {
    store: Arc<dyn EventStore>,
    queue: Arc<dyn TaskQueue>,
    held: Held,
}

enum Held {
    Shared { db: TestDatabase, prefix: String },
    Embedded { _dir: tempfile::TempDir },
}

impl Backend {
    /// A fresh Postgres database and Redis task queues under a prefix of their own.
    pub async fn postgres_redis() -> Self {
        let db = TestDatabase::create().await;
        let store = PgStore::connect(&db.url, &PgStoreOptions::default())
            .await
            .expect("store");
        let prefix = unique_prefix();
        let queue = RedisTaskQueue::connect(&redis_url(), &prefix).await.unwrap_or_else(|e| {
            panic!("cannot reach Redis: {e}\nstart it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no")
        });
        Self {
            store: Arc::new(store),
            queue: Arc::new(queue),
            held: Held::Shared { db, prefix },
        }
    }

    /// The embedded SQLite store in a temporary directory and in-memory queues.
    pub async fn embedded() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("conflux.db"))
            .await
            .expect("sqlite store");
        Self {
            store: Arc::new(store),
            queue: Arc::new(LocalTaskQueue::new()),
            held: Held::Embedded { _dir: dir },
        }
    }

    pub async fn teardown(self) {
        if let Held::Shared { db, prefix } = self.held {
            delete_redis_prefix(&prefix).await;
            db.drop_database().await;
        }
    }
}

/// The service under test, and what the tests step by hand around it.
pub struct World {
    pub agents: Agents,
    pub commands: ExecutionCommands,
    pub queue: Arc<dyn TaskQueue>,
    pub bus: watch::Sender<BusStatus>,
}

impl World {
    pub fn new(backend: &Backend) -> Self {
        let catalog = WorkflowCatalog::new(backend.store.clone(), Default::default());
        let commands = ExecutionCommands::new(backend.store.clone(), catalog);
        let (bus, status) = watch::channel(BusStatus::Owned {
            generation: Uuid::now_v7(),
        });
        Self {
            agents: Agents::new(commands.clone(), backend.queue.clone(), status),
            commands,
            queue: backend.queue.clone(),
            bus,
        }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        self.commands.store()
    }

    pub async fn head(&self) -> u64 {
        self.store().head_position().await.expect("head")
    }

    /// Creates `definition` in the caller's tenant, starts one execution of it with
    /// `input`, and dispatches what is ready as the engine would: one `Advance`, then a
    /// ticket for each agent task it enqueues. Returns the execution id.
    pub async fn start(&self, caller: &Caller, definition: Value, input: Value) -> Uuid {
        let definition = serde_json::from_value(definition).expect("a definition");
        let created = self
            .commands
            .catalog()
            .create(definition, caller.metadata.clone())
            .await
            .expect("create the workflow");
        let execution_id = Uuid::now_v7();
        self.commands
            .start(
                created.workflow_id,
                execution_id,
                input,
                None,
                caller.metadata.clone(),
            )
            .await
            .expect("start");
        let engine = EventMetadata {
            actor: Some("engine".into()),
            ..caller.metadata.clone()
        };
        let advanced = self
            .commands
            .record(execution_id, engine, |_, _| Ok(Command::Advance))
            .await
            .expect("advance");
        for effect in advanced.decision.effects {
            if let Effect::EnqueueAgentTask {
                role, task, input, ..
            } = effect
            {
                let ticket = Ticket::for_attempt(execution_id, caller.tenant(), &task, role, input);
                self.queue.enqueue(&ticket).await.expect("enqueue");
            }
        }
        execution_id
    }

    /// Registers an agent of `roles` for `caller`.
    pub async fn register(&self, caller: &Caller, roles: &[&str]) -> Uuid {
        self.agents
            .register(registration("worker", roles), caller)
            .await
            .expect("register")
            .agent_id
    }

    /// Polls until the agent is leased something (at most five seconds).
    pub async fn lease(&self, agent_id: Uuid, caller: &Caller) -> Lease {
        let leases = self
            .agents
            .poll(agent_id, wait(Duration::from_secs(5)), caller)
            .await
            .expect("poll");
        assert_eq!(leases.len(), 1, "{leases:?}");
        leases.into_iter().next().expect("a lease")
    }

    pub async fn log(&self, execution_id: Uuid) -> Vec<EventEnvelope> {
        read_whole_stream(&**self.store(), &StreamId::execution(execution_id))
            .await
            .expect("read the log")
    }
}

pub fn registration(name: &str, roles: &[&str]) -> Registration {
    Registration {
        name: name.to_owned(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        capabilities: Vec::new(),
        capacity: 4,
        cost: None,
    }
}

pub fn wait(wait: Duration) -> PollOptions {
    PollOptions { max: 10, wait }
}

/// A caller in `tenant` holding a key of `role` (agent keys serve `agent_roles`).
pub fn key(tenant: &str, role: Role, agent_roles: &[&str]) -> Caller {
    let key_id = Uuid::new_v4();
    let principal = Principal {
        actor: format!("key:{}", key_id.simple()),
        tenant: TenantName::parse(tenant).expect("tenant"),
        role: Some(role),
        agent_roles: agent_roles.iter().map(|r| (*r).to_owned()).collect(),
        key_id: Some(key_id),
        expires_at: None,
    };
    caller(principal)
}

/// The system administrator (acting in `default`).
pub fn admin() -> Caller {
    caller(Principal::system_admin())
}

fn caller(principal: Principal) -> Caller {
    let metadata = EventMetadata {
        actor: Some(principal.actor.clone()),
        tenant_id: Some(principal.tenant.as_str().to_owned()),
        ..EventMetadata::default()
    };
    Caller {
        principal: Some(principal),
        metadata,
    }
}

/// One agent task of `role` (30 s per attempt, two attempts), then a noop.
pub fn one_agent_task(name: &str, role: &str) -> Value {
    json!({"name": name, "tasks": [
        {"id": "work", "kind": "agent", "agent_role": role, "timeout_seconds": 30,
         "retry": {"max_attempts": 2}, "input": {"order": "${input.order}"}},
        {"id": "after", "kind": "noop", "depends_on": ["work"]}
    ]})
}
