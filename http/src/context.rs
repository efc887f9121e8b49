//! The request context: what the HTTP layer knows about the request being served, read
//! once and handed to handlers as one extractor, so a handler never reads headers for
//! it. Today that is the request id; who is calling (caller, tenant, role) joins it when
//! requests are authenticated.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use conflux_engine::access::Principal;
use conflux_schema::EventMetadata;

use crate::layers::REQUEST_ID;

/// What the HTTP layer knows about the request being served.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request's id: the client's `x-request-id`, or the one the router set
    /// ([`crate::layers::wrap`]). None only for a router served without it.
    pub request_id: Option<String>,
    /// Who is calling (set by [`crate::auth::require`]; None only on open routes or a
    /// router served without authentication).
    pub principal: Option<Principal>,
}

impl RequestContext {
    /// The tenant the caller acts in: its principal's, or `default` on a router served
    /// without authentication. Every resource a request names must be this tenant's;
    /// another tenant's answers exactly as an unknown one.
    pub fn tenant(&self) -> &str {
        self.principal
            .as_ref()
            .map_or(conflux_schema::access::DEFAULT_TENANT, |p| {
                p.tenant.as_str()
            })
    }

    /// Whether the caller acts with the `viewer` role.
    pub fn is_viewer(&self) -> bool {
        self.principal.as_ref().and_then(|p| p.role) == Some(conflux_schema::access::Role::Viewer)
    }

    /// Metadata for the events this request causes: its request id as request,
    /// correlation and causation id; the caller as actor (`key:<key_id>`, `admin`) and
    /// its tenant.
    pub fn event_metadata(&self) -> EventMetadata {
        EventMetadata {
            correlation_id: self.request_id.clone(),
            causation_id: self.request_id.clone(),
            actor: Some(
                self.principal
                    .as_ref()
                    .map_or_else(|| "api".to_owned(), |p| p.actor.clone()),
            ),
            tenant_id: Some(self.tenant().to_owned()),
            request_id: self.request_id.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let request_id = parts
            .headers
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let principal = parts.extensions.get::<Principal>().cloned();
        Ok(RequestContext {
            request_id,
            principal,
        })
    }
}
