//! What every Conflux router is wrapped in, so that each answer — a route's, an unknown
//! path's, a wrong method's — is tracked the same way and carries a request id.
//!
//! [`wrap`] adds, from the outside in: a request id (`x-request-id`: the client's own, or
//! a new UUID) set on the request and copied to the response; a tracing span per request
//! naming its method, path and request id, so every log line of the request carries the
//! id; the `conflux_http_requests_total` counter and the
//! `conflux_http_request_duration_seconds` histogram by method, route template and
//! status; request bodies that are read on, within bounds, when the route answered
//! without reading them to their end ([`crate::drain`]: a `413` reaches a client still
//! sending, and its keep-alive connection stays usable); and the API's JSON answers for an unknown route (`404 not_found`) and a method
//! the route does not accept (`405 method_not_allowed`), where axum would answer with an
//! empty body. A route of the API that this process does not serve (a role serving one
//! side of the API: `POST /api/v1/workflows` on a query API, which serves only its `GET`)
//! is an unknown route here, `404`, not a `405`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::error::ApiError;

/// The header that carries a request's id, on the request and on its answer.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `routes` as they are served: with the JSON 404 and 405 fallbacks, unread bodies
/// drained, request tracking, a tracing span per request and request ids (see the
/// module docs).
pub fn wrap(routes: Router) -> Router {
    routes
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
        .layer(axum::middleware::from_fn(served_elsewhere))
        .layer(axum::middleware::from_fn(crate::drain::drain_unread))
        .layer(axum::middleware::from_fn(track_http))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The span every log line of a request is written in: its method, path and request id.
fn request_span(req: &Request) -> Span {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
}

/// A `405` for a method the API defines on this route means another role serves it:
/// answered `404 not_found`, as the fallback answers an unknown route.
async fn served_elsewhere(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let response = next.run(req).await;
    let elsewhere = response.status() == StatusCode::METHOD_NOT_ALLOWED
        && route.is_some_and(|r| crate::auth::rule(&method, &r).is_some());
    if elsewhere {
        return ApiError::not_found("no such route").into_response();
    }
    response
}

/// Counts and times every request by method, route template and status.
async fn track_http(req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("conflux_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("conflux_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
