//! Audit and replay (API.md "Audit and replay"): an execution's log as JSON pages or as
//! an NDJSON stream, the execution as it stood after any event, the hash chain's
//! verification, and a workflow's merged log. Everything here is read straight from
//! the event store and folded with the engine's own `evolve` — no read model — so an
//! auditor sees exactly what the engine acted on, and a read model that drifted cannot
//! hide it.
//!
//! # Query parameters
//!
//! Parameters are read by [`QueryParams`] (its rules: a bad one is a JSON 400 naming it,
//! unknown ones are ignored). Positions and versions (`after_version`,
//! `after_position`, `to_version`) are whole numbers `0..=2^63-1`; `limit` is
//! `1..=`[`MAX_LIMIT`] (10,000) and defaults to 1,000; `format` is `json` (the default)
//! or `ndjson` (which streams the whole log: `after_version` and `limit` are still
//! checked, but not applied). A path id that is not UTF-8 once decoded is a 404, like
//! any id that cannot exist.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use conflux_engine::commands::ExecutionCommands;
use conflux_engine::execution::ExecutionState;
use conflux_engine::store::{
    is_tenants_stream, read_whole_stream, EventStore, StoreError, StreamQuery,
};
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{bad_parameter, path_uuid, PathId, QueryParams};
use conflux_schema::api::{ChainVerification, EventPage, Replay, WorkflowEventPage};
use conflux_schema::{Event, EventEnvelope, StreamId};
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

/// Events read from the store per page, for NDJSON streaming and default JSON pages.
const PAGE: usize = 1000;
/// The largest `limit` a JSON page accepts: a page is built in memory, so one request
/// holds at most this many envelopes (a few MiB). Larger reads page with
/// `after_version`/`after_position`, or stream with `format=ndjson`.
pub const MAX_LIMIT: usize = 10_000;
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

/// `limit`: `1..=`[`MAX_LIMIT`], [`PAGE`] when absent.
fn page_limit(q: &QueryParams) -> Result<usize, ApiError> {
    let limit = q.bounded("limit", 1, MAX_LIMIT as u64, PAGE as u64)?;
    // At most `MAX_LIMIT`, a `usize`.
    Ok(limit as usize)
}

fn execution_not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("execution {id} not found"))
}

/// `GET /api/v1/executions/{id}/events`: a JSON page (`after_version`, `limit`), or with
/// `format=ndjson` the whole log streamed one envelope a line (`after_version` and
/// `limit` are still checked, but the whole log is streamed).
async fn execution_events(
    State(commands): State<ExecutionCommands>,
    PathId(id): PathId,
    q: QueryParams,
    request: RequestContext,
) -> Result<Response, ApiError> {
    let execution_id = path_uuid(&id, "execution")?;
    let format = q.choice("format", &["json", "ndjson"])?;
    let after = q.number("after_version")?.unwrap_or(0);
    let limit = page_limit(&q)?;
    let stream = StreamId::execution(execution_id);
    let store = commands.store().clone();
    if format == Some("ndjson") {
        // The first page is read before answering, so an unknown execution (or another
        // tenant's) is a 404 and not an empty 200 stream.
        let first = store.read_stream(&stream, 0, PAGE).await?;
        if first
            .first()
            .is_none_or(|e| e.metadata.tenant() != request.tenant())
        {
            return Err(execution_not_found(execution_id));
        }
        return Ok(ndjson_response(store, stream, first));
    }
    let events = store.read_stream(&stream, after, limit).await?;
    // From the start, the page holds the first event: no second read for the tenant.
    let owned = match events.first() {
        Some(first) if after == 0 => first.metadata.tenant() == request.tenant(),
        _ => is_tenants_stream(&*store, request.tenant(), &stream).await?,
    };
    if !owned {
        return Err(execution_not_found(execution_id));
    }
    let next = events
        .last()
        .map(|e| e.version)
        .filter(|_| events.len() == limit);
    Ok(Json(EventPage {
        events,
        next_after_version: next,
    })
    .into_response())
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

/// `GET /api/v1/executions/{id}/replay?to_version=N`: the state after event N, folded
/// from the log.
async fn replay(
    State(commands): State<ExecutionCommands>,
    PathId(id): PathId,
    q: QueryParams,
    request: RequestContext,
) -> Result<Json<Replay>, ApiError> {
    let execution_id = path_uuid(&id, "execution")?;
    let to_version = q.number("to_version")?;
    let log = read_whole_stream(&**commands.store(), &StreamId::execution(execution_id)).await?;
    let Some(Event::ExecutionStarted { workflow_id, .. }) = log
        .first()
        .filter(|e| e.metadata.tenant() == request.tenant())
        .map(|e| &e.event)
    else {
        return Err(execution_not_found(execution_id));
    };
    let last = log.len() as u64;
    let to = to_version.unwrap_or(last);
    if to == 0 || to > last {
        let problem = format!("must be between 1 and {last} (the execution's last version)");
        let mut e = bad_parameter("to_version", Some(&to.to_string()), &problem);
        e.details["last_version"] = json!(last);
        e.details["to_version"] = json!(to);
        return Err(e);
    }
    let workflow = commands.catalog().get(*workflow_id).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "workflow {workflow_id} of execution {execution_id}"
        ))
    })?;
    // Versions are gap-free from 1, so the first `to` events are versions 1..=to.
    let state = ExecutionState::replay(workflow, log.iter().take_while(|e| e.version <= to));
    Ok(Json(Replay {
        to_version: to,
        state: state.view(),
    }))
}

/// `GET /api/v1/executions/{id}/verify`: the stored hash chain, recomputed.
async fn verify(
    State(commands): State<ExecutionCommands>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<Json<ChainVerification>, ApiError> {
    let execution_id = path_uuid(&id, "execution")?;
    let stream = StreamId::execution(execution_id);
    if !is_tenants_stream(&**commands.store(), request.tenant(), &stream).await? {
        return Err(execution_not_found(execution_id));
    }
    let outcome = commands.store().verify_stream(&stream).await?;
    if outcome.events == 0 {
        return Err(execution_not_found(execution_id));
    }
    Ok(Json(outcome))
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
    PathId(id): PathId,
    q: QueryParams,
    request: RequestContext,
) -> Result<Json<WorkflowEventPage>, ApiError> {
    let workflow_id = path_uuid(&id, "workflow")?;
    let after = q.number("after_position")?.unwrap_or(0);
    let limit = page_limit(&q)?;
    let store = commands.store();
    let workflow_stream = StreamId::workflow(workflow_id);
    if !is_tenants_stream(&**store, request.tenant(), &workflow_stream).await? {
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
    Ok(Json(WorkflowEventPage {
        events: merged,
        next_after_position: next,
    }))
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
