//! Audit and replay (API.md "Audit and replay"): an execution's log as JSON pages or as
//! an NDJSON stream, the execution as it stood after any event, the hash chain's
//! verification, and a workflow's merged log. Everything here is read straight from
//! the event store and folded with the engine's own `evolve` — no read model — so an
//! auditor sees exactly what the engine acted on, and a read model that drifted cannot
//! hide it.

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use conflux_command_api::error::ApiError;
use conflux_command_api::extract::path_uuid;
use conflux_engine::commands::ExecutionCommands;
use conflux_engine::execution::ExecutionState;
use conflux_engine::store::{read_whole_stream, EventStore, StoreError, StreamQuery};
use conflux_schema::{Event, EventEnvelope, StreamId};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use uuid::Uuid;

/// Events read from the store per page, for NDJSON streaming and default JSON pages.
const PAGE: usize = 1000;
/// The largest `limit` a JSON page accepts.
const MAX_LIMIT: usize = 10_000;
/// The most executions of one workflow whose events `/workflows/{id}/events` merges.
const MAX_EXECUTIONS: usize = 100_000;

/// The audit routes: execution events (JSON or NDJSON), replay, verify, workflow events.
pub fn router(commands: ExecutionCommands) -> Router {
    Router::new()
        .route("/api/v1/executions/{id}/events", get(execution_events))
        .route("/api/v1/executions/{id}/replay", get(replay))
        .route("/api/v1/executions/{id}/verify", get(verify))
        .route("/api/v1/workflows/{id}/events", get(workflow_events))
        .with_state(commands)
}

/// Query parameters as axum parses them, with a rejection that is our own 400.
fn params<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::invalid_request(format!("bad query parameters: {}", e.body_text())))
}

fn check_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(PAGE);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(
            ApiError::invalid_request(format!("limit must be between 1 and {MAX_LIMIT}"))
                .with_details(json!({"limit": limit})),
        )
    }
}

fn execution_not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("execution {id} not found"))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    after_version: Option<u64>,
    limit: Option<usize>,
    format: Option<String>,
}

/// `GET /api/v1/executions/{id}/events`: a JSON page (`after_version`, `limit`), or with
/// `format=ndjson` the whole log streamed one envelope a line.
async fn execution_events(
    State(commands): State<ExecutionCommands>,
    Path(id): Path<String>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let execution_id = path_uuid(&id, "execution")?;
    let q = params(q)?;
    let stream = StreamId::execution(execution_id);
    let store = commands.store().clone();
    match q.format.as_deref() {
        None | Some("json") => {}
        Some("ndjson") => {
            // The first page is read before answering, so an unknown execution is a
            // 404 and not an empty 200 stream.
            let first = store.read_stream(&stream, 0, PAGE).await?;
            if first.is_empty() {
                return Err(execution_not_found(execution_id));
            }
            return Ok(ndjson_response(store, stream, first));
        }
        Some(other) => {
            return Err(
                ApiError::invalid_request(format!("unknown format {other:?}"))
                    .with_details(json!({"format": other, "allowed": ["json", "ndjson"]})),
            )
        }
    }
    let limit = check_limit(q.limit)?;
    let after = q.after_version.unwrap_or(0);
    let events = store.read_stream(&stream, after, limit).await?;
    if events.is_empty() && (after == 0 || store.stream_version(&stream).await? == 0) {
        return Err(execution_not_found(execution_id));
    }
    let next = events
        .last()
        .map(|e| e.version)
        .filter(|_| events.len() == limit);
    Ok(Json(json!({"events": events, "next_after_version": next})).into_response())
}

/// Streams `stream` as NDJSON, starting with the already-read `first` page and reading
/// the rest page by page as the client consumes it, so no more than one page is held.
fn ndjson_response(
    store: Arc<dyn EventStore>,
    stream: StreamId,
    first: Vec<EventEnvelope>,
) -> Response {
    struct Cursor {
        store: Arc<dyn EventStore>,
        stream: StreamId,
        page: Option<Vec<EventEnvelope>>,
    }
    let start = Cursor {
        store,
        stream,
        page: Some(first),
    };
    let body = futures::stream::try_unfold(start, |mut cur| async move {
        let page = match cur.page.take() {
            Some(page) => page,
            None => return Ok::<_, StoreError>(None),
        };
        let mut chunk = Vec::new();
        for event in &page {
            serde_json::to_writer(&mut chunk, event)
                .map_err(|e| StoreError::Backend(format!("cannot encode an event: {e}")))?;
            chunk.push(b'\n');
        }
        if page.len() == PAGE {
            let after = page.last().map_or(0, |e| e.version);
            let next = cur.store.read_stream(&cur.stream, after, PAGE).await;
            match next {
                Ok(next) if !next.is_empty() => cur.page = Some(next),
                Ok(_) => {}
                Err(e) => {
                    // Headers are sent: all that is left is to end the body abnormally.
                    tracing::error!(error = %e, stream = %cur.stream, "ndjson stream aborted");
                    return Err(e);
                }
            }
        }
        Ok(Some((Bytes::from(chunk), cur)))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct ReplayQuery {
    to_version: Option<u64>,
}

/// `GET /api/v1/executions/{id}/replay?to_version=N`: the state after event N, folded
/// from the log.
async fn replay(
    State(commands): State<ExecutionCommands>,
    Path(id): Path<String>,
    q: Result<Query<ReplayQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let execution_id = path_uuid(&id, "execution")?;
    let q = params(q)?;
    let log = read_whole_stream(&**commands.store(), &StreamId::execution(execution_id)).await?;
    let Some(Event::ExecutionStarted { workflow_id, .. }) = log.first().map(|e| &e.event) else {
        return Err(execution_not_found(execution_id));
    };
    let last = log.len() as u64;
    let to = q.to_version.unwrap_or(last);
    if to == 0 || to > last {
        return Err(
            ApiError::invalid_request(format!("to_version must be between 1 and {last}"))
                .with_details(json!({"last_version": last, "to_version": to})),
        );
    }
    let workflow = commands.catalog().get(*workflow_id).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "workflow {workflow_id} of execution {execution_id}"
        ))
    })?;
    // Versions are gap-free from 1, so the first `to` events are versions 1..=to.
    let state = ExecutionState::replay(workflow, log.iter().take_while(|e| e.version <= to));
    Ok(Json(json!({"to_version": to, "state": state.to_json()})))
}

/// `GET /api/v1/executions/{id}/verify`: the stored hash chain, recomputed.
async fn verify(
    State(commands): State<ExecutionCommands>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let execution_id = path_uuid(&id, "execution")?;
    let stream = StreamId::execution(execution_id);
    let outcome = commands.store().verify_stream(&stream).await?;
    if outcome.events == 0 {
        return Err(execution_not_found(execution_id));
    }
    Ok(Json(json!(outcome)))
}

#[derive(Debug, Deserialize)]
struct WorkflowEventsQuery {
    after_position: Option<u64>,
    limit: Option<usize>,
}

/// `GET /api/v1/workflows/{id}/events`: the workflow stream and every execution of it,
/// merged in position order.
///
/// This reads every stream of the workflow (up to `limit` events of each past
/// `after_position`) and merges them: fine for workflows of a few thousand
/// executions. A per-workflow position index, or a projector-maintained table, should
/// replace it for very large workflows.
async fn workflow_events(
    State(commands): State<ExecutionCommands>,
    Path(id): Path<String>,
    q: Result<Query<WorkflowEventsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let workflow_id = path_uuid(&id, "workflow")?;
    let q = params(q)?;
    let limit = check_limit(q.limit)?;
    let after = q.after_position.unwrap_or(0);
    let store = commands.store();
    let workflow_stream = StreamId::workflow(workflow_id);
    if store.stream_version(&workflow_stream).await? == 0 {
        return Err(ApiError::not_found(format!(
            "workflow {workflow_id} not found"
        )));
    }
    let query = StreamQuery::ExecutionsOfWorkflow {
        workflow_id,
        open_only: false,
    };
    let mut streams = vec![workflow_stream];
    streams.extend(store.find_streams(&query, MAX_EXECUTIONS).await?);
    let mut merged = Vec::new();
    for stream in &streams {
        merged.extend(events_after_position(&**store, stream, after, limit).await?);
    }
    merged.sort_by_key(|e| e.position);
    merged.truncate(limit);
    let next = merged
        .last()
        .map(|e| e.position)
        .filter(|_| merged.len() == limit);
    Ok(Json(json!({"events": merged, "next_after_position": next})))
}

/// Up to `limit` events of `stream` with position > `after`, in order. Within a stream
/// positions grow with versions, so everything past the first match also matches.
async fn events_after_position(
    store: &dyn EventStore,
    stream: &StreamId,
    after: u64,
    limit: usize,
) -> Result<Vec<EventEnvelope>, StoreError> {
    let mut out = Vec::new();
    let mut after_version = 0;
    loop {
        let page = store.read_stream(stream, after_version, PAGE).await?;
        let full = page.len() == PAGE;
        after_version = page.last().map_or(after_version, |e| e.version);
        out.extend(page.into_iter().filter(|e| e.position > after));
        if !full || out.len() >= limit {
            out.truncate(limit);
            return Ok(out);
        }
    }
}
