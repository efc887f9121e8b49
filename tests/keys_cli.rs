//! `conflux keys create|list|revoke` against the real binary: a key made from the
//! command line works with its role's permissions, is listed without its secret, and
//! stops working once revoked; the bootstrap admin token is written to
//! `<data dir>/admin-token` (mode 0600) when none is configured, and never logged.

#[allow(dead_code)]
#[path = "support/auth.rs"]
mod auth;
#[allow(dead_code)]
#[path = "support/binary.rs"]
mod binary;

use binary::Binary;
use serde_json::json;

fn keys(base: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_conflux"))
        .arg("keys")
        .args(args)
        .env("CONFLUX_URL", base)
        .env("CONFLUX_TOKEN", token)
        .output()
        .expect("run conflux keys");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn status_of(base: &str, token: &str, method: reqwest::Method, path: &str) -> u16 {
    reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .json(&json!({"name": "w", "tasks": [{"id": "a", "kind": "noop"}]}))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Binary::start(&[], dir.path());
    let base = server.base.clone();

    let (code, token, err) = keys(
        &base,
        auth::ADMIN_TOKEN,
        &["create", "--name", "ci", "--role", "viewer", "--quiet"],
    );
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_owned();
    assert!(token.starts_with("cfx_"), "{token}");
    assert_eq!(
        status_of(&base, &token, reqwest::Method::GET, "/api/v1/workflows").await,
        200
    );
    assert_eq!(
        status_of(&base, &token, reqwest::Method::POST, "/api/v1/workflows").await,
        403,
        "a viewer creates nothing"
    );

    let (code, list, err) = keys(&base, auth::ADMIN_TOKEN, &["list"]);
    assert_eq!(code, 0, "{err}");
    let key_id = token.split('_').nth(1).expect("key id");
    assert!(
        list.contains(key_id) && list.contains("viewer") && list.contains("active"),
        "{list}"
    );
    assert!(
        !list.contains(token.rsplit('_').next().expect("secret")),
        "no secret listed"
    );

    let (code, _, err) = keys(&base, &token, &["create", "--name", "x", "--role", "admin"]);
    assert_eq!(code, 2, "a viewer issues no keys");
    assert!(err.contains("forbidden"), "{err}");
    let (code, _, err) = keys(&base, "not-a-token", &["list"]);
    assert_eq!(code, 2);
    assert!(err.contains("CONFLUX_TOKEN"), "{err}");

    let (code, _, err) = keys(&base, auth::ADMIN_TOKEN, &["revoke", key_id]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        status_of(&base, &token, reqwest::Method::GET, "/api/v1/workflows").await,
        401
    );
    server.stop();
    let log = server.log();
    assert!(log.contains("revoked"), "the log is captured: {log}");
    for secret in [token.as_str(), auth::ADMIN_TOKEN] {
        assert!(!log.contains(secret), "a token is in the log");
    }
}

/// `conflux <command> [args]` with `--url`/`--token` given after the subcommand (no
/// environment): exit code, stdout, stderr.
fn conflux(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_conflux"))
        .args(args)
        .env_remove("CONFLUX_URL")
        .env_remove("CONFLUX_TOKEN")
        .output()
        .expect("run conflux");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Binary::start(&[], dir.path());
    let base = server.base.clone();
    let server_args = ["--url", base.as_str(), "--token", auth::ADMIN_TOKEN];
    let with = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(server_args);
        conflux(&all)
    };
    let (code, _, err) = with(&["tenants", "create", "acme"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = with(&["tenants", "create", "acme"]);
    assert_eq!(code, 2, "a second create is a conflict");
    assert!(err.contains("conflict"), "{err}");
    let (code, list, err) = with(&["tenants", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(list.contains("default") && list.contains("acme"), "{list}");
    let (code, token, err) = with(&[
        "keys",
        "create",
        "--tenant",
        "acme",
        "--role",
        "developer",
        "--name",
        "acme-ci",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_owned();
    let (code, keys, err) = with(&["keys", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        keys.contains("acme") && keys.contains("developer"),
        "{keys}"
    );
    // The acme developer sees acme's workflows only; it may not manage tenants.
    assert_eq!(
        status_of(&base, &token, reqwest::Method::POST, "/api/v1/workflows").await,
        201
    );
    let (code, _, err) = conflux(&["tenants", "list", "--url", &base, "--token", &token]);
    assert_eq!(code, 2, "only the system administrator lists tenants");
    assert!(err.contains("forbidden"), "{err}");
    // A policy set and shown on the command line; usage against it.
    let (code, policy, err) = with(&[
        "tenants",
        "policy",
        "acme",
        "--quota",
        "definitions=1",
        "--allow",
        "10.20.0.0/16",
    ]);
    assert_eq!(code, 0, "{err}");
    let policy: serde_json::Value = serde_json::from_str(&policy).expect("json");
    assert_eq!(policy["quotas"]["definitions"], 1, "{policy}");
    assert_eq!(policy["egress_allow"][0], "10.20.0.0/16", "{policy}");
    let (code, shown, err) = with(&["tenants", "policy", "acme"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&shown).expect("json"),
        policy
    );
    let (code, usage, err) = with(&["tenants", "usage", "acme"]);
    assert_eq!(code, 0, "{err}");
    let definitions = usage
        .lines()
        .find(|l| l.starts_with("definitions"))
        .unwrap_or_else(|| panic!("{usage}"));
    assert_eq!(
        definitions.split_whitespace().collect::<Vec<_>>(),
        ["definitions", "1", "1"],
        "{usage}"
    );
    assert_eq!(
        status_of(&base, &token, reqwest::Method::POST, "/api/v1/workflows").await,
        429,
        "over the definitions quota"
    );
    let (code, _, err) = with(&["tenants", "policy", "acme", "--quota", "definitions"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("NAME=LIMIT"), "{err}");
    // Erasure needs encryption at rest, which this server does not have.
    let (code, _, err) = with(&["tenants", "erase", "acme", "--confirm", "acme"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("encryption_off"), "{err}");
    server.stop();

    // A master key made on the command line is one the server accepts.
    let (code, key, err) = conflux(&["keys", "new-master"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("mk-"), "its id is said: {err}");
    let key = key.trim().to_owned();
    assert_eq!(key.len(), 44, "base64 of 32 bytes: {key}");
    let sealed_dir = tempfile::tempdir().expect("tempdir");
    let mut sealed = Binary::start(&[("CONFLUX_MASTER_KEY", key)], sealed_dir.path());
    let sealed_args = ["--url", sealed.base.as_str(), "--token", auth::ADMIN_TOKEN];
    let mut args = vec!["tenants", "erase", "default", "--confirm", "default"];
    args.extend(sealed_args);
    let (code, _, err) = conflux(&args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("data key(s) destroyed"), "{err}");
    sealed.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_writes_a_private_admin_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No CONFLUX_ADMIN_TOKEN: an empty value is what `Binary::start` lets the caller set.
    let mut server = Binary::start(&[("CONFLUX_ADMIN_TOKEN", String::new())], dir.path());
    let path = dir.path().join("conflux-data").join("admin-token");
    let token = std::fs::read_to_string(&path)
        .expect("the token file")
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(
        status_of(
            &server.base,
            &token,
            reqwest::Method::GET,
            "/api/v1/workflows"
        )
        .await,
        200
    );
    assert_eq!(
        status_of(
            &server.base,
            auth::ADMIN_TOKEN,
            reqwest::Method::GET,
            "/api/v1/workflows"
        )
        .await,
        401
    );
    server.stop();
    let log = server.log();
    assert!(log.contains("admin-token"), "the path is logged: {log}");
    assert!(!log.contains(&token), "the token is not");
}

/// `conflux secrets …` with the value on stdin (or in a file), as a user would run it.
fn secrets(base: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_conflux"))
        .arg("secrets")
        .args(args)
        .env("CONFLUX_URL", base)
        .env("CONFLUX_TOKEN", auth::ADMIN_TOKEN)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run conflux secrets");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Binary::start(&[], dir.path());
    let base = server.base.clone();
    let value = "cli-sekrit-value";

    let (code, out, err) = secrets(&base, &["put", "API_TOKEN"], &format!("{value}\n"));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("created secret API_TOKEN"), "{err}");
    let file = dir.path().join("value");
    std::fs::write(&file, "rotated-value").expect("write value");
    let file = file.to_str().expect("path");
    let (code, _, err) = secrets(&base, &["put", "API_TOKEN", "--value-file", file], "");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("rotated secret API_TOKEN"), "{err}");
    let (code, listed, err) = secrets(&base, &["list"], "");
    assert_eq!(code, 0, "{err}");
    assert!(listed.contains("API_TOKEN"), "{listed}");
    for text in [&out, &err, &listed] {
        assert!(
            !text.contains(value) && !text.contains("rotated-value"),
            "{text}"
        );
    }
    let (code, _, err) = secrets(&base, &["delete", "API_TOKEN"], "");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = secrets(&base, &["delete", "API_TOKEN"], "");
    assert_eq!(code, 2, "a second delete is refused: {err}");
    server.stop();
    let log = server.log();
    assert!(!log.is_empty(), "the server logged");
    assert!(
        !log.contains(value) && !log.contains("rotated-value"),
        "{log}"
    );
}
