//! Audit bodies: pages of the log, replay to a version, the chain's verification, and
//! the envelope's documented shape.

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use super::executions::Execution;
use crate::event::{EventEnvelope, EventMetadata};

/// A page of an execution's log (`GET /api/v1/executions/{id}/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    /// In version order.
    pub events: Vec<EventEnvelope>,
    /// Pass as `after_version` for the next page; `null` when this page is the last.
    #[schema(required = true)]
    pub next_after_version: Option<u64>,
}

/// A page of a workflow's merged log (`GET /api/v1/workflows/{id}/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowEventPage {
    /// In position order.
    pub events: Vec<EventEnvelope>,
    /// Pass as `after_position` for the next page; `null` when this page is the last.
    #[schema(required = true)]
    pub next_after_position: Option<u64>,
}

/// An execution as it stood after an event (`GET /api/v1/executions/{id}/replay`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Replay {
    /// The last event folded.
    pub to_version: u64,
    /// The execution after it.
    pub state: Execution,
}

/// The outcome of walking a stream's hash chain from the raw stored columns
/// (`GET /api/v1/executions/{id}/verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Verification)]
pub struct ChainVerification {
    /// True when every stored hash equals the recomputed one and versions are gap-free.
    pub valid: bool,
    /// How many events were checked.
    pub events: u64,
    /// The hash of the last event, hex (when valid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_hash: Option<String>,
    /// The first version whose hash does not verify (when not valid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_bad_version: Option<u64>,
}

fn text(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

fn whole(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .description(Some(description))
}

/// The envelope's schema, written by hand: the event is flattened into it as `type` and
/// `data` (an adjacently tagged enum of every event), which derives cannot express.
impl PartialSchema for EventEnvelope {
    fn schema() -> RefOr<Schema> {
        let uuid = SchemaFormat::KnownFormat(KnownFormat::Uuid);
        let time = SchemaFormat::KnownFormat(KnownFormat::DateTime);
        ObjectBuilder::new()
            .description(Some("One stored event (API.md \"Envelope\")."))
            .property("event_id", text("Unique (uuid v7).").format(Some(uuid)))
            .property(
                "stream_id",
                text("`workflow-<uuid>`, `execution-<uuid>`, `agent-<uuid>`…"),
            )
            .property("stream_type", text("`workflow`, `execution`, `agent`…"))
            .property("version", whole("1, 2, 3… within the stream, gap-free."))
            .property(
                "position",
                whole("Global order across streams, increasing in commit order (not gap-free)."),
            )
            .property(
                "type",
                text("The event's name, in the past tense (`ExecutionStarted`, `TaskCompleted`…)."),
            )
            .property(
                "data",
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .description(Some("The event's fields.")),
            )
            .property("schema_version", whole("The event's schema version."))
            .property("metadata", EventMetadata::schema())
            .property(
                "recorded_at",
                text("Server time when it was recorded.").format(Some(time)),
            )
            .property(
                "hash",
                text(
                    "Hex sha-256 over the previous event's hash and this event's canonical bytes.",
                ),
            )
            .required("event_id")
            .required("stream_id")
            .required("stream_type")
            .required("version")
            .required("position")
            .required("type")
            .required("data")
            .required("metadata")
            .required("recorded_at")
            .required("hash")
            .into()
    }
}

impl ToSchema for EventEnvelope {
    fn name() -> std::borrow::Cow<'static, str> {
        "Envelope".into()
    }
}
