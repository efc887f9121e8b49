//! Built-in task runners: what the engine runs in-process (`noop`, `sleep`, `http`).
//!
//! The execution core says *that* a built-in attempt must run
//! ([`crate::execution::Effect::RunBuiltin`]); this module says *how*, and turns the
//! attempt's end into an [`Outcome`] the shell reports as `CompleteTask` or `FailTask`.
//! Whether a failure is retryable is decided here, where the cause is known, and the
//! task's retry policy decides what to do with it.
//!
//! `http` calls go through one shared client (connection pooling) and a circuit
//! breaker per `host:port`: when a downstream service is down, every execution retrying
//! against it would otherwise turn one outage into a retry storm. `agent` tasks never
//! run here; they wait for an external agent.
//!
//! # Layout
//! - this file: [`BuiltinRunner`], [`Outcome`], [`RunnerOptions`].
//! - `http`: one request, its limits (1 MiB body, no redirects) and classification.
//! - [`breaker`]: the per-host breaker state machine, pure and clock-free.

pub mod breaker;
pub mod egress;
mod hook;
mod http;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use conflux_schema::definition::{HttpSpec, TaskKind};
use serde_json::{json, Value};

use breaker::Breakers;
pub use breaker::{BreakerOptions, BreakerPhase, BreakerState};

/// How a built-in attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The attempt succeeded with this output.
    Completed(Value),
    /// The attempt failed; `retryable` says whether another attempt may succeed.
    Failed {
        /// What went wrong, for the task's `error`.
        error: String,
        /// True for transient causes (5xx, connection errors, timeouts, open circuit).
        retryable: bool,
    },
}

impl Outcome {
    fn failed(error: impl Into<String>, retryable: bool) -> Self {
        Outcome::Failed {
            error: error.into(),
            retryable,
        }
    }
}

/// Tuning for [`BuiltinRunner`].
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Upper bound of one `http` call, whatever the task's own timeout.
    pub http_timeout: Duration,
    /// When a host's breaker opens and for how long.
    pub breaker: BreakerOptions,
    /// The `User-Agent` of `http` calls (a workflow's own header wins).
    pub user_agent: String,
    /// What `http` calls may reach (default: public addresses only).
    pub egress: egress::EgressPolicy,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            http_timeout: Duration::from_secs(30),
            breaker: BreakerOptions::default(),
            user_agent: concat!("conflux/", env!("CARGO_PKG_VERSION")).to_owned(),
            egress: egress::EgressPolicy::public_only(),
        }
    }
}

/// Runs `noop`, `sleep` and `http` tasks. Cheap to clone (an `Arc` inside); make one
/// per process so that every execution shares its connection pool and breakers.
#[derive(Clone)]
pub struct BuiltinRunner {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The client, or why it could not be built (every `http` attempt then fails
    /// with that reason instead of the process refusing to start).
    client: Result<reqwest::Client, String>,
    options: RunnerOptions,
    /// The egress policy (also inside the client's resolver).
    egress: Arc<egress::EgressPolicy>,
    /// Tenants' own allowlists, if any are kept.
    tenant_allowlists: Option<Arc<dyn egress::TenantAllowlists>>,
    /// A client per tenant with its own allowlist: its resolver enforces the operator's
    /// policy plus the tenant's, and its connection pool is the tenant's alone (a pooled
    /// connection one tenant may use is never handed to another).
    tenant_clients: Mutex<std::collections::HashMap<String, TenantClient>>,
    breakers: Mutex<Breakers>,
}

/// A tenant's client and the policies it was built for.
#[derive(Clone)]
pub(crate) struct TenantClient {
    /// The tenant's own allowlist it was built for (rebuilt when that changes).
    own: Arc<egress::EgressPolicy>,
    /// The operator's policy plus the tenant's.
    pub(crate) egress: Arc<egress::EgressPolicy>,
    pub(crate) client: Result<reqwest::Client, String>,
}

fn build_client(
    options: &RunnerOptions,
    egress: Arc<egress::EgressPolicy>,
) -> Result<reqwest::Client, String> {
    let client = egress::guarded_client(egress, &options.user_agent);
    if let Err(error) = &client {
        tracing::error!(%error, "http tasks will fail");
    }
    client
}

impl Inner {
    /// The policy and client for `tenant`'s calls: the shared ones, or, for a tenant
    /// with its own allowlist, its own (built on first use and when the list changes).
    pub(crate) fn for_tenant(
        &self,
        tenant: &str,
    ) -> (Arc<egress::EgressPolicy>, Result<reqwest::Client, String>) {
        let own = self
            .tenant_allowlists
            .as_ref()
            .and_then(|t| t.allowlist(tenant));
        let Some(own) = own else {
            return (self.egress.clone(), self.client.clone());
        };
        let mut clients = self
            .tenant_clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(tenant).filter(|c| Arc::ptr_eq(&c.own, &own)) {
            return (c.egress.clone(), c.client.clone());
        }
        let egress = Arc::new(self.egress.union(&own));
        let built = TenantClient {
            own,
            client: build_client(&self.options, egress.clone()),
            egress,
        };
        clients.insert(tenant.to_owned(), built.clone());
        (built.egress, built.client)
    }

    /// The breakers. Never held across an `.await`; a panic while holding the lock
    /// cannot leave the state machine half-updated, so poisoning is ignored.
    fn breakers(&self) -> MutexGuard<'_, Breakers> {
        self.breakers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl BuiltinRunner {
    /// A runner with `options`. Redirects are never followed.
    pub fn new(options: RunnerOptions) -> Self {
        Self::build(options, None)
    }

    /// A runner whose `http` calls may also reach what each tenant's own allowlist
    /// (from `tenants`) allows.
    pub fn with_tenant_allowlists(
        options: RunnerOptions,
        tenants: Arc<dyn egress::TenantAllowlists>,
    ) -> Self {
        Self::build(options, Some(tenants))
    }

    fn build(options: RunnerOptions, tenants: Option<Arc<dyn egress::TenantAllowlists>>) -> Self {
        let egress = Arc::new(options.egress.clone());
        let client = build_client(&options, egress.clone());
        BuiltinRunner {
            inner: Arc::new(Inner {
                client,
                breakers: Mutex::new(Breakers::new(options.breaker)),
                egress,
                tenant_allowlists: tenants,
                tenant_clients: Mutex::default(),
                options,
            }),
        }
    }

    /// Runs one attempt of a `kind` task with its resolved `input` (and, for `http`,
    /// its resolved request; for `sleep`, its duration).
    ///
    /// `timeout` is the task's start-to-close limit, if any: an `http` call is bounded
    /// by the smaller of it and [`RunnerOptions::http_timeout`], a `sleep` by it. Going
    /// past the limit is a retryable failure. Never panics; every error is an
    /// [`Outcome::Failed`].
    pub async fn run(
        &self,
        kind: TaskKind,
        input: &Value,
        http: Option<&HttpSpec>,
        sleep_ms: Option<u64>,
        timeout: Option<Duration>,
    ) -> Outcome {
        let tenant = conflux_schema::access::DEFAULT_TENANT;
        self.run_shown(tenant, kind, input, http.map(|h| (h, h)), sleep_ms, timeout)
            .await
    }

    /// [`BuiltinRunner::run`] for an `http` request `(sent, shown)`: `sent` is what goes
    /// out (secret values in), `shown` what errors may name (the recorded request, with
    /// `${secrets.NAME}` references), so an error never quotes a secret's value;
    /// `tenant`'s own egress allowlist applies besides the operator's.
    pub async fn run_shown(
        &self,
        tenant: &str,
        kind: TaskKind,
        input: &Value,
        http: Option<(&HttpSpec, &HttpSpec)>,
        sleep_ms: Option<u64>,
        timeout: Option<Duration>,
    ) -> Outcome {
        match kind {
            TaskKind::Noop => Outcome::Completed(input.clone()),
            TaskKind::Sleep => {
                let Some(ms) = sleep_ms else {
                    return Outcome::failed("sleep_ms is required for a sleep task", false);
                };
                let wanted = Duration::from_millis(ms);
                match timeout {
                    Some(limit) if limit < wanted => {
                        tokio::time::sleep(limit).await;
                        Outcome::failed(
                            format!(
                                "timed out after {} ms (sleep_ms is {ms})",
                                limit.as_millis()
                            ),
                            true,
                        )
                    }
                    _ => {
                        tokio::time::sleep(wanted).await;
                        Outcome::Completed(json!({ "slept_ms": ms }))
                    }
                }
            }
            TaskKind::Http => {
                let Some((spec, shown)) = http else {
                    return Outcome::failed("http is required for an http task", false);
                };
                let limit = timeout.map_or(self.inner.options.http_timeout, |t| {
                    t.min(self.inner.options.http_timeout)
                });
                http::run(&self.inner, tenant, spec, shown, limit).await
            }
            TaskKind::Agent
            | TaskKind::Switch
            | TaskKind::Map
            | TaskKind::Signal
            | TaskKind::Approval
            | TaskKind::Workflow => Outcome::failed(
                format!("{kind} tasks are not run by the built-in runner"),
                false,
            ),
        }
    }

    /// Every tracked host's breaker, sorted by host, for `/metrics`. Hosts whose
    /// breaker is closed with no recent failure may be absent.
    pub fn breaker_snapshot(&self) -> Vec<BreakerState> {
        self.inner.breakers().snapshot(Instant::now())
    }
}

impl Default for BuiltinRunner {
    fn default() -> Self {
        BuiltinRunner::new(RunnerOptions::default())
    }
}

impl std::fmt::Debug for BuiltinRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinRunner")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Allowlists a test can change.
    #[derive(Default)]
    struct Lists(Mutex<HashMap<String, Arc<egress::EgressPolicy>>>);

    impl Lists {
        fn set(&self, tenant: &str, allow: Option<&str>) {
            let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            match allow {
                Some(a) => {
                    let policy = egress::EgressPolicy::parse_tenant(a).expect("parses");
                    map.insert(tenant.to_owned(), Arc::new(policy));
                }
                None => {
                    map.remove(tenant);
                }
            }
        }
    }

    impl egress::TenantAllowlists for Lists {
        fn allowlist(&self, tenant: &str) -> Option<Arc<egress::EgressPolicy>> {
            let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            map.get(tenant).cloned()
        }
    }

    #[test]
    fn each_tenant_with_an_allowlist_has_its_own_client() {
        let lists = Arc::new(Lists::default());
        let runner = BuiltinRunner::with_tenant_allowlists(RunnerOptions::default(), lists.clone());
        let inner = &runner.inner;
        let shared = inner.for_tenant("plain").0;
        assert!(
            Arc::ptr_eq(&shared, &inner.egress),
            "no list: the shared client"
        );

        lists.set("a", Some("10.1.0.0/16"));
        lists.set("b", Some("10.2.0.0/16"));
        let (a1, _) = inner.for_tenant("a");
        let (a2, _) = inner.for_tenant("a");
        let (b1, _) = inner.for_tenant("b");
        assert!(
            Arc::ptr_eq(&a1, &a2),
            "one client per tenant while its list stands"
        );
        assert!(!Arc::ptr_eq(&a1, &b1) && !Arc::ptr_eq(&a1, &shared));
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
        assert_eq!(a1.check_ip(ip("10.1.2.3")), Ok(()));
        assert!(a1.check_ip(ip("10.2.2.3")).is_err(), "b's range is not a's");
        assert!(b1.check_ip(ip("10.1.2.3")).is_err());

        lists.set("a", Some("10.3.0.0/16"));
        let (a3, _) = inner.for_tenant("a");
        assert!(!Arc::ptr_eq(&a1, &a3), "a changed list: a new client");
        assert!(a3.check_ip(ip("10.1.2.3")).is_err() && a3.check_ip(ip("10.3.0.1")).is_ok());

        lists.set("a", None);
        assert!(
            Arc::ptr_eq(&inner.for_tenant("a").0, &inner.egress),
            "back to shared"
        );
    }
}
