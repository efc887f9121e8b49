//! The data every measurement writes, built in one place so that Conflux appends, raw
//! Postgres inserts and Redis XADDs move the same bytes: a `TaskCompleted` event with a
//! small JSON output and the metadata an API request would carry. If the raw rows were
//! smaller than the store's, the "ratio to raw" would flatter the raw side.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use conflux_schema::event::{now_micros, SCHEMA_VERSION};
use conflux_schema::{Event, EventEnvelope, EventMetadata, NewEvent, StreamId, TaskId};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Makes the benchmark's events; one per worker (each worker has its own correlation id).
#[derive(Debug, Clone)]
pub struct Payload {
    task_id: TaskId,
    metadata: EventMetadata,
}

impl Payload {
    /// A payload whose events carry `correlation_id` and actor `bench`.
    pub fn new(correlation_id: String) -> Result<Self> {
        Ok(Self {
            task_id: TaskId::parse("task-1").context("the benchmark task id is invalid")?,
            metadata: EventMetadata {
                correlation_id: Some(correlation_id),
                actor: Some("bench".into()),
                ..Default::default()
            },
        })
    }

    /// A payload with a fresh random correlation id.
    pub fn fresh() -> Result<Self> {
        Self::new(format!("bench-{}", Uuid::now_v7()))
    }

    /// The `n`-th event: a completed task whose output carries `n`, so rows differ.
    pub fn event(&self, n: u64) -> Event {
        Event::TaskCompleted {
            task_id: self.task_id.clone(),
            attempt: 1,
            output: json!({"status": 200, "body": {"ok": true, "n": n}}),
        }
    }

    /// The `n`-th event with its metadata, ready for `EventStore::append`.
    pub fn new_event(&self, n: u64) -> NewEvent {
        NewEvent::new(self.event(n), self.metadata.clone())
    }

    /// The row the store would insert for the `n`-th event at `version` of `stream`,
    /// built the same way (event and metadata serialised to JSON per row, a uuid v7, a
    /// microsecond timestamp), with a sha-256 of the event id standing in for the chain
    /// hash: the raw side pays for a 32-byte column, not for the chain.
    pub fn raw_row(&self, stream: &StreamId, version: u64, n: u64) -> Result<RawRow> {
        let (event_type, data) = self
            .event(n)
            .to_parts()
            .context("the benchmark event does not serialise")?;
        let metadata = serde_json::to_value(&self.metadata)
            .context("the benchmark metadata does not serialise")?;
        let event_id = Uuid::now_v7();
        Ok(RawRow {
            stream_id: stream.as_str().to_owned(),
            stream_type: stream.stream_type().as_str(),
            version: i64::try_from(version).context("stream version out of range")?,
            event_id,
            event_type,
            schema_version: i16::try_from(SCHEMA_VERSION).context("schema version out of range")?,
            data,
            metadata,
            recorded_at: now_micros(),
            hash: Sha256::digest(event_id.as_bytes()).to_vec(),
        })
    }
}

/// One row of the raw `raw_events` table: the columns of the store's `events` table,
/// less the `position` the database assigns.
#[derive(Debug, Clone)]
pub struct RawRow {
    /// `stream_id`.
    pub stream_id: String,
    /// `stream_type`.
    pub stream_type: &'static str,
    /// `version`.
    pub version: i64,
    /// `event_id` (uuid v7).
    pub event_id: Uuid,
    /// `event_type`.
    pub event_type: &'static str,
    /// `schema_version`.
    pub schema_version: i16,
    /// `data` (jsonb).
    pub data: Value,
    /// `metadata` (jsonb).
    pub metadata: Value,
    /// `recorded_at` (timestamptz).
    pub recorded_at: DateTime<Utc>,
    /// `hash` (32 bytes).
    pub hash: Vec<u8>,
}

/// A committed envelope as the relay would publish it, serialised to JSON: the value
/// the Redis measurements send, so XADD carries what the bus carries.
pub fn envelope_json() -> Result<String> {
    let payload = Payload::fresh()?;
    let stream = StreamId::execution(Uuid::now_v7());
    let row = payload.raw_row(&stream, 1, 0)?;
    let envelope = EventEnvelope {
        event_id: row.event_id,
        stream_type: stream.stream_type(),
        stream_id: stream,
        version: 1,
        position: 1_000_000,
        event: payload.event(0),
        schema_version: SCHEMA_VERSION,
        metadata: payload.metadata.clone(),
        recorded_at: row.recorded_at,
        hash: hex::encode(&row.hash),
    };
    serde_json::to_string(&envelope).context("the benchmark envelope does not serialise")
}

/// A stream for a benchmark worker: a new execution stream at version 0.
pub fn new_stream() -> (StreamId, u64) {
    (StreamId::execution(Uuid::now_v7()), 0)
}

/// How many streams each worker spreads its appends over, round-robin.
pub const STREAMS_PER_WORKER: usize = 16;

/// Round-robin over a worker's streams, tracking each stream's version locally.
#[derive(Debug)]
pub struct StreamCursor {
    streams: Vec<(StreamId, u64)>,
    next: usize,
}

impl StreamCursor {
    /// [`STREAMS_PER_WORKER`] fresh streams.
    pub fn new() -> Self {
        Self {
            streams: (0..STREAMS_PER_WORKER).map(|_| new_stream()).collect(),
            next: 0,
        }
    }

    /// The next stream and the version it is at; call [`StreamCursor::advance`] once
    /// the append committed.
    pub fn current(&self) -> (&StreamId, u64) {
        let (stream, version) = &self.streams[self.next];
        (stream, *version)
    }

    /// Records `events` appended to the current stream and moves to the next one.
    pub fn advance(&mut self, events: u64) {
        self.streams[self.next].1 += events;
        self.next = (self.next + 1) % self.streams.len();
    }
}

impl Default for StreamCursor {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_rows_match_the_store_columns() -> Result<()> {
        let payload = Payload::fresh()?;
        let (stream, _) = new_stream();
        let row = payload.raw_row(&stream, 3, 7)?;
        assert_eq!(row.event_type, "TaskCompleted");
        assert_eq!(row.version, 3);
        assert_eq!(row.hash.len(), 32);
        assert_eq!(row.data["output"]["body"]["n"], 7);
        assert_eq!(row.metadata["actor"], "bench");
        Ok(())
    }

    #[test]
    fn the_envelope_round_trips() -> Result<()> {
        let json = envelope_json()?;
        let back: EventEnvelope = serde_json::from_str(&json)?;
        assert_eq!(back.version, 1);
        Ok(())
    }

    #[test]
    fn the_cursor_goes_round_robin() {
        let mut cursor = StreamCursor::new();
        let first = cursor.current().0.clone();
        for _ in 0..STREAMS_PER_WORKER {
            cursor.advance(2);
        }
        assert_eq!(cursor.current(), (&first, 2));
    }
}
