//! Building the document: [`Spec`] collects paths and schemas, [`Op`] declares one
//! operation, a [`Failure`] is one kind of error answer, and small schema constructors.

use std::collections::BTreeMap;

use serde_json::json;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, ParameterBuilder};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{AllOfBuilder, KnownFormat, ObjectBuilder};
use utoipa::openapi::schema::{SchemaFormat, Type};
use utoipa::openapi::{ContentBuilder, PathItem, PathsBuilder, Ref, RefOr, Required};
use utoipa::openapi::{ResponseBuilder, Schema};
use utoipa::ToSchema;

use super::shapes::ErrorBody;

/// A constructor of operations tagged `tag`.
pub(super) fn tagged(tag: &'static str) -> impl Fn(HttpMethod, &str, &str, &str) -> Op {
    move |method, path, id, summary| Op::new(method, path, id, summary, tag)
}

/// One kind of failure a route can answer with: its status, when, and its codes.
#[derive(Clone, Copy)]
pub(super) struct Failure(
    pub(super) u16,
    pub(super) &'static str,
    pub(super) &'static [&'static str],
);

pub(super) const BAD_BODY: Failure = Failure(
    400,
    "malformed JSON, a body of the wrong shape, or a field the route does not define (`details.field` names it)",
    &["invalid_json", "invalid_request"],
);
pub(super) const BAD_QUERY: Failure = Failure(
    400,
    "a query parameter of the wrong type, out of range or given twice (`details.parameter` names it)",
    &["invalid_request"],
);
pub(super) const NOT_FOUND: Failure = Failure(
    404,
    "unknown id (also any id that is not a UUID)",
    &["not_found"],
);
pub(super) const NOT_UPGRADE: Failure =
    Failure(400, "not a WebSocket upgrade request", &["invalid_request"]);
pub(super) const UPGRADE_IMPOSSIBLE: Failure = Failure(
    426,
    "the connection cannot be upgraded",
    &["invalid_request"],
);
pub(super) const CONFLICT: Failure = Failure(409, "the state does not allow it", &["conflict"]);
pub(super) const STALE: Failure = Failure(
    409,
    "the lease's attempt is no longer current",
    &["stale_attempt", "conflict"],
);
pub(super) const TOO_LARGE: Failure = Failure(413, "body over the limit", &["payload_too_large"]);
pub(super) const INVALID_WORKFLOW: Failure = Failure(
    422,
    "not a valid workflow",
    &[
        "cycle",
        "unknown_dependency",
        "duplicate_task_id",
        "empty_workflow",
        "too_many_tasks",
        "invalid_task",
        "unknown_secret",
        "egress_denied",
    ],
);
pub(super) const INVALID_PARAMETERS: Failure = Failure(
    422,
    "missing or invalid pattern parameters (`details.errors`: every one as `{field, reason}`)",
    &["invalid_parameters"],
);
pub(super) const INVALID_SCHEDULE: Failure = Failure(
    422,
    "a cron expression that does not parse or never fires, or a time zone that is not an IANA name (`details.field` names it)",
    &["invalid_cron", "invalid_timezone"],
);
pub(super) const INVALID_HOOK: Failure = Failure(
    422,
    "a url that is not http/https or that the egress policy denies, an event type the log does not have (`details.unknown` lists them), no event types, or a secret of the wrong length (`details.field` names the field); nothing was recorded",
    &["invalid_url", "egress_denied", "unknown_event_type", "invalid_events", "invalid_secret"],
);
pub(super) const UNKNOWN_WORKFLOW: Failure = Failure(
    404,
    "the workflow is not one of the tenant's (`details.workflow`)",
    &["not_found"],
);
pub(super) const INTERNAL: Failure = Failure(
    500,
    "the store holds something it should not",
    &["internal"],
);
pub(super) const UNAVAILABLE: Failure =
    Failure(503, "a backing store is unreachable", &["unavailable"]);
pub(super) const UNAUTHENTICATED: Failure = Failure(
    401,
    "no bearer token, or an unknown, expired or revoked one (with `WWW-Authenticate: Bearer`)",
    &["unauthenticated"],
);
pub(super) const FORBIDDEN: Failure = Failure(
    403,
    "the token's role does not allow this route (or, for agent keys, this agent role)",
    &["forbidden"],
);
pub(super) const RATE_LIMITED: Failure = Failure(
    429,
    "over the caller's rate limit (`Retry-After` says when to try again)",
    &["rate_limited"],
);
pub(super) const OVER_QUOTA: Failure = Failure(
    429,
    "over one of the tenant's quotas (`details`: `quota`, `limit`, `used`; `Retry-After` for `executions_per_minute`); nothing was recorded",
    &["quota_exceeded"],
);
pub(super) const OVER_SIZE_QUOTA: Failure = Failure(
    413,
    "a payload over the tenant's `event_payload_bytes`, or its log at its `payload_bytes` (`details`: `quota`, `limit`, `used`); nothing was recorded",
    &["quota_exceeded"],
);
/// The routes anyone may call without a token.
pub(super) const OPEN: [&str; 4] = ["/health", "/ready", "/metrics", "/api/v1/openapi.json"];
/// The name of the bearer security scheme.
pub(super) const BEARER: &str = "bearer";

/// The document's paths and the schemas they refer to, while it is built.
#[derive(Default)]
pub(super) struct Spec {
    pub(super) paths: PathsBuilder,
    pub(super) schemas: BTreeMap<String, RefOr<Schema>>,
}

impl Spec {
    /// Registers `T` (and what it refers to) as components; returns a reference to it.
    pub(super) fn schema<T: ToSchema>(&mut self) -> RefOr<Schema> {
        let mut found = vec![(T::name().into_owned(), T::schema())];
        T::schemas(&mut found);
        self.schemas.extend(found);
        Ref::from_schema_name(T::name()).into()
    }
}

/// One operation under construction; [`Op::add`] files it into the document.
pub(super) struct Op {
    method: HttpMethod,
    path: String,
    pub(super) builder: OperationBuilder,
    failures: Vec<Failure>,
    stateful: bool,
}

impl Op {
    /// An operation of `tag`; the path's `{parameters}` are declared as UUIDs.
    pub(super) fn new(method: HttpMethod, path: &str, id: &str, summary: &str, tag: &str) -> Self {
        let mut builder = OperationBuilder::new()
            .operation_id(Some(id))
            .tag(tag)
            .summary(Some(summary));
        for name in path_parameters(path) {
            if let Some((about, schema)) = named_parameter(name) {
                builder = builder.parameter(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .description(Some(about))
                        .schema(Some(schema)),
                );
                continue;
            }
            let what = match name {
                "agent_id" => "agent",
                "lease_id" => "lease",
                _ if path.contains("/workflows/") => "workflow",
                _ => "execution",
            };
            let uuid = string().format(Some(known(KnownFormat::Uuid)));
            builder = builder.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .description(Some(format!("The {what} id.")))
                    .schema(Some(uuid)),
            );
        }
        Op {
            method,
            path: path.to_owned(),
            builder,
            failures: Vec::new(),
            stateful: true,
        }
    }

    pub(super) fn describe(mut self, description: &str) -> Self {
        self.builder = self
            .builder
            .description((!description.is_empty()).then_some(description));
        self
    }

    /// Neither reads nor writes the store (no 500/503 from it).
    pub(super) fn stateless(mut self) -> Self {
        self.stateful = false;
        self
    }

    pub(super) fn query(self, name: &str, schema: ObjectBuilder, description: &str) -> Self {
        self.param(ParameterIn::Query, name, schema, description)
    }

    pub(super) fn header(self, name: &str, schema: ObjectBuilder, description: &str) -> Self {
        self.param(ParameterIn::Header, name, schema, description)
    }

    /// An optional parameter.
    fn param(mut self, at: ParameterIn, name: &str, schema: ObjectBuilder, about: &str) -> Self {
        let param = ParameterBuilder::new()
            .name(name)
            .parameter_in(at)
            .required(Required::False)
            .description(Some(about))
            .schema(Some(schema));
        self.builder = self.builder.parameter(param);
        self
    }

    /// A JSON request body; when not `required`, an empty body reads as `{}`.
    pub(super) fn body(mut self, schema: RefOr<Schema>, required: bool) -> Self {
        let content = ContentBuilder::new().schema(Some(schema)).build();
        let required = if required {
            Required::True
        } else {
            Required::False
        };
        let body = RequestBodyBuilder::new()
            .required(Some(required))
            .content("application/json", content);
        self.builder = self.builder.request_body(Some(body.build()));
        self.failures.extend([BAD_BODY, TOO_LARGE]);
        self
    }

    /// A success answer with a JSON body.
    pub(super) fn ok(self, status: u16, description: &str, schema: RefOr<Schema>) -> Self {
        self.answer(status, description, [("application/json", schema)])
    }

    /// A success answer with a body of each media type given (none: no body).
    pub(super) fn answer<const N: usize>(
        mut self,
        status: u16,
        description: &str,
        contents: [(&str, RefOr<Schema>); N],
    ) -> Self {
        let mut response = ResponseBuilder::new().description(description);
        for (media, schema) in contents {
            let content = ContentBuilder::new().schema(Some(schema)).build();
            response = response.content(media, content);
        }
        self.builder = self.builder.response(status.to_string(), response);
        self
    }

    pub(super) fn fails(mut self, failures: &[Failure]) -> Self {
        self.failures.extend_from_slice(failures);
        self
    }

    /// Files the operation under its method and path, with its error responses: 404
    /// wherever the path names an id (but on WebSocket routes, which close with 4404
    /// instead), 500 and 503 wherever the store is used.
    pub(super) fn add(mut self, spec: &mut Spec) {
        let websocket = self.path.starts_with("/ws/");
        if !websocket && !path_parameters(&self.path).is_empty() {
            self.failures.push(NOT_FOUND);
        }
        if self.stateful {
            self.failures.extend([INTERNAL, UNAVAILABLE]);
        }
        if !OPEN.contains(&self.path.as_str()) {
            self.failures
                .extend([UNAUTHENTICATED, FORBIDDEN, RATE_LIMITED]);
            self.builder =
                self.builder
                    .security(utoipa::openapi::security::SecurityRequirement::new(
                        BEARER,
                        Vec::<String>::new(),
                    ));
        }
        let operation = error_responses(self.builder, &self.failures);
        let paths = std::mem::take(&mut spec.paths);
        spec.paths = paths.path(self.path, PathItem::new(self.method, operation));
    }
}

/// One error response per status, listing that status's cases and codes; its schema is
/// `ErrorBody` with `error.code` narrowed to those codes.
fn error_responses(mut builder: OperationBuilder, failures: &[Failure]) -> Operation {
    let mut by_status: BTreeMap<u16, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
    for &Failure(status, when, codes) in failures {
        let (whens, all) = by_status.entry(status).or_default();
        whens.push(when);
        for code in codes {
            if !all.contains(code) {
                all.push(code);
            }
        }
    }
    for (status, (whens, codes)) in by_status {
        let code = string().enum_values(Some(codes.clone()));
        let error = ObjectBuilder::new().property("code", code);
        let narrowed = AllOfBuilder::new()
            .item(Ref::from_schema_name(ErrorBody::name()))
            .item(ObjectBuilder::new().property("error", error));
        let codes: Vec<_> = codes.iter().map(|c| format!("`{c}`")).collect();
        let description = format!("{}: {}.", codes.join(", "), whens.join("; "));
        let content = ContentBuilder::new().schema(Some(narrowed)).build();
        let response = ResponseBuilder::new()
            .description(description)
            .content("application/json", content);
        builder = builder.response(status.to_string(), response);
    }
    builder.build()
}

/// The names of the `{parameters}` of a path template.
fn path_parameters(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

pub(super) fn known(format: KnownFormat) -> SchemaFormat {
    SchemaFormat::KnownFormat(format)
}

pub(super) fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

pub(super) fn boolean(default: bool) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .default(Some(json!(default)))
}

pub(super) fn words(words: &[&str]) -> ObjectBuilder {
    string().enum_values(Some(words.iter().copied()))
}

pub(super) fn integer(min: u64, max: Option<u64>, default: Option<u64>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(known(KnownFormat::Int64)))
        .minimum(Some(min as f64))
        .maximum(max.map(|m| m as f64))
        .default(default.map(|d| json!(d)))
}

/// `base` with the properties of `extra` added (JSON Schema `allOf`).
pub(super) fn extended(base: RefOr<Schema>, extra: ObjectBuilder) -> RefOr<Schema> {
    let all = AllOfBuilder::new().item(base).item(extra).build();
    RefOr::T(Schema::AllOf(all))
}

/// A path parameter that is a name rather than a uuid: its description and schema.
fn named_parameter(name: &str) -> Option<(&'static str, ObjectBuilder)> {
    let pattern = Some("^[A-Za-z0-9_.-]{1,128}$");
    match name {
        "signal" => Some(("The signal's name.", string().pattern(pattern))),
        "task_id" => Some(("The task id.", string().pattern(pattern))),
        "pattern" => Some((
            "The pattern: `supervisor`, `hierarchical`, `handoff`, `swarm` or `network` (any other is `404`).",
            string(),
        )),
        _ => None,
    }
}
