//! The event store with encryption at rest: payloads are sealed before an append reaches
//! the store (so the log, its hash chain, the outbox and the bus only ever hold
//! ciphertext) and opened on every read. Appenders get their own plaintext events back.
//!
//! What must see the stored form reads the inner store instead: the relay (so the bus
//! carries ciphertext) and the projector (so read models hold ciphertext, opened by the
//! query side when it serves them). Chain verification always reads stored rows.

use std::sync::Arc;

use async_trait::async_trait;
use conflux_schema::{EventEnvelope, StreamId, StreamType};
use tokio::sync::watch;

use super::codec::PayloadCodec;
use crate::store::{
    AppendRequest, ChainVerification, EventStore, SigningSecret, StoreError, StreamQuery,
};

/// An [`EventStore`] that seals payloads on append and opens them on read.
pub struct SealedStore {
    inner: Arc<dyn EventStore>,
    codec: PayloadCodec,
}

impl SealedStore {
    /// `inner`, with payloads sealed and opened by `codec`.
    pub fn new(inner: Arc<dyn EventStore>, codec: PayloadCodec) -> Self {
        Self { inner, codec }
    }

    async fn open(
        &self,
        read: Result<Vec<EventEnvelope>, StoreError>,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        let mut envelopes = read?;
        self.codec
            .open_envelopes(&mut envelopes)
            .await
            .map_err(crypto_to_store)?;
        Ok(envelopes)
    }
}

/// Whether an append has anything to seal: payloads, in an execution stream.
fn carries_payload(request: &AppendRequest) -> bool {
    request.stream.stream_type() == StreamType::Execution
        && request.events.iter().any(|e| e.event.has_payload())
}

fn crypto_to_store(e: super::CryptoError) -> StoreError {
    match e {
        super::CryptoError::Store(e) => e,
        other => StoreError::Backend(other.to_string()),
    }
}

#[async_trait]
impl EventStore for SealedStore {
    async fn append_many(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<Vec<EventEnvelope>, StoreError>> {
        // Sealed concurrently: a request for an execution whose key this process has
        // not cached waits on the database, and one round may hold many of those. Only
        // requests with payloads are copied; the others go to the store as they are.
        let sealing = requests.iter().map(|request| async {
            if !carries_payload(request) {
                return (None, None);
            }
            let mut events = request.events.clone();
            match self.codec.seal_events(&request.stream, &mut events).await {
                Ok(()) => (Some(events), None),
                Err(e) => (None, Some(crypto_to_store(e))),
            }
        });
        let outcomes = futures::future::join_all(sealing).await;
        let mut plaintexts = Vec::with_capacity(requests.len());
        let mut failed = Vec::with_capacity(requests.len());
        let mut to_send = Vec::with_capacity(requests.len());
        for (mut request, (sealed, failure)) in requests.into_iter().zip(outcomes) {
            if let Some(e) = failure {
                // A request that could not be sealed is not appended at all.
                failed.push(Some(e));
                plaintexts.push(None);
                continue;
            }
            failed.push(None);
            plaintexts.push(sealed.map(|sealed| std::mem::replace(&mut request.events, sealed)));
            to_send.push(request);
        }
        let mut results = self.inner.append_many(to_send).await.into_iter();
        failed
            .into_iter()
            .zip(plaintexts)
            .map(|(failure, plain)| {
                if let Some(e) = failure {
                    return Err(e);
                }
                let mut envelopes = results.next().unwrap_or_else(|| {
                    Err(StoreError::Backend("append returned nothing".into()))
                })?;
                // The appender gets its own plaintext back.
                for (envelope, new) in envelopes.iter_mut().zip(plain.into_iter().flatten()) {
                    envelope.event = new.event;
                }
                Ok(envelopes)
            })
            .collect()
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.open(self.inner.read_stream(stream, after_version, limit).await)
            .await
    }

    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.open(self.inner.read_all(after_position, limit).await)
            .await
    }

    async fn read_all_of(
        &self,
        types: &[StreamType],
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.open(self.inner.read_all_of(types, after_position, limit).await)
            .await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        self.inner.stream_version(stream).await
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        self.inner.head_position().await
    }

    async fn store_id(&self) -> Result<uuid::Uuid, StoreError> {
        self.inner.store_id().await
    }

    async fn signing_secret(&self, name: &str) -> Result<SigningSecret, StoreError> {
        self.inner.signing_secret(name).await
    }

    async fn verify_stream(&self, stream: &StreamId) -> Result<ChainVerification, StoreError> {
        self.inner.verify_stream(stream).await
    }

    async fn find_streams(
        &self,
        query: &StreamQuery,
        limit: usize,
    ) -> Result<Vec<StreamId>, StoreError> {
        self.inner.find_streams(query, limit).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    fn commits(&self) -> watch::Receiver<u64> {
        self.inner.commits()
    }

    async fn outbox_pending(&self) -> Result<Option<u64>, StoreError> {
        self.inner.outbox_pending().await
    }

    async fn outbox_done(&self, position: u64) -> Result<(), StoreError> {
        self.inner.outbox_done(position).await
    }

    async fn tenant_usage(
        &self,
        tenant: &str,
        since: chrono::DateTime<chrono::Utc>,
        agent_name: Option<&str>,
    ) -> Result<crate::store::TenantCounters, StoreError> {
        self.inner.tenant_usage(tenant, since, agent_name).await
    }
}
