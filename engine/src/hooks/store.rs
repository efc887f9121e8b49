//! [`HookStore`]: where a hook's delivery state lives, outside the log — its sealed
//! signing secret, its cursor (the last log position it handled), the lease that lets
//! one process at a time deliver it, and the record of every delivery. Postgres and
//! SQLite implement it ([`super::postgres`], [`super::sqlite`]); one conformance suite
//! (`engine/tests/conformance/hook_store.rs`) holds both to the same contract.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use conflux_schema::api::DeliveryState;
use uuid::Uuid;

use crate::store::StoreError;

/// A hook's row, as created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRow {
    /// The hook.
    pub hook_id: Uuid,
    /// Its tenant.
    pub tenant: String,
    /// Its signing secret, sealed (never the plaintext).
    pub sealed_secret: Vec<u8>,
    /// The log position it starts after.
    pub cursor: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// One event's delivery to one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The hook.
    pub hook_id: Uuid,
    /// The event's log position.
    pub position: u64,
    /// The event's id.
    pub event_id: Uuid,
    /// The event's type.
    pub event_type: String,
    /// Where it is.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// The latest attempt's HTTP status, if it got an answer.
    pub last_status: Option<u16>,
    /// Why the latest attempt failed.
    pub last_error: Option<String>,
    /// When the first attempt was made.
    pub created_at: DateTime<Utc>,
    /// When the latest attempt ended.
    pub updated_at: DateTime<Utc>,
}

/// The delivery state of hooks. Leases are compared with the caller's clock (`now_ms`,
/// Unix milliseconds): servers sharing a database are assumed to agree on the time to
/// well under a lease's length.
#[async_trait]
pub trait HookStore: Send + Sync + 'static {
    /// Creates the hook's row (no lease). A second insert of the same id fails.
    async fn insert(&self, row: &HookRow) -> Result<(), StoreError>;

    /// Forgets the hook: its row (the sealed secret with it) and its deliveries.
    async fn remove(&self, hook_id: Uuid) -> Result<(), StoreError>;

    /// The hook's sealed secret, if it has a row.
    async fn sealed_secret(&self, hook_id: Uuid) -> Result<Option<Vec<u8>>, StoreError>;

    /// Takes the hook's lease for `owner` until `until_ms` if nobody holds it, `owner`
    /// already does, or the holder's lease ended before `now_ms`; returns the cursor,
    /// or None when another owner holds a live lease (or there is no row).
    async fn acquire(
        &self,
        hook_id: Uuid,
        owner: Uuid,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<u64>, StoreError>;

    /// Extends `owner`'s lease to `until_ms`; false if `owner` no longer holds it.
    async fn renew(&self, hook_id: Uuid, owner: Uuid, until_ms: i64) -> Result<bool, StoreError>;

    /// Gives the lease up if `owner` holds it (another process may take it at once).
    async fn release(&self, hook_id: Uuid, owner: Uuid) -> Result<(), StoreError>;

    /// Moves the cursor forward to `position` (never back) if `owner` holds the lease;
    /// false if it does not.
    async fn advance(&self, hook_id: Uuid, owner: Uuid, position: u64) -> Result<bool, StoreError>;

    /// Writes `delivery` (inserted, or replacing the record of the same hook and
    /// position) if `owner` holds the hook's lease; false if it does not.
    async fn record(&self, delivery: &DeliveryRecord, owner: Uuid) -> Result<bool, StoreError>;

    /// The record of the delivery of position `position` to the hook, if any.
    async fn delivery(
        &self,
        hook_id: Uuid,
        position: u64,
    ) -> Result<Option<DeliveryRecord>, StoreError>;

    /// Up to `limit` of the hook's deliveries with positions below `before` (all with
    /// None), highest position first.
    async fn deliveries(
        &self,
        hook_id: Uuid,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
}

/// A stored whole number as `u64` (positions and cursors are never negative).
pub(super) fn unsigned(raw: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(raw).map_err(|_| StoreError::Backend(format!("a stored {what} is negative")))
}

/// A `u64` position as the `bigint` both backends store.
pub(super) fn signed(raw: u64) -> Result<i64, StoreError> {
    i64::try_from(raw).map_err(|_| StoreError::Invalid(format!("position {raw} is too large")))
}

/// A stored delivery state.
pub(super) fn state(raw: &str) -> Result<DeliveryState, StoreError> {
    DeliveryState::parse(raw)
        .ok_or_else(|| StoreError::Backend(format!("unknown delivery state {raw:?}")))
}
