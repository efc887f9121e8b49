//! Webhook bodies: create, a hook as answers show it (never its secret, except once in
//! the answer that created it), the list, and its deliveries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Body of `POST /api/v1/hooks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateHook {
    /// Where deliveries are POSTed: an `http` or `https` URL the server's egress policy
    /// allows.
    #[schema(example = "https://hooks.example.com/conflux")]
    pub url: String,
    /// The event types delivered (names of the event log's types, e.g.
    /// `ExecutionCompleted`), or `["*"]` for every event of the tenant.
    #[schema(example = json!(["ExecutionCompleted", "ExecutionFailed"]))]
    pub events: Vec<String>,
    /// The signing secret (8 to 256 characters); default: a generated `whsec_<64 hex>`.
    #[serde(default)]
    pub secret: Option<String>,
}

/// A webhook (`GET /api/v1/hooks/{id}`, and the items of the list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Hook {
    /// Its id.
    pub id: Uuid,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The event types delivered (`*`: every one).
    pub events: Vec<String>,
    /// Events after this log position are delivered.
    pub start_after: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// `201` of `POST /api/v1/hooks`: the hook and its signing secret, shown only here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HookCreated {
    /// Its id.
    pub id: Uuid,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The event types delivered (`*`: every one).
    pub events: Vec<String>,
    /// Events after this log position are delivered.
    pub start_after: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The signing secret (`Conflux-Signature`'s key); never shown again.
    pub secret: String,
}

/// A page of webhooks (`GET /api/v1/hooks`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HookList {
    /// Newest first.
    pub items: Vec<Hook>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet answered with a 2xx; retried with backoff.
    Pending,
    /// Answered with a 2xx.
    Delivered,
    /// Failed on every attempt; given up (the hook moved on).
    DeadLettered,
}

impl DeliveryState {
    /// The stored and served name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::DeadLettered => "dead_lettered",
        }
    }

    /// The state named `raw`, if any.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "dead_lettered" => Some(DeliveryState::DeadLettered),
            _ => None,
        }
    }
}

/// One event's delivery to a hook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HookDelivery {
    /// The event's log position.
    pub position: u64,
    /// The event's id (`Conflux-Event-Id`).
    pub event_id: Uuid,
    /// The event's type.
    pub event_type: String,
    /// `pending`, `delivered` or `dead_lettered`.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// The HTTP status of the latest attempt (`null`: no answer).
    #[schema(required = true)]
    pub last_status: Option<u16>,
    /// Why the latest attempt failed (`null` after a success).
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// When the first attempt was made.
    pub created_at: DateTime<Utc>,
    /// When the latest attempt ended.
    pub updated_at: DateTime<Utc>,
}

/// A page of a hook's deliveries (`GET /api/v1/hooks/{id}/deliveries`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HookDeliveryList {
    /// Newest (highest position) first.
    pub items: Vec<HookDelivery>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}
