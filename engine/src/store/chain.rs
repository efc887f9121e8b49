//! The per-stream hash chain: `hash_n = sha256(hash_{n-1} || canonical(event_n))`.
//! Verification recomputes it from the raw stored columns (not from the parsed event),
//! so that any change to a stored row, even one that still parses, breaks the chain.

use chrono::{DateTime, Utc};
use conflux_schema::event::{HashInput, GENESIS_HASH};
use serde_json::Value;
use uuid::Uuid;

/// The stored columns that the hash covers, as read back from a backend.
#[derive(Debug, Clone)]
pub struct StoredRow {
    /// Global position.
    pub position: u64,
    /// Stream id text.
    pub stream_id: String,
    /// Version within the stream.
    pub version: u64,
    /// Event id.
    pub event_id: Uuid,
    /// Event type name.
    pub event_type: String,
    /// Schema version.
    pub schema_version: u16,
    /// Data as stored.
    pub data: Value,
    /// Metadata as stored.
    pub metadata: Value,
    /// Recorded time as stored.
    pub recorded_at: DateTime<Utc>,
    /// The stored hash.
    pub hash: Vec<u8>,
}

/// The outcome of walking a stream's chain (API.md `verify`): an API body, so it is
/// defined with the others in `conflux-schema`.
pub use conflux_schema::api::ChainVerification;

/// Walks rows of one stream in version order and reports the first break.
pub fn verify_rows(rows: &[StoredRow]) -> ChainVerification {
    let mut prev = GENESIS_HASH;
    for (i, row) in rows.iter().enumerate() {
        let expected_version = i as u64 + 1;
        let recomputed = HashInput {
            event_id: row.event_id,
            stream_id: &row.stream_id,
            version: row.version,
            event_type: &row.event_type,
            schema_version: row.schema_version,
            data: &row.data,
            metadata: &row.metadata,
            recorded_at: row.recorded_at,
        }
        .chain_hash(&prev);
        if row.version != expected_version || row.hash.as_slice() != recomputed.as_slice() {
            return ChainVerification {
                valid: false,
                events: rows.len() as u64,
                head_hash: None,
                first_bad_version: Some(expected_version),
            };
        }
        prev = recomputed;
    }
    ChainVerification {
        valid: true,
        events: rows.len() as u64,
        head_hash: rows.last().map(|_| hex::encode(prev)),
        first_bad_version: None,
    }
}

impl StoredRow {
    /// Parses the stored row into an envelope; a row that does not parse is
    /// [`super::StoreError::Corrupt`], never a panic.
    pub fn into_envelope(self) -> Result<conflux_schema::EventEnvelope, super::StoreError> {
        let corrupt = |reason: String| super::StoreError::Corrupt {
            position: self.position,
            reason,
        };
        let stream_id =
            conflux_schema::StreamId::parse(&self.stream_id).map_err(|e| corrupt(e.to_string()))?;
        let event = conflux_schema::Event::from_parts(&self.event_type, self.data.clone())
            .map_err(|e| corrupt(format!("{} does not parse: {e}", self.event_type)))?;
        let metadata = serde_json::from_value(self.metadata.clone())
            .map_err(|e| corrupt(format!("metadata does not parse: {e}")))?;
        Ok(conflux_schema::EventEnvelope {
            event_id: self.event_id,
            stream_type: stream_id.stream_type(),
            stream_id,
            version: self.version,
            position: self.position,
            event,
            schema_version: self.schema_version,
            metadata,
            recorded_at: self.recorded_at,
            hash: hex::encode(&self.hash),
        })
    }
}
