//! What a scenario reports: named figures, each with the goal that judges it (if the
//! issue sets one) and the raw limit it is read against (if one is relevant).

use serde::{Deserialize, Serialize};

/// A goal on one figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// The figure must be below this.
    Below(f64),
    /// The figure must be at least this.
    AtLeast(f64),
}

impl Goal {
    /// Whether `value` meets the goal.
    pub fn met(self, value: f64) -> bool {
        match self {
            Goal::Below(limit) => value < limit,
            Goal::AtLeast(limit) => value >= limit,
        }
    }
}

/// Which raw limit (from the `limits` scenario of the same run) a figure is read
/// against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawBasis {
    /// A rate, as a share of raw autocommit single-row INSERTs (one connection).
    PgInsertRate,
    /// A rate, as a share of raw single XADDs (one connection).
    RedisXaddRate,
    /// A latency, as a multiple of one raw autocommit INSERT's median latency (what a
    /// durable commit costs on this machine).
    PgInsertLatency,
    /// A latency, as a multiple of the median Postgres round trip (`SELECT 1`): the
    /// floor under any read.
    PgRoundTripLatency,
}

impl RawBasis {
    /// The id of the raw measurement this basis reads.
    pub fn measurement_id(self) -> &'static str {
        match self {
            RawBasis::PgInsertRate | RawBasis::PgInsertLatency => "pg.insert.single.x1",
            RawBasis::RedisXaddRate => "redis.xadd.single.x1",
            RawBasis::PgRoundTripLatency => "pg.roundtrip.select1",
        }
    }
}

/// A figure read against a raw limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawRatio {
    /// The basis.
    pub basis: RawBasis,
    /// The raw figure (events/s for rates, ms for latencies).
    pub raw: f64,
    /// `figure / raw`.
    pub ratio: f64,
    /// For people, e.g. `23.4 % of raw INSERT ×1 (3,128/s)`.
    pub text: String,
}

/// One number a scenario produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// What it is, e.g. `median submit → ExecutionCompleted`.
    pub name: String,
    /// The value; None when it could not be measured (shown as "n/a").
    pub value: Option<f64>,
    /// Its unit (`ms`, `tasks/s`, `s`…).
    pub unit: String,
    /// The goal, if the issue sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<Goal>,
    /// Whether the goal is met (None without a goal or a value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
    /// The raw limit it is read against, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<RawBasis>,
    /// Filled in by the suite when the raw limits were measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_raw: Option<RawRatio>,
}

impl Figure {
    /// A figure with no goal and no raw basis.
    pub fn new(name: impl Into<String>, value: Option<f64>, unit: &str) -> Self {
        Self {
            name: name.into(),
            value,
            unit: unit.to_owned(),
            goal: None,
            met: None,
            basis: None,
            vs_raw: None,
        }
    }

    /// Sets the goal and judges the value against it.
    pub fn goal(mut self, goal: Goal) -> Self {
        self.goal = Some(goal);
        self.met = self.value.map(|v| goal.met(v));
        self
    }

    /// Sets the raw basis.
    pub fn basis(mut self, basis: RawBasis) -> Self {
        self.basis = Some(basis);
        self
    }

    /// The goal as text, e.g. `< 20 ms`.
    pub fn goal_text(&self) -> Option<String> {
        self.goal.map(|g| match g {
            Goal::Below(v) => format!("< {} {}", plain(v), self.unit),
            Goal::AtLeast(v) => format!("≥ {} {}", plain(v), self.unit),
        })
    }
}

/// `5000.0` as `5,000`, `0.6` as `0.6`.
fn plain(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() >= 1000.0 {
        crate::report::thousands(v)
    } else {
        format!("{v}")
    }
}

/// The p50 and p99 figures of a latency summary, in ms, read against `basis`.
pub fn latency_figures(
    what: &str,
    summary: Option<&crate::stats::Millis>,
    basis: RawBasis,
) -> Vec<Figure> {
    vec![
        Figure::new(format!("{what} p50"), summary.map(|m| m.p50), "ms").basis(basis),
        Figure::new(format!("{what} p99"), summary.map(|m| m.p99), "ms").basis(basis),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_judge_values() {
        let f = Figure::new("x", Some(19.0), "ms").goal(Goal::Below(20.0));
        assert_eq!(f.met, Some(true));
        assert_eq!(f.goal_text().as_deref(), Some("< 20 ms"));
        let f = Figure::new("y", Some(4000.0), "tasks/s").goal(Goal::AtLeast(5000.0));
        assert_eq!(f.met, Some(false));
        assert_eq!(f.goal_text().as_deref(), Some("≥ 5,000 tasks/s"));
        assert_eq!(
            Figure::new("z", None, "ms").goal(Goal::Below(1.0)).met,
            None
        );
    }
}
