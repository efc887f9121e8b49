//! The pure tick arithmetic: a cron expression read in a time zone (`croner`,
//! `chrono-tz`), the ticks that are due, and the execution id each tick makes. No I/O,
//! no clock: `now` is always an argument.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use conflux_schema::schedule::CatchUp;
use croner::Cron;
use uuid::Uuid;

/// A tick older than this (by the deciding server's clock) was missed, and runs only as
/// the schedule's `catch_up` says; a younger one is merely late and always runs.
pub const GRACE: Duration = Duration::from_secs(30);

/// At most this many ticks of one schedule are handled in one pass (the newest of
/// them); `catch_up: all` never starts more than this many missed ticks at once.
pub const MAX_TICKS: usize = 100;

/// The longest cron expression accepted.
const MAX_CRON_LEN: usize = 256;

/// The namespace of the execution ids ticks derive (uuid v5 of `<schedule>/<unix
/// seconds>`), apart from the namespaces of idempotency keys and workflow ids.
const TICK_NAMESPACE: Uuid = Uuid::from_u128(0x7d1e_3a52_c9b4_4e0f_a6d8_51f2_0b93_e7c4);

/// Why an expression or a zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CadenceError {
    /// The cron expression does not parse, or never fires.
    #[error("invalid cron expression {cron:?}: {reason}")]
    InvalidCron {
        /// The expression.
        cron: String,
        /// Why.
        reason: String,
    },
    /// Not an IANA time zone name.
    #[error("unknown time zone {0:?} (expected an IANA name such as \"UTC\" or \"Europe/Paris\")")]
    UnknownTimezone(String),
}

/// A cron expression read in a time zone.
#[derive(Debug, Clone)]
pub struct Cadence {
    cron: Cron,
    tz: Tz,
}

impl Cadence {
    /// Parses `cron` (5 fields, or 6 with seconds first) in `timezone`, as a new
    /// schedule must be: refuses an expression that never fires after `now`.
    pub fn validate(cron: &str, timezone: &str, now: DateTime<Utc>) -> Result<Self, CadenceError> {
        let cadence = Self::parse(cron, timezone)?;
        if cadence.next_after(now).is_none() {
            return Err(CadenceError::InvalidCron {
                cron: cron.to_owned(),
                reason: "it never fires".into(),
            });
        }
        Ok(cadence)
    }

    /// Parses `cron` (5 fields, or 6 with seconds first) in `timezone`.
    pub fn parse(cron: &str, timezone: &str) -> Result<Self, CadenceError> {
        let invalid = |reason: String| CadenceError::InvalidCron {
            cron: cron.to_owned(),
            reason,
        };
        let tz = Tz::from_str(timezone)
            .map_err(|_| CadenceError::UnknownTimezone(timezone.to_owned()))?;
        if cron.len() > MAX_CRON_LEN {
            return Err(invalid(format!("longer than {MAX_CRON_LEN} characters")));
        }
        let parsed = Cron::from_str(cron).map_err(|e| invalid(e.to_string()))?;
        Ok(Self { cron: parsed, tz })
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&whole_seconds(t).with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The last tick at or before `t`.
    pub fn at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&whole_seconds(t).with_timezone(&self.tz), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The ticks in `(after, now]` to handle now, oldest first: every tick within
    /// [`GRACE`] of `now`, and of the older (missed) ones what `catch_up` says — none,
    /// the newest, or all — never more than [`MAX_TICKS`] in all (the newest).
    pub fn due(
        &self,
        after: DateTime<Utc>,
        now: DateTime<Utc>,
        catch_up: CatchUp,
    ) -> Vec<DateTime<Utc>> {
        let grace = chrono::Duration::from_std(GRACE).unwrap_or_default();
        let mut newest_first = Vec::new();
        let mut cursor = self.at_or_before(now);
        while let Some(t) = cursor {
            if t <= after || newest_first.len() == MAX_TICKS {
                break;
            }
            newest_first.push(t);
            cursor = self
                .cron
                .find_previous_occurrence(&t.with_timezone(&self.tz), false)
                .ok()
                .map(|d| d.with_timezone(&Utc));
        }
        let (recent, missed): (Vec<_>, Vec<_>) =
            newest_first.into_iter().partition(|t| now - *t <= grace);
        let missed = match catch_up {
            CatchUp::None => Vec::new(),
            CatchUp::Latest => missed.into_iter().take(1).collect(),
            CatchUp::All => missed,
        };
        let mut ticks: Vec<_> = recent.into_iter().chain(missed).collect();
        ticks.reverse();
        ticks
    }
}

/// `t` without its fraction of a second (ticks are whole seconds).
fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// The execution tick `tick_at` of schedule `schedule_id` starts: the same id on every
/// server, so starting it twice is a version conflict, never a second execution.
pub fn tick_execution_id(schedule_id: Uuid, tick_at: DateTime<Utc>) -> Uuid {
    Uuid::new_v5(
        &TICK_NAMESPACE,
        format!("{schedule_id}/{}", tick_at.timestamp()).as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn bad_expressions_and_zones_are_refused() {
        let now = at("2026-01-01T00:00:00Z");
        let validate = |cron: &str, zone: &str| Cadence::validate(cron, zone, now);
        assert!(matches!(
            validate("not a cron", "UTC"),
            Err(CadenceError::InvalidCron { .. })
        ));
        assert!(matches!(
            validate("61 * * * *", "UTC"),
            Err(CadenceError::InvalidCron { .. })
        ));
        assert!(matches!(
            validate("0 0 31 2 *", "UTC"),
            Err(CadenceError::InvalidCron { .. })
        ));
        assert!(matches!(
            validate(&"* ".repeat(200), "UTC"),
            Err(CadenceError::InvalidCron { .. })
        ));
        assert_eq!(
            validate("* * * * *", "Mars/Olympus").unwrap_err(),
            CadenceError::UnknownTimezone("Mars/Olympus".into())
        );
        assert!(validate("*/10 * * * * *", "UTC").is_ok());
        assert!(validate("0 9 * * MON-FRI", "America/New_York").is_ok());
    }

    #[test]
    fn five_fields_tick_on_the_minute_six_on_the_second() {
        let minute = Cadence::parse("*/15 * * * *", "UTC").unwrap();
        assert_eq!(
            minute.next_after(at("2026-01-01T10:07:31Z")),
            Some(at("2026-01-01T10:15:00Z"))
        );
        let second = Cadence::parse("* * * * * *", "UTC").unwrap();
        assert_eq!(
            second.next_after(at("2026-01-01T10:07:31.250Z")),
            Some(at("2026-01-01T10:07:32Z"))
        );
        assert_eq!(
            second.at_or_before(at("2026-01-01T10:07:31.250Z")),
            Some(at("2026-01-01T10:07:31Z"))
        );
    }

    #[test]
    fn the_time_zone_moves_the_ticks() {
        let nine = Cadence::parse("0 9 * * *", "Europe/Paris").unwrap();
        // Winter: Paris is UTC+1.
        assert_eq!(
            nine.next_after(at("2026-01-15T00:00:00Z")),
            Some(at("2026-01-15T08:00:00Z"))
        );
        // Summer: UTC+2.
        assert_eq!(
            nine.next_after(at("2026-07-15T00:00:00Z")),
            Some(at("2026-07-15T07:00:00Z"))
        );
    }

    #[test]
    fn daylight_saving_gaps_and_repeats_tick_once() {
        // 2026-03-29 02:30 does not exist in Paris (02:00 → 03:00): one tick that day
        // all the same, and never two.
        let gap = Cadence::parse("30 2 * * *", "Europe/Paris").unwrap();
        let day = gap.due(
            at("2026-03-28T12:00:00Z"),
            at("2026-03-29T12:00:00Z"),
            CatchUp::All,
        );
        assert_eq!(day.len(), 1, "{day:?}");
        // 2026-10-25 02:30 happens twice in Paris (03:00 → 02:00): ticked once.
        let repeat = gap.due(
            at("2026-10-24T12:00:00Z"),
            at("2026-10-25T12:00:00Z"),
            CatchUp::All,
        );
        assert_eq!(repeat.len(), 1, "{repeat:?}");
        // An hourly schedule over the spring gap: 23 ticks in that local day.
        let hourly = Cadence::parse("0 * * * *", "Europe/Paris").unwrap();
        let ticks = hourly.due(
            at("2026-03-28T22:59:59Z"),
            at("2026-03-29T21:59:59Z"),
            CatchUp::All,
        );
        assert_eq!(ticks.len(), 23, "{ticks:?}");
        assert!(ticks.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn recent_ticks_always_run_missed_ones_as_catch_up_says() {
        let every = Cadence::parse("* * * * * *", "UTC").unwrap();
        let now = at("2026-01-01T10:00:00Z");
        // Within the grace: every tick, whatever the policy.
        let after = now - chrono::Duration::seconds(3);
        for catch_up in [CatchUp::None, CatchUp::Latest, CatchUp::All] {
            assert_eq!(
                every.due(after, now, catch_up),
                vec![
                    at("2026-01-01T09:59:58Z"),
                    at("2026-01-01T09:59:59Z"),
                    at("2026-01-01T10:00:00Z")
                ]
            );
        }
        // Nothing after `after`: nothing due.
        assert!(every.due(now, now, CatchUp::All).is_empty());
        let minutely = Cadence::parse("0 * * * *", "UTC").unwrap();
        let now = at("2026-01-01T10:00:10Z");
        let after = at("2026-01-01T06:30:00Z");
        // 07:00, 08:00, 09:00 were missed; 10:00 is within the grace.
        assert_eq!(
            minutely.due(after, now, CatchUp::None),
            vec![at("2026-01-01T10:00:00Z")]
        );
        assert_eq!(
            minutely.due(after, now, CatchUp::Latest),
            vec![at("2026-01-01T09:00:00Z"), at("2026-01-01T10:00:00Z")]
        );
        assert_eq!(minutely.due(after, now, CatchUp::All).len(), 4);
        // Long outages are capped to the newest MAX_TICKS.
        let all = every.due(now - chrono::Duration::hours(2), now, CatchUp::All);
        assert_eq!(all.len(), MAX_TICKS);
        assert_eq!(all.last(), Some(&now));
    }

    #[test]
    fn tick_ids_are_stable_and_distinct() {
        let s = Uuid::from_u128(1);
        let t = at("2026-01-01T10:00:00Z");
        assert_eq!(tick_execution_id(s, t), tick_execution_id(s, t));
        assert_ne!(
            tick_execution_id(s, t),
            tick_execution_id(s, t + chrono::Duration::seconds(1))
        );
        assert_ne!(
            tick_execution_id(s, t),
            tick_execution_id(Uuid::from_u128(2), t)
        );
    }
}
