//! `POST /api/v1/workflows` (create, optionally execute), `POST
//! /api/v1/workflows/{id}/execute` (idempotent with `Idempotency-Key`), and pause/resume
//! of every active execution of a workflow.

use std::fmt;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use conflux_engine::commands::{CommandError, StartExtra};
use conflux_engine::execution::{Command, Rejection};
use conflux_engine::quota::{Admission, QuotaError};
use conflux_engine::store::StreamQuery;
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{path_uuid, ApiJson, PathId, QueryParams};
use conflux_schema::api::{
    ExecuteRequest, ExecutionAccepted, ExecutionControlled, WorkflowControlled, WorkflowCreated,
};
use conflux_schema::definition::WorkflowDefinition;
use conflux_schema::status::ExecutionStatus;
use serde::de::value::{MapAccessDeserializer, StringDeserializer};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use uuid::Uuid;

use crate::CommandContext;

/// The namespace of execution ids derived from an idempotency key.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x2c4a_9b1e_77d0_4f5e_8c3b_19a6_d2e4_5f70);

/// The body of `POST /api/v1/workflows`: a definition, and the input when `?execute=true`.
///
/// Both share one object. It is not read with `#[serde(flatten)]`, which would hide the
/// definition's unknown fields from the strict JSON extractor: `input` is set aside as
/// the object is read, and every other field goes to the definition as it comes.
#[derive(Debug)]
pub struct CreateBody {
    definition: WorkflowDefinition,
    input: Option<Value>,
}

impl<'de> Deserialize<'de> for CreateBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(CreateBodyVisitor)
    }
}

struct CreateBodyVisitor;

impl<'de> Visitor<'de> for CreateBodyVisitor {
    type Value = CreateBody;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a workflow definition")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CreateBody, A::Error> {
        let mut fields = WithoutInput { map, input: None };
        let definition = WorkflowDefinition::deserialize(MapAccessDeserializer::new(&mut fields))?;
        Ok(CreateBody {
            definition,
            input: fields.input.flatten(),
        })
    }
}

/// The fields of a create body but `input`, which it keeps aside (`Some` once seen).
struct WithoutInput<A> {
    map: A,
    input: Option<Option<Value>>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for WithoutInput<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.map.next_key::<String>()? {
            if key != "input" {
                return seed.deserialize(StringDeserializer::new(key)).map(Some);
            }
            if self.input.is_some() {
                return Err(de::Error::duplicate_field("input"));
            }
            self.input = Some(self.map.next_value()?);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// `POST /api/v1/workflows[?execute=true]` → 201. `execute` is `true`, `1` or empty to
/// start an execution, `false` or `0` (the default) not to.
pub async fn create(
    State(ctx): State<CommandContext>,
    q: QueryParams,
    request: RequestContext,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<WorkflowCreated>), ApiError> {
    let execute = q.flag("execute")?;
    let meta = request.event_metadata();
    let tenant = request.tenant();
    ctx.quotas.check_payload_of(tenant, &body.definition)?;
    let input = body.input.unwrap_or(Value::Object(Default::default()));
    let _start = if execute {
        ctx.quotas.check_payload_of(tenant, &input)?;
        Some(ctx.quotas.admit(tenant, Admission::Start).await?)
    } else {
        None
    };
    let _defined = ctx.quotas.admit(tenant, Admission::Define).await?;
    let created = ctx
        .commands
        .catalog()
        .create(body.definition, meta.clone())
        .await?;
    let mut response = WorkflowCreated {
        workflow_id: created.workflow_id,
        name: created.workflow.name().as_str().to_owned(),
        version: created.version,
        task_count: created.workflow.len() as u64,
        created_at: created.event.recorded_at,
        execution_id: None,
    };
    if execute {
        let execution_id = Uuid::now_v7();
        ctx.commands
            .start(created.workflow_id, execution_id, input, None, meta)
            .await?;
        response.execution_id = Some(execution_id);
    }
    Ok((StatusCode::CREATED, Json(response)))
}

/// `POST /api/v1/workflows/{id}/execute` → 202, or 200 for a repeated idempotency key.
pub async fn execute(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    headers: HeaderMap,
    request: RequestContext,
    ApiJson(body): ApiJson<ExecuteRequest>,
) -> Result<(StatusCode, Json<ExecutionAccepted>), ApiError> {
    let workflow_id = path_uuid(&id, "workflow")?;
    let meta = request.event_metadata();
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .map_err(|_| ApiError::invalid_request("Idempotency-Key must be visible ASCII"))?;
            if key.is_empty() || key.len() > 255 {
                return Err(ApiError::invalid_request(
                    "Idempotency-Key must be 1 to 255 characters",
                ));
            }
            Some(key.to_owned())
        }
    };
    let execution_id = match &key {
        Some(k) => Uuid::new_v5(
            &IDEMPOTENCY_NAMESPACE,
            format!("{workflow_id}\u{0}{k}").as_bytes(),
        ),
        None => Uuid::now_v7(),
    };
    let input = body.input.unwrap_or(Value::Object(Default::default()));
    if let Some(budget) = &body.budget {
        budget.check().map_err(|reason| {
            ApiError::invalid_request(reason.clone())
                .with_details(serde_json::json!({"field": "budget", "reason": reason}))
        })?;
    }
    if let Some(priority) = body.priority {
        conflux_schema::kind::check_priority(priority).map_err(|reason| {
            ApiError::invalid_request(reason.clone())
                .with_details(serde_json::json!({"field": "priority", "reason": reason}))
        })?;
    }
    let response = ExecutionAccepted {
        execution_id,
        workflow_id,
        status: ExecutionStatus::Running,
    };
    let admitted = ctx
        .quotas
        .check_payload_of(request.tenant(), &input)
        .map_err(QuotaError::from);
    let admitted = match admitted {
        Ok(()) => ctx.quotas.admit(request.tenant(), Admission::Start).await,
        Err(e) => Err(e),
    };
    let _admitted = match admitted {
        Ok(admitted) => admitted,
        // A repeat of a key that already started its execution is not a new start:
        // it answers as always, whatever the quotas say now.
        Err(QuotaError::Exceeded(refused)) if key.is_some() => {
            match ctx.commands.load_in(request.tenant(), execution_id).await? {
                Some((state, _)) => {
                    return Ok((
                        StatusCode::OK,
                        Json(ExecutionAccepted {
                            status: state.status(),
                            ..response
                        }),
                    ))
                }
                None => return Err(refused.into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    match ctx
        .commands
        .start_with(
            workflow_id,
            execution_id,
            input,
            key.clone(),
            meta,
            StartExtra {
                parent: None,
                budget: body.budget,
                priority: body.priority,
            },
        )
        .await
    {
        // `queued` when its concurrency key has no free slot.
        Ok(recorded) => Ok((
            StatusCode::ACCEPTED,
            Json(ExecutionAccepted {
                status: recorded.state.status(),
                ..response
            }),
        )),
        // The key was used before: same execution, nothing new started.
        Err(CommandError::Rejected(Rejection::AlreadyStarted)) if key.is_some() => {
            let status = ctx
                .commands
                .load_in(request.tenant(), execution_id)
                .await?
                .map_or(ExecutionStatus::Running, |(state, _)| state.status());
            Ok((
                StatusCode::OK,
                Json(ExecutionAccepted { status, ..response }),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /api/v1/workflows/{id}/pause` and `/resume`: applies to every active execution.
pub async fn control(
    ctx: CommandContext,
    id: String,
    meta: conflux_schema::EventMetadata,
    command: fn() -> Command,
) -> Result<(StatusCode, Json<WorkflowControlled>), ApiError> {
    let workflow_id = path_uuid(&id, "workflow")?;
    let known = ctx
        .commands
        .catalog()
        .get_in(meta.tenant(), workflow_id)
        .await?;
    if known.is_none() {
        return Err(ApiError::not_found(format!(
            "workflow {workflow_id} not found"
        )));
    }
    let open = ctx
        .commands
        .store()
        .find_streams(
            &StreamQuery::ExecutionsOfWorkflow {
                workflow_id,
                open_only: true,
            },
            100_000,
        )
        .await?;
    let mut changed = Vec::new();
    for stream in open {
        let id = stream.uuid();
        // Executions already in the requested state (or finished meanwhile) are skipped.
        match ctx
            .commands
            .record(id, meta.clone(), |_, _| Ok(command()))
            .await
        {
            Ok(recorded) => changed.push(ExecutionControlled {
                execution_id: id,
                status: recorded.state.status(),
            }),
            Err(CommandError::Rejected(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(WorkflowControlled {
            workflow_id,
            executions: changed,
        }),
    ))
}

/// `POST /api/v1/workflows/{id}/pause`.
pub async fn pause(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<(StatusCode, Json<WorkflowControlled>), ApiError> {
    control(ctx, id, request.event_metadata(), || Command::Pause).await
}

/// `POST /api/v1/workflows/{id}/resume`.
pub async fn resume(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<(StatusCode, Json<WorkflowControlled>), ApiError> {
    control(ctx, id, request.event_metadata(), || Command::Resume).await
}
