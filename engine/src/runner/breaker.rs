//! Per-host circuit breakers, as a pure state machine.
//!
//! A host that keeps failing (5xx, refused connections, timeouts) should not receive
//! every retry of every execution at once: after `failure_threshold` consecutive
//! failures its breaker opens, and calls fail fast for `open_for` without touching the
//! network. Then exactly one trial call is let through (half-open); its success closes
//! the breaker, its failure opens it again.
//!
//! No clock reads and no I/O: every method takes `now`, so the unit tests below step
//! time by hand. The runner keeps one [`Breakers`] behind a mutex and never holds the
//! lock across an `.await`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Default bound on the hosts tracked at once (see [`Breakers::with_max_hosts`]).
pub const DEFAULT_MAX_HOSTS: usize = 10_000;

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerOptions {
    /// Consecutive failures that open the breaker (0 is treated as 1).
    pub failure_threshold: u32,
    /// How long an open breaker fails calls fast before letting one trial through.
    pub open_for: Duration,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        BreakerOptions {
            failure_threshold: 5,
            open_for: Duration::from_secs(10),
        }
    }
}

/// The phase of one host's breaker, as `/metrics` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerPhase {
    /// Calls go through.
    Closed,
    /// Calls fail fast.
    Open,
    /// One trial call may go through; the others fail fast.
    HalfOpen,
}

impl BreakerPhase {
    /// `"closed"`, `"open"` or `"half_open"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerPhase::Closed => "closed",
            BreakerPhase::Open => "open",
            BreakerPhase::HalfOpen => "half_open",
        }
    }
}

/// One host's breaker, as reported by [`Breakers::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerState {
    /// `host:port` (IPv6 hosts in brackets).
    pub host: String,
    /// The phase at the time of the snapshot.
    pub state: BreakerPhase,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// How many times the breaker has opened (re-opening after a failed trial counts).
    pub times_opened: u64,
}

/// Leave to make one call to `host`; hand it back with [`Breakers::record`] or
/// [`Breakers::abandon`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a permit must be recorded or abandoned"]
pub struct Permit {
    host: String,
    trial: bool,
}

impl Permit {
    /// The host the permit is for.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether this is the half-open trial call.
    pub fn is_trial(&self) -> bool {
        self.trial
    }
}

/// Why a call was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// The breaker is open until the given instant.
    Open {
        /// When the breaker becomes half-open.
        until: Instant,
    },
    /// The breaker is half-open and its one trial call is still in flight.
    TrialInFlight,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { trial_in_flight: bool },
}

#[derive(Debug, Clone)]
struct Entry {
    phase: Phase,
    consecutive_failures: u32,
    times_opened: u64,
    last_used: Instant,
}

impl Entry {
    /// Open becomes half-open once `until` has passed; nothing else moves with time.
    fn phase_at(&self, now: Instant) -> Phase {
        match self.phase {
            Phase::Open { until } if now >= until => Phase::HalfOpen {
                trial_in_flight: false,
            },
            phase => phase,
        }
    }

    /// A closed breaker with no failures says nothing an absent entry does not.
    fn is_idle(&self) -> bool {
        self.phase == Phase::Closed && self.consecutive_failures == 0
    }
}

/// The breakers of every host called, bounded in size.
#[derive(Debug)]
pub struct Breakers {
    options: BreakerOptions,
    max_hosts: usize,
    entries: HashMap<String, Entry>,
}

impl Breakers {
    /// Breakers with `options`, tracking at most [`DEFAULT_MAX_HOSTS`] hosts.
    pub fn new(options: BreakerOptions) -> Self {
        Breakers::with_max_hosts(options, DEFAULT_MAX_HOSTS)
    }

    /// Breakers tracking at most `max_hosts` hosts (at least 1). When full, idle
    /// entries (closed, no failures) are dropped first, then the least recently used.
    pub fn with_max_hosts(options: BreakerOptions, max_hosts: usize) -> Self {
        Breakers {
            options,
            max_hosts: max_hosts.max(1),
            entries: HashMap::new(),
        }
    }

    /// How many hosts are tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no host is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Asks to call `host` at `now`: a permit, or why the call must fail fast.
    pub fn admit(&mut self, host: &str, now: Instant) -> Result<Permit, Rejected> {
        let Some(entry) = self.entries.get_mut(host) else {
            // Unknown hosts are closed; the entry is created when a result is recorded.
            return Ok(Permit {
                host: host.to_owned(),
                trial: false,
            });
        };
        entry.last_used = now;
        match entry.phase_at(now) {
            Phase::Closed => Ok(Permit {
                host: host.to_owned(),
                trial: false,
            }),
            Phase::Open { until } => Err(Rejected::Open { until }),
            Phase::HalfOpen {
                trial_in_flight: true,
            } => Err(Rejected::TrialInFlight),
            Phase::HalfOpen {
                trial_in_flight: false,
            } => {
                entry.phase = Phase::HalfOpen {
                    trial_in_flight: true,
                };
                Ok(Permit {
                    host: host.to_owned(),
                    trial: true,
                })
            }
        }
    }

    /// Records how the call made under `permit` ended: `success` is true when the host
    /// answered (any 2xx, 3xx or 4xx), false for 5xx, connection errors and timeouts.
    ///
    /// A result from a call admitted while closed, arriving after the breaker opened,
    /// is ignored: only the trial decides when an open breaker closes.
    pub fn record(&mut self, permit: Permit, success: bool, now: Instant) {
        let threshold = self.options.failure_threshold.max(1);
        let open_until = now + self.options.open_for;
        if !self.entries.contains_key(&permit.host) {
            if success {
                return; // closed with no failures: nothing worth tracking
            }
            self.make_room(now);
            self.entries.insert(
                permit.host.clone(),
                Entry {
                    phase: Phase::Closed,
                    consecutive_failures: 0,
                    times_opened: 0,
                    last_used: now,
                },
            );
        }
        let Some(entry) = self.entries.get_mut(&permit.host) else {
            return;
        };
        entry.last_used = now;
        let phase = entry.phase_at(now);
        match (phase, permit.trial, success) {
            (Phase::Closed, false, true) => entry.consecutive_failures = 0,
            (Phase::Closed, false, false) => {
                entry.consecutive_failures = entry.consecutive_failures.saturating_add(1);
                if entry.consecutive_failures >= threshold {
                    entry.phase = Phase::Open { until: open_until };
                    entry.times_opened += 1;
                }
            }
            (
                Phase::HalfOpen {
                    trial_in_flight: true,
                },
                true,
                true,
            ) => {
                entry.phase = Phase::Closed;
                entry.consecutive_failures = 0;
            }
            (
                Phase::HalfOpen {
                    trial_in_flight: true,
                },
                true,
                false,
            ) => {
                entry.phase = Phase::Open { until: open_until };
                entry.consecutive_failures = entry.consecutive_failures.saturating_add(1);
                entry.times_opened += 1;
            }
            // A stale result (admitted before the breaker opened or changed phase).
            _ => {}
        }
    }

    /// Gives back a permit whose call never finished (cancelled): the host said
    /// nothing, so a trial slot is freed for the next caller and nothing is counted.
    pub fn abandon(&mut self, permit: Permit, now: Instant) {
        if !permit.trial {
            return;
        }
        if let Some(entry) = self.entries.get_mut(&permit.host) {
            if entry.phase_at(now)
                == (Phase::HalfOpen {
                    trial_in_flight: true,
                })
            {
                entry.phase = Phase::HalfOpen {
                    trial_in_flight: false,
                };
            }
        }
    }

    /// Every tracked host's breaker as of `now`, sorted by host.
    pub fn snapshot(&self, now: Instant) -> Vec<BreakerState> {
        let mut states: Vec<BreakerState> = self
            .entries
            .iter()
            .map(|(host, entry)| BreakerState {
                host: host.clone(),
                state: match entry.phase_at(now) {
                    Phase::Closed => BreakerPhase::Closed,
                    Phase::Open { .. } => BreakerPhase::Open,
                    Phase::HalfOpen { .. } => BreakerPhase::HalfOpen,
                },
                consecutive_failures: entry.consecutive_failures,
                times_opened: entry.times_opened,
            })
            .collect();
        states.sort_by(|a, b| a.host.cmp(&b.host));
        states
    }

    /// Frees one slot for a new host: idle entries go first, then the least recently
    /// used (only reached when `max_hosts` hosts are all failing at once).
    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < self.max_hosts {
            return;
        }
        self.entries.retain(|_, entry| !entry.is_idle());
        while self.entries.len() >= self.max_hosts {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| (entry.phase_at(now) != Phase::Closed, entry.last_used))
                .map(|(host, _)| host.clone());
            match oldest {
                Some(host) => self.entries.remove(&host),
                None => return,
            };
        }
    }
}

#[cfg(test)]
#[path = "breaker_tests.rs"]
mod tests;
