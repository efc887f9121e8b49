//! Validated identifiers. The core never sees an unvalidated id: every id that comes
//! from outside is parsed here once, and afterwards is a type rather than a `String`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

/// An identifier that failed validation; the message says which rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct IdError {
    /// What was wrong, for humans.
    pub message: String,
}

impl IdError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $parse:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses and validates `raw`.
            pub fn parse(raw: &str) -> Result<Self, IdError> {
                $parse(raw).map(|()| Self(raw.to_owned()))
            }

            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn check_task_id(raw: &str) -> Result<(), IdError> {
    // A map's item: `<task id>[<index>]`.
    if let Some((task, _)) = split_item(raw) {
        return check_task_id(task);
    }
    if raw.is_empty() || raw.len() > 128 {
        return Err(IdError::new(format!(
            "task id must be 1 to 128 characters, got {}",
            raw.len()
        )));
    }
    if let Some(c) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(IdError::new(format!(
            "task id {raw:?} contains {c:?}; allowed are letters, digits, '_', '-' and '.'"
        )));
    }
    Ok(())
}

/// `(task, index)` when `raw` is `<task>[<index>]` with a decimal index of at most five
/// digits and no leading zero.
fn split_item(raw: &str) -> Option<(&str, usize)> {
    let open = raw.strip_suffix(']')?.rfind('[')?;
    let digits = &raw[open + 1..raw.len() - 1];
    let well_formed = !digits.is_empty()
        && digits.len() <= 5
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !well_formed {
        return None;
    }
    Some((&raw[..open], digits.parse().ok()?))
}

impl TaskId {
    /// The id of item `index` of this (map) task: `<id>[<index>]`.
    pub fn item(&self, index: usize) -> TaskId {
        TaskId(format!("{}[{index}]", self.0))
    }

    /// For a map item's id, its map's id and its index.
    pub fn item_of(&self) -> Option<(&str, usize)> {
        split_item(&self.0)
    }
}

fn check_workflow_name(raw: &str) -> Result<(), IdError> {
    if raw.trim().is_empty() {
        return Err(IdError::new("workflow name must not be empty"));
    }
    if raw.chars().count() > 200 {
        return Err(IdError::new("workflow name must be at most 200 characters"));
    }
    if raw.trim() != raw {
        return Err(IdError::new(
            "workflow name must not start or end with white space",
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(IdError::new(
            "workflow name must not contain control characters",
        ));
    }
    Ok(())
}

string_newtype!(
    /// A task's id within one workflow: 1 to 128 characters of `[A-Za-z0-9_.-]`.
    TaskId,
    check_task_id
);

string_newtype!(
    /// A workflow's name: 1 to 200 characters, no control characters, no surrounding spaces.
    /// Versions are counted per name.
    WorkflowName,
    check_workflow_name
);

/// Which kind of aggregate a stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamType {
    /// `workflow-<uuid>`: a workflow definition.
    Workflow,
    /// `execution-<uuid>`: one run of a workflow.
    Execution,
    /// `agent-<uuid>`: an external agent's registration.
    Agent,
    /// `tenant-<uuid>`: a tenant (the uuid derived from its name).
    Tenant,
    /// `key-<uuid>`: an API key (the uuid is its key id).
    Key,
    /// `schedule-<uuid>`: a schedule that starts executions of a workflow on a cron.
    Schedule,
    /// `concurrency-<uuid>`: the slots of one concurrency key of a workflow.
    Concurrency,
    /// `hook-<uuid>`: a webhook's lifecycle (created, deleted).
    Hook,
}

impl StreamType {
    /// The stream id prefix and the stored name of this type.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamType::Workflow => "workflow",
            StreamType::Execution => "execution",
            StreamType::Agent => "agent",
            StreamType::Tenant => "tenant",
            StreamType::Key => "key",
            StreamType::Schedule => "schedule",
            StreamType::Concurrency => "concurrency",
            StreamType::Hook => "hook",
        }
    }
}

/// The id of an event stream: `<type>-<uuid>`. Constructing one guarantees the
/// prefix names a known [`StreamType`] and the rest is a UUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StreamId(String);

impl StreamId {
    /// The stream of workflow definition `id`.
    pub fn workflow(id: Uuid) -> Self {
        Self(format!("workflow-{id}"))
    }

    /// The stream of execution `id`.
    pub fn execution(id: Uuid) -> Self {
        Self(format!("execution-{id}"))
    }

    /// The stream of agent `id`.
    pub fn agent(id: Uuid) -> Self {
        Self(format!("agent-{id}"))
    }

    /// The stream of tenant `id`.
    pub fn tenant(id: Uuid) -> Self {
        Self(format!("tenant-{id}"))
    }

    /// The stream of API key `id`.
    pub fn key(id: Uuid) -> Self {
        Self(format!("key-{id}"))
    }

    /// The stream of schedule `id`.
    pub fn schedule(id: Uuid) -> Self {
        Self(format!("schedule-{id}"))
    }

    /// The stream of webhook `id`.
    pub fn hook(id: Uuid) -> Self {
        Self(format!("hook-{id}"))
    }

    /// The stream of the slots of concurrency key `key` of workflow `workflow` in
    /// `tenant` (a uuid v5 of the three, so every server names the same stream).
    pub fn concurrency(tenant: &str, workflow: &str, key: &str) -> Self {
        const NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2d0e_8a4b_4c1f_9e2d_5a7b_3c8d_1e4f);
        let name = format!("{tenant}\u{0}{workflow}\u{0}{key}");
        Self(format!(
            "concurrency-{}",
            Uuid::new_v5(&NAMESPACE, name.as_bytes())
        ))
    }

    /// Parses `<type>-<uuid>`.
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let (kind, id) = raw
            .split_once('-')
            .ok_or_else(|| IdError::new(format!("stream id {raw:?} is not <type>-<uuid>")))?;
        let kind = match kind {
            "workflow" => StreamType::Workflow,
            "execution" => StreamType::Execution,
            "agent" => StreamType::Agent,
            "tenant" => StreamType::Tenant,
            "key" => StreamType::Key,
            "schedule" => StreamType::Schedule,
            "concurrency" => StreamType::Concurrency,
            "hook" => StreamType::Hook,
            other => return Err(IdError::new(format!("unknown stream type {other:?}"))),
        };
        let id = Uuid::parse_str(id)
            .map_err(|e| IdError::new(format!("stream id {raw:?}: bad uuid: {e}")))?;
        Ok(Self(format!("{}-{id}", kind.as_str())))
    }

    /// The kind of aggregate this stream holds.
    pub fn stream_type(&self) -> StreamType {
        if self.0.starts_with("workflow-") {
            StreamType::Workflow
        } else if self.0.starts_with("agent-") {
            StreamType::Agent
        } else if self.0.starts_with("tenant-") {
            StreamType::Tenant
        } else if self.0.starts_with("key-") {
            StreamType::Key
        } else if self.0.starts_with("schedule-") {
            StreamType::Schedule
        } else if self.0.starts_with("concurrency-") {
            StreamType::Concurrency
        } else if self.0.starts_with("hook-") {
            StreamType::Hook
        } else {
            StreamType::Execution
        }
    }

    /// The aggregate's UUID.
    pub fn uuid(&self) -> Uuid {
        let (_, id) = self.0.split_once('-').unwrap_or(("", ""));
        // Construction guarantees a valid uuid after the first '-'.
        Uuid::parse_str(id).unwrap_or_default()
    }

    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_checked() {
        assert!(TaskId::parse("reserve-1.a_b").is_ok());
        let item = TaskId::parse("fan.out[12]").unwrap();
        assert_eq!(item.item_of(), Some(("fan.out", 12)));
        assert_eq!(TaskId::parse("fan").unwrap().item(3).as_str(), "fan[3]");
        for bad in ["x[]", "x[01]", "x[a]", "[3]", "x[3]]", "x[123456]"] {
            assert!(TaskId::parse(bad).is_err(), "{bad}");
        }
        assert!(TaskId::parse("").is_err());
        assert!(TaskId::parse("a b").is_err());
        assert!(TaskId::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn stream_ids_round_trip() {
        let id = Uuid::now_v7();
        let s = StreamId::execution(id);
        assert_eq!(StreamId::parse(s.as_str()).unwrap(), s);
        assert_eq!(s.uuid(), id);
        assert_eq!(s.stream_type(), StreamType::Execution);
        let schedule = StreamId::parse(StreamId::schedule(id).as_str()).unwrap();
        assert_eq!(schedule.stream_type(), StreamType::Schedule);
        assert_eq!(schedule.uuid(), id);
        let hook = StreamId::parse(StreamId::hook(id).as_str()).unwrap();
        assert_eq!(hook.stream_type(), StreamType::Hook);
        assert_eq!(hook.uuid(), id);
        assert!(StreamId::parse("order-1").is_err());
        assert!(StreamId::parse("workflow-nope").is_err());
    }
}
