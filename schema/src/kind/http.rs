//! `http`: makes the request in `http` from the engine (under the egress policy);
//! output `{"status", "body"}`. Its url, headers and body may hold secrets.

use super::{KindRules, Runs, TaskBody};
use crate::definition::HttpSpec;

/// The table entry.
pub(super) const RULES: KindRules = KindRules {
    name: "http",
    runs: Runs::Builtin,
    secrets_in_input: false,
    compensates: true,
    check,
};

fn check(body: &TaskBody<'_>, prefix: &str) -> Result<(), String> {
    let http = body
        .http
        .ok_or_else(|| format!("{prefix}http is required for an http task"))?;
    check_http(http, prefix)
}

fn check_http(http: &HttpSpec, prefix: &str) -> Result<(), String> {
    let url = http.url.as_str();
    if url.is_empty() {
        return Err(format!("{prefix}http.url is required for an http task"));
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let scheme_len = if lower.starts_with("https://") {
        8
    } else if lower.starts_with("http://") {
        7
    } else {
        0
    };
    if scheme_len == 0 || url.len() == scheme_len {
        return Err(format!(
            "{prefix}http.url must be an absolute http:// or https:// URL, not `{url}`"
        ));
    }
    // An HTTP method is a token (RFC 9110): no spaces, separators or control characters.
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if http.method.is_empty() || !http.method.bytes().all(token) {
        return Err(format!(
            "{prefix}http.method `{}` is not an HTTP method",
            http.method
        ));
    }
    Ok(())
}
