//! One delivery attempt: the event's envelope POSTed to the hook's URL through the
//! egress policy's guarded client (an IP literal checked here, every resolved address
//! at connect time, no redirects followed), signed, bounded by a timeout. A 2xx answer
//! is a success; anything else — another status, a timeout, a refused connection, a
//! denied address — is a failure the worker retries.

use std::error::Error as _;
use std::time::Duration;

use uuid::Uuid;

use super::sign::signature;
use crate::runner::egress::{denial_in, EgressPolicy};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "Conflux-Signature";
/// The hook's id.
pub const HOOK_ID_HEADER: &str = "Conflux-Hook-Id";
/// The event's id (the same on every attempt: receivers deduplicate on it).
pub const EVENT_ID_HEADER: &str = "Conflux-Event-Id";
/// 1 on the first attempt, then 2, 3…
pub const ATTEMPT_HEADER: &str = "Conflux-Delivery-Attempt";

/// What one attempt sends.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The hook.
    pub hook_id: Uuid,
    /// The event.
    pub event_id: Uuid,
    /// 1, 2, 3…
    pub attempt: u32,
    /// Where.
    pub url: &'a str,
    /// The signing secret (in memory only).
    pub secret: &'a str,
    /// The event's envelope, as JSON.
    pub body: &'a [u8],
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Delivered(u16),
    /// Anything else.
    Failed {
        /// The answer's status, if there was one.
        status: Option<u16>,
        /// Why.
        error: String,
    },
}

/// Makes `attempt` with `client` (built by `egress::guarded_client` for `policy`),
/// within `timeout`.
pub async fn send(
    client: &reqwest::Client,
    policy: &EgressPolicy,
    attempt: Attempt<'_>,
    timeout: Duration,
) -> Outcome {
    let failed = |error: String| Outcome::Failed {
        status: None,
        error,
    };
    let url = match reqwest::Url::parse(attempt.url) {
        Ok(url) => url,
        Err(e) => return failed(format!("the url does not parse: {e}")),
    };
    if let Some(host) = url.host() {
        if let Err(denied) = policy.check_url_host(&host) {
            return failed(denied.to_string());
        }
    }
    let request = client
        .post(url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            SIGNATURE_HEADER,
            signature(attempt.secret, chrono::Utc::now().timestamp(), attempt.body),
        )
        .header(HOOK_ID_HEADER, attempt.hook_id.to_string())
        .header(EVENT_ID_HEADER, attempt.event_id.to_string())
        .header(ATTEMPT_HEADER, attempt.attempt.to_string())
        .body(attempt.body.to_vec());
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                Outcome::Delivered(status.as_u16())
            } else {
                Outcome::Failed {
                    status: Some(status.as_u16()),
                    error: format!("the receiver answered {status}"),
                }
            }
        }
        Err(error) => {
            if let Some(denied) = denial_in(&error) {
                return failed(denied.to_string());
            }
            if error.is_timeout() {
                return failed(format!("no answer within {} ms", timeout.as_millis()));
            }
            let error = error.without_url();
            let mut text = error.to_string();
            let mut source = error.source();
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            failed(text)
        }
    }
}
