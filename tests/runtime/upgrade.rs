//! A store written before tenants existed upgrades in place: its events (with no
//! `tenant_id`) and its read-model rows (tables without a tenant column) belong to
//! tenant `default`. The test writes such a store itself — old events through the
//! store, old read-model tables and rows with the old DDL, the checkpoint after the
//! first event — then starts this version's server on it.

use std::time::Duration;

use conflux::config::Config;
use conflux_engine::catalog::workflow_id;
use conflux_schema::definition::WorkflowDefinition;
use conflux_schema::{Event, EventMetadata, NewEvent, StreamId};
use serde_json::{json, Value};

use crate::harness::{Mode, TestServer};

const OLD_WORKFLOWS: &str = "CREATE TABLE rm_workflows (
    workflow_id {uuid} PRIMARY KEY, name TEXT NOT NULL, version BIGINT NOT NULL,
    task_count BIGINT NOT NULL, created_at {time} NOT NULL,
    created_position BIGINT NOT NULL, definition TEXT NOT NULL, status TEXT NOT NULL,
    latest_execution_id {uuid}, executions TEXT NOT NULL, position BIGINT NOT NULL)";
const OLD_EXECUTIONS: &str = "CREATE TABLE rm_executions (
    execution_id {uuid} PRIMARY KEY, workflow_id {uuid} NOT NULL, status TEXT NOT NULL,
    version BIGINT NOT NULL, position BIGINT NOT NULL, started_at {time},
    completed_at {time}, input TEXT NOT NULL, output TEXT, error TEXT)";
const OLD_CHECKPOINTS: &str =
    "CREATE TABLE rm_checkpoints (name TEXT PRIMARY KEY, position BIGINT NOT NULL)";

fn definition() -> Value {
    json!({"name": "legacy", "tasks": [{"id": "a", "kind": "noop", "input": {"n": "${input.n}"}}]})
}

/// The old read models: the tables as they were, one workflow row, checkpoint 1.
async fn old_read_models(config: &Config, workflow: uuid::Uuid) {
    let row = |sql: &str| {
        sql.replace(
            "{uuid}",
            if config.database_url.is_some() {
                "UUID"
            } else {
                "BLOB"
            },
        )
        .replace(
            "{time}",
            if config.database_url.is_some() {
                "TIMESTAMPTZ"
            } else {
                "TEXT"
            },
        )
    };
    let ddl = [
        row(OLD_WORKFLOWS),
        row(OLD_EXECUTIONS),
        OLD_CHECKPOINTS.to_owned(),
    ];
    let insert =
        "INSERT INTO rm_workflows VALUES ($1, 'legacy', 1, 1, $2, 1, $3, 'idle', NULL, $4, 1)";
    let checkpoint = "INSERT INTO rm_checkpoints VALUES ('read_models', 1)";
    let counts = r#"{"running":0,"completed":0,"failed":0,"cancelled":0,"paused":0,"compensating":0,"compensated":0}"#;
    let now = chrono::Utc::now();
    let text = definition().to_string();
    // The same statements on either database (the pools' types differ).
    macro_rules! write_old {
        ($pool:expr) => {{
            let pool = $pool;
            for sql in &ddl {
                sqlx::query(sql).execute(&pool).await.expect("old ddl");
            }
            sqlx::query(insert)
                .bind(workflow)
                .bind(now)
                .bind(&text)
                .bind(counts)
                .execute(&pool)
                .await
                .expect("old row");
            sqlx::query(checkpoint)
                .execute(&pool)
                .await
                .expect("checkpoint");
            pool.close().await;
        }};
    }
    match &config.database_url {
        Some(url) => write_old!(sqlx::PgPool::connect(url).await.expect("connect")),
        None => {
            std::fs::create_dir_all(&config.data_dir).expect("data dir");
            let path = config.data_dir.join("read-models.db");
            let url = format!("sqlite://{}?mode=rwc", path.display());
            write_old!(sqlx::SqlitePool::connect(&url).await.expect("open"))
        }
    }
}

/// The old events: a workflow and an execution of it, with no tenant anywhere.
async fn old_events(config: &Config, workflow: uuid::Uuid, execution: uuid::Uuid) {
    let backends = conflux::backends::Backends::open(config)
        .await
        .expect("open the backends");
    let old = EventMetadata {
        actor: Some("api".into()),
        ..EventMetadata::default()
    };
    let definition: WorkflowDefinition =
        serde_json::from_value(definition()).expect("a definition");
    let created = Event::WorkflowCreated {
        workflow_id: workflow,
        name: "legacy".into(),
        version: 1,
        definition: Box::new(definition),
    };
    let written = backends
        .store
        .append(
            &StreamId::workflow(workflow),
            0,
            vec![NewEvent::new(created, old.clone())],
        )
        .await
        .expect("append");
    assert_eq!(
        written[0].position, 1,
        "the old row's checkpoint is this event"
    );
    let started = Event::ExecutionStarted {
        execution_id: execution,
        workflow_id: workflow,
        input: json!({"n": 7}),
        idempotency_key: None,
        parent: None,
    };
    backends
        .store
        .append(
            &StreamId::execution(execution),
            0,
            vec![NewEvent::new(started, old)],
        )
        .await
        .expect("append");
}

async fn upgrades_in_place(mode: Mode) {
    let workflow = workflow_id("default", "legacy", 1);
    let execution = uuid::Uuid::now_v7();
    let server = TestServer::start_seeded(mode, |config| async move {
        old_read_models(&config, workflow).await;
        old_events(&config, workflow, execution).await;
    })
    .await;

    // The engine finishes the old execution, in tenant `default`.
    let done = server.wait_terminal(&execution.to_string()).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["a"]["n"], 7, "{done}");
    let log = server.events(&execution.to_string()).await;
    let tenants: Vec<&Value> = log.0.iter().map(|e| &e["metadata"]["tenant_id"]).collect();
    assert_eq!(
        tenants[0],
        &Value::Null,
        "the old event is as it was written"
    );
    assert!(
        tenants[1..].iter().all(|t| *t == "default"),
        "the engine's events are default's: {tenants:?}"
    );
    let (status, verified) = server
        .get(&format!("/api/v1/executions/{execution}/verify"))
        .await;
    assert_eq!(
        (status, &verified["valid"]),
        (200, &json!(true)),
        "{verified}"
    );

    // The old read-model row is default's, and the projector carries it on.
    let status = loop {
        let (status, body) = server
            .get(&format!("/api/v1/workflows/{workflow}/status"))
            .await;
        assert_eq!(status, 200, "{body}");
        if body["executions"]["completed"] == 1 {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["name"], "legacy");
    let (_, list) = server.get("/api/v1/workflows?name=legacy").await;
    assert_eq!(
        list["items"][0]["workflow_id"],
        workflow.to_string(),
        "{list}"
    );

    // Names go on per tenant: default's next `legacy` is version 2; another tenant's
    // first is version 1 and sees nothing of default's.
    let (_, v2) = server.post("/api/v1/workflows", definition()).await;
    assert_eq!(v2["version"], 2, "{v2}");
    let (status, _) = server
        .post("/api/v1/tenants", json!({"tenant": "acme"}))
        .await;
    assert_eq!(status, 201);
    let (_, key) = server
        .post(
            "/api/v1/keys",
            json!({"name": "acme", "role": "developer", "tenant": "acme"}),
        )
        .await;
    let acme = key["token"].as_str().expect("token");
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{}/api/v1/workflows", server.base))
        .bearer_auth(acme)
        .json(&definition())
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(created["version"], 1, "{created}");
    // Lists come from the read models: wait for the projector.
    let listed = loop {
        let listed: Value = client
            .get(format!("{}/api/v1/workflows", server.base))
            .bearer_auth(acme)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if !listed["items"].as_array().is_some_and(Vec::is_empty) {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["workflow_id"], created["workflow_id"], "{listed}");
    server.stop().await;
}

/// Postgres + Redis: old tables in the store's database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redis_a_store_from_before_tenants_upgrades_in_place() {
    upgrades_in_place(Mode::PostgresRedis).await;
}

/// Embedded: old tables in the read-model SQLite file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_store_from_before_tenants_upgrades_in_place() {
    upgrades_in_place(Mode::Embedded).await;
}
