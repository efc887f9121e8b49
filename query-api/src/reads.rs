//! What the read routes share: the state they read from (read models first, the event
//! log for what the projector has not reached yet) and the mapping of read-model
//! errors to the API's error body.

use axum::http::StatusCode;
use conflux_engine::commands::ExecutionCommands;
use conflux_http::error::ApiError;
use conflux_projector::{ReadModelError, ReadModels};

/// The state of the read routes.
#[derive(Clone)]
pub struct Reads {
    /// The event log (through the engine's own loader) for reads the projector has not
    /// reached yet.
    pub commands: ExecutionCommands,
    /// The projector's tables.
    pub models: ReadModels,
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
