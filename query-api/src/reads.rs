//! What the read routes share: the state they read from (read models first, the event
//! log for what the projector has not reached yet) and the mapping of read-model
//! errors to the API's error body.

use axum::http::StatusCode;
use conflux_engine::commands::ExecutionCommands;
use conflux_engine::crypto::PayloadCodec;
use conflux_http::error::ApiError;
use conflux_projector::{ReadModelError, ReadModels};
use conflux_schema::api::Execution;

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
}

impl Reads {
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
