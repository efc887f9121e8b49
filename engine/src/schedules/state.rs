//! The pure fold of schedule streams: each schedule's state from its events, and the
//! directory of every schedule a process has read.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use conflux_schema::api::Schedule;
use conflux_schema::schedule::{CatchUp, Overlap, ScheduleStatus, TickOutcome};
use conflux_schema::{Event, EventEnvelope, StreamType};
use serde_json::Value;
use uuid::Uuid;

use super::cadence::Cadence;

/// One schedule as its stream says.
#[derive(Debug, Clone)]
pub struct ScheduleState {
    /// Its id.
    pub id: Uuid,
    /// Its tenant (its first event's).
    pub tenant: String,
    /// The workflow it starts.
    pub workflow_id: Uuid,
    /// Its cron expression.
    pub cron: String,
    /// Its time zone.
    pub timezone: String,
    /// The input of the executions it starts.
    pub input: Value,
    /// What a tick does while the previous execution runs.
    pub overlap: Overlap,
    /// Which missed ticks run.
    pub catch_up: CatchUp,
    /// Active or paused.
    pub status: ScheduleStatus,
    /// Whether it was deleted (then it is served as unknown and never ticks).
    pub deleted: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last resumed.
    pub resumed_at: Option<DateTime<Utc>>,
    /// Its latest handled tick.
    pub last_tick_at: Option<DateTime<Utc>>,
    /// The execution of its latest tick that started one.
    pub last_execution_id: Option<Uuid>,
    /// The stream's version.
    pub version: u64,
    /// The parsed expression (None only if a stored one no longer parses).
    pub cadence: Option<Arc<Cadence>>,
}

impl ScheduleState {
    /// The state its first event makes, or None if that is not a `ScheduleCreated`.
    fn created(e: &EventEnvelope) -> Option<Self> {
        let Event::ScheduleCreated {
            schedule_id,
            workflow_id,
            cron,
            timezone,
            input,
            overlap,
            catch_up,
        } = &e.event
        else {
            return None;
        };
        Some(Self {
            id: *schedule_id,
            tenant: e.metadata.tenant().to_owned(),
            workflow_id: *workflow_id,
            cron: cron.clone(),
            timezone: timezone.clone(),
            input: input.clone(),
            overlap: *overlap,
            catch_up: *catch_up,
            status: ScheduleStatus::Active,
            deleted: false,
            created_at: e.recorded_at,
            resumed_at: None,
            last_tick_at: None,
            last_execution_id: None,
            version: e.version,
            cadence: Cadence::parse(cron, timezone).ok().map(Arc::new),
        })
    }

    /// Applies a later event of its stream.
    pub fn apply(&mut self, e: &EventEnvelope) {
        if e.version <= self.version {
            return;
        }
        self.version = e.version;
        match &e.event {
            Event::SchedulePaused {} => self.status = ScheduleStatus::Paused,
            Event::ScheduleResumed {} => {
                self.status = ScheduleStatus::Active;
                self.resumed_at = Some(e.recorded_at);
            }
            Event::ScheduleDeleted {} => self.deleted = true,
            Event::ScheduleTicked {
                tick_at,
                execution_id,
                outcome,
                ..
            } => {
                self.last_tick_at = Some(self.last_tick_at.map_or(*tick_at, |t| t.max(*tick_at)));
                if *outcome == TickOutcome::Started {
                    self.last_execution_id = *execution_id;
                }
            }
            _ => {}
        }
    }

    /// Whether its ticks start executions now.
    pub fn is_ticking(&self) -> bool {
        !self.deleted && self.status == ScheduleStatus::Active && self.cadence.is_some()
    }

    /// Ticks at or before this were handled, or fell before it was created or resumed.
    pub fn ticked_up_to(&self) -> DateTime<Utc> {
        [Some(self.created_at), self.resumed_at, self.last_tick_at]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(self.created_at)
    }

    /// Its next tick after `now` (None while paused).
    pub fn next_tick_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.is_ticking() {
            return None;
        }
        self.cadence
            .as_ref()?
            .next_after(self.ticked_up_to().max(now))
    }

    /// The answer body, as of `now`.
    pub fn view(&self, now: DateTime<Utc>) -> Schedule {
        Schedule {
            id: self.id,
            workflow: self.workflow_id,
            cron: self.cron.clone(),
            timezone: self.timezone.clone(),
            input: self.input.clone(),
            overlap: self.overlap,
            catch_up: self.catch_up,
            status: self.status,
            next_tick_at: self.next_tick_at(now),
            last_tick_at: self.last_tick_at,
            last_execution_id: self.last_execution_id,
            created_at: self.created_at,
        }
    }
}

/// Every schedule read so far, and the position read up to.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    schedules: HashMap<Uuid, ScheduleState>,
    position: u64,
}

impl Directory {
    /// The stream types the directory folds.
    pub const STREAMS: [StreamType; 1] = [StreamType::Schedule];

    /// The position read up to.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Folds `events` (of schedule streams, in position order) in.
    pub fn apply_all(&mut self, events: &[EventEnvelope]) {
        for e in events {
            self.position = self.position.max(e.position);
            if e.stream_id.stream_type() != StreamType::Schedule {
                continue;
            }
            let id = e.stream_id.uuid();
            match self.schedules.get_mut(&id) {
                Some(state) => state.apply(e),
                None => {
                    if let Some(state) = ScheduleState::created(e) {
                        self.schedules.insert(id, state);
                    }
                }
            }
        }
    }

    /// Schedule `id`, deleted or not.
    pub fn get(&self, id: Uuid) -> Option<&ScheduleState> {
        self.schedules.get(&id)
    }

    /// Schedule `id` if it is `tenant`'s and not deleted.
    pub fn get_in(&self, tenant: &str, id: Uuid) -> Option<&ScheduleState> {
        self.schedules
            .get(&id)
            .filter(|s| !s.deleted && s.tenant == tenant)
    }

    /// Every schedule that is not deleted.
    pub fn live(&self) -> impl Iterator<Item = &ScheduleState> + '_ {
        self.schedules.values().filter(|s| !s.deleted)
    }

    /// How many schedules `tenant` has (not deleted).
    pub fn count_of(&self, tenant: &str) -> u64 {
        self.live().filter(|s| s.tenant == tenant).count() as u64
    }

    /// `tenant`'s schedules with ids below `before` (all with None), newest first (ids
    /// are uuid v7), at most `limit`, and whether more follow.
    pub fn page(
        &self,
        tenant: &str,
        before: Option<Uuid>,
        limit: usize,
    ) -> (Vec<&ScheduleState>, bool) {
        let mut mine: Vec<&ScheduleState> = self
            .live()
            .filter(|s| s.tenant == tenant && before.is_none_or(|b| s.id < b))
            .collect();
        mine.sort_by_key(|s| std::cmp::Reverse(s.id));
        let more = mine.len() > limit;
        mine.truncate(limit);
        (mine, more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conflux_schema::event::SCHEMA_VERSION;
    use conflux_schema::{EventMetadata, StreamId};

    fn envelope(
        id: Uuid,
        version: u64,
        position: u64,
        event: Event,
        tenant: &str,
    ) -> EventEnvelope {
        EventEnvelope {
            event_id: Uuid::now_v7(),
            stream_id: StreamId::schedule(id),
            stream_type: StreamType::Schedule,
            version,
            position,
            event,
            schema_version: SCHEMA_VERSION,
            metadata: EventMetadata {
                tenant_id: Some(tenant.into()),
                ..EventMetadata::default()
            },
            recorded_at: DateTime::from_timestamp(1_800_000_000 + position as i64, 0).unwrap(),
            hash: String::new(),
        }
    }

    fn created(id: Uuid) -> Event {
        Event::ScheduleCreated {
            schedule_id: id,
            workflow_id: Uuid::nil(),
            cron: "* * * * * *".into(),
            timezone: "UTC".into(),
            input: Value::Null,
            overlap: Overlap::Allow,
            catch_up: CatchUp::All,
        }
    }

    #[test]
    fn the_fold_follows_pause_resume_ticks_and_delete() {
        let id = Uuid::now_v7();
        let mut dir = Directory::default();
        let tick = DateTime::from_timestamp(1_800_000_005, 0).unwrap();
        let exec = Uuid::now_v7();
        dir.apply_all(&[
            envelope(id, 1, 1, created(id), "acme"),
            envelope(
                id,
                2,
                2,
                Event::ScheduleTicked {
                    tick_at: tick,
                    execution_id: Some(exec),
                    outcome: TickOutcome::Started,
                    error: None,
                },
                "acme",
            ),
            envelope(id, 3, 3, Event::SchedulePaused {}, "acme"),
        ]);
        let s = dir.get_in("acme", id).unwrap();
        assert_eq!(s.status, ScheduleStatus::Paused);
        assert!(!s.is_ticking());
        assert_eq!(s.last_tick_at, Some(tick));
        assert_eq!(s.last_execution_id, Some(exec));
        assert_eq!(s.next_tick_at(tick), None);
        assert!(
            dir.get_in("other", id).is_none(),
            "another tenant's is unknown"
        );
        dir.apply_all(&[envelope(id, 4, 9, Event::ScheduleResumed {}, "acme")]);
        let s = dir.get_in("acme", id).unwrap();
        assert!(s.is_ticking());
        // Ticks while paused are not due after a resume.
        assert_eq!(s.ticked_up_to(), s.resumed_at.unwrap());
        assert_eq!(dir.count_of("acme"), 1);
        // A redelivered event changes nothing.
        dir.apply_all(&[envelope(id, 3, 3, Event::SchedulePaused {}, "acme")]);
        assert!(dir.get_in("acme", id).unwrap().is_ticking());
        dir.apply_all(&[envelope(id, 5, 10, Event::ScheduleDeleted {}, "acme")]);
        assert!(dir.get_in("acme", id).is_none());
        assert_eq!(dir.count_of("acme"), 0);
        assert_eq!(dir.position(), 10);
    }

    #[test]
    fn pages_are_newest_first_with_a_cursor() {
        let mut dir = Directory::default();
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        for (i, id) in ids.iter().enumerate() {
            dir.apply_all(&[envelope(*id, 1, i as u64 + 1, created(*id), "acme")]);
        }
        let (first, more) = dir.page("acme", None, 2);
        assert!(more);
        assert_eq!(
            first.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![ids[4], ids[3]]
        );
        let (rest, more) = dir.page("acme", Some(ids[3]), 10);
        assert!(!more);
        assert_eq!(rest.len(), 3);
        assert!(dir.page("other", None, 10).0.is_empty());
    }
}
