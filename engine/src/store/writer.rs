//! The append pipeline both backends share: one writer task per store groups concurrent
//! appends into a single transaction (group commit), checks expected versions against a
//! cache of stream heads, chains hashes, and hands the backend plain rows to insert.
//!
//! Correctness never depends on the cache: the backend's unique key on
//! `(stream_id, version)` rejects a stale plan, after which the writer drops the cached
//! heads and retries each request alone against fresh heads.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use conflux_schema::event::{now_micros, HashInput, GENESIS_HASH, SCHEMA_VERSION};
use conflux_schema::{Event, EventEnvelope, EventMetadata, StreamId};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use super::{AppendRequest, StoreError};

/// Most requests grouped into one transaction.
const MAX_BATCH_REQUESTS: usize = 256;
/// Most events grouped into one transaction (a single large append may exceed it).
const MAX_BATCH_EVENTS: usize = 4096;
/// Stream heads kept in memory before the cache is cleared.
const MAX_CACHED_HEADS: usize = 100_000;

/// A stream's latest version and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Latest version (0: no stream).
    pub version: u64,
    /// Hash of the latest event (the genesis hash for an empty stream).
    pub hash: [u8; 32],
}

impl Head {
    /// The head of a stream that does not exist yet.
    pub const EMPTY: Head = Head {
        version: 0,
        hash: GENESIS_HASH,
    };
}

/// One event ready to insert: every column, plus the typed parts for the envelope.
#[derive(Debug, Clone)]
pub struct Row {
    /// Stream.
    pub stream: StreamId,
    /// Version in the stream.
    pub version: u64,
    /// Event id (uuid v7).
    pub event_id: Uuid,
    /// Type name.
    pub event_type: &'static str,
    /// Schema version.
    pub schema_version: u16,
    /// Event data as JSON.
    pub data: Value,
    /// Metadata as JSON.
    pub metadata_json: Value,
    /// Recorded time, microsecond precision.
    pub recorded_at: DateTime<Utc>,
    /// Chain hash.
    pub hash: [u8; 32],
    event: Event,
    metadata: EventMetadata,
}

impl Row {
    /// The committed envelope once the store assigned `position`.
    pub fn into_envelope(self, position: u64) -> EventEnvelope {
        EventEnvelope {
            event_id: self.event_id,
            stream_type: self.stream.stream_type(),
            stream_id: self.stream,
            version: self.version,
            position,
            event: self.event,
            schema_version: self.schema_version,
            metadata: self.metadata,
            recorded_at: self.recorded_at,
            hash: hex::encode(self.hash),
        }
    }
}

/// Why a backend insert failed.
#[derive(Debug)]
pub enum InsertError {
    /// A `(stream_id, version)` already exists: another writer got there first.
    Duplicate,
    /// Anything else.
    Store(StoreError),
}

/// What a backend must do for the writer: read heads, insert rows atomically.
#[async_trait]
pub trait LogBackend: Send + Sync + 'static {
    /// Current heads of the given streams; streams that do not exist are absent.
    async fn heads(&self, streams: &[&str]) -> Result<HashMap<String, Head>, StoreError>;

    /// Inserts `rows` and one outbox row in one transaction, assigning positions in row
    /// order under the backend's commit-order guarantee. Returns the positions.
    async fn insert(&self, rows: &[Row]) -> Result<Vec<u64>, InsertError>;
}

/// Turns one request into rows, advancing `heads`. Pure apart from ids and the clock.
pub fn plan(
    heads: &mut HashMap<String, Head>,
    req: &AppendRequest,
) -> Result<Vec<Row>, StoreError> {
    if req.events.is_empty() {
        return Err(StoreError::Invalid(
            "an append needs at least one event".into(),
        ));
    }
    let head = heads
        .get(req.stream.as_str())
        .copied()
        .unwrap_or(Head::EMPTY);
    if head.version != req.expected_version {
        return Err(StoreError::Conflict {
            stream: req.stream.clone(),
            expected: req.expected_version,
            actual: head.version,
        });
    }
    let mut prev = head;
    let mut rows = Vec::with_capacity(req.events.len());
    for new in &req.events {
        let (event_type, data) = new
            .event
            .to_parts()
            .map_err(|e| StoreError::Invalid(format!("event does not serialise: {e}")))?;
        let metadata_json = serde_json::to_value(&new.metadata)
            .map_err(|e| StoreError::Invalid(format!("metadata does not serialise: {e}")))?;
        let version = prev.version + 1;
        let event_id = Uuid::now_v7();
        let recorded_at = now_micros();
        let hash = HashInput {
            event_id,
            stream_id: req.stream.as_str(),
            version,
            event_type,
            schema_version: SCHEMA_VERSION,
            data: &data,
            metadata: &metadata_json,
            recorded_at,
        }
        .chain_hash(&prev.hash);
        rows.push(Row {
            stream: req.stream.clone(),
            version,
            event_id,
            event_type,
            schema_version: SCHEMA_VERSION,
            data,
            metadata_json,
            recorded_at,
            hash,
            event: new.event.clone(),
            metadata: new.metadata.clone(),
        });
        prev = Head { version, hash };
    }
    heads.insert(req.stream.as_str().to_owned(), prev);
    Ok(rows)
}

type Reply = oneshot::Sender<Result<Vec<EventEnvelope>, StoreError>>;

struct Job {
    req: AppendRequest,
    reply: Reply,
}

/// The handle appends go through; cheap to clone.
#[derive(Clone)]
pub struct AppendQueue {
    tx: mpsc::Sender<Job>,
}

impl AppendQueue {
    /// Starts the writer task for `backend`; `commits` receives the highest committed
    /// position after every commit.
    pub fn start<B: LogBackend>(backend: Arc<B>, commits: watch::Sender<u64>) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        let writer = Writer {
            backend,
            rx,
            heads: HashMap::new(),
            commits,
        };
        tokio::spawn(writer.run());
        Self { tx }
    }

    /// Submits requests; each is atomic, results come back in order.
    pub async fn submit(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<Vec<EventEnvelope>, StoreError>> {
        let mut waiting = Vec::with_capacity(requests.len());
        for req in requests {
            let (reply, rx) = oneshot::channel();
            if self.tx.send(Job { req, reply }).await.is_err() {
                waiting.push(None);
            } else {
                waiting.push(Some(rx));
            }
        }
        let mut out = Vec::with_capacity(waiting.len());
        for rx in waiting {
            let result = match rx {
                Some(rx) => rx.await.unwrap_or_else(|_| Err(writer_gone())),
                None => Err(writer_gone()),
            };
            out.push(result);
        }
        out
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the append writer has stopped".into())
}

struct Writer<B> {
    backend: Arc<B>,
    rx: mpsc::Receiver<Job>,
    heads: HashMap<String, Head>,
    commits: watch::Sender<u64>,
}

impl<B: LogBackend> Writer<B> {
    async fn run(mut self) {
        while let Some(first) = self.rx.recv().await {
            let mut events = first.req.events.len();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH_REQUESTS && events < MAX_BATCH_EVENTS {
                match self.rx.try_recv() {
                    Ok(job) => {
                        events += job.req.events.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.write_batch(batch).await;
        }
    }

    async fn write_batch(&mut self, batch: Vec<Job>) {
        if let Err(e) = self.load_missing_heads(&batch).await {
            for job in batch {
                let _ = job.reply.send(Err(e.clone()));
            }
            return;
        }
        let mut tentative = self.heads.clone_for(&batch);
        let mut planned: Vec<(Reply, Vec<Row>, AppendRequest)> = Vec::with_capacity(batch.len());
        for job in batch {
            match plan(&mut tentative, &job.req) {
                Ok(rows) => planned.push((job.reply, rows, job.req)),
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                }
            }
        }
        if planned.is_empty() {
            return;
        }
        let rows: Vec<Row> = planned
            .iter()
            .flat_map(|(_, r, _)| r.iter().cloned())
            .collect();
        match self.backend.insert(&rows).await {
            Ok(positions) => {
                self.heads.extend(tentative);
                self.trim_cache();
                let mut positions = positions.into_iter();
                let mut last = 0;
                for (reply, rows, _) in planned {
                    let envelopes: Vec<EventEnvelope> = rows
                        .into_iter()
                        .map(|row| {
                            let p = positions.next().unwrap_or(0);
                            last = last.max(p);
                            row.into_envelope(p)
                        })
                        .collect();
                    let _ = reply.send(Ok(envelopes));
                }
                self.commits.send_replace(last);
            }
            Err(InsertError::Duplicate) => {
                for (_, _, req) in &planned {
                    self.heads.remove(req.stream.as_str());
                }
                // Someone else appended to one of these streams: retry each alone on
                // fresh heads, so only the requests that really conflict fail.
                for (reply, _, req) in planned {
                    let result = self.write_alone(&req).await;
                    let _ = reply.send(result);
                }
            }
            Err(InsertError::Store(e)) => {
                for (reply, _, req) in planned {
                    self.heads.remove(req.stream.as_str());
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    async fn write_alone(&mut self, req: &AppendRequest) -> Result<Vec<EventEnvelope>, StoreError> {
        let mut heads = self.backend.heads(&[req.stream.as_str()]).await?;
        let rows = plan(&mut heads, req)?;
        match self.backend.insert(&rows).await {
            Ok(positions) => {
                self.heads.extend(heads);
                let last = positions.iter().copied().max().unwrap_or(0);
                self.commits.send_replace(last);
                Ok(rows
                    .into_iter()
                    .zip(positions)
                    .map(|(row, p)| row.into_envelope(p))
                    .collect())
            }
            Err(InsertError::Duplicate) => {
                let actual = self
                    .backend
                    .heads(&[req.stream.as_str()])
                    .await?
                    .get(req.stream.as_str())
                    .map_or(0, |h| h.version);
                Err(StoreError::Conflict {
                    stream: req.stream.clone(),
                    expected: req.expected_version,
                    actual,
                })
            }
            Err(InsertError::Store(e)) => Err(e),
        }
    }

    /// Reads heads for streams the cache does not know, or whose cached version is
    /// below what the caller expects (another process appended since).
    async fn load_missing_heads(&mut self, batch: &[Job]) -> Result<(), StoreError> {
        let mut missing: Vec<&str> = batch
            .iter()
            .filter(|job| {
                self.heads
                    .get(job.req.stream.as_str())
                    .is_none_or(|h| h.version < job.req.expected_version)
            })
            .map(|job| job.req.stream.as_str())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_unstable();
        missing.dedup();
        let found = self.backend.heads(&missing).await?;
        for stream in missing {
            let head = found.get(stream).copied().unwrap_or(Head::EMPTY);
            self.heads.insert(stream.to_owned(), head);
        }
        Ok(())
    }

    fn trim_cache(&mut self) {
        if self.heads.len() > MAX_CACHED_HEADS {
            self.heads.clear();
        }
    }
}

trait CloneFor {
    fn clone_for(&self, batch: &[Job]) -> HashMap<String, Head>;
}

impl CloneFor for HashMap<String, Head> {
    /// The cached heads of the streams a batch touches.
    fn clone_for(&self, batch: &[Job]) -> HashMap<String, Head> {
        batch
            .iter()
            .filter_map(|job| {
                let key = job.req.stream.as_str();
                self.get(key).map(|h| (key.to_owned(), *h))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conflux_schema::NewEvent;

    fn req(stream: &StreamId, expected: u64, n: usize) -> AppendRequest {
        AppendRequest {
            stream: stream.clone(),
            expected_version: expected,
            events: (0..n)
                .map(|_| NewEvent::new(Event::ExecutionPaused {}, EventMetadata::default()))
                .collect(),
        }
    }

    #[test]
    fn plan_checks_versions_and_chains_hashes() {
        let s = StreamId::execution(Uuid::now_v7());
        let mut heads = HashMap::new();
        let rows = plan(&mut heads, &req(&s, 0, 3)).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.version).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(heads[s.as_str()].version, 3);
        assert_eq!(heads[s.as_str()].hash, rows[2].hash);
        let err = plan(&mut heads, &req(&s, 0, 1)).unwrap_err();
        assert!(matches!(
            err,
            StoreError::Conflict {
                expected: 0,
                actual: 3,
                ..
            }
        ));
        assert!(matches!(
            plan(&mut heads, &req(&s, 3, 0)),
            Err(StoreError::Invalid(_))
        ));
        let more = plan(&mut heads, &req(&s, 3, 1)).unwrap();
        assert_eq!(more[0].version, 4);
    }
}
