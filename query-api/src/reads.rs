//! What the read routes share: the state they read from (read models first, the event
//! log for what the projector has not reached yet) and the mapping of read-model
//! errors to the API's error body.

use axum::http::StatusCode;
use conflux_engine::commands::ExecutionCommands;
use conflux_engine::crypto::PayloadCodec;
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_projector::{ReadModelError, ReadModels};
use conflux_schema::api::Execution;
use conflux_schema::payload::hide_execution_json;

/// The state of the read routes.
#[derive(Clone)]
pub struct Reads {
    /// The event log (through the engine's own loader) for reads the projector has not
    /// reached yet.
    pub commands: ExecutionCommands,
    /// The projector's tables.
    pub models: ReadModels,
    /// Opens the sealed payloads read models hold (encryption at rest).
    pub codec: PayloadCodec,
    /// Whether `viewer` callers see payloads hidden (`CONFLUX_VIEWER_PAYLOADS=hidden`).
    pub hide_from_viewers: bool,
}

impl Reads {
    /// Whether `request`'s caller sees payloads hidden.
    pub fn hides_payloads(&self, request: &RequestContext) -> bool {
        self.hide_from_viewers && request.is_viewer()
    }

    /// `execution` as `request`'s caller may see it: payloads opened, or hidden.
    pub async fn shown(
        &self,
        request: &RequestContext,
        execution: Execution,
    ) -> Result<Execution, ApiError> {
        if !self.hides_payloads(request) {
            return self.opened(execution).await;
        }
        let mut value = serde_json::to_value(&execution).map_err(internal)?;
        hide_execution_json(&mut value);
        serde_json::from_value(value).map_err(internal)
    }

    /// `execution` (from a read model) with its payloads opened.
    pub async fn opened(&self, mut execution: Execution) -> Result<Execution, ApiError> {
        let (true, Some(id)) = (self.codec.is_on(), execution.execution_id) else {
            return Ok(execution);
        };
        let mut value = serde_json::to_value(&execution).map_err(internal)?;
        self.codec
            .open_json(id, &mut value)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        execution = serde_json::from_value(value).map_err(internal)?;
        Ok(execution)
    }
}

fn internal(e: serde_json::Error) -> ApiError {
    tracing::error!(error = %e, "an execution body does not round-trip through JSON");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "an execution body could not be opened",
    )
}

/// A read-model error as the API reports it (503 when the database is unreachable).
pub fn read_error(e: ReadModelError) -> ApiError {
    match e {
        ReadModelError::Unavailable(m) => ApiError::unavailable(m),
        ReadModelError::Backend(m) => {
            tracing::error!(error = %m, "read model query failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "read model query failed",
            )
        }
    }
}
