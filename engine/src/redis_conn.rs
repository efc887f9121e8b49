//! Redis connection settings shared by the bus and the agent task queues: bounded
//! reconnect delays and response timeouts, so a Redis outage turns into prompt
//! `Unavailable` errors and a Redis that returns is used again within about a second
//! (the client's defaults wait minutes on a dead server).

use std::future::Future;
use std::time::Duration;

use redis::aio::ConnectionManagerConfig;

/// How long a non-blocking command may take before it counts as unavailable.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one connection attempt may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Reconnection settings; `response_timeout` is None for connections that carry
/// blocking reads (their calls get their own deadline, longer than the block).
pub(crate) fn manager_config(response_timeout: Option<Duration>) -> ConnectionManagerConfig {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_number_of_retries(2)
        .set_factor(50)
        .set_max_delay(1000);
    match response_timeout {
        Some(t) => config.set_response_timeout(t),
        None => config,
    }
}

/// A Redis call that did not answer in time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimedOut(pub Duration);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redis did not answer within {:?}", self.0)
    }
}

/// Runs a Redis call with a deadline.
pub(crate) async fn within<T>(
    call: impl Future<Output = T>,
    limit: Duration,
) -> Result<T, TimedOut> {
    tokio::time::timeout(limit, call)
        .await
        .map_err(|_| TimedOut(limit))
}
