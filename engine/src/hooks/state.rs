//! The pure fold of `hook-<id>` streams: each hook's definition from its events, and
//! the directory of every hook a process has read (as `schedules::state` does for
//! schedules).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use conflux_schema::api::Hook;
use conflux_schema::{Event, EventEnvelope, StreamType};
use uuid::Uuid;

/// The filter that matches every event of the tenant.
pub const ALL_EVENTS: &str = "*";

/// One hook as its stream says.
#[derive(Debug, Clone, PartialEq)]
pub struct HookState {
    /// Its id.
    pub id: Uuid,
    /// Its tenant (its first event's).
    pub tenant: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The event types delivered (`*`: every one).
    pub events: Vec<String>,
    /// Events after this position are delivered.
    pub start_after: u64,
    /// Whether it was deleted (then it is served as unknown and delivers nothing).
    pub deleted: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The stream's version.
    pub version: u64,
}

impl HookState {
    /// The state its first event makes, or None if that is not a `HookCreated`.
    fn created(e: &EventEnvelope) -> Option<Self> {
        let Event::HookCreated {
            hook_id,
            url,
            events,
            start_after,
        } = &e.event
        else {
            return None;
        };
        Some(Self {
            id: *hook_id,
            tenant: e.metadata.tenant().to_owned(),
            url: url.clone(),
            events: events.clone(),
            start_after: *start_after,
            deleted: false,
            created_at: e.recorded_at,
            version: e.version,
        })
    }

    /// Applies a later event of its stream.
    pub fn apply(&mut self, e: &EventEnvelope) {
        if e.version <= self.version {
            return;
        }
        self.version = e.version;
        if let Event::HookDeleted {} = e.event {
            self.deleted = true;
        }
    }

    /// Whether `event` is one this hook delivers: of its tenant, of a type it names.
    pub fn wants(&self, event: &EventEnvelope) -> bool {
        event.metadata.tenant() == self.tenant
            && self
                .events
                .iter()
                .any(|t| t == ALL_EVENTS || t == event.event.type_name())
    }

    /// The answer body.
    pub fn view(&self) -> Hook {
        Hook {
            id: self.id,
            url: self.url.clone(),
            events: self.events.clone(),
            start_after: self.start_after,
            created_at: self.created_at,
        }
    }
}

/// Every hook read so far, and the position read up to.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    hooks: HashMap<Uuid, HookState>,
    position: u64,
}

impl Directory {
    /// The stream types the directory folds.
    pub const STREAMS: [StreamType; 1] = [StreamType::Hook];

    /// The position read up to.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Folds `events` (of hook streams, in position order) in.
    pub fn apply_all(&mut self, events: &[EventEnvelope]) {
        for e in events {
            self.position = self.position.max(e.position);
            if e.stream_id.stream_type() != StreamType::Hook {
                continue;
            }
            let id = e.stream_id.uuid();
            match self.hooks.get_mut(&id) {
                Some(state) => state.apply(e),
                None => {
                    if let Some(state) = HookState::created(e) {
                        self.hooks.insert(id, state);
                    }
                }
            }
        }
    }

    /// Hook `id` if it is `tenant`'s and not deleted.
    pub fn get_in(&self, tenant: &str, id: Uuid) -> Option<&HookState> {
        self.hooks
            .get(&id)
            .filter(|h| !h.deleted && h.tenant == tenant)
    }

    /// Every hook that is not deleted.
    pub fn live(&self) -> impl Iterator<Item = &HookState> + '_ {
        self.hooks.values().filter(|h| !h.deleted)
    }

    /// `tenant`'s hooks with ids below `before` (all with None), newest first (ids are
    /// uuid v7), at most `limit`, and whether more follow.
    pub fn page(
        &self,
        tenant: &str,
        before: Option<Uuid>,
        limit: usize,
    ) -> (Vec<&HookState>, bool) {
        let mut mine: Vec<&HookState> = self
            .live()
            .filter(|h| h.tenant == tenant && before.is_none_or(|b| h.id < b))
            .collect();
        mine.sort_by_key(|h| std::cmp::Reverse(h.id));
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
        stream: StreamId,
        version: u64,
        position: u64,
        event: Event,
        tenant: &str,
    ) -> EventEnvelope {
        EventEnvelope {
            event_id: Uuid::now_v7(),
            stream_type: stream.stream_type(),
            stream_id: stream,
            version,
            position,
            event,
            schema_version: SCHEMA_VERSION,
            metadata: EventMetadata {
                tenant_id: Some(tenant.into()),
                ..EventMetadata::default()
            },
            recorded_at: Utc::now(),
            hash: String::new(),
        }
    }

    fn created(id: Uuid, events: &[&str]) -> Event {
        Event::HookCreated {
            hook_id: id,
            url: "http://example.com/in".into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            start_after: 3,
        }
    }

    #[test]
    fn the_fold_follows_create_and_delete_per_tenant() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut dir = Directory::default();
        dir.apply_all(&[
            envelope(
                StreamId::hook(a),
                1,
                4,
                created(a, &["ExecutionCompleted"]),
                "acme",
            ),
            envelope(StreamId::hook(b), 1, 5, created(b, &["*"]), "acme"),
        ]);
        assert_eq!(dir.page("acme", None, 10).0.len(), 2);
        assert!(
            dir.get_in("other", a).is_none(),
            "another tenant's is unknown"
        );
        let hook = dir.get_in("acme", a).unwrap();
        assert_eq!(hook.start_after, 3);
        let done = envelope(
            StreamId::execution(Uuid::now_v7()),
            9,
            6,
            Event::ExecutionCompleted {
                output: serde_json::json!({}),
            },
            "acme",
        );
        assert!(hook.wants(&done));
        let mut elsewhere = done.clone();
        elsewhere.metadata.tenant_id = Some("other".into());
        assert!(!hook.wants(&elsewhere), "only its tenant's events");
        let resumed = envelope(
            StreamId::execution(Uuid::now_v7()),
            2,
            7,
            Event::ExecutionResumed {},
            "acme",
        );
        assert!(!hook.wants(&resumed), "only the types it names");
        assert!(
            dir.get_in("acme", b).unwrap().wants(&resumed),
            "`*` is every type"
        );
        dir.apply_all(&[envelope(
            StreamId::hook(a),
            2,
            8,
            Event::HookDeleted {},
            "acme",
        )]);
        assert!(dir.get_in("acme", a).is_none());
        assert_eq!(dir.live().count(), 1);
        assert_eq!(dir.position(), 8);
    }
}
