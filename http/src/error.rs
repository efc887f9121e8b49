//! The API's error body, made in one place. Every 4xx/5xx of every router is an
//! [`ApiError`] rendered as `{"error": {"code", "message", "details"}}` (API.md "Errors");
//! typed errors from the engine are mapped here, once.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use conflux_engine::bus::BusError;
use conflux_engine::store::StoreError;
use serde_json::{json, Value};

/// An error as the API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code (API.md).
    pub code: &'static str,
    /// For humans.
    pub message: String,
    /// Structured details (an object).
    pub details: Value,
    /// Seconds to send as `Retry-After` (a `429` that can succeed later).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with empty details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: json!({}),
            retry_after: None,
        }
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// 404 `not_found`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 503 `unavailable`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// The body as its type.
    pub fn to_body(&self) -> conflux_schema::api::ErrorBody {
        conflux_schema::api::ErrorBody {
            error: conflux_schema::api::ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                details: self.details.clone(),
            },
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        serde_json::to_value(self.to_body()).unwrap_or(Value::Null)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        } else {
            tracing::debug!(code = self.code, message = %self.message, "request rejected");
        }
        let mut response = (self.status, Json(self.to_body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<conflux_engine::quota::QuotaExceeded> for ApiError {
    /// `429 quota_exceeded` (`413` for a size), `details`: `quota`, `limit`, `used`.
    fn from(e: conflux_engine::quota::QuotaExceeded) -> Self {
        let status = if e.quota.is_size() {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        let mut error = Self::new(status, "quota_exceeded", e.to_string()).with_details(json!({
            "quota": e.quota.as_str(),
            "limit": e.limit,
            "used": e.used,
        }));
        error.retry_after = e
            .retry_after
            .map(|d| (d.as_secs_f64().ceil() as u64).max(1));
        error
    }
}

impl From<conflux_engine::quota::QuotaError> for ApiError {
    fn from(e: conflux_engine::quota::QuotaError) -> Self {
        match e {
            conflux_engine::quota::QuotaError::Exceeded(e) => e.into(),
            conflux_engine::quota::QuotaError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Conflict {
                stream,
                expected,
                actual,
            } => Self::new(StatusCode::CONFLICT, "conflict", e.to_string()).with_details(json!({
                "stream_id": stream.as_str(), "expected_version": expected, "actual_version": actual
            })),
            StoreError::Unavailable(_) => Self::unavailable(e.to_string()),
            StoreError::Invalid(_) => Self::invalid_request(e.to_string()),
            StoreError::Corrupt { .. } | StoreError::Backend(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

impl From<BusError> for ApiError {
    fn from(e: BusError) -> Self {
        match e {
            BusError::Unavailable(_) => Self::unavailable(e.to_string()),
            BusError::Backend(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

impl From<conflux_engine::execution::Rejection> for ApiError {
    fn from(r: conflux_engine::execution::Rejection) -> Self {
        let status = match r.code() {
            "not_found" => StatusCode::NOT_FOUND,
            "forbidden" => StatusCode::FORBIDDEN,
            _ => StatusCode::CONFLICT,
        };
        Self::new(status, r.code(), r.to_string())
    }
}

impl From<conflux_engine::commands::CommandError> for ApiError {
    fn from(e: conflux_engine::commands::CommandError) -> Self {
        use conflux_engine::commands::CommandError;
        match e {
            CommandError::NotFound(what) => Self::not_found(format!("{what} not found")),
            CommandError::Rejected(r) => r.into(),
            CommandError::Store(s) => s.into(),
            CommandError::Forbidden(why) => {
                Self::new(axum::http::StatusCode::FORBIDDEN, "forbidden", why)
            }
            CommandError::Invalid(why) => Self::invalid_request(why),
        }
    }
}

impl From<conflux_engine::agents::AgentError> for ApiError {
    fn from(e: conflux_engine::agents::AgentError) -> Self {
        use conflux_engine::agents::AgentError;
        match e {
            AgentError::Invalid(why) => Self::invalid_request(why),
            AgentError::NotFound(what) => Self::not_found(what),
            AgentError::RolesNotServed {
                ref refused,
                ref allowed,
            } => Self::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
                .with_details(json!({"roles": refused, "allowed": allowed})),
            AgentError::Forbidden(why) => Self::new(StatusCode::FORBIDDEN, "forbidden", why),
            AgentError::StaleLease(_) => {
                Self::new(StatusCode::CONFLICT, "stale_attempt", e.to_string())
            }
            AgentError::Rejected(r) => r.into(),
            AgentError::Unavailable(why) => Self::unavailable(why),
            AgentError::Store(s) => s.into(),
        }
    }
}

impl From<conflux_engine::schedules::ScheduleError> for ApiError {
    /// `422 invalid_cron` / `invalid_timezone`, `404 not_found` (the schedule, or the
    /// workflow it names), `409 conflict` (pausing a paused schedule…).
    fn from(e: conflux_engine::schedules::ScheduleError) -> Self {
        use conflux_engine::schedules::cadence::CadenceError;
        use conflux_engine::schedules::ScheduleError;
        match e {
            ScheduleError::Invalid(CadenceError::InvalidCron { ref cron, .. }) => {
                let details = json!({ "field": "cron", "cron": cron });
                Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_cron",
                    e.to_string(),
                )
                .with_details(details)
            }
            ScheduleError::Invalid(CadenceError::UnknownTimezone(ref zone)) => {
                let details = json!({ "field": "timezone", "timezone": zone });
                Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_timezone",
                    e.to_string(),
                )
                .with_details(details)
            }
            ScheduleError::NotFound(_) => Self::not_found(e.to_string()),
            ScheduleError::WorkflowNotFound(id) => {
                Self::not_found(e.to_string()).with_details(json!({ "workflow": id }))
            }
            ScheduleError::State { .. } => {
                Self::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            ScheduleError::Store(s) => s.into(),
        }
    }
}

impl From<conflux_engine::hooks::HookError> for ApiError {
    /// `422 invalid_url` / `egress_denied` / `unknown_event_type` / `invalid_events` /
    /// `invalid_secret` (`details.field` names the field), `404 not_found`.
    fn from(e: conflux_engine::hooks::HookError) -> Self {
        use conflux_engine::hooks::HookError;
        let invalid = |code: &'static str, details: serde_json::Value| {
            Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string()).with_details(details)
        };
        match &e {
            HookError::InvalidUrl { url, .. } => {
                invalid("invalid_url", json!({ "field": "url", "url": url }))
            }
            HookError::EgressDenied { url, reason } => invalid(
                "egress_denied",
                json!({ "field": "url", "url": url, "rule": reason }),
            ),
            HookError::InvalidEvents { unknown, .. } if !unknown.is_empty() => invalid(
                "unknown_event_type",
                json!({ "field": "events", "unknown": unknown }),
            ),
            HookError::InvalidEvents { .. } => {
                invalid("invalid_events", json!({ "field": "events" }))
            }
            HookError::InvalidSecret => invalid("invalid_secret", json!({ "field": "secret" })),
            HookError::NotFound(_) => Self::not_found(e.to_string()),
            HookError::Cipher(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
            HookError::Store(s) => s.clone().into(),
        }
    }
}

impl From<conflux_schema::validate::ValidationError> for ApiError {
    fn from(e: conflux_schema::validate::ValidationError) -> Self {
        let status = if e.code() == "invalid_request" {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        Self::new(status, e.code(), e.to_string()).with_details(e.details())
    }
}

impl From<conflux_schema::patterns::PatternError> for ApiError {
    /// `404 not_found` for an unknown pattern; `422 invalid_parameters` whose
    /// `details.errors` lists every bad parameter as `{"field", "reason"}`.
    fn from(e: conflux_schema::patterns::PatternError) -> Self {
        use conflux_schema::patterns::PatternError;
        match e {
            PatternError::Unknown(ref name) => {
                Self::not_found(e.to_string()).with_details(json!({ "pattern": name }))
            }
            PatternError::Invalid {
                ref pattern,
                ref errors,
            } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_parameters",
                e.to_string(),
            )
            .with_details(json!({ "pattern": pattern, "errors": errors })),
        }
    }
}

impl From<conflux_engine::catalog::CatalogError> for ApiError {
    fn from(e: conflux_engine::catalog::CatalogError) -> Self {
        use conflux_engine::catalog::CatalogError;
        match e {
            CatalogError::Invalid(v) => v.into(),
            CatalogError::EgressDenied {
                ref task,
                ref denied,
            } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "egress_denied",
                e.to_string(),
            )
            .with_details(json!({ "task": task, "target": denied.target, "rule": denied.rule })),
            CatalogError::UnknownSecrets(ref names) => {
                let details = json!({ "secrets": names });
                Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown_secret",
                    e.to_string(),
                )
                .with_details(details)
            }
            CatalogError::Secrets(s) => s.into(),
            CatalogError::Store(s) => s.into(),
        }
    }
}

impl From<conflux_engine::secrets::SecretError> for ApiError {
    fn from(e: conflux_engine::secrets::SecretError) -> Self {
        use conflux_engine::secrets::SecretError;
        match e {
            SecretError::Invalid { field, ref reason } => {
                Self::invalid_request(reason.clone()).with_details(json!({ "field": field }))
            }
            SecretError::AlreadyExists(_) => {
                Self::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            SecretError::NotFound(_) => Self::not_found(e.to_string()),
            SecretError::Cipher { .. } => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
            SecretError::Store(s) => s.into(),
        }
    }
}

impl From<conflux_engine::access::AccessError> for ApiError {
    fn from(e: conflux_engine::access::AccessError) -> Self {
        use conflux_engine::access::AccessError;
        match e {
            AccessError::NotFound(m) => Self::not_found(m),
            AccessError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            AccessError::Invalid(m) => Self::invalid_request(m),
            AccessError::Store(e) => e.into(),
            AccessError::Randomness(e) => {
                tracing::error!(error = %e, "no randomness for a key");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "could not issue a key",
                )
            }
            AccessError::Mint(e) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

impl From<conflux_engine::crypto::erasure::ErasureError> for ApiError {
    fn from(e: conflux_engine::crypto::erasure::ErasureError) -> Self {
        use conflux_engine::crypto::erasure::ErasureError;
        use conflux_engine::crypto::CryptoError;
        match e {
            ErasureError::EncryptionOff => {
                Self::new(StatusCode::CONFLICT, "encryption_off", e.to_string())
            }
            ErasureError::NotFound(id) => Self::not_found(format!("execution {id} not found")),
            ErasureError::Unfinished { .. } => {
                Self::new(StatusCode::CONFLICT, "execution_running", e.to_string())
            }
            ErasureError::NotSealed(_) => {
                Self::new(StatusCode::CONFLICT, "not_sealed", e.to_string())
            }
            ErasureError::Store(e) | ErasureError::Crypto(CryptoError::Store(e)) => e.into(),
            ErasureError::Crypto(e) => {
                tracing::error!(error = %e, "an erasure failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conflux_schema::StreamId;

    #[test]
    fn store_errors_map_to_api_codes() {
        let conflict: ApiError = StoreError::Conflict {
            stream: StreamId::execution(Default::default()),
            expected: 1,
            actual: 2,
        }
        .into();
        assert_eq!(
            (conflict.status, conflict.code),
            (StatusCode::CONFLICT, "conflict")
        );
        assert_eq!(conflict.details["actual_version"], 2);
        let down: ApiError = StoreError::Unavailable("x".into()).into();
        assert_eq!(
            (down.status, down.code),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        );
        assert_eq!(down.body()["error"]["code"], "unavailable");
    }

    #[test]
    fn agent_errors_map_to_api_codes() {
        use conflux_engine::agents::AgentError;
        let lease = uuid::Uuid::nil();
        let cases = [
            (AgentError::Invalid("x".into()), 400, "invalid_request"),
            (
                AgentError::NotFound("agent x not found".into()),
                404,
                "not_found",
            ),
            (AgentError::Forbidden("x".into()), 403, "forbidden"),
            (AgentError::StaleLease(lease), 409, "stale_attempt"),
            (AgentError::Unavailable("x".into()), 503, "unavailable"),
        ];
        for (e, status, code) in cases {
            let api: ApiError = e.into();
            assert_eq!((api.status.as_u16(), api.code), (status, code));
        }
        let refused: ApiError = AgentError::RolesNotServed {
            refused: vec!["packer".into()],
            allowed: vec!["picker".into()],
        }
        .into();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(
            refused.details,
            json!({"roles": ["packer"], "allowed": ["picker"]})
        );
    }
}
