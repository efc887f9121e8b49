//! The operations routes' bodies: `/health` and `/ready`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    #[schema(example = "ok")]
    pub status: String,
}

/// `GET /ready` when ready (otherwise the error body, `503 unavailable`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    #[schema(example = "ready")]
    pub status: String,
    /// `postgres+redis`, `postgres+in-process`, `embedded+redis` or `embedded`.
    pub mode: String,
    /// `ok`.
    pub store: String,
    /// `ok`.
    pub bus: String,
}
