//! `GET /api/v1/openapi.json`: the HTTP and WebSocket surface of API.md as an OpenAPI 3
//! document, built once from code with `utoipa`.
//!
//! Body shapes are the documentation-only types of `shapes`, whose doc comments become
//! the schema descriptions. Each route is declared once, in the tables of `routes`
//! (`workflows`, `executions`…): its parameters, its success answers and the failures it
//! can answer with. `spec` builds them: path parameters are declared from the path
//! template, and the failures are grouped by status into responses whose schema is the
//! shared `ErrorBody` narrowed to that route's codes.

use std::sync::LazyLock;

use conflux_http::error::ApiError;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use utoipa::openapi::schema::ComponentsBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder};

use dead_letters::dead_letters;
use routes::{
    agents, audit, executions, hooks, keys, live, operations, patterns, schedules, secrets,
    tenants, workflows,
};
use shapes::ErrorBody;
use spec::Spec;
use waits::waits;

mod dead_letters;
mod routes;
#[allow(dead_code)]
mod shapes;
mod spec;
mod waits;

/// Where the document is served.
pub const PATH: &str = "/api/v1/openapi.json";

/// `GET /api/v1/openapi.json`. Stateless: the document is built on first use.
pub fn router() -> Router {
    Router::new().route(PATH, get(serve))
}

async fn serve() -> Result<impl IntoResponse, ApiError> {
    static JSON: LazyLock<Result<String, String>> =
        LazyLock::new(|| document().to_json().map_err(|e| e.to_string()));
    match &*JSON {
        Ok(json) => Ok(([(CONTENT_TYPE, "application/json")], json.as_str())),
        Err(e) => {
            tracing::error!(error = %e, "the OpenAPI document does not serialise");
            Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the OpenAPI document could not be built",
            ))
        }
    }
}

/// The OpenAPI document of every route of API.md.
pub fn document() -> OpenApi {
    let mut s = Spec::default();
    s.schema::<ErrorBody>();
    workflows(&mut s);
    executions(&mut s);
    waits(&mut s);
    dead_letters(&mut s);
    audit(&mut s);
    agents(&mut s);
    keys(&mut s);
    secrets(&mut s);
    schedules(&mut s);
    patterns(&mut s);
    hooks(&mut s);
    tenants(&mut s);
    live(&mut s);
    operations(&mut s);
    let info = InfoBuilder::new()
        .title("Conflux")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(ABOUT))
        .license(Some(
            LicenseBuilder::new()
                .name(env!("CARGO_PKG_LICENSE"))
                .build(),
        ));
    let tags = TAGS.map(|(name, about)| TagBuilder::new().name(name).description(Some(about)));
    OpenApiBuilder::new()
        .info(info)
        .paths(s.paths)
        .components(Some(
            ComponentsBuilder::new()
                .schemas_from_iter(s.schemas)
                .security_scheme(
                    spec::BEARER,
                    SecurityScheme::Http(
                        HttpBuilder::new()
                            .scheme(HttpAuthScheme::Bearer)
                            .description(Some(
                                "An API key `cfx_<key_id>_<secret>`, the system administrator's \
                                 token, or (when configured) the identity provider's JWT. \
                                 WebSocket upgrades may pass it as `?access_token=`, and also \
                                 take a stream token `cfs_…` minted for their path.",
                            ))
                            .build(),
                    ),
                )
                .build(),
        ))
        .tags(Some(tags.map(TagBuilder::build)))
        .build()
}

const ABOUT: &str = "Conflux, an event-sourced workflow engine: define workflows, run them, \
    watch them live, audit and replay their hash-chained event log. All bodies are JSON, all \
    ids UUIDs, all times RFC 3339 UTC. Every 4xx/5xx body is an `ErrorBody`; a rejected \
    request changes nothing. Every answer carries an `x-request-id` header.";

const TAGS: [(&str, &str); 10] = [
    (
        "keys",
        "API keys: issue (the token is shown once), list, revoke (on every server within a second).",
    ),
    (
        "secrets",
        "Values workflows use as `${secrets.NAME}`: stored sealed, never shown, never recorded.",
    ),
    ("workflows", "Workflow definitions, versioned by name."),
    (
        "executions",
        "Runs of a workflow: start, read, pause, resume, cancel.",
    ),
    (
        "agents",
        "External workers: register, long-poll leases, report by lease.",
    ),
    (
        "audit",
        "The event log: pages, NDJSON, replay, hash-chain verification.",
    ),
    (
        "schedules",
        "Workflows started on a cron in a time zone, exactly once per tick: create, list, pause, resume, delete.",
    ),
    (
        "hooks",
        "Webhooks: a tenant's events POSTed to a URL, signed, at least once, in log order; their deliveries.",
    ),
    ("live", "WebSocket status streams, and the short-lived tokens that open one."),
    ("operations", "Probes, metrics and this document."),
];
#[cfg(test)]
mod tests {
    use super::document;

    /// A third-party OpenAPI 3.1 reader accepts the document, and every reference it
    /// holds (parameters, bodies, responses, their schemas) resolves.
    #[test]
    fn the_document_is_read_by_an_openapi_parser() {
        let json = document().to_json().expect("json");
        let spec = oas3::from_json(&json).expect("an OpenAPI 3.1 document");
        spec.validate_version().expect("a supported version");
        let mut seen = 0;
        for (path, method, op) in spec.operations() {
            let at = format!("{method} {path}");
            op.parameters(&spec).expect(&at);
            let body = op.request_body(&spec).expect(&at);
            let raw = op.responses.as_ref().map_or(0, |r| r.len());
            let responses = op.responses(&spec);
            assert_eq!(responses.len(), raw, "{at}: a response does not resolve");
            let media = body.iter().flat_map(|b| b.content.values());
            for m in media.chain(responses.values().flat_map(|r| r.content.values())) {
                m.schema(&spec).expect(&at);
            }
            seen += 1;
        }
        assert_eq!(seen, 65, "every route of API.md and the README");
    }
}
