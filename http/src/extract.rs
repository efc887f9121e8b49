//! Request extractors whose rejections are the API's own error body: bad JSON is
//! `400 invalid_json`, a body of the wrong shape `400 invalid_request`, an oversized one
//! `413 payload_too_large`, a bad query parameter `400 invalid_request` naming it —
//! never axum's plain-text rejections.
//!
//! # Query parameters
//!
//! Every route reads its query string with [`QueryParams`], not axum's `Query`, so that
//! every bad parameter is the API's `400 invalid_request` with `details.parameter`
//! naming it (axum's own rejection is plain text and names nothing). Positions and
//! versions (and other unbounded counts) are whole numbers `0..=2^63-1`, digits only
//! (the store keeps them as signed 64-bit integers); bounded numbers such as `limit` are
//! digits only within their range, and their error gives `details.min` and `max`. A
//! parameter given twice, empty where a value is needed, negative, fractional or out of
//! range is a 400. Parameters a route does not know are ignored, as HTTP caches and
//! proxies add their own (`?_=cache-buster`).
//!
//! # JSON bodies
//!
//! Request bodies are strict (API.md "Errors"): [`ApiJson`] refuses any field its type
//! does not define, at the top or nested (`tasks[0].retry.max_atempts`), as
//! `400 invalid_request` with `details.field` naming it, so that a typo such as `"inptu"`
//! never starts a run without its input. The strictness is the extractor's, not the
//! types': the workflow definition types of `conflux-schema` also read stored events,
//! which must stay readable when a field comes or goes. Fields inside free-form JSON
//! (`input`, `output`, an `http` body) are the caller's and are never checked.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::error::ApiError;

/// A JSON body of type `T`, read strictly (see the module docs). An empty body is parsed
/// as `{}` when `T` allows it.
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
        parse_body(&bytes).map(ApiJson)
    }
}

/// A request body as `T`, or the error body that refuses it: not JSON, not an object,
/// not of `T`'s shape, a field `T` does not define, a NUL character.
fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    // Every body of the API is an object; serde would also read a struct from an
    // array (`[]`), which must not start anything.
    if is_array_text(bytes) {
        return Err(ApiError::invalid_request("the body must be a JSON object")
            .with_details(json!({"reason": "not_an_object"})));
    }
    let mut unknown = None;
    let parsed = read_strict(bytes, &mut unknown).map_err(|e| {
        let details = json!({"line": e.line(), "column": e.column()});
        match e.classify() {
            serde_json::error::Category::Data => {
                ApiError::invalid_request(format!("the body does not have the expected shape: {e}"))
                    .with_details(details)
            }
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {e}"),
            )
            .with_details(details),
        }
    })?;
    if let Some(field) = unknown {
        return Err(ApiError::invalid_request(format!(
            "the body has a field this route does not define: `{field}`"
        ))
        .with_details(json!({"field": field, "reason": "unknown_field"})));
    }
    if has_nul(bytes) {
        return Err(ApiError::invalid_request(
            "strings must not contain the NUL character (\\u0000)",
        )
        .with_details(json!({"reason": "nul_character"})));
    }
    Ok(parsed)
}

/// `bytes` as `T`, as `serde_json::from_slice` reads it, noting in `unknown` where the
/// first field that `T` does not define is (`T` itself ignores it).
fn read_strict<T: DeserializeOwned>(
    bytes: &[u8],
    unknown: &mut Option<String>,
) -> serde_json::Result<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_ignored::deserialize(&mut de, |path| {
        unknown.get_or_insert_with(|| field_path(&path));
    })?;
    de.end()?;
    Ok(parsed)
}

/// Where a field is in a body, as `tasks[0].retry.max_attempts`: object keys joined by
/// dots, array indexes in brackets (serde_ignored's own rendering would also mark every
/// `Option` it passed through).
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => match field_path(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
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

/// A request's query string as name/value pairs, read so that every bad parameter is
/// the API's own `400 invalid_request` naming it in `details.parameter` (see the module
/// docs for the rules). Names a route does not ask for are ignored.
pub struct QueryParams(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Pairs of strings cannot fail to deserialize (bad percent-encoding is decoded
        // lossily), but the error is still ours if it ever does.
        Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|Query(pairs)| QueryParams(pairs))
            .map_err(|e| ApiError::invalid_request(format!("bad query string: {}", e.body_text())))
    }
}

impl QueryParams {
    /// The raw value of `name`, if given. A parameter given twice is a 400: which one
    /// would win is not obvious to the caller.
    pub fn get(&self, name: &'static str) -> Result<Option<&str>, ApiError> {
        let mut values = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        let first = values.next();
        if values.next().is_some() {
            return Err(bad_parameter(name, None, "is given more than once"));
        }
        Ok(first.map(String::as_str))
    }

    /// `name` as a position, version or other unbounded count: a whole number
    /// `0..=2^63-1` (the store's signed 64-bit range), digits only.
    pub fn number(&self, name: &'static str) -> Result<Option<u64>, ApiError> {
        let Some(raw) = self.get(name)? else {
            return Ok(None);
        };
        // `u64::from_str` would also take a leading `+`.
        if !is_digits(raw) {
            return Err(bad_parameter(
                name,
                Some(raw),
                "must be a whole number (0 or more)",
            ));
        }
        match raw.parse::<u64>() {
            Ok(n) if n <= i64::MAX as u64 => Ok(Some(n)),
            _ => Err(bad_parameter(
                name,
                Some(raw),
                "is too large (at most 9223372036854775807)",
            )),
        }
    }

    /// `name` as a whole number `min..=max`, digits only; `default` when absent. The
    /// error's details give `min` and `max`.
    pub fn bounded(
        &self,
        name: &'static str,
        min: u64,
        max: u64,
        default: u64,
    ) -> Result<u64, ApiError> {
        let Some(raw) = self.get(name)? else {
            return Ok(default);
        };
        match raw.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) && is_digits(raw) => Ok(n),
            _ => {
                let problem = format!("must be a whole number from {min} to {max}");
                let mut e = bad_parameter(name, Some(raw), &problem);
                e.details["min"] = json!(min);
                e.details["max"] = json!(max);
                Err(e)
            }
        }
    }

    /// `name` as one of `allowed`, if given.
    pub fn choice(
        &self,
        name: &'static str,
        allowed: &[&'static str],
    ) -> Result<Option<&'static str>, ApiError> {
        let Some(raw) = self.get(name)? else {
            return Ok(None);
        };
        match allowed.iter().find(|a| **a == raw) {
            Some(found) => Ok(Some(found)),
            None => {
                let problem = format!("must be one of {}", allowed.join(", "));
                let mut e = bad_parameter(name, Some(raw), &problem);
                e.details["allowed"] = json!(allowed);
                Err(e)
            }
        }
    }

    /// `name` as a flag: `true`, `1` or empty (`?execute`) is true; `false`, `0` or
    /// absent is false.
    pub fn flag(&self, name: &'static str) -> Result<bool, ApiError> {
        match self.get(name)? {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") | Some("") => Ok(true),
            Some(raw) => {
                let mut e = bad_parameter(name, Some(raw), "must be true or false");
                e.details["allowed"] = json!(["true", "false", "1", "0"]);
                Err(e)
            }
        }
    }
}

/// Whether `raw` is one or more ASCII digits and nothing else.
fn is_digits(raw: &str) -> bool {
    !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit())
}

/// `400 invalid_request` about query parameter `name` (given as `value`, when there is
/// one value): `details.parameter` names it, `details.value` repeats the value.
pub fn bad_parameter(name: &'static str, value: Option<&str>, problem: &str) -> ApiError {
    let message = match value {
        Some(raw) => format!("query parameter `{name}` {problem}, got {raw:?}"),
        None => format!("query parameter `{name}` {problem}"),
    };
    let mut details = json!({ "parameter": name });
    if let Some(raw) = value {
        details["value"] = json!(raw);
    }
    ApiError::invalid_request(message).with_details(details)
}

/// A path's `{id}` segment, percent-decoded. A segment that is not UTF-8 once decoded
/// cannot name anything: it is the API's JSON 404, where axum's own `Path` would answer
/// a plain-text 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathId(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(raw)) => Ok(Self(raw)),
            Err(_) => Err(ApiError::not_found("no such id")),
        }
    }
}

/// Parses a path id as a UUID, answering 404 for anything else (an id that cannot
/// exist is simply not found).
pub fn path_uuid(raw: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| ApiError::not_found(format!("{what} {raw} not found")))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::Value;

    use super::{has_nul, is_array_text, parse_body, QueryParams};

    fn query(pairs: &[(&str, &str)]) -> QueryParams {
        QueryParams(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn query_parameters_are_checked_and_named() {
        let q = query(&[("n", "12"), ("big", "9223372036854775808"), ("plus", "+1")]);
        assert_eq!(q.number("n"), Ok(Some(12)));
        assert_eq!(q.number("absent"), Ok(None));
        for bad in ["big", "plus"] {
            let e = q.number(bad).expect_err(bad);
            assert_eq!(
                (e.code, &e.details["parameter"]),
                ("invalid_request", &bad.into())
            );
        }
        let twice = query(&[("n", "1"), ("n", "1")]);
        assert_eq!(
            twice.number("n").expect_err("twice").details["parameter"],
            "n"
        );
        let limits = query(&[("ok", "100"), ("zero", "0"), ("over", "101"), ("e", "")]);
        assert_eq!(limits.bounded("ok", 1, 100, 10), Ok(100));
        assert_eq!(limits.bounded("absent", 1, 100, 10), Ok(10));
        for bad in ["zero", "over", "e"] {
            let e = limits.bounded(bad, 1, 100, 10).expect_err(bad);
            assert_eq!(
                (&e.details["min"], &e.details["max"]),
                (&1.into(), &100.into())
            );
        }
        let flags = query(&[
            ("t", "true"),
            ("one", "1"),
            ("bare", ""),
            ("f", "0"),
            ("x", "yes"),
        ]);
        assert_eq!(
            ["t", "one", "bare", "f", "absent"].map(|n| flags.flag(n)),
            [Ok(true), Ok(true), Ok(true), Ok(false), Ok(false)]
        );
        assert_eq!(flags.flag("x").expect_err("yes").details["parameter"], "x");
        let format = query(&[("format", "xml")]);
        let e = format
            .choice("format", &["json", "ndjson"])
            .expect_err("xml");
        assert_eq!(e.details["allowed"], serde_json::json!(["json", "ndjson"]));
    }

    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    struct Outer {
        name: String,
        #[serde(default)]
        items: Vec<Inner>,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        free: Value,
    }

    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    struct Inner {
        #[serde(default)]
        n: u32,
    }

    #[test]
    fn unknown_fields_are_refused_and_named_where_they_are() {
        let field = |body: &str| {
            let e = parse_body::<Outer>(body.as_bytes()).expect_err(body);
            assert_eq!((e.status.as_u16(), e.code), (400, "invalid_request"));
            e.details["field"].clone()
        };
        assert_eq!(field(r#"{"name": "x", "nmae": "y"}"#), "nmae");
        assert_eq!(
            field(r#"{"name": "x", "items": [{}, {"m": 1}]}"#),
            "items[1].m"
        );
        assert_eq!(
            field(r#"{"name": "x", "inner": {"n": 1, "nn": 2}}"#),
            "inner.nn"
        );
        // The first one is named.
        assert_eq!(field(r#"{"b": 1, "name": "x", "a": 2}"#), "b");
        // Free-form JSON is the caller's.
        let free = r#"{"name": "x", "free": {"any": {"thing": [1, {"at": "all"}]}}}"#;
        assert!(parse_body::<Outer>(free.as_bytes()).is_ok());
        // Shape errors and bad JSON are still told as such.
        let e = parse_body::<Outer>(br#"{"nmae": "y"}"#).expect_err("missing name");
        assert_eq!(e.details.get("field"), None, "{e}");
        let e = parse_body::<Outer>(br#"{"name": "x"} {}"#).expect_err("trailing");
        assert_eq!(e.code, "invalid_json");
    }

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
