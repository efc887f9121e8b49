//! The frames of the live streams `/ws/executions/{id}` and `/ws/workflows/{id}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::event::EventEnvelope;

/// A server → client text frame (JSON) of a live stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveFrame {
    /// First, when the stream was opened without `after`: the execution (as `GET
    /// /api/v1/executions/{id}`) or the workflow's status (as `GET
    /// /api/v1/workflows/{id}/status`), as of `position`.
    Snapshot {
        /// The position the status reflects.
        position: u64,
        /// The execution or workflow status body, with `position`.
        #[schema(value_type = Object)]
        status: Value,
    },
    /// Each event after the snapshot (or after `after`), in position order, once.
    Event {
        /// The event.
        event: Box<EventEnvelope>,
    },
    /// The client could not keep up: the stream closes; reconnect with `?after=position`.
    Lagged {
        /// The last position sent.
        position: u64,
    },
}
