//! Authentication and the route → permission table: who is calling, and whether their
//! role allows what the route does.
//!
//! Deny by default: every route is listed in [`ROUTES`] with the one [`Rule`] it needs;
//! a matched route that is not listed is refused (`403 forbidden`), and a test walks the
//! OpenAPI document to prove every documented route is listed. The caller's
//! [`Principal`](conflux_engine::access::Principal) is put in the request's extensions, where [`crate::context`] finds it
//! for the events the request causes (`metadata.actor`, `metadata.tenant_id`).
//!
//! A token is read from `Authorization: Bearer <token>`, or, on the WebSocket routes
//! only (a browser cannot set headers on an upgrade), from `?access_token=`. A stream
//! token (`POST /api/v1/stream-tokens`) counts only on the upgrade of the one stream it
//! was minted for ([`LivePath`]); anywhere else it is `401`. Tokens are never logged: a
//! refusal logs only its reason.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use conflux_engine::access::{Access, AuthError};
use conflux_schema::access::Permission;

use crate::error::ApiError;
use crate::live_path::LivePath;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Anyone, no token (operations probes and the API document).
    Open,
    /// An authenticated caller whose role grants this.
    Needs(Permission),
}

/// Every route of the API with what it needs: `(method, route template, rule)`.
pub const ROUTES: &[(&str, &str, Rule)] = {
    use Permission as P;
    use Rule::{Needs, Open};
    &[
        ("GET", "/health", Open),
        ("GET", "/ready", Open),
        ("GET", "/metrics", Open),
        ("GET", "/api/v1/openapi.json", Open),
        ("POST", "/api/v1/workflows", Needs(P::Define)),
        ("GET", "/api/v1/workflows", Needs(P::Read)),
        ("GET", "/api/v1/workflows/{id}", Needs(P::Read)),
        ("GET", "/api/v1/workflows/{id}/status", Needs(P::Read)),
        ("POST", "/api/v1/workflows/{id}/execute", Needs(P::Operate)),
        ("POST", "/api/v1/workflows/{id}/pause", Needs(P::Operate)),
        ("POST", "/api/v1/workflows/{id}/resume", Needs(P::Operate)),
        ("GET", "/api/v1/workflows/{id}/events", Needs(P::Audit)),
        ("GET", "/api/v1/executions/{id}", Needs(P::Read)),
        ("POST", "/api/v1/executions/{id}/pause", Needs(P::Operate)),
        ("POST", "/api/v1/executions/{id}/resume", Needs(P::Operate)),
        ("POST", "/api/v1/executions/{id}/cancel", Needs(P::Operate)),
        (
            "POST",
            "/api/v1/executions/{id}/signals/{signal}",
            Needs(P::Operate),
        ),
        (
            "POST",
            "/api/v1/executions/{id}/tasks/{task_id}/approve",
            Needs(P::Operate),
        ),
        (
            "POST",
            "/api/v1/executions/{id}/tasks/{task_id}/reject",
            Needs(P::Operate),
        ),
        ("GET", "/api/v1/executions/{id}/events", Needs(P::Audit)),
        ("GET", "/api/v1/executions/{id}/replay", Needs(P::Audit)),
        ("GET", "/api/v1/executions/{id}/verify", Needs(P::Audit)),
        ("POST", "/api/v1/agents", Needs(P::AgentWork)),
        ("GET", "/api/v1/agents", Needs(P::Read)),
        ("GET", "/api/v1/agents/{id}", Needs(P::Read)),
        ("DELETE", "/api/v1/agents/{id}", Needs(P::AgentWork)),
        ("POST", "/api/v1/agents/{id}/heartbeat", Needs(P::AgentWork)),
        ("POST", "/api/v1/agents/{id}/drain", Needs(P::AgentWork)),
        ("POST", "/api/v1/agents/{id}/poll", Needs(P::AgentWork)),
        ("POST", "/api/v1/tasks/{id}/complete", Needs(P::AgentWork)),
        ("POST", "/api/v1/tasks/{id}/fail", Needs(P::AgentWork)),
        ("POST", "/api/v1/tasks/{id}/heartbeat", Needs(P::AgentWork)),
        ("GET", "/ws/executions/{id}", Needs(P::Read)),
        ("GET", "/ws/workflows/{id}", Needs(P::Read)),
        ("POST", "/api/v1/keys", Needs(P::ManageKeys)),
        ("GET", "/api/v1/keys", Needs(P::ManageKeys)),
        ("DELETE", "/api/v1/keys/{key_id}", Needs(P::ManageKeys)),
        ("POST", "/api/v1/stream-tokens", Needs(P::Read)),
        ("POST", "/api/v1/tenants", Needs(P::ManageTenants)),
        ("GET", "/api/v1/tenants", Needs(P::ManageTenants)),
        (
            "PUT",
            "/api/v1/tenants/{tenant}/policy",
            Needs(P::ManageTenants),
        ),
        (
            "GET",
            "/api/v1/tenants/{tenant}/policy",
            Needs(P::ManageTenants),
        ),
        ("GET", "/api/v1/tenants/{tenant}/usage", Needs(P::ReadUsage)),
        (
            "DELETE",
            "/api/v1/tenants/{tenant}/data",
            Needs(P::ManageTenants),
        ),
        (
            "DELETE",
            "/api/v1/executions/{id}/data",
            Needs(P::EraseData),
        ),
        ("POST", "/api/v1/patterns/{pattern}", Needs(P::Define)),
        ("POST", "/api/v1/schedules", Needs(P::Operate)),
        ("GET", "/api/v1/schedules", Needs(P::Read)),
        ("GET", "/api/v1/schedules/{id}", Needs(P::Read)),
        ("DELETE", "/api/v1/schedules/{id}", Needs(P::Operate)),
        ("POST", "/api/v1/schedules/{id}/pause", Needs(P::Operate)),
        ("POST", "/api/v1/schedules/{id}/resume", Needs(P::Operate)),
        ("GET", "/api/v1/dead-letters", Needs(P::Read)),
        ("GET", "/api/v1/dead-letters/{id}", Needs(P::Read)),
        ("DELETE", "/api/v1/dead-letters/{id}", Needs(P::Operate)),
        ("POST", "/api/v1/dead-letters/{id}/retry", Needs(P::Operate)),
        ("POST", "/api/v1/hooks", Needs(P::Operate)),
        ("GET", "/api/v1/hooks", Needs(P::Read)),
        ("GET", "/api/v1/hooks/{id}", Needs(P::Read)),
        ("DELETE", "/api/v1/hooks/{id}", Needs(P::Operate)),
        ("GET", "/api/v1/hooks/{id}/deliveries", Needs(P::Read)),
        ("POST", "/api/v1/secrets", Needs(P::ManageSecrets)),
        ("GET", "/api/v1/secrets", Needs(P::ManageSecrets)),
        ("PUT", "/api/v1/secrets/{name}", Needs(P::ManageSecrets)),
        ("DELETE", "/api/v1/secrets/{name}", Needs(P::ManageSecrets)),
    ]
};

/// The rule of `method` on `route` (None: not listed, refused). `HEAD` is `GET`'s rule:
/// the router answers it with the GET handler.
pub fn rule(method: &Method, route: &str) -> Option<Rule> {
    let method = if method == Method::HEAD {
        Method::GET
    } else {
        method.clone()
    };
    ROUTES
        .iter()
        .find(|(m, r, _)| *m == method.as_str() && *r == route)
        .map(|(_, _, rule)| *rule)
}

/// The caller's token: the bearer header, or `access_token` on WebSocket routes.
fn token_of(req: &Request) -> Option<String> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    if !req.uri().path().starts_with("/ws/") {
        return None;
    }
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "access_token").then(|| v.to_owned())
    })
}

/// `401 unauthenticated` with `WWW-Authenticate: Bearer`.
pub fn unauthenticated(reason: AuthError) -> Response {
    let message = match reason {
        AuthError::Missing => "this route needs Authorization: Bearer <token>",
        AuthError::Unknown | AuthError::Revoked | AuthError::Expired => {
            "the token is unknown, expired or revoked"
        }
    };
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Per-caller request rate limits: a token bucket per actor (`key:<id>`, `admin`).
pub type RateLimits = governor::DefaultKeyedRateLimiter<String>;

/// How many admissions pass between two prunings of the rate limits' callers.
const PRUNE_EVERY: u64 = 4096;

/// What [`require`] needs: the keys, and the rate limits (None: unlimited).
#[derive(Clone)]
pub struct Gate {
    /// Tenants and keys.
    pub access: Access,
    /// Requests per second per caller, with a burst of twice that.
    pub limits: Option<std::sync::Arc<RateLimits>>,
    /// Admissions so far: every [`PRUNE_EVERY`], callers whose bucket is full again are
    /// forgotten, so the map does not grow with every JWT subject ever seen.
    admitted: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Gate {
    /// A gate over `access`, allowing each caller `per_second` requests a second with a
    /// burst of twice that (`0`: no limit).
    pub fn new(access: Access, per_second: u32) -> Self {
        let limits = std::num::NonZeroU32::new(per_second).map(|rate| {
            let burst = rate.saturating_mul(std::num::NonZeroU32::MIN.saturating_add(1));
            std::sync::Arc::new(governor::RateLimiter::keyed(
                governor::Quota::per_second(rate).allow_burst(burst),
            ))
        });
        Self {
            access,
            limits,
            admitted: std::sync::Arc::default(),
        }
    }

    /// `Err(seconds to wait)` when `actor` is over its rate.
    fn admit(&self, actor: &str) -> Result<(), u64> {
        let Some(limits) = &self.limits else {
            return Ok(());
        };
        let n = self
            .admitted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % PRUNE_EVERY == PRUNE_EVERY - 1 {
            prune(limits);
        }
        admit(limits, actor)
    }
}

/// Forgets the callers whose bucket is full again (they behave as new callers anyway).
fn prune(limits: &RateLimits) {
    limits.retain_recent();
    limits.shrink_to_fit();
}

/// `Err(whole seconds to wait, at least 1)` when `actor` is over its rate.
fn admit(limits: &RateLimits, actor: &str) -> Result<(), u64> {
    limits.check_key(&actor.to_owned()).map_err(|not_until| {
        use governor::clock::Clock;
        let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
        (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
    })
}

/// `429 rate_limited` with `Retry-After: <seconds>`.
pub fn rate_limited(seconds: u64) -> Response {
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many requests for this key; retry after the number of seconds in Retry-After",
    )
    .with_details(serde_json::json!({"retry_after_seconds": seconds}))
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// The middleware: authenticates the caller of every listed route (except open ones),
/// checks the route's permission and the caller's rate, and hands the [`Principal`](conflux_engine::access::Principal) on
/// in the extensions.
pub async fn require(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let Some(route) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        // Unmatched: the JSON 404 fallback answers.
        return next.run(req).await;
    };
    let needed = match rule(req.method(), &route) {
        Some(Rule::Open) => return next.run(req).await,
        Some(Rule::Needs(p)) => p,
        // The route exists for other methods: 405, without running anything.
        None if ROUTES.iter().any(|(_, r, _)| *r == route) => {
            return ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
            .into_response()
        }
        None => {
            tracing::error!(%route, method = %req.method(), "a route without a permission rule was refused");
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this route has no permission rule, so nobody may call it",
            )
            .into_response();
        }
    };
    // On a live stream's route, the stream it opens: what a stream token must be for.
    let stream = route
        .starts_with("/ws/")
        .then(|| LivePath::parse(req.uri().path()))
        .flatten()
        .map(|p| p.scope());
    let principal = match token_of(&req) {
        None => Err(AuthError::Missing),
        Some(token) => gate.access.authenticate_for(&token, stream.as_deref()),
    };
    let principal = match principal {
        Ok(p) => p,
        Err(reason) => {
            tracing::info!(%reason, %route, "refused a request: unauthenticated");
            return unauthenticated(reason);
        }
    };
    if let Err(seconds) = gate.admit(&principal.actor) {
        return rate_limited(seconds);
    }
    if !principal.allows(needed) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "a {} key may not {} (this route needs `{}`)",
                principal.role.map_or("system", |r| r.as_str()),
                describe(needed),
                needed.as_str()
            ),
        )
        .into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

fn describe(p: Permission) -> &'static str {
    match p {
        Permission::Read => "read workflows and executions",
        Permission::Audit => "read the audit log",
        Permission::Operate => "run or steer executions",
        Permission::Define => "create workflows",
        Permission::AgentWork => "act as an agent",
        Permission::ManageKeys => "manage keys",
        Permission::ManageTenants => "manage tenants",
        Permission::EraseData => "erase execution data",
        Permission::ManageSecrets => "manage secrets",
        Permission::ReadUsage => "see the tenant's usage",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_over_its_rate_gets_429_with_retry_after() {
        let rate = std::num::NonZeroU32::new(3).expect("3");
        let limits = governor::RateLimiter::keyed(governor::Quota::per_hour(rate));
        for _ in 0..3 {
            assert!(admit(&limits, "key:a").is_ok());
        }
        let retry = admit(&limits, "key:a").expect_err("over the rate");
        assert!((1..=1200).contains(&retry), "{retry}");
        let refused = rate_limited(retry);
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            refused.headers()[header::RETRY_AFTER],
            retry.to_string().as_str()
        );
        assert!(admit(&limits, "key:b").is_ok(), "per caller");
    }

    #[test]
    fn callers_with_full_buckets_are_forgotten() {
        let rate = std::num::NonZeroU32::new(1000).expect("1000");
        let limits = governor::RateLimiter::keyed(governor::Quota::per_second(rate));
        for n in 0..100 {
            assert!(admit(&limits, &format!("jwt:user-{n}")).is_ok());
        }
        assert_eq!(limits.len(), 100);
        std::thread::sleep(std::time::Duration::from_millis(20));
        prune(&limits);
        assert_eq!(limits.len(), 0, "every bucket refilled: nobody to remember");
        let busy = governor::RateLimiter::keyed(governor::Quota::per_hour(rate));
        assert!(admit(&busy, "key:a").is_ok());
        prune(&busy);
        assert_eq!(
            busy.len(),
            1,
            "a caller still paying back its burst is kept"
        );
    }

    #[test]
    fn every_rule_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for (m, r, _) in ROUTES {
            assert!(seen.insert((m, r)), "{m} {r} listed twice");
        }
        assert_eq!(rule(&Method::GET, "/health"), Some(Rule::Open));
        assert_eq!(rule(&Method::DELETE, "/api/v1/workflows/{id}"), None);
        assert_eq!(
            rule(&Method::HEAD, "/api/v1/executions/{id}/events"),
            rule(&Method::GET, "/api/v1/executions/{id}/events"),
            "HEAD needs what GET needs"
        );
    }
}
