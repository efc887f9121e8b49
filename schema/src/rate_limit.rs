//! Rate limits on tasks: `"rate_limit": {"key": "<CEL>", "per_second": R, "burst": B}`
//! on an `agent`, `http` or `sleep` task (or a compensation, or a map's template).
//!
//! Every attempt of the task takes a token of the bucket its key names (per tenant)
//! before it starts; tokens come back at `per_second`, and at most `burst` wait unused.
//! The key is a CEL expression over `input`, the attempt's resolved input (so
//! `input.customer` limits per customer, `"stripe"` is one bucket for everything): it
//! must give a string or a number. The arithmetic is GCRA (the "virtual scheduling"
//! form of a token bucket): one time per bucket, the theoretical arrival time `tat`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The most tokens per second one bucket may be given.
pub const MAX_PER_SECOND: f64 = 1_000_000.0;

/// A task's rate limit.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// CEL over `input` (the attempt's resolved input) naming the bucket: a string or a
    /// number. Attempts of every task and execution of the tenant with the same key
    /// share the bucket.
    #[schema(example = "input.customer")]
    pub key: String,
    /// Tokens per second (a finite number above 0).
    #[schema(example = 50.0)]
    pub per_second: f64,
    /// Most attempts that may start at once after a quiet spell (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, example = 5)]
    pub burst: Option<u32>,
}

impl RateLimit {
    /// The burst in force (1 when not given).
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(1).max(1)
    }

    /// Why the limit cannot be used, naming the field: a key that is not a CEL
    /// expression over `input` alone, a rate that is not a positive finite number (at
    /// most [`MAX_PER_SECOND`]), a burst of 0.
    pub fn check(&self) -> Result<(), String> {
        let read =
            crate::condition::check(&self.key).map_err(|e| format!("rate_limit.key: {e}"))?;
        if !read.is_empty() {
            return Err("rate_limit.key may read `input` only, not `tasks`".to_owned());
        }
        if !self.per_second.is_finite()
            || self.per_second <= 0.0
            || self.per_second > MAX_PER_SECOND
        {
            return Err(format!(
                "rate_limit.per_second must be above 0 and at most {MAX_PER_SECOND}, got {}",
                self.per_second
            ));
        }
        if self.burst == Some(0) {
            return Err("rate_limit.burst must be at least 1".to_owned());
        }
        Ok(())
    }

    /// The bucket an attempt with this resolved `input` takes its token from.
    pub fn key_for(&self, input: &Value) -> Result<String, String> {
        crate::condition::evaluate_key(&self.key, input).map_err(|e| format!("rate_limit.key: {e}"))
    }

    /// The spacing of tokens, in microseconds (at least 1).
    pub fn interval_micros(&self) -> u64 {
        ((1e6 / self.per_second).round() as u64).max(1)
    }
}

/// One GCRA step for a bucket whose theoretical arrival time is `tat` (None: unused),
/// at `now`, with tokens `interval` apart and `burst` of them at most: `Ok(new tat)`
/// when a token is granted, `Err(wait)` (how long until one is) when not. All in
/// microseconds.
pub fn gcra(tat: Option<u64>, now: u64, interval: u64, burst: u32) -> Result<u64, u64> {
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + interval;
    let allowed_at = new_tat.saturating_sub(interval * u64::from(burst));
    if allowed_at <= now {
        Ok(new_tat)
    } else {
        Err(allowed_at - now)
    }
}

/// In-memory buckets (for the embedded mode): bucket name → theoretical arrival time.
#[derive(Debug, Default)]
pub struct Buckets(HashMap<String, u64>);

impl Buckets {
    /// Takes a token of `bucket` at `now` (microseconds), or says how long to wait.
    pub fn take(&mut self, bucket: &str, now: u64, interval: u64, burst: u32) -> Result<(), u64> {
        let tat = self.0.get(bucket).copied();
        let new_tat = gcra(tat, now, interval, burst)?;
        self.0.insert(bucket.to_owned(), new_tat);
        // Buckets back to full are forgotten, so the map holds busy ones only.
        self.0.retain(|_, t| *t > now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(key: &str, per_second: f64, burst: Option<u32>) -> RateLimit {
        RateLimit {
            key: key.to_owned(),
            per_second,
            burst,
        }
    }

    #[test]
    fn a_burst_passes_then_tokens_come_at_the_rate() {
        let mut b = Buckets::default();
        let interval = 20_000; // 50 per second
        for _ in 0..5 {
            assert_eq!(b.take("k", 1_000_000, interval, 5), Ok(()));
        }
        let wait = b
            .take("k", 1_000_000, interval, 5)
            .expect_err("the burst is spent");
        assert_eq!(wait, interval);
        assert_eq!(b.take("k", 1_000_000 + interval, interval, 5), Ok(()));
        assert!(
            b.take("other", 1_000_000, interval, 5).is_ok(),
            "buckets are apart"
        );
    }

    #[test]
    fn over_a_long_run_the_rate_holds() {
        let mut b = Buckets::default();
        let (interval, burst) = (20_000, 5);
        let mut granted = 0;
        // Ask every millisecond for 10 s.
        for ms in 0..10_000u64 {
            if b.take("k", ms * 1000, interval, burst).is_ok() {
                granted += 1;
            }
        }
        assert!((500..=505).contains(&granted), "{granted}");
    }

    #[test]
    fn limits_are_checked() {
        assert!(limit("input.customer", 50.0, Some(5)).check().is_ok());
        assert!(limit("'stripe'", 0.5, None).check().is_ok());
        for bad in [
            limit("input.", 1.0, None),
            limit("tasks.a.output", 1.0, None),
            limit("'k'", 0.0, None),
            limit("'k'", -1.0, None),
            limit("'k'", f64::INFINITY, None),
            limit("'k'", 1.0, Some(0)),
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_strings_or_numbers() {
        let input = serde_json::json!({"customer": "acme", "n": 7, "obj": {}});
        assert_eq!(
            limit("input.customer", 1.0, None).key_for(&input),
            Ok("acme".into())
        );
        assert_eq!(limit("input.n", 1.0, None).key_for(&input), Ok("7".into()));
        assert!(limit("input.obj", 1.0, None).key_for(&input).is_err());
        assert!(limit("input.missing", 1.0, None).key_for(&input).is_err());
    }
}
