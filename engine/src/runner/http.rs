//! One `http` attempt: build the request, ask the host's breaker, call, classify.
//!
//! Classification is what the retry policy and the breaker both live on, so it is
//! decided here once: 2xx completes; 5xx, connection errors and timeouts are retryable
//! and count against the host; 3xx (redirects are not followed — a workflow names the
//! URL it means) and 4xx are final and count as the host answering; anything wrong with
//! the request itself (method, URL, header, oversized response) is final and never
//! reaches the breaker.

use std::error::Error as _;
use std::time::{Duration, Instant};

use conflux_schema::definition::HttpSpec;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde_json::{json, Value};

use super::breaker::Rejected;
use super::{Inner, Outcome};

/// The most of a response body read; a bigger 2xx body fails the attempt.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The most of an error response's body read, for its first characters.
const ERROR_BODY_BYTES: usize = 4 * 1024;
/// Characters of an error response's body quoted in the error.
const ERROR_BODY_CHARS: usize = 200;

/// This build's reqwest has no TLS backend (`default-features = false`): an `https`
/// URL is refused up front with a clear, final error rather than failing to connect
/// on every retry.
const TLS_SUPPORTED: bool = false;

/// Makes the request described by `spec`, bounded by `limit`. Errors name the URL of
/// `shown` (the request as recorded: `${secrets.NAME}` where `spec` has a value).
pub(crate) async fn run(
    inner: &Inner,
    tenant: &str,
    spec: &HttpSpec,
    shown: &HttpSpec,
    limit: Duration,
) -> Outcome {
    let prepared = match Prepared::new(spec, &shown.url) {
        Ok(prepared) => prepared,
        Err(error) => return Outcome::failed(error, false),
    };
    // An address in the URL itself never reaches the resolver: check it here (names are
    // checked by the client's resolver, at connect time).
    let (egress, client) = inner.for_tenant(tenant);
    if let Some(host) = prepared.url.host() {
        if let Err(denied) = egress.check_url_host(&host) {
            return Outcome::failed(denied.to_string(), false);
        }
    }
    let client = match &client {
        Ok(client) => client,
        Err(error) => return Outcome::failed(error.clone(), false),
    };
    let request = match prepared.build(client) {
        Ok(request) => request,
        Err(error) => return Outcome::failed(chain(error, &prepared.shown_url), false),
    };

    let permit = match inner.breakers().admit(&prepared.host, Instant::now()) {
        Ok(permit) => permit,
        Err(rejected) => return Outcome::failed(fail_fast(&prepared.host, rejected), true),
    };
    // If this future is dropped mid-call, the guard hands the permit back unused.
    let mut guard = PermitGuard {
        inner,
        permit: Some(permit),
    };

    let call = call(client, request, &prepared.shown_url);
    let (outcome, host) = match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => {
            let error = format!(
                "timed out after {} ms calling {}",
                limit.as_millis(),
                prepared.shown_url
            );
            (Outcome::failed(error, true), Host::Failed)
        }
    };
    if let Some(permit) = guard.permit.take() {
        let mut breakers = inner.breakers();
        match host {
            Host::Answered => breakers.record(permit, true, Instant::now()),
            Host::Failed => breakers.record(permit, false, Instant::now()),
            Host::Untouched => breakers.abandon(permit, Instant::now()),
        }
    }
    outcome
}

/// What a call says about the host, for its breaker.
enum Host {
    /// It answered (2xx, 3xx, 4xx): the breaker counts a success.
    Answered,
    /// 5xx, connection error or timeout: the breaker counts a failure.
    Failed,
    /// The request never left (refused by reqwest before connecting).
    Untouched,
}

/// Sends `request` and classifies the response; `url` is how errors name it.
async fn call(client: &reqwest::Client, request: reqwest::Request, url: &str) -> (Outcome, Host) {
    let mut response = match client.execute(request).await {
        Ok(response) => response,
        // Refused by the egress policy (a name resolving to a denied address): final,
        // and the host never answered.
        Err(error) if super::egress::denial_in(&error).is_some() => {
            let denied = super::egress::denial_in(&error).map(ToString::to_string);
            return (
                Outcome::failed(denied.unwrap_or_default(), false),
                Host::Untouched,
            );
        }
        Err(error) if error.is_builder() => {
            return (Outcome::failed(chain(error, url), false), Host::Untouched)
        }
        Err(error) => return (Outcome::failed(chain(error, url), true), Host::Failed),
    };
    let status = response.status();
    if status.is_success() {
        let too_large = format!(
            "response from {url} is larger than {MAX_BODY_BYTES} bytes (HTTP {})",
            status.as_u16()
        );
        if response
            .content_length()
            .is_some_and(|len| len > MAX_BODY_BYTES as u64)
        {
            return (Outcome::failed(too_large, false), Host::Answered);
        }
        let body = match read_body(&mut response, MAX_BODY_BYTES).await {
            Ok((body, true)) => body,
            Ok((_, false)) => return (Outcome::failed(too_large, false), Host::Answered),
            Err(error) => {
                let error = format!("reading the response: {}", chain(error, url));
                return (Outcome::failed(error, true), Host::Failed);
            }
        };
        let output = json!({"status": status.as_u16(), "body": parse_body(&body)});
        return (Outcome::Completed(output), Host::Answered);
    }

    let mut error = format!("HTTP {} from {url}", status.as_u16());
    if status.is_redirection() {
        error.push_str(" (redirects are not followed");
        if let Some(location) = response.headers().get(reqwest::header::LOCATION) {
            error.push_str("; Location: ");
            error.push_str(&String::from_utf8_lossy(location.as_bytes()));
        }
        error.push(')');
    }
    // Unreadable: the status says enough.
    let prefix = match read_body(&mut response, ERROR_BODY_BYTES).await {
        Ok((prefix, _)) => prefix,
        Err(_) => Vec::new(),
    };
    let text: String = String::from_utf8_lossy(&prefix)
        .chars()
        .take(ERROR_BODY_CHARS)
        .collect();
    if !text.trim().is_empty() {
        error.push_str(": ");
        error.push_str(text.trim_end());
    }
    if status.is_server_error() {
        (Outcome::failed(error, true), Host::Failed)
    } else {
        (Outcome::failed(error, false), Host::Answered)
    }
}

/// The request checked and ready to send, with the key of its breaker.
struct Prepared {
    method: Method,
    url: Url,
    /// The URL without credentials, for error messages.
    shown_url: String,
    /// `host:port`.
    host: String,
    headers: HeaderMap,
    body: Option<Value>,
}

impl Prepared {
    /// The request of `spec`; errors name `shown_url` (the recorded URL, without
    /// credentials), never the URL sent.
    fn new(spec: &HttpSpec, shown_url: &str) -> Result<Self, String> {
        let method = parse_method(&spec.method)?;
        let url = Url::parse(spec.url.trim()).map_err(|e| format!("invalid URL: {e}"))?;
        let shown_url = without_credentials(shown_url);
        match url.scheme() {
            "http" => {}
            "https" if TLS_SUPPORTED => {}
            "https" => return Err(format!("https is not supported by this build: {shown_url}")),
            other => return Err(format!("unsupported URL scheme `{other}` in {shown_url}")),
        }
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Err(format!("URL has no host: {shown_url}"));
        };
        let host = format!("{host}:{port}");
        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid header name `{name}`"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("invalid value for header `{name}`"))?;
            headers.append(name, value);
        }
        Ok(Prepared {
            method,
            url,
            shown_url,
            host,
            headers,
            body: spec.body.clone(),
        })
    }

    fn build(&self, client: &reqwest::Client) -> Result<reqwest::Request, reqwest::Error> {
        let request = client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone());
        match &self.body {
            // `json` keeps a Content-Type the workflow set itself.
            Some(body) => request.json(body),
            None => request,
        }
        .build()
    }
}

/// `url` without its user name and password. A recorded URL that holds a
/// `${secrets.NAME}` reference is shown as written (a parser would percent-encode the
/// braces), with only its user information cut out.
fn without_credentials(url: &str) -> String {
    let url = url.trim();
    if url.contains("${") {
        let Some(start) = url.find("://").map(|i| i + 3) else {
            return url.to_owned();
        };
        let end = url[start..]
            .find(['/', '?', '#'])
            .map_or(url.len(), |i| start + i);
        return match url[start..end].rfind('@') {
            Some(at) => format!("{}{}", &url[..start], &url[start + at + 1..]),
            None => url.to_owned(),
        };
    }
    match Url::parse(url) {
        Ok(mut shown) => {
            // Both setters fail only for URLs that cannot carry credentials at all.
            let _ = shown.set_username("");
            let _ = shown.set_password(None);
            shown.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

/// Standard methods are accepted in any case (`post` means POST); any other token is
/// sent as written.
fn parse_method(raw: &str) -> Result<Method, String> {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    let upper = raw.trim().to_ascii_uppercase();
    let name = if STANDARD.contains(&upper.as_str()) {
        upper.as_str()
    } else {
        raw
    };
    Method::from_bytes(name.as_bytes()).map_err(|_| format!("invalid HTTP method `{raw}`"))
}

/// Reads at most `cap` bytes of the body; the flag is false when there was more (left
/// unread, the connection is then dropped rather than reused).
pub(super) async fn read_body(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// The body as JSON if it parses, else as a JSON string (lossy UTF-8); empty is null.
fn parse_body(body: &[u8]) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

fn fail_fast(host: &str, rejected: Rejected) -> String {
    match rejected {
        Rejected::Open { until } => {
            let left = until.saturating_duration_since(Instant::now());
            let until = chrono::Utc::now()
                + chrono::Duration::from_std(left).unwrap_or(chrono::Duration::zero());
            format!(
                "circuit open for {host} until {}",
                until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            )
        }
        Rejected::TrialInFlight => {
            format!("circuit half-open for {host}: its one trial call is in flight")
        }
    }
}

/// reqwest's own message is terse ("error sending request"); the causes say why. The
/// URL reqwest would quote may carry credentials, so `url` (without them) is used.
fn chain(error: reqwest::Error, url: &str) -> String {
    let error = error.without_url();
    let mut text = format!("{error} to {url}");
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Hands the permit back unused if the call is cancelled before it is recorded.
struct PermitGuard<'a> {
    inner: &'a Inner,
    permit: Option<super::breaker::Permit>,
}

impl Drop for PermitGuard<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.inner.breakers().abandon(permit, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_as_json_text_or_null() {
        assert_eq!(parse_body(b""), Value::Null);
        assert_eq!(parse_body(b" \n"), Value::Null);
        assert_eq!(parse_body(br#"{"a":1}"#), json!({"a": 1}));
        assert_eq!(parse_body(b"hello"), json!("hello"));
    }

    #[test]
    fn methods_are_case_insensitive_only_when_standard() {
        assert_eq!(parse_method("post"), Ok(Method::POST));
        assert_eq!(
            parse_method("PURGE").map(|m| m.to_string()),
            Ok("PURGE".into())
        );
        assert!(parse_method("BAD METHOD").is_err());
        assert!(parse_method("").is_err());
    }

    #[test]
    fn urls_are_checked_and_credentials_hidden() {
        let spec = |url: &str| HttpSpec {
            method: "GET".into(),
            url: url.into(),
            headers: Default::default(),
            body: None,
        };
        let prepared = |url: &str| Prepared::new(&spec(url), url);
        let ok = prepared("http://user:secret@example.com/x").expect("valid");
        assert_eq!(ok.host, "example.com:80");
        assert!(!ok.shown_url.contains("secret"));
        assert!(prepared("ftp://example.com").is_err());
        assert!(prepared("not a url").is_err());
        assert_eq!(
            prepared("http://[::1]:8080/").map(|p| p.host),
            Ok("[::1]:8080".to_owned())
        );
        let sent = Prepared::new(&spec("ftp://h/sekrit"), "ftp://h/${secrets.T}");
        let error = sent.err().expect("refused");
        assert!(
            error.contains("${secrets.T}") && !error.contains("sekrit"),
            "{error}"
        );
    }
}
