//! What a connection streams: an execution's or a workflow's snapshot or catch-up from
//! the store, then its live events from the feed.
//!
//! Each stream subscribes first, then reads the store: whatever commits meanwhile is
//! queued, and the forwarding loop skips what the catch-up already sent (positions at or
//! below the last one sent), so nothing is lost or repeated at the seam.

use std::collections::HashSet;

use conflux_engine::commands::ExecutionCommands;
use conflux_engine::store::{read_whole_stream, EventStore, StreamQuery};
use conflux_schema::{EventEnvelope, StreamId};
use serde_json::json;
use uuid::Uuid;

use super::connection::{forward, Client, Socket};
use super::registry::Key;
use super::LiveState;

/// Close code for an unknown id.
const UNKNOWN: u16 = 4404;
/// How many times a workflow snapshot is recomputed when its executions moved while it
/// was folded, before settling for a status that may be newer than its position.
const SNAPSHOT_ATTEMPTS: usize = 2;
/// The most executions of one workflow a workflow stream catches up on.
const MAX_EXECUTIONS: usize = 100_000;

pub(super) async fn stream_execution<S: Socket>(
    mut client: Client<S>,
    state: LiveState,
    id: Option<Uuid>,
    after: Option<u64>,
) {
    let Some(execution_id) = id else {
        return client.close(UNKNOWN, "unknown execution").await;
    };
    let mut live = state.feed.subscribe(Key::Execution(execution_id));
    let stream = StreamId::execution(execution_id);
    // One stream: its log, however long it took to read, is a prefix in position order,
    // so its last position is an exact cut.
    let last_sent = match after {
        None => match state.commands.load_in(&state.tenant, execution_id).await {
            Ok(Some((execution, log))) => {
                let position = log.last().map_or(0, |e| e.position);
                let mut status = execution.to_json();
                status["position"] = json!(position);
                if !client.send_snapshot(position, status).await {
                    return;
                }
                position
            }
            Ok(None) => return client.close(UNKNOWN, "unknown execution").await,
            Err(e) => {
                tracing::warn!(error = %e, "a live snapshot failed");
                return client.close(1011, "the store is unavailable").await;
            }
        },
        Some(after) => match read_whole_stream(&**state.commands.store(), &stream).await {
            Ok(log)
                if log
                    .first()
                    .is_none_or(|e| e.metadata.tenant() != state.tenant) =>
            {
                return client.close(UNKNOWN, "unknown execution").await
            }
            Ok(log) => match client.send_events(&log, after).await {
                Some(last) => last,
                None => return,
            },
            Err(e) => {
                tracing::warn!(error = %e, "a live catch-up failed");
                return client.close(1011, "the store is unavailable").await;
            }
        },
    };
    forward(
        client,
        &mut live,
        last_sent,
        &state.feed.shutdown,
        &state.revoked,
    )
    .await;
}

pub(super) async fn stream_workflow<S: Socket>(
    mut client: Client<S>,
    state: LiveState,
    id: Option<Uuid>,
    after: Option<u64>,
) {
    let Some(workflow_id) = id else {
        return client.close(UNKNOWN, "unknown workflow").await;
    };
    let mut live = state.feed.subscribe(Key::Workflow(workflow_id));
    match state
        .commands
        .catalog()
        .get_in(&state.tenant, workflow_id)
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) => return client.close(UNKNOWN, "unknown workflow").await,
        Err(e) => {
            tracing::warn!(error = %e, "loading a workflow for a live stream failed");
            return client.close(1011, "the store is unavailable").await;
        }
    }
    let last_sent = match after {
        None => match workflow_snapshot(&state.commands, workflow_id).await {
            Ok((cut, status)) => {
                if !client.send_snapshot(cut, status).await {
                    return;
                }
                cut
            }
            Err(e) => {
                tracing::warn!(error = %e, "a live workflow snapshot failed");
                return client.close(1011, "the store is unavailable").await;
            }
        },
        Some(after) => match workflow_catch_up(&**state.commands.store(), workflow_id, after).await
        {
            Ok((cut, missed)) => {
                if client.send_events(&missed, after).await.is_none() {
                    return;
                }
                cut.max(after)
            }
            Err(e) => {
                tracing::warn!(error = %e, "a live workflow catch-up failed");
                return client.close(1011, "the store is unavailable").await;
            }
        },
    };
    forward(
        client,
        &mut live,
        last_sent,
        &state.feed.shutdown,
        &state.revoked,
    )
    .await;
}

/// The executions of a workflow started at or below a position read before this, in
/// uuid (v7: start) order.
async fn executions_of(store: &dyn EventStore, workflow_id: Uuid) -> Result<Vec<StreamId>, String> {
    let query = StreamQuery::ExecutionsOfWorkflow {
        workflow_id,
        open_only: false,
    };
    let executions = store
        .find_streams(&query, MAX_EXECUTIONS)
        .await
        .map_err(|e| e.to_string())?;
    let mut executions: Vec<StreamId> = executions
        .into_iter()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    // `status` takes the last one as the latest execution.
    executions.sort_by_key(StreamId::uuid);
    Ok(executions)
}

/// The workflow's status as of one position of the whole log (the cut). The status is
/// folded stream by stream while executions move, so it is exact only if it reflects
/// nothing above the cut; otherwise it is recomputed, up to [`SNAPSHOT_ATTEMPTS`]
/// times, after which a status slightly newer than its position is sent (events above
/// the cut are still all sent, once).
async fn workflow_snapshot(
    commands: &ExecutionCommands,
    workflow_id: Uuid,
) -> Result<(u64, serde_json::Value), String> {
    let store = commands.store();
    let mut attempt = 1;
    loop {
        let cut = store.head_position().await.map_err(|e| e.to_string())?;
        let executions = executions_of(&**store, workflow_id).await?;
        let status = crate::workflows::status(commands, workflow_id, &executions)
            .await
            .map_err(|e| e.to_string())?;
        let position = status.position;
        let mut status = serde_json::to_value(status).map_err(|e| e.to_string())?;
        if position <= cut || attempt == SNAPSHOT_ATTEMPTS {
            if position > cut {
                tracing::debug!(%workflow_id, cut, position, "workflow snapshot newer than its position");
            }
            status["position"] = json!(cut);
            return Ok((cut, status));
        }
        attempt += 1;
    }
}

/// The workflow's events in `(after, cut]`, in position order, where the cut is the
/// store's head read first: every stream is read after the cut, so each holds all its
/// events up to it, and whatever commits above it reaches the client from the feed.
async fn workflow_catch_up(
    store: &dyn EventStore,
    workflow_id: Uuid,
    after: u64,
) -> Result<(u64, Vec<EventEnvelope>), String> {
    let cut = store.head_position().await.map_err(|e| e.to_string())?;
    let mut streams = executions_of(store, workflow_id).await?;
    streams.push(StreamId::workflow(workflow_id));
    let mut missed = Vec::new();
    for stream in &streams {
        let log = read_whole_stream(store, stream)
            .await
            .map_err(|e| e.to_string())?;
        missed.extend(
            log.into_iter()
                .filter(|e| e.position > after && e.position <= cut),
        );
    }
    missed.sort_by_key(|e| e.position);
    Ok((cut, missed))
}
