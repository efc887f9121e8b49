//! Waiting for a rate limit's token ([`conflux_schema::rate_limit`]) before an attempt
//! starts: the engine before it starts a rate-limited built-in, a poll before it leases
//! a rate-limited agent task. The buckets live beside the task queues, shared by every
//! server of the store.

use std::time::Duration;

use conflux_schema::rate_limit::RateLimit;
use serde_json::Value;

use crate::queue::TaskQueue;

/// The longest one wait lasts before the bucket is asked again.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// How long to wait before asking again when the queue backend cannot be reached.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);

/// Waits until the attempt with resolved `input` has a token of `limit`'s bucket in
/// `tenant`. `Err` when the key cannot be computed from the input (the attempt then
/// fails for good, naming the key); a backend that cannot be reached is asked again
/// until it answers.
pub async fn await_token(
    queue: &dyn TaskQueue,
    tenant: &str,
    limit: &RateLimit,
    input: &Value,
) -> Result<(), String> {
    let bucket = limit.key_for(input)?;
    let interval = Duration::from_micros(limit.interval_micros());
    let mut waited = false;
    loop {
        match queue
            .take_token(tenant, &bucket, interval, limit.burst())
            .await
        {
            Ok(None) => return Ok(()),
            Ok(Some(wait)) => {
                if !waited {
                    metrics::counter!("conflux_rate_limited_total", "tenant" => tenant.to_owned())
                        .increment(1);
                    waited = true;
                }
                tokio::time::sleep(wait.min(MAX_WAIT)).await;
            }
            Err(e) => {
                // The bucket's name comes from customer input: not logged.
                tracing::warn!(%tenant, error = %e, "taking a rate-limit token failed; trying again");
                tokio::time::sleep(UNAVAILABLE_RETRY).await;
            }
        }
    }
}
