//! The identity provider's JWTs end to end: a server started with
//! `CONFLUX_JWT_JWKS_FILE` (a JWKS this test writes, with an ES256 key pair it
//! generates), issuer, audience and its own tenant and role claim names. Over HTTP: a
//! valid token works, its events record `actor: "jwt:<sub>"` and the tenant of its
//! claim; expired, wrongly signed, wrong-audience, wrong-issuer, `alg: none`, HS256
//! signed with the public key, and unknown-tenant tokens are `401` and append nothing;
//! a `viewer` role claim is `403` on a write route; the tenant claim scopes reads
//! (another tenant's workflow is `404`); and a JWT caller can mint a stream token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use p256::SecretKey;
use serde_json::{json, Value};

use crate::harness::{id_of, Mode, TestServer};

const ISSUER: &str = "https://idp.test.invalid";
const AUDIENCE: &str = "conflux-e2e";
const TENANT_CLAIM: &str = "org";
const ROLE_CLAIM: &str = "conflux_role";
const KID: &str = "e2e-1";

/// A fresh P-256 key from the system's randomness.
fn generate() -> SecretKey {
    loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("randomness");
        if let Ok(key) = SecretKey::from_slice(&bytes) {
            return key;
        }
    }
}

/// The public half of `key` as a JWK of the set.
fn jwk(key: &SecretKey) -> Value {
    let point = key.public_key().to_encoded_point(false);
    let (x, y) = (point.x().expect("x"), point.y().expect("y"));
    json!({"kty": "EC", "crv": "P-256", "kid": KID, "use": "sig", "alg": "ES256",
           "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)})
}

/// Claims of a valid token for `sub`, with `patch` applied (null removes a claim).
fn claims(sub: &str, patch: Value) -> Value {
    let mut c = json!({
        "sub": sub, "iss": ISSUER, "aud": AUDIENCE,
        "iat": chrono::Utc::now().timestamp(),
        "exp": chrono::Utc::now().timestamp() + 600,
        ROLE_CLAIM: "developer", TENANT_CLAIM: "acme",
    });
    if let (Some(c), Some(p)) = (c.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    c
}

/// `claims` signed ES256 with `key`, under the set's key id.
fn sign(key: &SecretKey, claims: &Value) -> String {
    let der = key.to_pkcs8_der().expect("pkcs8");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(KID.into());
    encode(&header, claims, &EncodingKey::from_ec_der(der.as_bytes())).expect("sign")
}

/// `method path` with `token` as bearer → (status, JSON body, `WWW-Authenticate`).
async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    crate::access::call(server, method, path, Some(token), body).await
}

fn definition(name: &str) -> Value {
    json!({"name": name, "tasks": [{"id": "a", "kind": "noop"}]})
}

/// The whole scenario, on a server in `mode`.
pub async fn jwts_end_to_end(mode: Mode) {
    let signer = generate();
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("jwks.json");
    let set = json!({"keys": [jwk(&signer)]});
    std::fs::write(&jwks, set.to_string()).expect("write the JWKS");
    let server = TestServer::start_tuned(mode, |c| {
        c.jwt_jwks_file = Some(jwks.clone());
        c.jwt_issuer = Some(ISSUER.into());
        c.jwt_audience = Some(AUDIENCE.into());
        c.jwt_tenant_claim = TENANT_CLAIM.into();
        c.jwt_role_claim = ROLE_CLAIM.into();
    })
    .await;
    let admin = server.config.admin_token.clone().expect("admin token");
    let (status, body, _) = call(
        &server,
        "POST",
        "/api/v1/tenants",
        &admin,
        Some(json!({"tenant": "acme"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // A workflow of tenant `default`, made by the administrator.
    let theirs = server.create_workflow(definition("theirs")).await;

    // A valid token: it writes, in its tenant, as `jwt:<sub>`.
    let ada = sign(&signer, &claims("ada", json!({})));
    let (status, created, _) = call(
        &server,
        "POST",
        "/api/v1/workflows?execute=true",
        &ada,
        Some(json!({"name": "by-jwt", "input": {}, "tasks": [{"id": "a", "kind": "noop"}]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let workflow = id_of(&created, "workflow_id");
    let execution = id_of(&created, "execution_id");
    let (status, events, _) = call(
        &server,
        "GET",
        &format!("/api/v1/workflows/{workflow}/events"),
        &ada,
        None,
    )
    .await;
    assert_eq!(status, 200, "{events}");
    let caused: Vec<&Value> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["metadata"]["actor"] != "engine")
        .collect();
    assert!(
        caused.len() >= 2,
        "the workflow and its execution: {events}"
    );
    for e in &caused {
        assert_eq!(e["metadata"]["actor"], "jwt:ada", "{e}");
        assert_eq!(e["metadata"]["tenant_id"], "acme", "{e}");
    }
    assert!(events["events"]
        .as_array()
        .expect("events")
        .iter()
        .all(|e| e["metadata"]["tenant_id"] == "acme"));

    // Its tenant scopes reads: another tenant's workflow is unknown to it.
    let (status, _, _) = call(
        &server,
        "GET",
        &format!("/api/v1/workflows/{workflow}"),
        &ada,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body, _) = call(
        &server,
        "GET",
        &format!("/api/v1/workflows/{theirs}"),
        &ada,
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let (status, list, _) = call(&server, "GET", "/api/v1/workflows", &ada, None).await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|w| w["workflow_id"].as_str())
        .collect();
    assert!(
        ids.contains(&workflow.as_str()) && !ids.contains(&theirs.as_str()),
        "{list}"
    );
    let in_default = sign(&signer, &claims("bob", json!({TENANT_CLAIM: "default"})));
    let (status, _, _) = call(
        &server,
        "GET",
        &format!("/api/v1/workflows/{theirs}"),
        &in_default,
        None,
    )
    .await;
    assert_eq!(status, 200, "the claim decides the tenant");

    // A viewer reads (the execution, until it has finished), and may not write.
    let viewer = sign(&signer, &claims("vic", json!({ROLE_CLAIM: "viewer"})));
    let started = std::time::Instant::now();
    loop {
        let path = format!("/api/v1/executions/{execution}");
        let (status, body, _) = call(&server, "GET", &path, &viewer, None).await;
        assert_eq!(status, 200, "{body}");
        if body["status"] == "completed" {
            break;
        }
        assert!(started.elapsed() < crate::harness::PATIENCE, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let head = server.head().await;
    let (status, body, _) = call(
        &server,
        "POST",
        "/api/v1/workflows",
        &viewer,
        Some(definition("by-viewer")),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");

    // Bad tokens: 401 with the challenge, and nothing appended.
    let stranger = generate();
    let now = chrono::Utc::now().timestamp();
    let public_pem = signer
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    let hs256 = |secret: &[u8]| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(KID.into());
        encode(
            &header,
            &claims("mallory", json!({})),
            &EncodingKey::from_secret(secret),
        )
        .expect("sign")
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims("mallory", json!({})).to_string())
    );
    let point = signer.public_key().to_encoded_point(false);
    for (why, token) in [
        (
            "expired",
            sign(
                &signer,
                &claims("ada", json!({"exp": now - 3600, "iat": now - 7200})),
            ),
        ),
        (
            "wrong signature",
            sign(&stranger, &claims("ada", json!({}))),
        ),
        (
            "wrong audience",
            sign(&signer, &claims("ada", json!({"aud": "another-api"}))),
        ),
        (
            "wrong issuer",
            sign(
                &signer,
                &claims("ada", json!({"iss": "https://evil.invalid"})),
            ),
        ),
        ("alg none", none),
        (
            "HS256 keyed with the public key (PEM)",
            hs256(public_pem.as_bytes()),
        ),
        (
            "HS256 keyed with the public key (point)",
            hs256(point.as_bytes()),
        ),
        (
            "a tenant that does not exist",
            sign(&signer, &claims("ada", json!({TENANT_CLAIM: "globex"}))),
        ),
        (
            "no role",
            sign(&signer, &claims("ada", json!({ROLE_CLAIM: null}))),
        ),
        (
            "no subject",
            sign(&signer, &claims("ada", json!({"sub": null}))),
        ),
    ] {
        let (status, body, challenge) = call(
            &server,
            "POST",
            "/api/v1/workflows?execute=true",
            &token,
            Some(json!({"name": "refused", "input": {}, "tasks": [{"id": "a", "kind": "noop"}]})),
        )
        .await;
        assert_eq!(status, 401, "{why}: {body}");
        assert_eq!(body["error"]["code"], "unauthenticated", "{why}");
        assert_eq!(challenge.as_deref(), Some("Bearer"), "{why}");
        let (status, _, _) = call(
            &server,
            "GET",
            &format!("/api/v1/workflows/{workflow}"),
            &token,
            None,
        )
        .await;
        assert_eq!(status, 401, "{why}: reads too");
    }
    assert_eq!(server.head().await, head, "a refused token appends nothing");

    // A JWT caller mints a stream token; its stream opens in the caller's tenant.
    let stream = format!("/ws/executions/{execution}");
    let (status, minted) = crate::stream_tokens::mint(&server, &viewer, &stream).await;
    assert_eq!(status, 201, "{minted}");
    let url = format!(
        "{}{stream}?access_token={}",
        server.base.replacen("http://", "ws://", 1),
        id_of(&minted, "token")
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let first = futures::StreamExt::next(&mut socket)
        .await
        .expect("a frame")
        .expect("frame");
    let first: Value = serde_json::from_str(first.to_text().expect("text")).expect("json");
    assert_eq!(first["type"], "snapshot", "{first}");
    assert_eq!(first["status"]["execution_id"], execution.as_str());
    drop(socket);
    server.stop().await;
}
