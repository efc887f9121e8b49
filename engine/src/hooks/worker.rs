//! The delivery loops every engine process runs: a supervisor that follows the hook
//! directory, and one task per live hook, so a slow or failing receiver delays only its
//! own hook — never the engine, never another hook.
//!
//! A hook's task delivers only while it holds the hook's lease ([`HookStore::acquire`]),
//! so however many servers run, one delivers a given hook at a time; the lease is
//! renewed while it works, given back when it stops, and taken over by another server
//! once it runs out (a crashed holder). Under the lease the task reads the log after
//! the hook's cursor, POSTs each event the hook wants in log order — retrying with
//! exponential backoff until a 2xx answer or `max_attempts` failures (then the delivery
//! is dead-lettered) — and only then moves the cursor past it: at least once, in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conflux_schema::api::DeliveryState;
use conflux_schema::EventEnvelope;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::deliver::{send, Attempt, Outcome};
use super::state::HookState;
use super::{now, DeliveryRecord, Hooks};
use crate::runner::egress::guarded_client;

/// Events read from the log per page.
const PAGE: usize = 256;

/// How deliveries are retried and paced.
#[derive(Debug, Clone)]
pub struct HookOptions {
    /// Attempts per event before it is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// The wait after the first failure; doubled after each further one.
    pub backoff_base: Duration,
    /// The longest wait between two attempts.
    pub backoff_cap: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// How long a lease lasts without renewal (at least 3 × `timeout`).
    pub lease: Duration,
    /// How often an idle hook looks at the log for new events.
    pub poll: Duration,
    /// How often the supervisor re-reads the hook directory.
    pub refresh: Duration,
}

impl Default for HookOptions {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(250),
            refresh: Duration::from_secs(1),
        }
    }
}

impl HookOptions {
    /// The wait after the `failures`-th failure: `backoff_base × 2^(failures-1)`, at
    /// most `backoff_cap`.
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(31));
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_cap)
    }

    /// The lease actually used: long enough for an attempt between two renewals.
    fn lease(&self) -> Duration {
        self.lease.max(self.timeout.saturating_mul(3))
    }
}

/// The delivery worker of one process.
pub struct HookWorker {
    hooks: Hooks,
    options: HookOptions,
    owner: Uuid,
    client: Result<reqwest::Client, String>,
}

/// How handling one event ended.
enum Handled {
    /// Delivered or dead-lettered: the cursor may pass it.
    Done,
    /// The lease was lost, the hook stopped, or the store failed: stop holding it.
    Stop,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl HookWorker {
    /// A worker delivering `hooks` with `options`, under a lease owner id of its own.
    pub fn new(hooks: Hooks, options: HookOptions) -> Self {
        let client = guarded_client(
            hooks.egress().clone(),
            concat!("conflux-hooks/", env!("CARGO_PKG_VERSION")),
        );
        if let Err(error) = &client {
            tracing::error!(%error, "webhook deliveries will fail");
        }
        Self {
            hooks,
            options: HookOptions {
                max_attempts: options.max_attempts.max(1),
                ..options
            },
            owner: Uuid::now_v7(),
            client,
        }
    }

    /// Follows the hook directory until `shutdown`: a task per live hook, stopped when
    /// the hook is deleted; at `shutdown` every task stops and gives its lease back.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let mut running: HashMap<Uuid, (CancellationToken, JoinHandle<()>)> = HashMap::new();
        loop {
            match this.hooks.refresh().await {
                Ok(directory) => {
                    let live: HashMap<Uuid, HookState> =
                        directory.live().map(|h| (h.id, h.clone())).collect();
                    running.retain(|id, (stop, task)| {
                        let keep = live.contains_key(id) && !task.is_finished();
                        if !keep {
                            stop.cancel();
                        }
                        keep
                    });
                    for (id, hook) in live {
                        if running.contains_key(&id) {
                            continue;
                        }
                        let stop = shutdown.child_token();
                        let task = tokio::spawn(this.clone().hold_hook(hook, stop.clone()));
                        running.insert(id, (stop, task));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "the hook directory cannot be read; retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(this.options.refresh) => {}
            }
        }
        for (_, (stop, task)) in running {
            stop.cancel();
            let _ = task.await;
        }
    }

    /// Takes the hook's lease whenever it is free, delivers while holding it, gives it
    /// back when stopped.
    async fn hold_hook(self: Arc<Self>, hook: HookState, stop: CancellationToken) {
        let store = self.hooks.hook_store().clone();
        let lease_ms = i64::try_from(self.options.lease().as_millis()).unwrap_or(i64::MAX);
        loop {
            let now = now_ms();
            match store
                .acquire(hook.id, self.owner, now, now.saturating_add(lease_ms))
                .await
            {
                Ok(Some(cursor)) => {
                    tracing::debug!(hook = %hook.id, cursor, "delivering");
                    self.deliver_from(&hook, cursor, &stop).await;
                    if let Err(e) = store.release(hook.id, self.owner).await {
                        tracing::warn!(hook = %hook.id, error = %e, "a hook's lease was not given back; it runs out by itself");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(hook = %hook.id, error = %e, "a hook's lease cannot be taken; retrying")
                }
            }
            let pause = (self.options.lease() / 4).min(Duration::from_secs(2));
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Renews the lease if a third of it went by; false when it is no longer ours.
    async fn keep(&self, hook: Uuid, renewed: &mut Instant) -> bool {
        let lease = self.options.lease();
        if renewed.elapsed() < lease / 3 {
            return true;
        }
        let until = now_ms().saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        match self.hooks.hook_store().renew(hook, self.owner, until).await {
            Ok(true) => {
                *renewed = Instant::now();
                true
            }
            Ok(false) => {
                tracing::info!(%hook, "another server took this hook's lease");
                false
            }
            Err(e) => {
                tracing::warn!(%hook, error = %e, "a hook's lease cannot be renewed");
                false
            }
        }
    }

    /// Delivers the events after `cursor` the hook wants, in log order, while the lease
    /// is ours and `stop` is not cancelled.
    async fn deliver_from(&self, hook: &HookState, mut cursor: u64, stop: &CancellationToken) {
        let mut renewed = Instant::now();
        let secret = match self.hooks.open_secret(&hook.tenant, hook.id).await {
            Ok(Some(secret)) => secret,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(hook = %hook.id, error = %e, "a hook's secret cannot be read");
                return;
            }
        };
        let store = self.hooks.store().clone();
        let hook_store = self.hooks.hook_store().clone();
        loop {
            if stop.is_cancelled() || !self.keep(hook.id, &mut renewed).await {
                return;
            }
            let page = match store.read_all(cursor, PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(hook = %hook.id, error = %e, "the log cannot be read for a hook");
                    return;
                }
            };
            let Some(last) = page.last().map(|e| e.position) else {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(self.options.poll) => continue,
                }
            };
            for event in page.iter().filter(|e| hook.wants(e)) {
                match self
                    .deliver_one(hook, &secret, event, stop, &mut renewed)
                    .await
                {
                    Handled::Done => {}
                    Handled::Stop => return,
                }
                if !matches!(
                    hook_store
                        .advance(hook.id, self.owner, event.position)
                        .await,
                    Ok(true)
                ) {
                    return;
                }
                cursor = event.position;
            }
            if last > cursor {
                if !matches!(
                    hook_store.advance(hook.id, self.owner, last).await,
                    Ok(true)
                ) {
                    return;
                }
                cursor = last;
            }
        }
    }

    /// Delivers `event` until a 2xx answer or `max_attempts` failures, recording each
    /// attempt; resumes the count a previous holder recorded.
    async fn deliver_one(
        &self,
        hook: &HookState,
        secret: &str,
        event: &EventEnvelope,
        stop: &CancellationToken,
        renewed: &mut Instant,
    ) -> Handled {
        let hook_store = self.hooks.hook_store();
        let earlier = match hook_store.delivery(hook.id, event.position).await {
            Ok(earlier) => earlier,
            Err(e) => {
                tracing::warn!(hook = %hook.id, error = %e, "a delivery record cannot be read");
                return Handled::Stop;
            }
        };
        if earlier
            .as_ref()
            .is_some_and(|d| d.state != DeliveryState::Pending)
        {
            // Handled before a crash, before the cursor moved.
            return Handled::Done;
        }
        let mut record = earlier.unwrap_or_else(|| DeliveryRecord {
            hook_id: hook.id,
            position: event.position,
            event_id: event.event_id,
            event_type: event.event.type_name().to_owned(),
            state: DeliveryState::Pending,
            attempts: 0,
            last_status: None,
            last_error: None,
            created_at: now(),
            updated_at: now(),
        });
        let body = match serde_json::to_vec(event) {
            Ok(body) => body,
            Err(e) => {
                record.state = DeliveryState::DeadLettered;
                record.last_error = Some(format!("the event cannot be serialised: {e}"));
                return self.finish(&record).await;
            }
        };
        let client = match &self.client {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(hook = %hook.id, error = %e, "no HTTP client");
                return Handled::Stop;
            }
        };
        loop {
            if !self.keep(hook.id, renewed).await {
                return Handled::Stop;
            }
            record.attempts += 1;
            let attempt = Attempt {
                hook_id: hook.id,
                event_id: event.event_id,
                attempt: record.attempts,
                url: &hook.url,
                secret,
                body: &body,
            };
            let outcome = tokio::select! {
                () = stop.cancelled() => return Handled::Stop,
                outcome = send(client, self.hooks.egress(), attempt, self.options.timeout) => outcome,
            };
            record.updated_at = now();
            match outcome {
                Outcome::Delivered(status) => {
                    metrics::counter!("conflux_hook_attempts_total", "outcome" => "delivered")
                        .increment(1);
                    record.state = DeliveryState::Delivered;
                    record.last_status = Some(status);
                    record.last_error = None;
                }
                Outcome::Failed { status, error } => {
                    metrics::counter!("conflux_hook_attempts_total", "outcome" => "failed")
                        .increment(1);
                    record.last_status = status;
                    record.last_error = Some(error);
                    if record.attempts >= self.options.max_attempts {
                        record.state = DeliveryState::DeadLettered;
                    }
                }
            }
            if record.state != DeliveryState::Pending {
                return self.finish(&record).await;
            }
            match hook_store.record(&record, self.owner).await {
                Ok(true) => {}
                _ => return Handled::Stop,
            }
            let until = Instant::now() + self.options.backoff(record.attempts);
            while Instant::now() < until {
                let slice = until
                    .saturating_duration_since(Instant::now())
                    .min(self.options.lease() / 3);
                tokio::select! {
                    () = stop.cancelled() => return Handled::Stop,
                    () = tokio::time::sleep(slice) => {}
                }
                if !self.keep(hook.id, renewed).await {
                    return Handled::Stop;
                }
            }
        }
    }

    /// Records a delivery that is over (delivered or dead-lettered).
    async fn finish(&self, record: &DeliveryRecord) -> Handled {
        if record.state == DeliveryState::DeadLettered {
            metrics::counter!("conflux_hook_dead_lettered_total").increment(1);
            tracing::warn!(hook = %record.hook_id, position = record.position, attempts = record.attempts, error = ?record.last_error, "a webhook delivery was dead-lettered");
        }
        match self.hooks.hook_store().record(record, self.owner).await {
            Ok(true) => Handled::Done,
            _ => Handled::Stop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let o = HookOptions::default();
        assert_eq!(o.backoff(1), Duration::from_secs(1));
        assert_eq!(o.backoff(2), Duration::from_secs(2));
        assert_eq!(o.backoff(8), Duration::from_secs(128));
        assert_eq!(o.backoff(9), Duration::from_secs(256));
        assert_eq!(o.backoff(10), Duration::from_secs(300));
        assert_eq!(o.backoff(1000), Duration::from_secs(300));
        assert!(o.lease() >= o.timeout * 3);
    }
}
