//! The one error body of every 4xx and 5xx answer.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code (see each response for the codes it can carry).
    #[schema(example = "not_found")]
    pub code: String,
    /// For humans.
    pub message: String,
    /// Structured details, `{}` when there are none.
    #[schema(value_type = Object)]
    pub details: Value,
}
