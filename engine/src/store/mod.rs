//! The event store: the system of record. Appends are atomic per call, checked against
//! the version the caller expects (optimistic concurrency), hash-chained per stream, and
//! given a global `position` that becomes visible in increasing order, so a reader that
//! tails `read_all` never skips an event that commits later with a lower position.
//!
//! Both backends ([`postgres::PgStore`], [`sqlite::SqliteStore`]) share the append
//! pipeline in [`writer`]: concurrent appends are grouped into one transaction (group
//! commit), version checks and hashes are computed once in Rust, and the backend only
//! reads stream heads and inserts rows.

pub mod chain;
mod lookup;
pub mod postgres;
mod secrets;
pub mod sqlite;
pub mod usage;
pub mod writer;

use async_trait::async_trait;
use conflux_schema::{EventEnvelope, NewEvent, StreamId};
use tokio::sync::watch;

pub use chain::ChainVerification;
pub use secrets::SigningSecret;
pub use usage::TenantCounters;

/// Everything that can go wrong in the store, typed so callers can react
/// (a conflict means reload and re-decide; unavailable means 503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The stream is not at the version the caller expected.
    #[error("version conflict on {stream}: expected version {expected}, stream is at {actual}")]
    Conflict {
        /// The stream.
        stream: StreamId,
        /// The version the caller expected.
        expected: u64,
        /// The version the stream is at, as far as the store knows.
        actual: u64,
    },
    /// The database could not be reached or stopped answering.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// A stored row could not be read back as an event.
    #[error("stored event at position {position} is malformed: {reason}")]
    Corrupt {
        /// Where it is.
        position: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The append itself was invalid (e.g. no events).
    #[error("invalid append: {0}")]
    Invalid(String),
    /// Any other database error.
    #[error("event store error: {0}")]
    Backend(String),
}

/// The stream lookups the write side needs, answered from indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamQuery {
    /// Executions started for a workflow (`open_only`: not yet completed, failed or
    /// cancelled), oldest first.
    ExecutionsOfWorkflow {
        /// The workflow id.
        workflow_id: uuid::Uuid,
        /// Only executions without a terminal event.
        open_only: bool,
    },
    /// Every execution without a terminal event, oldest first (crash recovery).
    OpenExecutions,
    /// The execution whose `TaskStarted` carries this lease id.
    Lease(uuid::Uuid),
    /// Executions without a terminal event whose latest event was recorded before
    /// `idle_since`, oldest first (a sweep for work a dead engine held).
    IdleExecutions {
        /// The cut-off time.
        idle_since: chrono::DateTime<chrono::Utc>,
    },
}

/// One append: events for one stream, at the version the caller last saw.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    /// The stream to append to.
    pub stream: StreamId,
    /// The version the stream must be at (0: the stream must not exist yet).
    pub expected_version: u64,
    /// The events, in order; at least one.
    pub events: Vec<NewEvent>,
}

/// The event log. Implementations guarantee:
/// - `append` is atomic: all events commit, at versions `expected+1..`, or none do;
/// - exactly one of several concurrent appends at the same expected version wins, the
///   others get [`StoreError::Conflict`];
/// - positions are unique and become visible in increasing order (no reader of
///   `read_all` can see position `p` before every position below `p` that will ever
///   commit has committed);
/// - each event's hash chains from its predecessor in the stream.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if it is at `expected_version`; returns the committed
    /// envelopes with their versions, positions and hashes.
    async fn append(
        &self,
        stream: &StreamId,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.append_many(vec![AppendRequest {
            stream: stream.clone(),
            expected_version,
            events,
        }])
        .await
        .pop()
        .unwrap_or_else(|| Err(StoreError::Backend("append returned nothing".into())))
    }

    /// Appends several requests, each atomic on its own, grouped into as few
    /// transactions as possible. Results come back in request order.
    async fn append_many(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<Vec<EventEnvelope>, StoreError>>;

    /// Up to `limit` events of `stream` with version > `after_version`, in version order.
    async fn read_stream(
        &self,
        stream: &StreamId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError>;

    /// Up to `limit` events with position > `after_position`, in position order, never
    /// skipping a position that a transaction still in flight will commit.
    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError>;

    /// Like [`EventStore::read_all`], but only events of streams of `types` (e.g. the
    /// tenants and keys every server tails); the same visibility guarantee.
    async fn read_all_of(
        &self,
        types: &[conflux_schema::StreamType],
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError>;

    /// The stream's current version (0 if it does not exist).
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError>;

    /// The highest committed position (0 if the log is empty).
    async fn head_position(&self) -> Result<u64, StoreError>;

    /// The store's identity: a random id created with the schema and never changed
    /// (a restored or copied database keeps it; a new or recreated one gets a new one).
    /// The bus records it to tell its own store's events from another store's.
    async fn store_id(&self) -> Result<uuid::Uuid, StoreError>;

    /// The secret named `name`: 32 random bytes, created by whichever process asks
    /// first and never changed, so every process of this store (every server of a
    /// cluster) gets the same one. Signing keys (the stream tokens') come from here;
    /// never log one.
    async fn signing_secret(&self, name: &str) -> Result<SigningSecret, StoreError>;

    /// Recomputes the stream's hash chain from the stored rows.
    async fn verify_stream(&self, stream: &StreamId) -> Result<ChainVerification, StoreError>;

    /// Streams matching `query` (see [`StreamQuery`]), at most `limit`.
    async fn find_streams(
        &self,
        query: &StreamQuery,
        limit: usize,
    ) -> Result<Vec<StreamId>, StoreError>;

    /// Succeeds when the backing database answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// The highest position committed by this process; changes on every commit, so the
    /// relay can wake without polling.
    fn commits(&self) -> watch::Receiver<u64>;

    /// Outbox: the highest position whose outbox row is still pending (None when the
    /// outbox is empty).
    async fn outbox_pending(&self) -> Result<Option<u64>, StoreError>;

    /// Outbox: marks everything up to `position` as published.
    async fn outbox_done(&self, position: u64) -> Result<(), StoreError>;

    /// `tenant`'s usage counters (all zero for a tenant that recorded nothing), with
    /// how many executions it started at or after `since` and whether an agent
    /// registered under `agent_name` before. The counters are written in the same
    /// transaction as the events they count.
    async fn tenant_usage(
        &self,
        tenant: &str,
        since: chrono::DateTime<chrono::Utc>,
        agent_name: Option<&str>,
    ) -> Result<TenantCounters, StoreError>;
}

/// `stream_type IN (...)` for `types`: the names are the enum's own constants, never
/// input, so they are written into the statement (which also lets a partial index on
/// exactly that predicate serve it).
pub(crate) fn stream_types_in(types: &[conflux_schema::StreamType]) -> String {
    let names: Vec<String> = types.iter().map(|t| format!("'{}'", t.as_str())).collect();
    format!("stream_type IN ({})", names.join(", "))
}

/// Whether `stream` exists and is `tenant`'s: the tenant of a stream is its first
/// event's (`default` for one recorded before tenants existed). An unknown stream and
/// another tenant's answer alike, so a caller can never tell them apart.
pub async fn is_tenants_stream(
    store: &dyn EventStore,
    tenant: &str,
    stream: &StreamId,
) -> Result<bool, StoreError> {
    let first = store.read_stream(stream, 0, 1).await?;
    Ok(first.first().is_some_and(|e| e.metadata.tenant() == tenant))
}

/// Reads a whole stream (convenience over [`EventStore::read_stream`]).
pub async fn read_whole_stream(
    store: &dyn EventStore,
    stream: &StreamId,
) -> Result<Vec<EventEnvelope>, StoreError> {
    let mut out = Vec::new();
    loop {
        let after = out.last().map_or(0, |e: &EventEnvelope| e.version);
        let page = store.read_stream(stream, after, 1000).await?;
        let done = page.len() < 1000;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}
