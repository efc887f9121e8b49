//! Drives measurements. A [`Probe`] says what is measured and builds fresh [`Worker`]s
//! for each round (connections are opened before the clock starts); [`run_timed`] runs
//! them concurrently for a fixed time, counting committed events and timing every call.
//!
//! Rounds are interleaved — round 1 of every probe, then round 2… — and each Conflux
//! probe runs right beside its raw reference, so slow drift (table growth, checkpoints,
//! autovacuum, a neighbour's build) falls on both sides of a ratio alike.
//!
//! Later scenarios (HTTP, WebSocket) plug in by implementing [`Probe`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_trait::async_trait;

use crate::stats::{Latencies, Measurement, ProbeInfo, Sample};

/// One client doing one thing in a loop.
#[async_trait]
pub trait Worker: Send {
    /// Makes one call (an append, a statement, a pipeline, a ping) and returns how many
    /// events it committed (for round trips: 1).
    async fn call(&mut self) -> Result<u64>;
}

/// One measurement: its description and a way to get ready-to-run workers.
///
/// Each round calls [`Probe::workers`], runs the workers for the round's duration,
/// then calls [`Probe::after_round`]; only the middle part is timed.
#[async_trait]
pub trait Probe: Send + Sync {
    /// What is measured.
    fn info(&self) -> ProbeInfo;

    /// Fresh workers for one round, connected and ready.
    async fn workers(&self) -> Result<Vec<Box<dyn Worker>>>;

    /// Probe-specific figures about the round just run (kept in [`Sample::details`]);
    /// none by default.
    async fn after_round(&self, _sample: &Sample) -> Result<BTreeMap<String, f64>> {
        Ok(BTreeMap::new())
    }
}

/// How long each measurement runs and how often it is repeated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunSettings {
    /// Length of one round of one measurement.
    pub duration: Duration,
    /// Rounds per measurement (the report shows the median).
    pub rounds: usize,
}

struct Tally {
    events: u64,
    calls: u64,
    latencies: Latencies,
}

/// Runs `workers` concurrently until `duration` has passed (each finishes the call it
/// is in) and returns what they achieved together.
pub async fn run_timed(workers: Vec<Box<dyn Worker>>, duration: Duration) -> Result<Sample> {
    let start = Instant::now();
    let deadline = start + duration;
    let handles: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            tokio::spawn(async move {
                let mut tally = Tally {
                    events: 0,
                    calls: 0,
                    latencies: Latencies::new()?,
                };
                loop {
                    let began = Instant::now();
                    if began >= deadline {
                        break;
                    }
                    tally.events += worker.call().await?;
                    tally.calls += 1;
                    let nanos = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    tally.latencies.record(nanos);
                }
                anyhow::Ok(tally)
            })
        })
        .collect();
    let mut total = Tally {
        events: 0,
        calls: 0,
        latencies: Latencies::new()?,
    };
    for handle in handles {
        let tally = handle.await.context("a benchmark worker panicked")??;
        total.events += tally.events;
        total.calls += tally.calls;
        total.latencies.merge(&tally.latencies)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Sample::new(
        total.events,
        total.calls,
        elapsed,
        &total.latencies,
    ))
}

/// Runs every probe for `settings.rounds` interleaved rounds, printing a progress line
/// per round on stderr, and returns one [`Measurement`] per probe, in probe order.
pub async fn run_probes(
    probes: &[Box<dyn Probe>],
    settings: RunSettings,
) -> Result<Vec<Measurement>> {
    let infos: Vec<ProbeInfo> = probes.iter().map(|p| p.info()).collect();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::with_capacity(settings.rounds); probes.len()];
    let total = probes.len();
    for round in 1..=settings.rounds {
        for (i, (probe, info)) in probes.iter().zip(&infos).enumerate() {
            eprint!(
                "[{}/{total}] {} … round {round}/{}",
                i + 1,
                info.label,
                settings.rounds
            );
            let workers = probe
                .workers()
                .await
                .with_context(|| format!("preparing {}", info.label))?;
            let mut sample = run_timed(workers, settings.duration)
                .await
                .with_context(|| format!("measuring {}", info.label))?;
            sample.details = probe
                .after_round(&sample)
                .await
                .with_context(|| format!("summarising {}", info.label))?;
            eprintln!(
                " → {:.0} events/s, p50 {:.0} µs",
                sample.rate, sample.p50_us
            );
            samples[i].push(sample);
        }
    }
    Ok(infos
        .into_iter()
        .zip(samples)
        .map(|(info, rounds)| Measurement::new(info, rounds))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Kind;

    struct Sleeper;

    #[async_trait]
    impl Worker for Sleeper {
        async fn call(&mut self) -> Result<u64> {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(10)
        }
    }

    struct Sleepers(usize);

    #[async_trait]
    impl Probe for Sleepers {
        fn info(&self) -> ProbeInfo {
            ProbeInfo {
                id: "test.sleep".into(),
                label: "sleep".into(),
                kind: Kind::RoundTrip,
                workers: self.0,
                events_per_call: 10,
            }
        }

        async fn workers(&self) -> Result<Vec<Box<dyn Worker>>> {
            Ok((0..self.0)
                .map(|_| Box::new(Sleeper) as Box<dyn Worker>)
                .collect())
        }
    }

    #[tokio::test]
    async fn every_round_of_every_probe_is_recorded() -> Result<()> {
        let probes: Vec<Box<dyn Probe>> = vec![Box::new(Sleepers(1)), Box::new(Sleepers(3))];
        let settings = RunSettings {
            duration: Duration::from_millis(30),
            rounds: 2,
        };
        let measurements = run_probes(&probes, settings).await?;
        assert_eq!(measurements.len(), 2);
        for m in &measurements {
            assert_eq!(m.rounds.len(), 2);
            assert!(m.median_rate > 0.0);
            assert!(m.rounds.iter().all(|s| s.events == s.calls * 10));
        }
        Ok(())
    }
}
