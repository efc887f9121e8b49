//! The append pipeline both backends share.
//!
//! 1. In the caller's task, [`prepare`] serialises each event and computes its canonical
//!    bytes (the version is known: the caller names the version it expects), so this
//!    CPU work runs in parallel across callers, not in the writer.
//! 2. One writer task per store takes every queued append, checks expected versions
//!    against a cache of stream heads, chains the hashes ([`plan`]), and hands the backend
//!    one batch of rows to insert in one transaction (group commit).
//! 3. While a batch is in flight, new appends queue up and become the next batch. Only
//!    when the queue is large (≥ 256 events) is a second batch sent before the first
//!    commits (up to [`LogBackend::max_in_flight`], on disjoint streams), so that it is
//!    already waiting on the database's commit-order lock; small batches are better
//!    merged, since the database serialises commits anyway. Appends to a stream that is
//!    in flight wait, in arrival order.
//!
//! Correctness never depends on the cache: the unique key on `(stream_id, version)`
//! rejects a stale plan, after which each request of the batch is retried alone against
//! fresh heads.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use conflux_schema::canonical::write_value;
use conflux_schema::event::{now_micros, CanonicalParts, GENESIS_HASH, SCHEMA_VERSION};
use conflux_schema::{Event, EventEnvelope, EventMetadata, StreamId};
use futures::stream::{FuturesUnordered, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use super::{AppendRequest, StoreError};

/// Most requests grouped into one transaction.
const MAX_BATCH_REQUESTS: usize = 512;
/// Most events grouped into one transaction (a single large append may exceed it).
const MAX_BATCH_EVENTS: usize = 4096;
/// Queued events needed before a second batch is sent while one is in flight.
const OVERLAP_MIN_EVENTS: usize = 256;
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

/// An event serialised by its caller: every column but the hash.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    event_id: Uuid,
    event_type: &'static str,
    data_json: String,
    metadata_json: String,
    recorded_at: DateTime<Utc>,
    canonical: Vec<u8>,
    event: Event,
    metadata: EventMetadata,
}

/// An append whose events are serialised, waiting for the writer to chain them.
#[derive(Debug, Clone)]
pub struct PreparedAppend {
    /// The stream.
    pub stream: StreamId,
    /// The version the stream must be at.
    pub expected_version: u64,
    events: Vec<PreparedEvent>,
}

/// Serialises a request's events and computes their canonical bytes, assuming the
/// append will land at `expected_version + 1..` (if not, it is rejected anyway).
pub fn prepare(req: AppendRequest) -> Result<PreparedAppend, StoreError> {
    if req.events.is_empty() {
        return Err(StoreError::Invalid(
            "an append needs at least one event".into(),
        ));
    }
    let mut events = Vec::with_capacity(req.events.len());
    for (i, new) in req.events.into_iter().enumerate() {
        let (event_type, data) = new
            .event
            .to_parts()
            .map_err(|e| StoreError::Invalid(format!("event does not serialise: {e}")))?;
        let metadata = serde_json::to_value(&new.metadata)
            .map_err(|e| StoreError::Invalid(format!("metadata does not serialise: {e}")))?;
        // Serialised once, canonically: the same text is hashed and stored.
        let data_json = canonical_text(&data);
        let metadata_json = canonical_text(&metadata);
        let event_id = Uuid::now_v7();
        let recorded_at = now_micros();
        let canonical = CanonicalParts {
            event_id,
            stream_id: req.stream.as_str(),
            version: req.expected_version + 1 + i as u64,
            event_type,
            schema_version: SCHEMA_VERSION,
            data_json: data_json.as_bytes(),
            metadata_json: metadata_json.as_bytes(),
            recorded_at,
        }
        .canonical_bytes();
        events.push(PreparedEvent {
            event_id,
            event_type,
            data_json,
            metadata_json,
            recorded_at,
            canonical,
            event: new.event,
            metadata: new.metadata,
        });
    }
    Ok(PreparedAppend {
        stream: req.stream,
        expected_version: req.expected_version,
        events,
    })
}

fn canonical_text(value: &serde_json::Value) -> String {
    let mut out = Vec::with_capacity(128);
    write_value(value, &mut out);
    // write_value emits only valid UTF-8 (JSON text of valid strings).
    String::from_utf8(out).unwrap_or_default()
}

/// One event ready to insert: every column.
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
    /// Event data, canonical JSON text.
    pub data_json: String,
    /// Metadata, canonical JSON text.
    pub metadata_json: String,
    /// Recorded time, microsecond precision.
    pub recorded_at: DateTime<Utc>,
    /// Chain hash.
    pub hash: [u8; 32],
    event: Event,
    metadata: EventMetadata,
}

impl Row {
    /// The tenant the event belongs to (`default` when its metadata names none).
    pub fn tenant(&self) -> &str {
        self.metadata.tenant()
    }

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

/// Checks a prepared append against `heads`, chains its hashes and advances `heads`.
pub fn plan(
    heads: &mut HashMap<String, Head>,
    append: PreparedAppend,
) -> Result<Vec<Row>, StoreError> {
    let head = heads
        .get(append.stream.as_str())
        .copied()
        .unwrap_or(Head::EMPTY);
    if head.version != append.expected_version {
        return Err(StoreError::Conflict {
            stream: append.stream,
            expected: append.expected_version,
            actual: head.version,
        });
    }
    let mut prev = head;
    let mut rows = Vec::with_capacity(append.events.len());
    for e in append.events {
        let mut hasher = Sha256::new();
        hasher.update(prev.hash);
        hasher.update(&e.canonical);
        let hash: [u8; 32] = hasher.finalize().into();
        let version = prev.version + 1;
        rows.push(Row {
            stream: append.stream.clone(),
            version,
            event_id: e.event_id,
            event_type: e.event_type,
            schema_version: SCHEMA_VERSION,
            data_json: e.data_json,
            metadata_json: e.metadata_json,
            recorded_at: e.recorded_at,
            hash,
            event: e.event,
            metadata: e.metadata,
        });
        prev = Head { version, hash };
    }
    heads.insert(append.stream.as_str().to_owned(), prev);
    Ok(rows)
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
    async fn insert(&self, rows: &[&Row]) -> Result<Vec<u64>, InsertError>;

    /// How many insert transactions may be in flight at once.
    fn max_in_flight(&self) -> usize;
}

type Reply = oneshot::Sender<Result<Vec<EventEnvelope>, StoreError>>;

struct Job {
    append: PreparedAppend,
    reply: Reply,
}

impl Job {
    fn stream(&self) -> &str {
        self.append.stream.as_str()
    }
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
            busy: HashSet::new(),
            deferred: VecDeque::new(),
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
            let append = match prepare(req) {
                Ok(append) => append,
                Err(e) => {
                    waiting.push(Err(e));
                    continue;
                }
            };
            let (reply, rx) = oneshot::channel();
            match self.tx.send(Job { append, reply }).await {
                Ok(()) => waiting.push(Ok(rx)),
                Err(_) => waiting.push(Err(writer_gone())),
            }
        }
        let mut out = Vec::with_capacity(waiting.len());
        for w in waiting {
            out.push(match w {
                Ok(rx) => rx.await.unwrap_or_else(|_| Err(writer_gone())),
                Err(e) => Err(e),
            });
        }
        out
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the append writer has stopped".into())
}

/// What a finished batch tells the writer.
struct BatchDone {
    streams: Vec<String>,
    /// Heads after the batch, for streams that committed.
    heads: Vec<(String, Head)>,
    last_position: u64,
}

struct Writer<B> {
    backend: Arc<B>,
    rx: mpsc::Receiver<Job>,
    heads: HashMap<String, Head>,
    commits: watch::Sender<u64>,
    /// Streams with a batch in flight.
    busy: HashSet<String>,
    /// Jobs waiting for their stream to be free, in arrival order.
    deferred: VecDeque<Job>,
}

impl<B: LogBackend> Writer<B> {
    async fn run(mut self) {
        let mut in_flight = FuturesUnordered::new();
        let mut open = true;
        loop {
            let room = in_flight.len() < self.backend.max_in_flight();
            tokio::select! {
                job = self.rx.recv(), if open && room => match job {
                    Some(job) => {
                        let mut incoming = vec![job];
                        while incoming.len() < MAX_BATCH_REQUESTS {
                            match self.rx.try_recv() {
                                Ok(job) => incoming.push(job),
                                Err(_) => break,
                            }
                        }
                        self.deferred.extend(incoming);
                    }
                    None => open = false,
                },
                Some(done) = in_flight.next(), if !in_flight.is_empty() => self.finish(done),
                else => break,
            }
            // A second batch in flight only pays when it is large: commits are serialised
            // by the database, so small batches are better merged into the next one.
            while in_flight.is_empty()
                || (in_flight.len() < self.backend.max_in_flight()
                    && self.deferred_events() >= OVERLAP_MIN_EVENTS)
            {
                match self.launch().await {
                    Some(batch) => in_flight.push(batch),
                    None => break,
                }
            }
            if !open && in_flight.is_empty() && self.deferred.is_empty() {
                break;
            }
        }
    }

    fn deferred_events(&self) -> usize {
        self.deferred.iter().map(|j| j.append.events.len()).sum()
    }

    fn finish(&mut self, done: BatchDone) {
        for s in &done.streams {
            self.busy.remove(s);
            self.heads.remove(s);
        }
        if self.heads.len() + done.heads.len() > MAX_CACHED_HEADS {
            self.heads.clear();
        }
        self.heads.extend(done.heads);
        if done.last_position > 0 {
            self.commits.send_if_modified(|p| {
                let newer = done.last_position > *p;
                *p = (*p).max(done.last_position);
                newer
            });
        }
    }

    /// Takes the deferred jobs whose streams are free (keeping per-stream order), plans
    /// them, and returns the future that inserts them.
    async fn launch(&mut self) -> Option<impl std::future::Future<Output = BatchDone>> {
        let mut batch = Vec::new();
        let mut events = 0;
        let mut blocked: HashSet<String> = HashSet::new();
        let mut keep = VecDeque::with_capacity(self.deferred.len());
        while let Some(job) = self.deferred.pop_front() {
            let full = batch.len() >= MAX_BATCH_REQUESTS || events >= MAX_BATCH_EVENTS;
            if full || self.busy.contains(job.stream()) || blocked.contains(job.stream()) {
                blocked.insert(job.stream().to_owned());
                keep.push_back(job);
            } else {
                events += job.append.events.len();
                batch.push(job);
            }
        }
        self.deferred = keep;
        if batch.is_empty() {
            return None;
        }
        if let Err(e) = self.load_missing_heads(&batch).await {
            for job in batch {
                let _ = job.reply.send(Err(e.clone()));
            }
            return None;
        }
        let mut tentative: HashMap<String, Head> = batch
            .iter()
            .filter_map(|job| {
                self.heads
                    .get(job.stream())
                    .map(|h| (job.stream().to_owned(), *h))
            })
            .collect();
        let mut planned: Vec<(Reply, Vec<Row>, PreparedAppend)> = Vec::with_capacity(batch.len());
        let mut streams = Vec::with_capacity(batch.len());
        for job in batch {
            let retry_copy = job.append.clone();
            match plan(&mut tentative, job.append) {
                Ok(rows) => {
                    if self.busy.insert(retry_copy.stream.as_str().to_owned()) {
                        streams.push(retry_copy.stream.as_str().to_owned());
                    }
                    planned.push((job.reply, rows, retry_copy));
                }
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                }
            }
        }
        if planned.is_empty() {
            return None;
        }
        let backend = self.backend.clone();
        Some(insert_batch(backend, planned, streams, tentative))
    }

    /// Reads heads for streams the cache does not know, or whose cached version is
    /// below what the caller expects (another process appended since).
    async fn load_missing_heads(&mut self, batch: &[Job]) -> Result<(), StoreError> {
        let mut missing: Vec<&str> = batch
            .iter()
            .filter(|job| {
                self.heads
                    .get(job.stream())
                    .is_none_or(|h| h.version < job.append.expected_version)
            })
            .map(Job::stream)
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
}

/// Inserts one planned batch, replies to its callers, and reports the new heads.
async fn insert_batch<B: LogBackend>(
    backend: Arc<B>,
    planned: Vec<(Reply, Vec<Row>, PreparedAppend)>,
    streams: Vec<String>,
    tentative: HashMap<String, Head>,
) -> BatchDone {
    let rows: Vec<&Row> = planned
        .iter()
        .flat_map(|(_, rows, _)| rows.iter())
        .collect();
    match backend.insert(&rows).await {
        Ok(positions) => {
            metrics::counter!("conflux_events_appended_total").increment(positions.len() as u64);
            let last_position = positions.iter().copied().max().unwrap_or(0);
            let mut positions = positions.into_iter();
            for (reply, rows, _) in planned {
                let envelopes = rows
                    .into_iter()
                    .map(|row| row.into_envelope(positions.next().unwrap_or(0)))
                    .collect();
                let _ = reply.send(Ok(envelopes));
            }
            BatchDone {
                streams,
                heads: tentative.into_iter().collect(),
                last_position,
            }
        }
        // Someone else appended to one of these streams, or one request carries
        // something the database refuses: retry each request alone on fresh heads, so
        // only the requests that really conflict (or are bad) fail.
        Err(InsertError::Duplicate) => retry_alone(&*backend, planned, streams).await,
        Err(InsertError::Store(e))
            if planned.len() > 1 && !matches!(e, StoreError::Unavailable(_)) =>
        {
            tracing::warn!(error = %e, requests = planned.len(), "a batched append failed; retrying its requests one by one");
            retry_alone(&*backend, planned, streams).await
        }
        Err(InsertError::Store(e)) => {
            for (reply, _, _) in planned {
                let _ = reply.send(Err(e.clone()));
            }
            BatchDone {
                streams,
                heads: Vec::new(),
                last_position: 0,
            }
        }
    }
}

async fn retry_alone<B: LogBackend>(
    backend: &B,
    planned: Vec<(Reply, Vec<Row>, PreparedAppend)>,
    streams: Vec<String>,
) -> BatchDone {
    let mut heads = Vec::new();
    let mut last_position = 0;
    for (reply, _, append) in planned {
        let result = insert_alone(backend, append).await;
        if let Ok((envelopes, head)) = &result {
            last_position = last_position.max(envelopes.last().map_or(0, |e| e.position));
            heads.push(head.clone());
        }
        let _ = reply.send(result.map(|(envelopes, _)| envelopes));
    }
    BatchDone {
        streams,
        heads,
        last_position,
    }
}

async fn insert_alone<B: LogBackend>(
    backend: &B,
    append: PreparedAppend,
) -> Result<(Vec<EventEnvelope>, (String, Head)), StoreError> {
    let stream = append.stream.clone();
    let expected = append.expected_version;
    let mut heads = backend.heads(&[stream.as_str()]).await?;
    let rows = plan(&mut heads, append)?;
    let refs: Vec<&Row> = rows.iter().collect();
    match backend.insert(&refs).await {
        Ok(positions) => {
            let head = heads.remove(stream.as_str()).unwrap_or(Head::EMPTY);
            let envelopes = rows
                .into_iter()
                .zip(positions)
                .map(|(r, p)| r.into_envelope(p))
                .collect();
            Ok((envelopes, (stream.as_str().to_owned(), head)))
        }
        Err(InsertError::Duplicate) => {
            let actual = backend
                .heads(&[stream.as_str()])
                .await?
                .get(stream.as_str())
                .map_or(0, |h| h.version);
            Err(StoreError::Conflict {
                stream,
                expected,
                actual,
            })
        }
        Err(InsertError::Store(e)) => Err(e),
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
        let rows = plan(&mut heads, prepare(req(&s, 0, 3)).unwrap()).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.version).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(heads[s.as_str()].version, 3);
        assert_eq!(heads[s.as_str()].hash, rows[2].hash);
        let err = plan(&mut heads, prepare(req(&s, 0, 1)).unwrap()).unwrap_err();
        assert!(matches!(
            err,
            StoreError::Conflict {
                expected: 0,
                actual: 3,
                ..
            }
        ));
        assert!(matches!(
            prepare(req(&s, 3, 0)),
            Err(StoreError::Invalid(_))
        ));
        let more = plan(&mut heads, prepare(req(&s, 3, 1)).unwrap()).unwrap();
        assert_eq!(more[0].version, 4);
    }

    #[test]
    fn planned_hashes_match_the_verifier() {
        let s = StreamId::execution(Uuid::now_v7());
        let mut heads = HashMap::new();
        let rows = plan(&mut heads, prepare(req(&s, 0, 2)).unwrap()).unwrap();
        let stored: Vec<super::super::chain::StoredRow> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| super::super::chain::StoredRow {
                position: i as u64 + 1,
                stream_id: s.as_str().to_owned(),
                version: r.version,
                event_id: r.event_id,
                event_type: r.event_type.to_owned(),
                schema_version: r.schema_version,
                data: serde_json::from_str(&r.data_json).unwrap(),
                metadata: serde_json::from_str(&r.metadata_json).unwrap(),
                recorded_at: r.recorded_at,
                hash: r.hash.to_vec(),
            })
            .collect();
        assert!(super::super::chain::verify_rows(&stored).valid);
    }
}
