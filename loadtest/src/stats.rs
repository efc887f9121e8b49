//! The numbers a measurement produces and how rounds are summarised. A single round is
//! noisy on a shared machine (a checkpoint, autovacuum, another build), so every
//! measurement runs several rounds and reports the median, keeping each round's figures
//! for anyone who wants to see the spread.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// What a measurement exercises; decides where the report shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Appends through Conflux's event store.
    Conflux,
    /// Raw INSERTs into a copy of the `events` table.
    RawPostgres,
    /// Raw XADDs to a Redis stream.
    RawRedis,
    /// One trivial request at a time, to time the round trip.
    RoundTrip,
}

/// What a measurement is, independent of its results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeInfo {
    /// Stable machine-readable id, e.g. `pg.insert.single.x8`.
    pub id: String,
    /// Human label, e.g. `pg raw INSERT autocommit ×8`.
    pub label: String,
    /// What it exercises.
    pub kind: Kind,
    /// Concurrent workers (tasks, each with its own connection where one applies).
    pub workers: usize,
    /// Events each call commits (1 for single appends, 100 for batches).
    pub events_per_call: u64,
}

/// One round of one measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Events committed (for round trips: calls made).
    pub events: u64,
    /// Calls made (appends, statements, pipelines, pings).
    pub calls: u64,
    /// Wall time from start until the last worker finished its last call, in seconds.
    pub elapsed_secs: f64,
    /// `events / elapsed_secs`.
    pub rate: f64,
    /// Median latency of one call, in microseconds.
    pub p50_us: f64,
    /// 99th percentile latency of one call, in microseconds.
    pub p99_us: f64,
    /// Probe-specific figures for this round (e.g. the store's events per transaction).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, f64>,
}

/// Per-call latencies of one worker, in nanoseconds.
pub struct Latencies(Histogram<u64>);

impl Latencies {
    /// An empty histogram covering 1 ns to 60 s at 3 significant digits.
    pub fn new() -> Result<Self> {
        Histogram::new_with_bounds(1, 60_000_000_000, 3)
            .map(Self)
            .context("cannot create a latency histogram")
    }

    /// Records one call.
    pub fn record(&mut self, nanos: u64) {
        self.0.saturating_record(nanos.max(1));
    }

    /// Adds another worker's latencies.
    pub fn merge(&mut self, other: &Latencies) -> Result<()> {
        self.0
            .add(&other.0)
            .context("cannot merge latency histograms")
    }

    /// The latency at `quantile` (0..=1), in microseconds.
    pub fn quantile_us(&self, quantile: f64) -> f64 {
        self.0.value_at_quantile(quantile) as f64 / 1_000.0
    }
}

impl Sample {
    /// Summarises a round: `events` committed by `calls` calls in `elapsed_secs`.
    pub fn new(events: u64, calls: u64, elapsed_secs: f64, latencies: &Latencies) -> Self {
        let rate = if elapsed_secs > 0.0 {
            events as f64 / elapsed_secs
        } else {
            0.0
        };
        Self {
            events,
            calls,
            elapsed_secs,
            rate,
            p50_us: latencies.quantile_us(0.5),
            p99_us: latencies.quantile_us(0.99),
            details: BTreeMap::new(),
        }
    }
}

/// One measurement's result over every round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// What was measured.
    #[serde(flatten)]
    pub info: ProbeInfo,
    /// Median of the rounds' rates, in events per second.
    pub median_rate: f64,
    /// Median of the rounds' p50 call latencies, in microseconds.
    pub median_p50_us: f64,
    /// Median of the rounds' p99 call latencies, in microseconds.
    pub median_p99_us: f64,
    /// Median over rounds of each probe-specific figure.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, f64>,
    /// Every round, in the order run.
    pub rounds: Vec<Sample>,
}

impl Measurement {
    /// Summarises `rounds` of the measurement described by `info`.
    pub fn new(info: ProbeInfo, rounds: Vec<Sample>) -> Self {
        let pick = |f: fn(&Sample) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
        Self {
            median_rate: pick(|s| s.rate),
            median_p50_us: pick(|s| s.p50_us),
            median_p99_us: pick(|s| s.p99_us),
            details: median_details(&rounds),
            info,
            rounds,
        }
    }
}

/// For each detail key any round has, the median over the rounds that have it.
fn median_details(rounds: &[Sample]) -> BTreeMap<String, f64> {
    let mut values: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (key, value) in rounds.iter().flat_map(|s| &s.details) {
        values.entry(key).or_default().push(*value);
    }
    values
        .into_iter()
        .map(|(key, v)| (key.to_owned(), median(&v)))
        .collect()
}

/// The median of `values` (the mean of the middle two for an even count; 0 if empty).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Percentiles of a set of durations, in milliseconds (HDR histogram, 3 significant
/// digits, 1 µs to 10 min).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Millis {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// Collects durations in microseconds and summarises them as [`Millis`].
#[derive(Debug, Clone)]
pub struct MicrosHistogram(Histogram<u64>);

impl MicrosHistogram {
    /// An empty histogram covering 1 µs to 10 minutes.
    pub fn new() -> Result<Self> {
        Histogram::new_with_bounds(1, 600_000_000, 3)
            .map(Self)
            .context("cannot create a latency histogram")
    }

    /// Records one duration (clamped into the histogram's range).
    pub fn record(&mut self, duration: std::time::Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.max(1));
    }

    /// Records one duration given as a (possibly negative) number of microseconds;
    /// negative values (clock granularity) count as 1 µs.
    pub fn record_micros(&mut self, micros: i64) {
        self.0
            .saturating_record(u64::try_from(micros).unwrap_or(0).max(1));
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &MicrosHistogram) -> Result<()> {
        self.0
            .add(&other.0)
            .context("cannot merge latency histograms")
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The percentiles, or None when nothing was recorded.
    pub fn summary(&self) -> Option<Millis> {
        if self.0.is_empty() {
            return None;
        }
        let ms = |q: f64| self.0.value_at_quantile(q) as f64 / 1_000.0;
        Some(Millis {
            count: self.0.len(),
            p50: ms(0.5),
            p95: ms(0.95),
            p99: ms(0.99),
            max: self.0.max() as f64 / 1_000.0,
        })
    }
}

/// The percentiles of `samples`, or None if there are none.
pub fn millis_of(samples: &[std::time::Duration]) -> Result<Option<Millis>> {
    let mut h = MicrosHistogram::new()?;
    for s in samples {
        h.record(*s);
    }
    Ok(h.summary())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn a_sample_divides_events_by_time() -> Result<()> {
        let mut latencies = Latencies::new()?;
        latencies.record(2_000);
        let s = Sample::new(500, 5, 2.0, &latencies);
        assert_eq!(s.rate, 250.0);
        assert!((s.p50_us - 2.0).abs() < 0.01);
        Ok(())
    }

    #[test]
    fn millis_summarise_microseconds() -> Result<()> {
        let samples: Vec<_> = (1..=100).map(std::time::Duration::from_millis).collect();
        let m = millis_of(&samples)?.ok_or_else(|| anyhow::anyhow!("no summary"))?;
        assert_eq!(m.count, 100);
        assert!((m.p50 - 50.0).abs() < 0.1, "{m:?}");
        assert!((m.max - 100.0).abs() < 0.1, "{m:?}");
        assert!(millis_of(&[])?.is_none());
        Ok(())
    }
}
