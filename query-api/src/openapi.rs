//! `GET /api/v1/openapi.json`: the HTTP and WebSocket surface of API.md as an OpenAPI 3
//! document, built once from code with `utoipa`.
//!
//! Body shapes are the documentation-only types of `shapes`, whose doc comments become
//! the schema descriptions. Each route is declared once (`workflows`, `executions`…):
//! its parameters, its success answers and the failures it can answer with. Path
//! parameters are declared from the path template, and the failures are grouped by status
//! into responses whose schema is the shared `ErrorBody` narrowed to that route's codes.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::json;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, ParameterBuilder};
use utoipa::openapi::path::{HttpMethod::Get, HttpMethod::Post, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{AllOfBuilder, ComponentsBuilder, KnownFormat, ObjectBuilder};
use utoipa::openapi::schema::{SchemaFormat, SchemaType, Type};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{ContentBuilder, InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder};
use utoipa::openapi::{PathItem, PathsBuilder, Ref, RefOr, Required, ResponseBuilder, Schema};
use utoipa::ToSchema;

use shapes::*;

/// Where the document is served.
pub const PATH: &str = "/api/v1/openapi.json";

/// `GET /api/v1/openapi.json`. Stateless: the document is built on first use.
pub fn router() -> Router {
    Router::new().route(PATH, get(serve))
}

async fn serve() -> impl IntoResponse {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        // Plain data with string keys: serialising it cannot fail.
        document()
            .to_json()
            .expect("the OpenAPI document serialises")
    });
    ([(CONTENT_TYPE, "application/json")], JSON.as_str())
}

/// The OpenAPI document of every route of API.md.
pub fn document() -> OpenApi {
    let mut s = Spec::default();
    s.schema::<ErrorBody>();
    workflows(&mut s);
    executions(&mut s);
    audit(&mut s);
    agents(&mut s);
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
                .build(),
        ))
        .tags(Some(tags.map(TagBuilder::build)))
        .build()
}

const ABOUT: &str = "Conflux, an event-sourced workflow engine: define workflows, run them, \
    watch them live, audit and replay their hash-chained event log. All bodies are JSON, all \
    ids UUIDs, all times RFC 3339 UTC. Every 4xx/5xx body is an `ErrorBody`; a rejected \
    request changes nothing. Every answer carries an `x-request-id` header.";

const TAGS: [(&str, &str); 6] = [
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
    ("live", "WebSocket status streams."),
    ("operations", "Probes, metrics and this document."),
];

// The route declarations below keep one call per line, like a table; rustfmt would
// split most of them over four lines.
#[rustfmt::skip]
fn workflows(s: &mut Spec) {
    let op = tagged("workflows");
    let definition = s.schema::<WorkflowDefinition>();
    let input = ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .description(Some("The execution's input, with `?execute=true`."));
    let create = extended(definition.clone(), ObjectBuilder::new().property("input", input));
    op(Post, "/api/v1/workflows", "createWorkflow", "Create a workflow")
        .describe("A second workflow with the same `name` is version 2, 3, … with a new id.")
        .query("execute", boolean(false), "Also start an execution with the body's `input`.")
        .body(create, true)
        .ok(201, "The workflow was created.", s.schema::<WorkflowCreated>())
        .fails(&[BAD_QUERY, INVALID_WORKFLOW, CONFLICT])
        .add(s);
    op(Get, "/api/v1/workflows", "listWorkflows", "List workflows, newest first")
        .query("status", words(&WORKFLOW_STATUSES), "Only workflows with this status.")
        .query("name", string(), "Only the versions of this name.")
        .query("limit", integer(1, Some(1000), Some(50)), "Page size.")
        .query("cursor", string(), "The `next_cursor` of the previous page.")
        .ok(200, "A page of workflows.", s.schema::<WorkflowList>())
        .fails(&[BAD_QUERY])
        .add(s);
    let stored = extended(
        definition,
        ObjectBuilder::new()
            .property("workflow_id", string().format(Some(known(KnownFormat::Uuid))))
            .property("version", integer(1, None, None))
            .property("created_at", string().format(Some(known(KnownFormat::DateTime))))
            .required("workflow_id")
            .required("version")
            .required("created_at"),
    );
    op(Get, "/api/v1/workflows/{id}", "getWorkflow", "A workflow's definition")
        .ok(200, "The definition, with `workflow_id`, `version`, `created_at`.", stored)
        .add(s);
    op(Get, "/api/v1/workflows/{id}/status", "getWorkflowStatus", "A workflow's status")
        .describe("Executions by status and the latest one; `position`: the last event reflected.")
        .ok(200, "The workflow's status.", s.schema::<WorkflowStatus>())
        .add(s);
}

#[rustfmt::skip]
fn executions(s: &mut Spec) {
    let op = tagged("executions");
    let accepted = s.schema::<ExecutionAccepted>();
    let key = string().min_length(Some(1)).max_length(Some(255));
    op(Post, "/api/v1/workflows/{id}/execute", "executeWorkflow", "Start an execution")
        .header("Idempotency-Key", key, "A repeat of a key answers 200 with the same execution.")
        .body(s.schema::<ExecuteRequest>(), false)
        .ok(202, "The execution started.", accepted.clone())
        .ok(200, "The key was used before: that execution; nothing started.", accepted)
        .fails(&[CONFLICT])
        .add(s);
    let changed = s.schema::<WorkflowControlled>();
    for (verb, id, summary) in [
        ("pause", "pauseWorkflow", "Pause every active execution of a workflow"),
        ("resume", "resumeWorkflow", "Resume every paused execution of a workflow"),
    ] {
        op(Post, &format!("/api/v1/workflows/{{id}}/{verb}"), id, summary)
            .describe("Executions already in that state (or finished meanwhile) are skipped.")
            .ok(202, "The executions that changed, with their status.", changed.clone())
            .fails(&[CONFLICT])
            .add(s);
    }
    op(Get, "/api/v1/executions/{id}", "getExecution", "An execution")
        .describe("From the read model, or folded from its log if the projector is behind.")
        .ok(200, "The execution.", s.schema::<Execution>())
        .add(s);
    let changed = s.schema::<ExecutionControlled>();
    let cancel = s.schema::<CancelRequest>();
    for (verb, id, summary, about) in [
        ("pause", "pauseExecution", "Pause an execution", PAUSE),
        ("resume", "resumeExecution", "Resume a paused execution", ""),
        ("cancel", "cancelExecution", "Cancel an execution", ""),
    ] {
        let op = op(Post, &format!("/api/v1/executions/{{id}}/{verb}"), id, summary)
            .describe(about)
            .ok(202, "The command was recorded.", changed.clone())
            .fails(&[CONFLICT]);
        if verb == "cancel" { op.body(cancel.clone(), false) } else { op }.add(s);
    }
}

const PAUSE: &str = "Nothing new is dispatched; running attempts may finish and are recorded.";

#[rustfmt::skip]
fn audit(s: &mut Spec) {
    let op = tagged("audit");
    let limit = || integer(1, Some(10_000), Some(1000));
    let events = [
        ("application/json", s.schema::<EventPage>()),
        ("application/x-ndjson", s.schema::<Envelope>()),
    ];
    op(Get, "/api/v1/executions/{id}/events", "getExecutionEvents", "An execution's log")
        .describe(NDJSON)
        .query("after_version", integer(0, None, Some(0)), "Only events after this version.")
        .query("limit", limit(), "Page size (JSON only).")
        .query("format", words(&["json", "ndjson"]).default(Some(json!("json"))), "Format.")
        .answer(200, "A page of events, or the whole log as NDJSON.", events)
        .fails(&[BAD_QUERY])
        .add(s);
    op(Get, "/api/v1/executions/{id}/replay", "replayExecution", "Replay an execution")
        .describe("The execution as it stood after event N, folded from the log (no read model).")
        .query("to_version", integer(1, None, None), "The last event folded (default: all).")
        .ok(200, "The state after `to_version`.", s.schema::<Replay>())
        .fails(&[BAD_QUERY])
        .add(s);
    op(Get, "/api/v1/executions/{id}/verify", "verifyExecution", "Verify the hash chain")
        .describe("Recomputes every hash of the stored log from its raw columns.")
        .ok(200, "The outcome.", s.schema::<Verification>())
        .add(s);
    op(Get, "/api/v1/workflows/{id}/events", "getWorkflowEvents", "A workflow's log")
        .describe("The events of the workflow's stream and all its executions, by position.")
        .query("after_position", integer(0, None, Some(0)), "Only events after this position.")
        .query("limit", limit(), "Page size.")
        .ok(200, "A page of events.", s.schema::<WorkflowEventPage>())
        .fails(&[BAD_QUERY])
        .add(s);
}

const NDJSON: &str = "`format=json` (default): a page of `limit` events after `after_version`. \
    `format=ndjson`: the whole log streamed as `application/x-ndjson`, one envelope a line.";

#[rustfmt::skip]
fn agents(s: &mut Spec) {
    let op = tagged("agents");
    op(Post, "/api/v1/agents", "registerAgent", "Register an agent")
        .body(s.schema::<RegisterAgent>(), true)
        .ok(201, "The agent is registered.", s.schema::<AgentRegistered>())
        .add(s);
    op(Post, "/api/v1/agents/{agent_id}/poll", "pollTasks", "Long-poll for tasks")
        .describe("Leases tasks of the agent's roles; an empty list when `wait_ms` passes.")
        .query("max", integer(1, Some(100), Some(10)), "The most tasks to lease.")
        .query("wait_ms", integer(0, None, Some(20_000)), "Longest wait, ms (at most 60000).")
        .ok(200, "The leased tasks.", s.schema::<PollAnswer>())
        .fails(&[BAD_QUERY])
        .add(s);
    let recorded = s.schema::<LeaseRecorded>();
    let (complete, fail) = (s.schema::<CompleteTask>(), s.schema::<FailTask>());
    for (verb, id, summary, body) in [
        ("complete", "completeTask", "Complete a leased attempt", Some((complete, false))),
        ("fail", "failTask", "Fail a leased attempt", Some((fail, true))),
        ("heartbeat", "heartbeatTask", "Extend a leased attempt's deadline", None),
    ] {
        let mut op = op(Post, &format!("/api/v1/tasks/{{lease_id}}/{verb}"), id, summary)
            .ok(200, "Recorded.", recorded.clone())
            .fails(&[STALE]);
        if let Some((schema, required)) = body {
            op = op.body(schema, required);
        }
        op.add(s);
    }
}

#[rustfmt::skip]
fn live(s: &mut Spec) {
    let frames = json!({"$ref": Ref::from_schema_name(LiveFrame::name()).ref_location});
    s.schema::<LiveFrame>();
    for (what, id) in [("workflow", "watchWorkflow"), ("execution", "watchExecution")] {
        let mut op = Op::new(Get, &format!("/ws/{what}s/{{id}}"), id, "Watch live", "live")
            .describe(LIVE)
            .query("after", integer(0, None, None), "Resume after this position (no snapshot).")
            .answer(101, "Switching protocols: a WebSocket of `LiveFrame` frames.", [])
            .fails(&[BAD_QUERY, NOT_UPGRADE, UPGRADE_IMPOSSIBLE])
            .stateless();
        let frames = ExtensionsBuilder::new().add("x-websocket-frames", frames.clone());
        op.builder = op.builder.extensions(Some(frames.build()));
        op.add(s);
    }
}

const LIVE: &str = "Upgrade to a WebSocket. Server → client text frames, JSON (`LiveFrame`):\n\
1. `{\"type\": \"snapshot\", \"position\": P, \"status\": <body>}` first, where the body is \
what `GET /api/v1/executions/{id}` or `GET /api/v1/workflows/{id}/status` answers; \
omitted when `after` is given.\n\
2. Then every event after P (or after `after`) in position order, exactly once: \
`{\"type\": \"event\", \"event\": <envelope>}`.\n\
3. `{\"type\": \"lagged\", \"position\": <last sent>}` then close (1008) if the client \
cannot keep up; it reconnects with `?after=<position>`.\n\n\
The server pings every 15 s. An unknown id is no HTTP 404: the socket opens and is \
closed with code 4404.";

#[rustfmt::skip]
fn operations(s: &mut Spec) {
    let op = tagged("operations");
    let unavailable = |when| Failure(503, when, &["unavailable"]);
    op(Get, "/health", "health", "Liveness")
        .stateless()
        .ok(200, "The process runs.", s.schema::<Health>())
        .add(s);
    op(Get, "/ready", "ready", "Readiness: the event store and the bus answer")
        .stateless()
        .ok(200, "Ready.", s.schema::<Ready>())
        .fails(&[unavailable("the store or the bus did not answer (details: mode, store, bus)")])
        .add(s);
    let text = [("text/plain; version=0.0.4", string().into())];
    op(Get, "/metrics", "metrics", "Prometheus metrics")
        .stateless()
        .answer(200, "Prometheus text exposition format 0.0.4.", text)
        .fails(&[unavailable("the metrics recorder is not installed")])
        .add(s);
    let object = ObjectBuilder::new().schema_type(Type::Object).into();
    op(Get, PATH, "openapi", "This document")
        .stateless()
        .ok(200, "The OpenAPI 3 document.", object)
        .add(s);
}

/// A constructor of operations tagged `tag`.
fn tagged(tag: &'static str) -> impl Fn(HttpMethod, &str, &str, &str) -> Op {
    move |method, path, id, summary| Op::new(method, path, id, summary, tag)
}

/// One kind of failure a route can answer with: its status, when, and its codes.
#[derive(Clone, Copy)]
struct Failure(u16, &'static str, &'static [&'static str]);

const BAD_BODY: Failure = Failure(
    400,
    "malformed JSON or a body of the wrong shape",
    &["invalid_json", "invalid_request"],
);
const BAD_QUERY: Failure = Failure(
    400,
    "a parameter of the wrong type or out of range",
    &["invalid_request"],
);
const NOT_FOUND: Failure = Failure(
    404,
    "unknown id (also any id that is not a UUID)",
    &["not_found"],
);
const NOT_UPGRADE: Failure = Failure(400, "not a WebSocket upgrade request", &["invalid_request"]);
const UPGRADE_IMPOSSIBLE: Failure = Failure(
    426,
    "the connection cannot be upgraded",
    &["invalid_request"],
);
const CONFLICT: Failure = Failure(409, "the state does not allow it", &["conflict"]);
const STALE: Failure = Failure(
    409,
    "the lease's attempt is no longer current",
    &["stale_attempt", "conflict"],
);
const TOO_LARGE: Failure = Failure(413, "body over the limit", &["payload_too_large"]);
const INVALID_WORKFLOW: Failure = Failure(
    422,
    "not a valid workflow",
    &[
        "cycle",
        "unknown_dependency",
        "duplicate_task_id",
        "empty_workflow",
        "too_many_tasks",
        "invalid_task",
    ],
);
const INTERNAL: Failure = Failure(
    500,
    "the store holds something it should not",
    &["internal"],
);
const UNAVAILABLE: Failure = Failure(503, "a backing store is unreachable", &["unavailable"]);

/// The document's paths and the schemas they refer to, while it is built.
#[derive(Default)]
struct Spec {
    paths: PathsBuilder,
    schemas: BTreeMap<String, RefOr<Schema>>,
}

impl Spec {
    /// Registers `T` (and what it refers to) as components; returns a reference to it.
    fn schema<T: ToSchema>(&mut self) -> RefOr<Schema> {
        let mut found = vec![(T::name().into_owned(), T::schema())];
        T::schemas(&mut found);
        self.schemas.extend(found);
        Ref::from_schema_name(T::name()).into()
    }
}

/// One operation under construction; [`Op::add`] files it into the document.
struct Op {
    method: HttpMethod,
    path: String,
    builder: OperationBuilder,
    failures: Vec<Failure>,
    stateful: bool,
}

impl Op {
    /// An operation of `tag`; the path's `{parameters}` are declared as UUIDs.
    fn new(method: HttpMethod, path: &str, id: &str, summary: &str, tag: &str) -> Self {
        let mut builder = OperationBuilder::new()
            .operation_id(Some(id))
            .tag(tag)
            .summary(Some(summary));
        for name in path_parameters(path) {
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

    fn describe(mut self, description: &str) -> Self {
        self.builder = self
            .builder
            .description((!description.is_empty()).then_some(description));
        self
    }

    /// Neither reads nor writes the store (no 500/503 from it).
    fn stateless(mut self) -> Self {
        self.stateful = false;
        self
    }

    fn query(self, name: &str, schema: ObjectBuilder, description: &str) -> Self {
        self.param(ParameterIn::Query, name, schema, description)
    }

    fn header(self, name: &str, schema: ObjectBuilder, description: &str) -> Self {
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
    fn body(mut self, schema: RefOr<Schema>, required: bool) -> Self {
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
    fn ok(self, status: u16, description: &str, schema: RefOr<Schema>) -> Self {
        self.answer(status, description, [("application/json", schema)])
    }

    /// A success answer with a body of each media type given (none: no body).
    fn answer<const N: usize>(
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

    fn fails(mut self, failures: &[Failure]) -> Self {
        self.failures.extend_from_slice(failures);
        self
    }

    /// Files the operation under its method and path, with its error responses: 404
    /// wherever the path names an id (but on WebSocket routes, which close with 4404
    /// instead), 500 and 503 wherever the store is used.
    fn add(mut self, spec: &mut Spec) {
        let websocket = self.path.starts_with("/ws/");
        if !websocket && !path_parameters(&self.path).is_empty() {
            self.failures.push(NOT_FOUND);
        }
        if self.stateful {
            self.failures.extend([INTERNAL, UNAVAILABLE]);
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

fn known(format: KnownFormat) -> SchemaFormat {
    SchemaFormat::KnownFormat(format)
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn boolean(default: bool) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .default(Some(json!(default)))
}

fn words(words: &[&str]) -> ObjectBuilder {
    string().enum_values(Some(words.iter().copied()))
}

fn integer(min: u64, max: Option<u64>, default: Option<u64>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(known(KnownFormat::Int64)))
        .minimum(Some(min as f64))
        .maximum(max.map(|m| m as f64))
        .default(default.map(|d| json!(d)))
}

/// `base` with the properties of `extra` added (JSON Schema `allOf`).
fn extended(base: RefOr<Schema>, extra: ObjectBuilder) -> RefOr<Schema> {
    let all = AllOfBuilder::new().item(base).item(extra).build();
    RefOr::T(Schema::AllOf(all))
}

/// Statuses a workflow has: `idle` (never executed) or its latest execution's.
const WORKFLOW_STATUSES: [&str; 8] = [
    "idle",
    "running",
    "paused",
    "completed",
    "failed",
    "cancelled",
    "compensating",
    "compensated",
];

/// The wire shapes, as types whose derived schemas (and doc comments) document them.
/// Nothing constructs them: handlers build their bodies with `serde_json::json!`.
#[allow(dead_code)]
mod shapes {
    use std::collections::BTreeMap;

    use serde_json::Value;
    use utoipa::ToSchema;
    use uuid::Uuid;

    /// The body of every 4xx and 5xx answer.
    #[derive(ToSchema)]
    pub struct ErrorBody {
        /// What went wrong.
        pub error: ErrorDetail,
    }

    /// What went wrong.
    #[derive(ToSchema)]
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

    /// A workflow definition, as `POST /api/v1/workflows` accepts it. Unknown fields are ignored.
    #[derive(ToSchema)]
    pub struct WorkflowDefinition {
        /// Human name; workflows with the same name are versions of one another.
        #[schema(example = "order-fulfilment")]
        pub name: String,
        /// Free text for humans.
        pub description: Option<String>,
        /// Free-form label of the orchestration pattern (e.g. `custom`); not interpreted.
        pub pattern: Option<String>,
        /// Agent roles this workflow expects, by role name.
        #[schema(required = false)]
        pub agents: BTreeMap<String, AgentSpec>,
        /// What happens when a task fails for good.
        #[schema(required = false, default = "fail")]
        pub on_failure: OnFailure,
        /// Limit on the whole execution, in seconds.
        pub timeout_seconds: Option<u64>,
        /// The tasks, in any order; `depends_on` gives the graph.
        pub tasks: Vec<TaskSpec>,
    }

    /// What the workflow expects of the agents serving one role.
    #[derive(ToSchema)]
    pub struct AgentSpec {
        /// Capabilities an agent serving this role should declare.
        #[schema(required = false)]
        pub capabilities: Vec<String>,
    }

    /// `fail` (the execution fails) or `compensate` (saga: run the `compensate` task of
    /// every completed task, newest completion first).
    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum OnFailure {
        Fail,
        Compensate,
    }

    /// `noop` (output = its resolved input), `sleep` (`sleep_ms`), `http` (2xx = success,
    /// output `{"status", "body"}`; 5xx and connection errors are retryable, 4xx is not),
    /// `agent` (executed by an external agent polling `agent_role`).
    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum TaskKind {
        Noop,
        Sleep,
        Http,
        Agent,
    }

    /// One task of a definition. `${input.x}` and `${tasks.<id>.output.x}` in `input`,
    /// `http.url`, `http.headers` and `http.body` are resolved when it is scheduled.
    #[derive(ToSchema)]
    pub struct TaskSpec {
        /// Unique id within the workflow.
        pub id: String,
        /// How the task is executed.
        pub kind: TaskKind,
        /// Ids of the tasks that must complete first.
        #[schema(required = false)]
        pub depends_on: Vec<String>,
        /// Input, resolved when the task is scheduled.
        pub input: Option<Value>,
        /// For `agent` tasks: the role whose agents execute it.
        pub agent_role: Option<String>,
        /// Start-to-close limit of one attempt, in seconds.
        pub timeout_seconds: Option<u64>,
        /// Retry policy; absent means one attempt.
        pub retry: Option<RetryPolicy>,
        /// Task run to undo this one when the execution compensates.
        pub compensate: Option<CompensationSpec>,
        /// For `http` tasks: the request.
        pub http: Option<HttpSpec>,
        /// For `sleep` tasks: how long, in milliseconds.
        pub sleep_ms: Option<u64>,
    }

    /// When and how often a failed attempt is retried.
    #[derive(ToSchema)]
    pub struct RetryPolicy {
        /// Attempts in all, the first included.
        #[schema(required = false, default = 1, minimum = 1)]
        pub max_attempts: u32,
        /// Delay before the second attempt, in milliseconds.
        #[schema(required = false, default = 100)]
        pub initial_interval_ms: u64,
        /// Factor by which the delay grows after each failed attempt.
        #[schema(required = false, default = 2.0, minimum = 1.0)]
        pub backoff_coefficient: f64,
        /// Upper bound of the delay, in milliseconds.
        #[schema(required = false, default = 10000)]
        pub max_interval_ms: u64,
    }

    /// The request an `http` task makes.
    #[derive(ToSchema)]
    pub struct HttpSpec {
        /// HTTP method.
        #[schema(required = false, default = "GET")]
        pub method: String,
        /// Absolute `http://` or `https://` URL.
        pub url: String,
        /// Request headers.
        #[schema(required = false)]
        pub headers: BTreeMap<String, String>,
        /// JSON body, resolved like a task input.
        pub body: Option<Value>,
    }

    /// The task that undoes a completed task when an execution compensates.
    #[derive(ToSchema)]
    pub struct CompensationSpec {
        /// How the compensation is executed.
        pub kind: TaskKind,
        /// For `agent` compensations: the role.
        pub agent_role: Option<String>,
        /// Input, resolved like a task input.
        pub input: Option<Value>,
        /// For `http` compensations: the request.
        pub http: Option<HttpSpec>,
        /// For `sleep` compensations: how long, in milliseconds.
        pub sleep_ms: Option<u64>,
        /// Retry policy; absent means one attempt.
        pub retry: Option<RetryPolicy>,
        /// Start-to-close limit of one attempt, in seconds.
        pub timeout_seconds: Option<u64>,
    }

    /// A created workflow.
    #[derive(ToSchema)]
    pub struct WorkflowCreated {
        /// Its id (derived from name and version).
        pub workflow_id: Uuid,
        /// Its name.
        pub name: String,
        /// 1, 2, 3… per name.
        pub version: u32,
        /// How many tasks it has.
        pub task_count: u64,
        /// When it was recorded.
        #[schema(value_type = String, format = DateTime)]
        pub created_at: String,
        /// The execution started, with `?execute=true` only.
        pub execution_id: Option<Uuid>,
    }

    /// A page of workflows.
    #[derive(ToSchema)]
    pub struct WorkflowList {
        /// Newest first.
        pub items: Vec<WorkflowSummary>,
        /// Pass as `cursor` for the next page; `null` on the last page.
        #[schema(required = true)]
        pub next_cursor: Option<String>,
    }

    /// One workflow of the list.
    #[derive(ToSchema)]
    pub struct WorkflowSummary {
        /// Its id.
        pub workflow_id: Uuid,
        /// Its name.
        pub name: String,
        /// Its version within the name.
        pub version: u32,
        /// How many tasks it has.
        pub task_count: u64,
        /// When it was created.
        #[schema(value_type = String, format = DateTime)]
        pub created_at: String,
        /// `idle` (never executed) or its latest execution's status.
        #[schema(example = "running")]
        pub status: String,
        /// Its most recently started execution.
        #[schema(required = true)]
        pub latest_execution_id: Option<Uuid>,
        /// Its executions by status.
        pub executions: ExecutionCounts,
        /// The position of the last event this summary reflects.
        pub position: u64,
    }

    /// Executions by status.
    #[derive(ToSchema)]
    pub struct ExecutionCounts {
        pub running: u64,
        pub completed: u64,
        pub failed: u64,
        pub cancelled: u64,
        pub paused: u64,
        pub compensating: u64,
        pub compensated: u64,
    }

    /// The body of `POST /api/v1/workflows/{id}/execute` (optional).
    #[derive(ToSchema)]
    pub struct ExecuteRequest {
        /// What `${input...}` resolves against; `{}` when absent.
        pub input: Option<Value>,
    }

    /// An execution that was started (or found again by its `Idempotency-Key`).
    #[derive(ToSchema)]
    pub struct ExecutionAccepted {
        /// The execution.
        pub execution_id: Uuid,
        /// Its workflow.
        pub workflow_id: Uuid,
        /// `running` when it was just started; its current status for a repeated key.
        pub status: ExecutionStatus,
    }

    /// Execution status (`pending` only before the start).
    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum ExecutionStatus {
        Pending,
        Running,
        Paused,
        Completed,
        Failed,
        Cancelled,
        Compensating,
        Compensated,
    }

    /// Task status.
    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum TaskStatus {
        Pending,
        Scheduled,
        Running,
        Completed,
        Failed,
        Retrying,
        TimedOut,
        Skipped,
        Cancelled,
        Compensated,
    }

    /// A workflow's status, folded from its executions' logs.
    #[derive(ToSchema)]
    pub struct WorkflowStatus {
        /// The workflow.
        pub workflow_id: Uuid,
        /// Its name.
        pub name: String,
        /// `idle` (never executed) or its latest execution's status.
        #[schema(example = "running")]
        pub status: String,
        /// The latest execution (with `position`), `null` if none.
        #[schema(required = true)]
        pub latest_execution: Option<Execution>,
        /// Its executions by status.
        pub executions: ExecutionCounts,
        /// The position of the last event this status reflects.
        pub position: u64,
    }

    /// The executions a workflow-wide pause or resume changed.
    #[derive(ToSchema)]
    pub struct WorkflowControlled {
        /// The workflow.
        pub workflow_id: Uuid,
        /// Each execution that changed, with its new status.
        pub executions: Vec<ExecutionControlled>,
    }

    /// An execution after a command.
    #[derive(ToSchema)]
    pub struct ExecutionControlled {
        /// The execution.
        pub execution_id: Uuid,
        /// Its status now.
        pub status: ExecutionStatus,
    }

    /// Optional body of `cancel`.
    #[derive(ToSchema)]
    pub struct CancelRequest {
        /// Why, recorded in `ExecutionCancelled`.
        pub reason: Option<String>,
    }

    /// An execution, folded from its log with the engine's own `evolve`.
    #[derive(ToSchema)]
    pub struct Execution {
        /// The execution.
        pub execution_id: Uuid,
        /// Its workflow.
        pub workflow_id: Uuid,
        /// Its status.
        pub status: ExecutionStatus,
        /// Its input.
        pub input: Value,
        /// The outputs of its sink tasks (tasks nothing depends on), by task id.
        pub output: Value,
        /// Why it failed.
        pub error: Option<String>,
        /// When it started.
        #[schema(value_type = Option<String>, format = DateTime)]
        pub started_at: Option<String>,
        /// When it ended.
        #[schema(value_type = Option<String>, format = DateTime)]
        pub completed_at: Option<String>,
        /// The version of its last event.
        pub version: u64,
        /// The position of its last event (absent in `replay`'s `state`).
        pub position: Option<u64>,
        /// Its tasks, by task id.
        pub tasks: BTreeMap<String, TaskState>,
    }

    /// One task of an execution.
    #[derive(ToSchema)]
    pub struct TaskState {
        /// Its status.
        pub status: TaskStatus,
        /// Attempts started so far.
        pub attempts: u32,
        /// When the current attempt started.
        #[schema(value_type = Option<String>, format = DateTime)]
        pub started_at: Option<String>,
        /// When it ended.
        #[schema(value_type = Option<String>, format = DateTime)]
        pub completed_at: Option<String>,
        /// Its output, once completed.
        pub output: Option<Value>,
        /// The last error.
        pub error: Option<String>,
        /// The agent that leased the current attempt.
        pub agent_id: Option<Uuid>,
        /// Present once its compensation began.
        pub compensation: Option<CompensationState>,
    }

    /// A task's compensation.
    #[derive(ToSchema)]
    pub struct CompensationState {
        /// Its status.
        pub status: TaskStatus,
        /// Attempts started so far.
        pub attempts: u32,
        /// Its output.
        pub output: Option<Value>,
        /// The last error.
        pub error: Option<String>,
    }

    /// A page of an execution's log.
    #[derive(ToSchema)]
    pub struct EventPage {
        /// In version order.
        pub events: Vec<Envelope>,
        /// Pass as `after_version` for the next page; `null` when this page is the last.
        #[schema(required = true)]
        pub next_after_version: Option<u64>,
    }

    /// A page of a workflow's merged log.
    #[derive(ToSchema)]
    pub struct WorkflowEventPage {
        /// In position order.
        pub events: Vec<Envelope>,
        /// Pass as `after_position` for the next page; `null` when this page is the last.
        #[schema(required = true)]
        pub next_after_position: Option<u64>,
    }

    /// One stored event.
    #[derive(ToSchema)]
    pub struct Envelope {
        /// Unique (uuid v7).
        pub event_id: Uuid,
        /// `workflow-<uuid>`, `execution-<uuid>` or `agent-<uuid>`.
        pub stream_id: String,
        /// `workflow`, `execution` or `agent`.
        pub stream_type: String,
        /// 1, 2, 3… within the stream, gap-free.
        pub version: u64,
        /// Global order across streams, increasing in commit order (not gap-free).
        pub position: u64,
        /// The event's name, in the past tense (`ExecutionStarted`, `TaskCompleted`…).
        #[schema(rename = "type", example = "TaskCompleted")]
        pub kind: String,
        /// The event's fields.
        #[schema(value_type = Object)]
        pub data: Value,
        /// The event's schema version.
        pub schema_version: u16,
        /// Who caused it.
        pub metadata: EventMetadata,
        /// Server time when it was recorded.
        #[schema(value_type = String, format = DateTime)]
        pub recorded_at: String,
        /// Hex sha-256 over the previous event's hash and this event's canonical bytes.
        pub hash: String,
    }

    /// Who caused an event.
    #[derive(ToSchema)]
    pub struct EventMetadata {
        /// The request or flow it belongs to.
        pub correlation_id: Option<String>,
        /// The event or request that directly caused it.
        pub causation_id: Option<String>,
        /// `api`, `engine`, `agent:<id>`…
        pub actor: Option<String>,
        /// The tenant, when multi-tenant.
        pub tenant_id: Option<String>,
        /// The HTTP request that caused it.
        pub request_id: Option<String>,
    }

    /// An execution as it stood after an event.
    #[derive(ToSchema)]
    pub struct Replay {
        /// The last event folded.
        pub to_version: u64,
        /// The execution after it.
        pub state: Execution,
    }

    /// The hash chain, recomputed from the stored columns.
    #[derive(ToSchema)]
    pub struct Verification {
        /// Every stored hash equals the recomputed one and versions are gap-free.
        pub valid: bool,
        /// How many events were checked.
        pub events: u64,
        /// The hash of the last event (when valid).
        pub head_hash: Option<String>,
        /// The first version that does not verify (when not valid).
        pub first_bad_version: Option<u64>,
    }

    /// The body of `POST /api/v1/agents`.
    #[derive(ToSchema)]
    pub struct RegisterAgent {
        /// Not empty.
        pub name: String,
        /// The roles it polls: not empty, no empty names.
        #[schema(min_items = 1)]
        pub roles: Vec<String>,
        /// What it can do.
        #[schema(required = false)]
        pub capabilities: Vec<String>,
        /// How many tasks it runs at once.
        #[schema(required = false, default = 10, minimum = 1)]
        pub capacity: u32,
    }

    /// A registered agent.
    #[derive(ToSchema)]
    pub struct AgentRegistered {
        /// Its id.
        pub agent_id: Uuid,
    }

    /// The tasks a poll leased.
    #[derive(ToSchema)]
    pub struct PollAnswer {
        /// Empty when the wait passed with nothing to do.
        pub tasks: Vec<Lease>,
    }

    /// One task attempt leased to the polling agent.
    #[derive(ToSchema)]
    pub struct Lease {
        /// Names the attempt in `complete`, `fail` and `heartbeat`.
        pub lease_id: Uuid,
        /// The execution.
        pub execution_id: Uuid,
        /// The task.
        pub task_id: String,
        /// 1-based attempt number.
        pub attempt: u32,
        /// Whether this is the task's compensation (saga).
        pub compensation: bool,
        /// The resolved input.
        pub input: Value,
        /// When the attempt times out (`null` without a timeout).
        #[schema(value_type = Option<String>, format = DateTime, required = true)]
        pub deadline: Option<String>,
    }

    /// The body of `complete`.
    #[derive(ToSchema)]
    pub struct CompleteTask {
        /// The task's output (`null` when absent).
        pub output: Option<Value>,
    }

    /// The body of `fail`.
    #[derive(ToSchema)]
    pub struct FailTask {
        /// What went wrong.
        pub error: String,
        /// Whether the retry policy may run another attempt.
        #[schema(required = false, default = true)]
        pub retryable: bool,
    }

    /// A result recorded by lease.
    #[derive(ToSchema)]
    pub struct LeaseRecorded {
        /// The lease.
        pub lease_id: Uuid,
        /// Its execution.
        pub execution_id: Uuid,
        /// Its attempt.
        pub task: Option<LeasedAttempt>,
        /// `completed`, `failed` or `heartbeat`.
        #[schema(example = "completed")]
        pub recorded: String,
    }

    /// The attempt a lease names.
    #[derive(ToSchema)]
    pub struct LeasedAttempt {
        /// The task.
        pub task_id: String,
        /// The attempt.
        pub attempt: u32,
    }

    /// A server → client frame of `/ws/executions/{id}` and `/ws/workflows/{id}`.
    #[derive(ToSchema)]
    pub struct LiveFrame {
        /// `snapshot` (first, without `after`), `event`, or `lagged` (then close).
        #[schema(rename = "type", example = "event")]
        pub kind: String,
        /// `snapshot`: the position the status reflects; `lagged`: the last position sent.
        pub position: Option<u64>,
        /// `snapshot`: the `GET /api/v1/executions/{id}` (with `position`) or
        /// `/api/v1/workflows/{id}/status` body.
        #[schema(value_type = Option<Object>)]
        pub status: Option<Value>,
        /// `event`: the event.
        pub event: Option<Envelope>,
    }

    /// `GET /health`.
    #[derive(ToSchema)]
    pub struct Health {
        /// `ok`.
        #[schema(example = "ok")]
        pub status: String,
    }

    /// `GET /ready`.
    #[derive(ToSchema)]
    pub struct Ready {
        /// `ready`.
        #[schema(example = "ready")]
        pub status: String,
        /// `postgres+redis` or `embedded`.
        pub mode: String,
        /// `ok`.
        pub store: String,
        /// `ok`.
        pub bus: String,
    }
}

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
        assert_eq!(seen, 26, "every route of API.md");
    }
}
