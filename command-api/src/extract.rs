//! Request extractors whose rejections are the API's own error body: bad JSON is
//! `400 invalid_json`, a body of the wrong shape `400 invalid_request`, an oversized one
//! `413 payload_too_large` — never axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use conflux_schema::EventMetadata;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::error::ApiError;

/// A JSON body of type `T`. An empty body is parsed as `{}` when `T` allows it.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is too large",
                )
            } else {
                ApiError::invalid_request(format!("cannot read the request body: {rejection}"))
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        // Every body of the API is an object; serde would also read a struct from an
        // array (`[]`), which must not start anything.
        if is_array_text(bytes) {
            return Err(ApiError::invalid_request("the body must be a JSON object")
                .with_details(json!({"reason": "not_an_object"})));
        }
        let parsed = serde_json::from_slice(bytes).map(ApiJson).map_err(|e| {
            let details = json!({"line": e.line(), "column": e.column()});
            match e.classify() {
                serde_json::error::Category::Data => ApiError::invalid_request(format!(
                    "the body does not have the expected shape: {e}"
                ))
                .with_details(details),
                _ => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("the body is not valid JSON: {e}"),
                )
                .with_details(details),
            }
        })?;
        if has_nul(bytes) {
            return Err(ApiError::invalid_request(
                "strings must not contain the NUL character (\\u0000)",
            )
            .with_details(json!({"reason": "nul_character"})));
        }
        Ok(parsed)
    }
}

/// Whether the text starts (after white space) with `[`, i.e. is a JSON array.
fn is_array_text(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}

/// Whether a JSON document holds a NUL character in a string or a key. Postgres `jsonb`
/// cannot store one, so such a body is refused here, in every mode, rather than failing
/// its append (and every append batched with it) as a 500. Only bodies holding the
/// escape `\u0000` at all are parsed again.
fn has_nul(bytes: &[u8]) -> bool {
    fn walk(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(walk),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || walk(v)),
            _ => false,
        }
    }
    const ESCAPE: &[u8] = b"\\u0000";
    bytes.windows(ESCAPE.len()).any(|w| w == ESCAPE)
        && serde_json::from_slice::<Value>(bytes).is_ok_and(|v| walk(&v))
}

/// Event metadata for the events a request causes: its request id (`x-request-id`,
/// set by the router when absent) as request and correlation id, actor `api`.
pub struct RequestMeta(pub EventMetadata);

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(RequestMeta(EventMetadata {
            correlation_id: id.clone(),
            causation_id: id.clone(),
            actor: Some("api".into()),
            tenant_id: None,
            request_id: id,
        }))
    }
}

/// Parses a path id as a UUID, answering 404 for anything else (an id that cannot
/// exist is simply not found).
pub fn path_uuid(raw: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| ApiError::not_found(format!("{what} {raw} not found")))
}

#[cfg(test)]
mod tests {
    use super::{has_nul, is_array_text};

    #[test]
    fn arrays_are_told_apart_from_objects() {
        assert!(is_array_text(b"  [ {} ]"));
        assert!(!is_array_text(b"{\"input\": [1]}"));
        assert!(!is_array_text(b""));
    }

    #[test]
    fn nul_characters_are_found_in_strings_and_keys_only() {
        assert!(has_nul(br#"{"a": ["x\u0000y"]}"#));
        assert!(has_nul(br#"{"a\u0000": 1}"#));
        // An escaped backslash followed by the text `u0000` is no NUL.
        assert!(!has_nul(br#"{"a": "x\\u0000y"}"#));
        assert!(!has_nul(br#"{"a": "plain"}"#));
    }
}
