//! Erasure (crypto-shredding): destroying the data keys of a tenant or of one finished
//! execution, then recording that it happened as an event. The log is never edited —
//! the payloads sealed under the destroyed keys simply can never be opened again, so
//! they read as `{"redacted": "erased"}` everywhere, and every hash chain stays valid.

use std::sync::Arc;

use conflux_schema::access::TenantName;
use conflux_schema::{Event, EventEnvelope, EventMetadata, NewEvent, StreamId};
use uuid::Uuid;

use super::{CryptoError, PayloadCodec};
use crate::access::tenant_stream;
use crate::commands::{CommandError, ExecutionCommands};
use crate::store::{EventStore, StoreError};

/// Why an erasure was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    /// Without a master key nothing is sealed, so there is no key to destroy.
    #[error(
        "payload encryption at rest is off (no CONFLUX_MASTER_KEY), so payloads are stored \
         in plain text and there is no data key to destroy"
    )]
    EncryptionOff,
    /// No such execution in the caller's tenant.
    #[error("execution {0} not found")]
    NotFound(Uuid),
    /// The execution was recorded before encryption at rest was on: its payloads are
    /// stored in plain text, and there is no key whose destruction would erase them.
    #[error(
        "execution {0} was recorded before encryption at rest was on: its payloads are \
         stored in plain text and cannot be erased by destroying a key"
    )]
    NotSealed(Uuid),
    /// The execution is still running: its engine would go on writing payloads.
    #[error(
        "execution {id} is {status}: only a finished (completed, failed, compensated or \
         cancelled) execution's data can be erased; cancel it first"
    )]
    Unfinished {
        /// The execution.
        id: Uuid,
        /// Its status.
        status: String,
    },
    /// The key tables failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CommandError> for ErasureError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Store(e) => ErasureError::Store(e),
            other => ErasureError::Store(StoreError::Backend(other.to_string())),
        }
    }
}

/// What an erasure did.
#[derive(Debug, Clone)]
pub struct Erased {
    /// How many data keys were destroyed.
    pub keys_destroyed: u64,
    /// The audit event that records it.
    pub event: EventEnvelope,
}

/// Erases tenants' and executions' payloads.
#[derive(Clone)]
pub struct Erasure {
    commands: ExecutionCommands,
    codec: PayloadCodec,
}

impl Erasure {
    /// Erasure over `commands`' store, with `codec`'s keys.
    pub fn new(commands: ExecutionCommands, codec: PayloadCodec) -> Self {
        Self { commands, codec }
    }

    fn store(&self) -> &Arc<dyn EventStore> {
        self.commands.store()
    }

    /// Destroys every data key of `tenant` and records `TenantDataErased` in its stream.
    /// Its executions still running go on, but nothing they write is kept readable.
    pub async fn erase_tenant(
        &self,
        tenant: &TenantName,
        metadata: EventMetadata,
    ) -> Result<Erased, ErasureError> {
        let keyring = self.codec.keyring().ok_or(ErasureError::EncryptionOff)?;
        let keys_destroyed = keyring.erase_tenant(tenant.as_str()).await?;
        tracing::warn!(tenant = %tenant.as_str(), keys_destroyed, "a tenant's data was erased");
        let event = Event::TenantDataErased {
            tenant: tenant.clone(),
            keys_destroyed,
        };
        let event = self.record(&tenant_stream(tenant), event, metadata).await?;
        Ok(Erased {
            keys_destroyed,
            event,
        })
    }

    /// Destroys the data key of finished execution `id` of `tenant` and records
    /// `ExecutionDataErased` in its stream.
    pub async fn erase_execution(
        &self,
        tenant: &str,
        id: Uuid,
        metadata: EventMetadata,
    ) -> Result<Erased, ErasureError> {
        let (state, _) = self
            .commands
            .load_in(tenant, id)
            .await?
            .ok_or(ErasureError::NotFound(id))?;
        let keyring = self.codec.keyring().ok_or(ErasureError::EncryptionOff)?;
        if !state.is_terminal() {
            return Err(ErasureError::Unfinished {
                id,
                status: state.status().as_str().to_owned(),
            });
        }
        if matches!(keyring.key_for_reading(id).await?, super::KeyState::Missing) {
            return Err(ErasureError::NotSealed(id));
        }
        let keys_destroyed = u64::from(keyring.erase_execution(id).await?);
        tracing::warn!(execution = %id, keys_destroyed, "an execution's data was erased");
        let event = Event::ExecutionDataErased { keys_destroyed };
        let event = self
            .record(&StreamId::execution(id), event, metadata)
            .await?;
        Ok(Erased {
            keys_destroyed,
            event,
        })
    }

    /// Appends `event` at the stream's head, retrying on a concurrent append.
    async fn record(
        &self,
        stream: &StreamId,
        event: Event,
        metadata: EventMetadata,
    ) -> Result<EventEnvelope, ErasureError> {
        let mut attempts = 0;
        loop {
            let version = self.store().stream_version(stream).await?;
            let new = NewEvent::new(event.clone(), metadata.clone());
            match self.store().append(stream, version, vec![new]).await {
                Ok(mut events) => {
                    return events.pop().ok_or_else(|| {
                        ErasureError::Store(StoreError::Backend("append returned nothing".into()))
                    })
                }
                Err(StoreError::Conflict { .. }) if attempts < 10 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
