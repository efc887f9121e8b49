//! Agents built into the load tester, speaking only API.md: each poller registers as an
//! agent of one role, long-polls `POST /api/v1/agents/{id}/poll`, does its [`Work`]
//! for every leased task, and completes it by lease. When each task was received is
//! recorded (this machine's wall clock), keyed by execution, task and attempt, so
//! scenarios can compute dispatch → receipt latencies against the server's
//! `TaskDispatched.recorded_at`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::{ApiFailure, Client};

/// Leases taken per poll.
const POLL_MAX: usize = 10;

/// What an agent does with a task before completing it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Work {
    /// Nothing: complete at once.
    Nothing,
    /// Busy CPU work (SHA-256 over a buffer, repeatedly) for about this long, on a
    /// blocking thread.
    Cpu(Duration),
}

/// Which attempt of which task of which execution.
pub type AttemptKey = (String, String, u64);

/// The agents' shared record.
#[derive(Default)]
struct Shared {
    received: Mutex<HashMap<AttemptKey, DateTime<Utc>>>,
    completed: AtomicU64,
    stale: AtomicU64,
}

/// A set of polling agents of one role, running until [`AgentPool::stop`].
pub struct AgentPool {
    stop: CancellationToken,
    pollers: Vec<JoinHandle<Result<()>>>,
    shared: Arc<Shared>,
}

/// What the agents did.
#[derive(Debug, Default)]
pub struct AgentReport {
    /// When each attempt reached an agent (wall clock of this machine).
    pub received: HashMap<AttemptKey, DateTime<Utc>>,
    /// Tasks completed.
    pub completed: u64,
    /// Completions the server refused as `409 stale_attempt` (the attempt had timed
    /// out or been cancelled meanwhile).
    pub stale: u64,
}

impl AgentPool {
    /// Registers `pollers` agents of `role` and starts them long-polling with `wait`.
    pub async fn start(
        client: &Client,
        role: &str,
        pollers: usize,
        wait: Duration,
        work: Work,
    ) -> Result<Self> {
        Self::start_with_capabilities(client, role, pollers, wait, work, &[&[]]).await
    }

    /// [`AgentPool::start`], agent `i` declaring the capabilities `sets[i % sets.len()]`
    /// (so that routing scores agents that differ).
    pub async fn start_with_capabilities(
        client: &Client,
        role: &str,
        pollers: usize,
        wait: Duration,
        work: Work,
        sets: &[&[&str]],
    ) -> Result<Self> {
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared::default());
        let mut handles = Vec::with_capacity(pollers);
        for i in 0..pollers.max(1) {
            let agent_id = client
                .register_agent(
                    &format!("loadtest-{role}-{i}"),
                    &[role],
                    sets.get(i % sets.len().max(1)).copied().unwrap_or_default(),
                    POLL_MAX as u32,
                )
                .await
                .with_context(|| format!("registering agent {i} of role {role}"))?;
            let poller = Poller {
                client: client.clone(),
                agent_id,
                wait,
                work,
                shared: shared.clone(),
                stop: stop.clone(),
            };
            handles.push(tokio::spawn(poller.run()));
        }
        Ok(Self {
            stop,
            pollers: handles,
            shared,
        })
    }

    /// Tasks completed so far.
    pub fn completed(&self) -> u64 {
        self.shared.completed.load(Ordering::Relaxed)
    }

    /// Stops every poller (a poll in flight is abandoned) and returns what they did; the
    /// first poller error, if any, is the error.
    pub async fn stop(mut self) -> Result<AgentReport> {
        self.stop.cancel();
        let mut first_error = None;
        for handle in std::mem::take(&mut self.pollers) {
            let outcome = handle
                .await
                .map_err(|e| anyhow!("an agent poller panicked: {e}"));
            if let Err(e) = outcome.and_then(|r| r) {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let received = std::mem::take(&mut *lock(&self.shared.received));
        Ok(AgentReport {
            received,
            completed: self.shared.completed.load(Ordering::Relaxed),
            stale: self.shared.stale.load(Ordering::Relaxed),
        })
    }
}

impl Drop for AgentPool {
    /// A pool dropped on an error path stops polling too.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Poller {
    client: Client,
    agent_id: String,
    wait: Duration,
    work: Work,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Poller {
    async fn run(self) -> Result<()> {
        loop {
            let tasks = tokio::select! {
                _ = self.stop.cancelled() => return Ok(()),
                polled = self.client.poll(&self.agent_id, POLL_MAX, self.wait) => polled?,
            };
            let now = Utc::now();
            {
                let mut received = lock(&self.shared.received);
                for t in &tasks {
                    received.insert(attempt_key(t), now);
                }
            }
            let work = tasks.iter().map(|t| self.handle(t));
            futures::future::try_join_all(work).await?;
        }
    }

    async fn handle(&self, task: &Value) -> Result<()> {
        let lease = task["lease_id"]
            .as_str()
            .ok_or_else(|| anyhow!("a leased task without lease_id: {task}"))?;
        if let Work::Cpu(duration) = self.work {
            tokio::task::spawn_blocking(move || burn_cpu(duration))
                .await
                .context("the CPU work panicked")?;
        }
        match self.client.complete(lease, &json!({"ok": true})).await {
            Ok(()) => {
                self.shared.completed.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) if is_stale(&e) => {
                self.shared.stale.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(e.context(format!("completing lease {lease}"))),
        }
    }
}

/// Whether the server refused a completion as `409 stale_attempt`.
fn is_stale(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiFailure>()
        .is_some_and(|f| f.status.as_u16() == 409 && f.body["error"]["code"] == "stale_attempt")
}

/// The key of a leased task (`execution_id`, `task_id`, `attempt`).
pub fn attempt_key(task: &Value) -> AttemptKey {
    (
        task["execution_id"].as_str().unwrap_or_default().to_owned(),
        task["task_id"].as_str().unwrap_or_default().to_owned(),
        task["attempt"].as_u64().unwrap_or(0),
    )
}

/// Hashes a 4 KiB buffer over and over until `duration` has passed: real CPU work the
/// optimiser cannot remove. Returns the number of rounds.
pub fn burn_cpu(duration: Duration) -> u64 {
    let started = Instant::now();
    let mut block = [7u8; 4096];
    let mut rounds = 0u64;
    while started.elapsed() < duration {
        let digest = Sha256::digest(block);
        block[..32].copy_from_slice(&digest);
        rounds += 1;
    }
    std::hint::black_box(block);
    rounds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_work_lasts_about_as_long_as_asked() {
        let started = Instant::now();
        let rounds = burn_cpu(Duration::from_millis(5));
        assert!(rounds > 0);
        assert!(started.elapsed() >= Duration::from_millis(5));
    }

    #[test]
    fn leased_tasks_are_keyed_by_attempt() {
        let t = json!({"execution_id": "e", "task_id": "t", "attempt": 2});
        assert_eq!(attempt_key(&t), ("e".into(), "t".into(), 2));
    }
}
