//! `GET /api/v1/openapi.json`: the OpenAPI document covers every route of API.md with its
//! parameters, answers and errors; the real binary serves it, serves every route it
//! documents, and reads every query parameter it documents.

use std::collections::BTreeSet;

use serde_json::Value;

#[allow(dead_code)]
#[path = "support/auth.rs"]
mod auth;
#[allow(dead_code)]
#[path = "support/binary.rs"]
mod binary;

use binary::Binary;

/// `{any_name}` → `{}`: the document names path parameters for readers (`{lease_id}`),
/// the router by position (`{id}`).
fn shape(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Serves `conflux_query_api::openapi::router()` alone on a random port; returns its base.
async fn serve_router() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, conflux_query_api::openapi::router())
            .await
            .expect("serve");
    });
    format!("http://{addr}")
}

/// GETs the document from `base`: 200, `application/json`, a JSON object.
async fn fetch(base: &str) -> Value {
    let resp = auth::client()
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200, "GET /api/v1/openapi.json");
    let content_type = resp.headers()["content-type"].to_str().expect("ascii");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    resp.json().await.expect("a JSON document")
}

/// Every operation of the document, as (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter_map(move |m| item.get(*m).map(|op| (m.to_string(), path.clone(), op)))
        })
        .collect()
}

/// The codes a route's error response for `status` lists (its `error.code` enum).
fn codes(op: &Value, status: &str) -> Vec<String> {
    let schema = &op["responses"][status]["content"]["application/json"]["schema"];
    let all_of = schema["allOf"].as_array().expect("an allOf error schema");
    assert_eq!(all_of[0]["$ref"], "#/components/schemas/ErrorBody");
    all_of[1]["properties"]["error"]["properties"]["code"]["enum"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("a code").to_owned())
        .collect()
}

fn param<'a>(op: &'a Value, name: &str) -> &'a Value {
    op["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no parameter {name} in {op}"))
}

/// Collects every `$ref` below `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// What the document must say about every route.
fn check(doc: &Value) {
    let version = doc["openapi"].as_str().expect("openapi");
    assert!(version.starts_with("3."), "openapi {version}");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let ops = operations(doc);
    // The permission table lists every route the server serves (deny by default): the
    // document must document exactly those, and say which need a token.
    let documented: BTreeSet<(String, String)> =
        ops.iter().map(|(m, p, _)| (m.clone(), shape(p))).collect();
    let expected: BTreeSet<(String, String)> = conflux_http::auth::ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_lowercase(), shape(p)))
        .collect();
    let missing: Vec<_> = expected.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&expected).collect();
    assert!(missing.is_empty(), "routes not documented: {missing:?}");
    assert!(
        extra.is_empty(),
        "routes documented without a permission rule: {extra:?}"
    );
    for (m, p, op) in &ops {
        let rule = conflux_http::auth::ROUTES
            .iter()
            .find(|(rm, rp, _)| rm.to_lowercase() == *m && shape(rp) == shape(p))
            .map(|(_, _, r)| *r);
        let secured = op.get("security").is_some();
        let open = rule == Some(conflux_http::auth::Rule::Open);
        assert_eq!(
            secured, !open,
            "{m} {p}: security declared iff a token is needed"
        );
        assert_eq!(
            op["responses"].get("401").is_some(),
            !open,
            "{m} {p}: 401 documented iff a token is needed"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    let mut ids = BTreeSet::new();
    for (method, path, op) in &ops {
        let at = format!("{method} {path}");
        let id = op["operationId"].as_str().expect("operationId");
        assert!(ids.insert(id.to_owned()), "{at}: operationId {id} twice");
        let responses = op["responses"].as_object().expect("responses");
        let statuses: Vec<&str> = responses.keys().map(String::as_str).collect();
        assert!(
            statuses.iter().any(|s| s.starts_with('2') || *s == "101"),
            "{at}: no 2xx or 101 in {statuses:?}"
        );
        // Every path parameter of the template is declared, required, and nothing else.
        let in_template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .inspect(|p| assert_eq!(p["required"], true, "{at}: {p}"))
            .map(|p| p["name"].as_str().expect("name"))
            .collect();
        assert_eq!(in_template, declared, "{at}: path parameters");
        let websocket = path.starts_with("/ws/");
        if !in_template.is_empty() && !websocket {
            assert_eq!(codes(op, "404"), ["not_found"], "{at}");
        }
        // Every 4xx/5xx is the shared error body, listing at least one code.
        for status in statuses.iter().filter(|s| s.starts_with(['4', '5'])) {
            assert!(!codes(op, status).is_empty(), "{at} {status}");
        }
        if op.get("requestBody").is_some() {
            assert!(
                codes(op, "400").contains(&"invalid_json".to_owned()),
                "{at}"
            );
            // Over the body limit; over a tenant's size quotas where the route has them.
            let large = codes(op, "413");
            assert_eq!(
                large.first().map(String::as_str),
                Some("payload_too_large"),
                "{at}"
            );
            assert!(
                large.iter().skip(1).all(|c| c == "quota_exceeded"),
                "{at}: {large:?}"
            );
        }
        if websocket {
            assert!(responses.contains_key("101"), "{at}");
            let about = op["description"].as_str().expect("description");
            for frame in ["snapshot", "event", "lagged", "4404"] {
                assert!(about.contains(frame), "{at}: frames: {about}");
            }
        }
    }

    // Every reference resolves.
    let mut all = Vec::new();
    refs(doc, &mut all);
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {r}"
        );
    }
    let error = &doc["components"]["schemas"]["ErrorDetail"]["required"];
    assert_eq!(error, &serde_json::json!(["code", "message", "details"]));

    // Parameters as API.md gives them.
    let op = |m: &str, p: &str| {
        ops.iter()
            .find(|(method, path, _)| method == m && path == p)
            .map(|(_, _, op)| *op)
            .expect("documented")
    };
    let list = op("get", "/api/v1/workflows");
    for name in ["status", "name", "cursor"] {
        assert_eq!(param(list, name)["in"], "query");
    }
    let limit = &param(list, "limit")["schema"];
    assert_eq!(
        (&limit["minimum"], &limit["maximum"]),
        (&1.into(), &1000.into())
    );
    assert_eq!(limit["default"], 50);
    let list_item = &doc["components"]["schemas"]["WorkflowSummary"]["properties"];
    let counts = &doc["components"]["schemas"]["ExecutionCounts"]["required"];
    for field in [
        "workflow_id",
        "name",
        "version",
        "task_count",
        "created_at",
        "status",
    ] {
        assert!(list_item.get(field).is_some(), "list item {field}");
    }
    assert_eq!(counts.as_array().map(Vec::len), Some(7), "{counts}");
    let execute = op("post", "/api/v1/workflows/{id}/execute");
    assert_eq!(param(execute, "Idempotency-Key")["in"], "header");
    assert!(execute["responses"].get("202").is_some() && execute["responses"].get("200").is_some());
    let events = op("get", "/api/v1/executions/{id}/events");
    for name in ["after_version", "limit"] {
        assert_eq!(param(events, name)["schema"]["type"], "integer");
    }
    assert_eq!(
        param(events, "format")["schema"]["enum"],
        serde_json::json!(["json", "ndjson"])
    );
    let ndjson = &events["responses"]["200"]["content"]["application/x-ndjson"];
    assert!(ndjson.is_object(), "NDJSON answer");
    param(op("get", "/api/v1/executions/{id}/replay"), "to_version");
    param(op("get", "/ws/executions/{id}"), "after");
    let poll = op("post", "/api/v1/agents/{agent_id}/poll");
    assert_eq!(param(poll, "max")["schema"]["default"], 10);
    assert_eq!(param(poll, "wait_ms")["schema"]["default"], 20_000);
    let create = op("post", "/api/v1/workflows");
    assert!(codes(create, "422").contains(&"cycle".to_owned()));
    for verb in ["complete", "fail", "heartbeat"] {
        let task = op("post", &format!("/api/v1/tasks/{{lease_id}}/{verb}"));
        assert!(
            codes(task, "409").contains(&"stale_attempt".to_owned()),
            "{verb}"
        );
    }
    for verb in ["pause", "resume", "cancel"] {
        let path = format!("/api/v1/executions/{{id}}/{verb}");
        assert_eq!(codes(op("post", &path), "409"), ["conflict"], "{verb}");
    }
    assert_eq!(codes(op("get", "/ready"), "503"), ["unavailable"]);
    let metrics = &op("get", "/metrics")["responses"]["200"]["content"];
    let media: Vec<&String> = metrics.as_object().expect("content").keys().collect();
    assert!(
        media.iter().all(|m| m.starts_with("text/plain")),
        "{media:?}"
    );
}

#[tokio::test]
async fn the_router_serves_a_document_of_every_route() {
    let base = serve_router().await;
    let doc = fetch(&base).await;
    check(&doc);
    // Built once: a second fetch is the same document.
    assert_eq!(fetch(&base).await, doc);
}

#[tokio::test]
async fn the_binary_serves_the_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Binary::start(&[], dir.path());
    let served = fetch(&server.base).await;
    let alone = fetch(&serve_router().await).await;
    assert_eq!(served, alone, "the binary serves the router's document");
}

/// Each documented operation reaches a handler of the real binary: none is answered by
/// the fallback (`404 "no such route"`) or with `405`, and each answers with a status
/// the document gives it and, for an error, a code it lists. Ids are fresh UUIDs, so
/// nothing is created (bodies are `{}`, which every creating route refuses).
#[tokio::test]
async fn the_binary_serves_every_documented_route() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Binary::start(&[], dir.path());
    let doc = fetch(&serve_router().await).await;
    let client = auth::client();
    let mut unserved = Vec::new();
    for (method, path, op) in operations(&doc) {
        let concrete: Vec<String> = path
            .split('/')
            .map(|s| match s.starts_with('{') {
                true => uuid::Uuid::new_v4().to_string(),
                false => s.to_owned(),
            })
            .collect();
        let url = format!("{}{}?wait_ms=0", server.base, concrete.join("/"));
        let request = match method.as_str() {
            "post" => client.post(&url).json(&serde_json::json!({})),
            "put" => client.put(&url).json(&serde_json::json!({})),
            "delete" => client.delete(&url),
            _ => client.get(&url),
        };
        let resp = request.send().await.expect("request");
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        let fallback = status == 404 && body.contains("no such route");
        if fallback || status == 405 {
            unserved.push(format!("{method} {path} → {status} {body}"));
            continue;
        }
        // The answer is one the document gives, with a code it lists.
        let at = format!("{method} {path} → {status} {body}");
        let documented = &op["responses"][status.to_string()];
        assert!(documented.is_object(), "undocumented status: {at}");
        if status >= 400 {
            let error: Value = serde_json::from_str(&body).expect(&at);
            let code = error["error"]["code"].as_str().expect(&at).to_owned();
            assert!(codes(op, &status.to_string()).contains(&code), "{at}");
        }
    }
    assert!(
        unserved.is_empty(),
        "documented but not served: {unserved:#?}"
    );
}

/// Each documented query parameter is one the real binary reads, and reads as the
/// document says: given twice it is a `400 invalid_request` naming it, and a value
/// that is not of its type (for numbers, booleans and enumerations) too; both are a
/// 400 the route documents. Parameters are checked before any id is looked up, so
/// fresh UUIDs do; bodies are a valid definition (the only body a route with query
/// parameters reads), so the 400 can only be the parameter's.
#[tokio::test]
async fn the_binary_reads_every_documented_query_parameter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Binary::start(&[], dir.path());
    let doc = fetch(&serve_router().await).await;
    let client = auth::client();
    let definition = serde_json::json!({"name": "params", "tasks": [{"id": "a", "kind": "noop"}]});
    let mut checked = 0;
    for (method, path, op) in operations(&doc) {
        let concrete: Vec<String> = path
            .split('/')
            .map(|s| match s.starts_with('{') {
                true => uuid::Uuid::new_v4().to_string(),
                false => s.to_owned(),
            })
            .collect();
        let url = format!("{}{}", server.base, concrete.join("/"));
        let params = op["parameters"].as_array().into_iter().flatten();
        for p in params.filter(|p| p["in"] == "query") {
            let name = p["name"].as_str().expect("name");
            let schema = &p["schema"];
            let typed = schema["type"] == "integer"
                || schema["type"] == "boolean"
                || schema.get("enum").is_some();
            let mut queries = vec![format!("{name}=1&{name}=1")];
            if typed {
                queries.push(format!("{name}=not-a-{name}"));
            }
            for query in queries {
                let url = format!("{url}?{query}&wait_ms=0");
                let request = match method.as_str() {
                    "post" => client.post(&url).json(&definition),
                    _ => client.get(&url),
                };
                let resp = request.send().await.expect("request");
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                let at = format!("{method} {path}?{query} → {status} {body}");
                let error: Value = serde_json::from_str(&body).expect(&at);
                assert_eq!(status, 400, "{at}");
                assert_eq!(error["error"]["code"], "invalid_request", "{at}");
                assert_eq!(error["error"]["details"]["parameter"], name, "{at}");
                assert!(
                    codes(op, "400").contains(&"invalid_request".to_owned()),
                    "{at}: the 400 is not documented"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} parameters checked");
}
