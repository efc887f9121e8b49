//! Per-tenant quotas: what one tenant may take of what every tenant shares (engine
//! slots, storage, definitions, agents, schedules).
//!
//! Limits are the tenant's own (set by the system administrator, `TenantPolicySet`)
//! where it has them, else the configured defaults. Use is counted by the store in the
//! same transaction as the events it counts ([`crate::store::TenantCounters`]), so the
//! figures always match the log; a check reads one row, and only when the quotas it
//! checks have a limit (no limits, no reads).
//!
//! A request over a quota is refused before anything is written. Admissions a process
//! has let through but not yet committed count against the limit too ([`Admitted`]
//! holds them until dropped), and so does every admission that ended while the
//! counters were being read (it may or may not be in what was read): one server never
//! lets concurrent requests past a limit, at the price of refusing one near the limit
//! that a slower reading would have let through. Requests admitted at the same instant
//! by different servers can overshoot, by at most the requests in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use conflux_schema::api::QuotaUse;
use conflux_schema::quota::{Quota, QuotaLimits};

use crate::access::Access;
use crate::store::{EventStore, StoreError, TenantCounters};

/// The window of `executions_per_minute`.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// A refusal: which quota, its limit, and what is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{quota} quota exceeded: {used_text}the limit is {limit}")]
pub struct QuotaExceeded {
    /// The quota.
    pub quota: Quota,
    /// Its limit.
    pub limit: u64,
    /// What is used (or, for `event_payload_bytes`, the payload's size).
    pub used: u64,
    /// For a rate: when trying again can succeed.
    pub retry_after: Option<Duration>,
    used_text: String,
}

impl QuotaExceeded {
    fn new(quota: Quota, limit: u64, used: u64) -> Self {
        let used_text = match quota {
            Quota::EventPayloadBytes => format!("the payload is {used} bytes; "),
            _ => format!("{used} in use; "),
        };
        Self {
            quota,
            limit,
            used,
            retry_after: None,
            used_text,
        }
    }
}

/// Why an admission failed.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// Over a quota.
    #[error(transparent)]
    Exceeded(#[from] QuotaExceeded),
    /// The counters could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a request is about to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Admission {
    /// An execution start.
    Start,
    /// A workflow definition.
    Define,
    /// An agent registration.
    RegisterAgent,
    /// A schedule.
    Schedule,
}

impl Admission {
    /// The count quota it takes one of.
    fn counted(self) -> Quota {
        match self {
            Admission::Start => Quota::RunningExecutions,
            Admission::Define => Quota::Definitions,
            Admission::RegisterAgent => Quota::Agents,
            Admission::Schedule => Quota::Schedules,
        }
    }
}

/// Admissions of one (tenant, kind) in this process.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Let through, not yet ended.
    pending: u64,
    /// Ended (committed or not) since the process started.
    ended: u64,
}

type InFlight = Arc<Mutex<HashMap<(String, Admission), Tally>>>;

/// An admission let through: counts against its tenant's limit in this process until
/// dropped (drop it once the append committed or failed).
#[must_use = "the admission counts against the quota until it is dropped"]
pub struct Admitted {
    slot: Option<((String, Admission), InFlight)>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some((key, in_flight)) = self.slot.take() {
            let mut map = in_flight.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(tally) = map.get_mut(&key) {
                tally.pending = tally.pending.saturating_sub(1);
                tally.ended += 1;
            }
        }
    }
}

/// The quotas of every tenant, for one process. Cheap to clone.
#[derive(Clone)]
pub struct Quotas {
    store: Arc<dyn EventStore>,
    access: Access,
    defaults: QuotaLimits,
    in_flight: InFlight,
}

impl Quotas {
    /// Quotas with `defaults` for tenants without their own, counted in `store`.
    pub fn new(store: Arc<dyn EventStore>, access: Access, defaults: QuotaLimits) -> Self {
        Self {
            store,
            access,
            defaults,
            in_flight: Arc::default(),
        }
    }

    /// The configured defaults.
    pub fn defaults(&self) -> QuotaLimits {
        self.defaults
    }

    /// The limits in force for `tenant`.
    pub fn limits(&self, tenant: &str) -> QuotaLimits {
        match self.access.tenant_policy(tenant) {
            Some(policy) => policy.quotas.or(self.defaults),
            None => self.defaults,
        }
    }

    /// Refuses a payload (an input, definition, output or error) of `bytes` JSON bytes
    /// over `tenant`'s `event_payload_bytes`. Reads nothing.
    pub fn check_payload(&self, tenant: &str, bytes: usize) -> Result<(), QuotaExceeded> {
        let Some(limit) = self.limits(tenant).event_payload_bytes else {
            return Ok(());
        };
        if bytes as u64 > limit {
            return Err(self.refused(
                tenant,
                QuotaExceeded::new(Quota::EventPayloadBytes, limit, bytes as u64),
            ));
        }
        Ok(())
    }

    /// [`Quotas::check_payload`] for `value` as JSON; measured only when `tenant` has a
    /// limit.
    pub fn check_payload_of<T: serde::Serialize + ?Sized>(
        &self,
        tenant: &str,
        value: &T,
    ) -> Result<(), QuotaExceeded> {
        if self.limits(tenant).event_payload_bytes.is_none() {
            return Ok(());
        }
        let mut size = ByteCount(0);
        // Writing to a counter cannot fail; a value that does not serialise is 0 bytes
        // here and refused where it is recorded.
        let _ = serde_json::to_writer(&mut size, value);
        self.check_payload(tenant, size.0)
    }

    /// Lets `what` through for `tenant` if its quotas allow one more (and, for a start,
    /// the rate and the stored bytes allow it), counting it as in flight until the
    /// returned [`Admitted`] is dropped. Agents are admitted with [`Quotas::admit_agent`].
    pub async fn admit(&self, tenant: &str, what: Admission) -> Result<Admitted, QuotaError> {
        self.admit_as(tenant, what, None).await
    }

    /// Lets an agent registering under `name` through: a name the tenant's agents
    /// registered under before (a restarted agent) takes no more of the `agents` quota.
    pub async fn admit_agent(&self, tenant: &str, name: &str) -> Result<Admitted, QuotaError> {
        self.admit_as(tenant, Admission::RegisterAgent, Some(name))
            .await
    }

    async fn admit_as(
        &self,
        tenant: &str,
        what: Admission,
        agent_name: Option<&str>,
    ) -> Result<Admitted, QuotaError> {
        let limits = self.limits(tenant);
        let count_limit = limits.get(what.counted());
        let rate_limit = match what {
            Admission::Start => limits.executions_per_minute,
            _ => None,
        };
        if count_limit.is_none() && rate_limit.is_none() && limits.payload_bytes.is_none() {
            return Ok(Admitted { slot: None });
        }
        let key = (tenant.to_owned(), what);
        let ended_before = self.tally(&key).ended;
        let now = Utc::now();
        let since = now - chrono::Duration::from_std(RATE_WINDOW).unwrap_or_default();
        let counters = self.store.tenant_usage(tenant, since, agent_name).await?;
        self.record_gauges(tenant, &counters);
        if let Some(limit) = limits.payload_bytes {
            if counters.payload_bytes >= limit {
                let refused =
                    QuotaExceeded::new(Quota::PayloadBytes, limit, counters.payload_bytes);
                return Err(self.refused(tenant, refused).into());
            }
        }
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let tally = in_flight.get(&key).copied().unwrap_or_default();
        // In flight, or ended while the counters were read (maybe not in them).
        let pending = tally.pending + (tally.ended - ended_before);
        let known_agent = what == Admission::RegisterAgent && counters.agent_known;
        if let Some(limit) = count_limit.filter(|_| !known_agent) {
            let used = used_of(&counters, what.counted()) + pending;
            if used >= limit {
                drop(in_flight);
                let refused = QuotaExceeded::new(what.counted(), limit, used);
                return Err(self.refused(tenant, refused).into());
            }
        }
        if let Some(limit) = rate_limit {
            let used = counters.started_since + pending;
            if used >= limit {
                drop(in_flight);
                let mut refused = QuotaExceeded::new(Quota::ExecutionsPerMinute, limit, used);
                let frees_at = counters.oldest_since.unwrap_or(now)
                    + chrono::Duration::from_std(RATE_WINDOW).unwrap_or_default();
                let wait = (frees_at - now).to_std().unwrap_or_default();
                refused.retry_after = Some(wait.max(Duration::from_secs(1)));
                return Err(self.refused(tenant, refused).into());
            }
        }
        in_flight.entry(key.clone()).or_default().pending += 1;
        Ok(Admitted {
            slot: Some((key, self.in_flight.clone())),
        })
    }

    fn tally(&self, key: &(String, Admission)) -> Tally {
        let map = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(key).copied().unwrap_or_default()
    }

    /// `tenant`'s use of every quota, with its limits, as the store counts it now.
    pub async fn usage(&self, tenant: &str) -> Result<Vec<QuotaUse>, StoreError> {
        let since = Utc::now() - chrono::Duration::from_std(RATE_WINDOW).unwrap_or_default();
        let counters = self.store.tenant_usage(tenant, since, None).await?;
        self.record_gauges(tenant, &counters);
        let limits = self.limits(tenant);
        Ok(Quota::ALL
            .iter()
            .map(|q| QuotaUse {
                quota: *q,
                used: (*q != Quota::EventPayloadBytes).then(|| used_of(&counters, *q)),
                limit: limits.get(*q),
            })
            .collect())
    }

    /// Publishes every tenant's use as gauges (`conflux_tenant_usage{tenant,quota}`)
    /// every `every` until `shutdown`, so tenants without limits, and use that went
    /// down, show too.
    pub async fn publish_gauges(
        self,
        every: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            for (tenant, _) in self.access.tenants() {
                if let Err(e) = self.usage(tenant.as_str()).await {
                    tracing::debug!(%tenant, error = %e, "reading a tenant's usage failed");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    fn refused(&self, tenant: &str, refused: QuotaExceeded) -> QuotaExceeded {
        metrics::counter!(
            "conflux_tenant_quota_rejections_total",
            "tenant" => tenant.to_owned(),
            "quota" => refused.quota.as_str()
        )
        .increment(1);
        refused
    }

    fn record_gauges(&self, tenant: &str, counters: &TenantCounters) {
        for q in Quota::ALL {
            if q == Quota::EventPayloadBytes {
                continue;
            }
            metrics::gauge!(
                "conflux_tenant_usage",
                "tenant" => tenant.to_owned(),
                "quota" => q.as_str()
            )
            .set(used_of(counters, q) as f64);
        }
    }
}

/// Counts the bytes written to it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What `counters` say is used of `quota` (0 for the per-payload quota).
fn used_of(counters: &TenantCounters, quota: Quota) -> u64 {
    match quota {
        Quota::RunningExecutions => counters.running_executions,
        Quota::ExecutionsPerMinute => counters.started_since,
        Quota::Definitions => counters.definitions,
        Quota::EventPayloadBytes => 0,
        Quota::PayloadBytes => counters.payload_bytes,
        Quota::Agents => counters.agent_names,
        Quota::Schedules => counters.schedules,
    }
}
