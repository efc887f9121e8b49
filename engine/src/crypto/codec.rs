//! Sealing and opening payloads: what the store, the engine, the task queues and the
//! query side call. Off (no master key), every method returns at once and payloads stay
//! plaintext, as before encryption existed.
//!
//! A sealed payload holds the token `v1.<execution id, 32 hex>.<base64url(nonce ||
//! ciphertext || tag)>`, encrypted under the execution's key with the execution id as
//! associated data. A token is only ever opened for the execution it names — a reader
//! says which execution it reads — so a token copied into another execution's data
//! (say, by a client that put one in an input before encryption was turned on) reads as
//! tampered instead of opening someone else's payload.
//!
//! Opening never fails on the data itself: an erased key gives `{"redacted": "erased"}`
//! and a ciphertext that fails authentication gives `{"redacted": "tampered"}` (logged,
//! and counted in `conflux_payload_authentication_failures_total`); only an unreachable
//! database is an error.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use conflux_schema::payload::{
    for_each_sealed_mut, sealed_json, sealed_json_token, sealed_text, sealed_text_token,
    PayloadMut, Redaction,
};
use conflux_schema::{EventEnvelope, NewEvent, StreamId, StreamType};
use serde_json::Value;
use uuid::Uuid;

use super::aead::SecretKey;
use super::keyring::{KeyState, Keyring};
use super::CryptoError;

const TOKEN_VERSION: &str = "v1";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Seals and opens payloads, or does nothing when encryption at rest is off.
#[derive(Clone, Default)]
pub struct PayloadCodec {
    keyring: Option<Arc<Keyring>>,
}

impl std::fmt::Debug for PayloadCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadCodec")
            .field("on", &self.is_on())
            .finish()
    }
}

fn payload_aad(execution: Uuid) -> Vec<u8> {
    let mut aad = b"conflux/payload/v1/".to_vec();
    aad.extend_from_slice(execution.as_bytes());
    aad
}

/// The execution a stream's payloads belong to (only execution streams have any).
fn execution_of(stream: &StreamId) -> Option<Uuid> {
    (stream.stream_type() == StreamType::Execution).then(|| stream.uuid())
}

fn seal_payload(
    key: &SecretKey,
    execution: Uuid,
    aad: &[u8],
    payload: PayloadMut<'_>,
) -> Result<(), CryptoError> {
    let token = |plaintext: &[u8]| -> Result<String, CryptoError> {
        let sealed = key.seal(aad, plaintext)?;
        Ok(format!(
            "{TOKEN_VERSION}.{}.{}",
            execution.simple(),
            B64.encode(sealed)
        ))
    };
    match payload {
        // `null` is the absence of a payload (a noop's output, a task without input):
        // nothing to hide, and sealing it would only cost time.
        PayloadMut::Json(Value::Null) => {}
        PayloadMut::Json(value) => {
            let plaintext = serde_json::to_vec(value).map_err(|_| CryptoError::Seal)?;
            *value = sealed_json(token(&plaintext)?);
        }
        PayloadMut::Text(text) => *text = sealed_text(&token(text.as_bytes())?),
    }
    Ok(())
}

/// The execution a token names and its sealed bytes; None if it is not a token.
fn parse_token(token: &str) -> Option<(Uuid, Vec<u8>)> {
    let mut parts = token.splitn(3, '.');
    let (version, execution, blob) = (parts.next()?, parts.next()?, parts.next()?);
    if version != TOKEN_VERSION {
        return None;
    }
    Some((Uuid::try_parse(execution).ok()?, B64.decode(blob).ok()?))
}

/// Whether any payload field of `event` is sealed.
fn holds_sealed(event: &mut conflux_schema::Event) -> bool {
    let mut sealed = false;
    event.for_each_payload_mut(&mut |payload| {
        sealed |= match payload {
            PayloadMut::Json(value) => sealed_json_token(value).is_some(),
            PayloadMut::Text(text) => sealed_text_token(text).is_some(),
        }
    });
    sealed
}

/// Opens one sealed payload of `execution` in place (or redacts it).
fn open_payload(execution: Uuid, state: &KeyState, payload: PayloadMut<'_>) {
    let token = match &payload {
        PayloadMut::Json(value) => sealed_json_token(value),
        PayloadMut::Text(text) => sealed_text_token(text),
    };
    let Some(token) = token else { return };
    let opened = match parse_token(token) {
        Some((named, blob)) if named == execution => match state {
            KeyState::Live(key) => key.open(&payload_aad(execution), &blob).ok(),
            KeyState::Erased | KeyState::Missing => {
                return Redaction::Erased.apply(payload);
            }
            KeyState::Unreadable => None,
        },
        _ => None,
    };
    let restored = match (opened, payload) {
        (Some(plaintext), PayloadMut::Json(value)) => match serde_json::from_slice(&plaintext) {
            Ok(v) => {
                *value = v;
                return;
            }
            Err(_) => PayloadMut::Json(value),
        },
        (Some(plaintext), PayloadMut::Text(text)) => match String::from_utf8(plaintext) {
            Ok(s) => {
                *text = s;
                return;
            }
            Err(_) => PayloadMut::Text(text),
        },
        (None, payload) => payload,
    };
    metrics::counter!("conflux_payload_authentication_failures_total").increment(1);
    tracing::warn!(%execution, "a sealed payload failed authentication (altered, or sealed under another key); it reads as tampered");
    Redaction::Tampered.apply(restored);
}

impl PayloadCodec {
    /// Encryption at rest off: payloads stay as they are.
    pub fn off() -> Self {
        Self { keyring: None }
    }

    /// Encryption at rest on, with `keyring`'s keys.
    pub fn new(keyring: Arc<Keyring>) -> Self {
        Self {
            keyring: Some(keyring),
        }
    }

    /// Whether payloads are sealed.
    pub fn is_on(&self) -> bool {
        self.keyring.is_some()
    }

    /// The keyring, when on.
    pub fn keyring(&self) -> Option<&Arc<Keyring>> {
        self.keyring.as_ref()
    }

    async fn writing_key(
        &self,
        tenant: &str,
        execution: Uuid,
    ) -> Result<Option<KeyState>, CryptoError> {
        match &self.keyring {
            Some(keyring) => keyring.key_for_writing(tenant, execution).await.map(Some),
            None => Ok(None),
        }
    }

    /// Seals the payloads of `events`, about to be appended to `stream`, in place. Only
    /// execution streams carry payloads. Under an erased key, payloads are replaced by
    /// their erased form: data of an erased execution is never written again.
    pub async fn seal_events(
        &self,
        stream: &StreamId,
        events: &mut [NewEvent],
    ) -> Result<(), CryptoError> {
        let Some(execution) = execution_of(stream) else {
            return Ok(());
        };
        let Some(first) = events.iter().find(|e| e.event.has_payload()) else {
            return Ok(());
        };
        let tenant = first.metadata.tenant().to_owned();
        let Some(state) = self.writing_key(&tenant, execution).await? else {
            return Ok(());
        };
        let aad = payload_aad(execution);
        let mut result = Ok(());
        for new in events.iter_mut().filter(|e| e.event.has_payload()) {
            new.event.for_each_payload_mut(&mut |payload| {
                if result.is_err() {
                    return;
                }
                match &state {
                    KeyState::Live(key) => result = seal_payload(key, execution, &aad, payload),
                    KeyState::Erased | KeyState::Missing | KeyState::Unreadable => {
                        Redaction::Erased.apply(payload)
                    }
                }
            });
        }
        result
    }

    /// Seals one JSON payload of `execution` (a task-queue ticket's input) in place.
    pub async fn seal_json(
        &self,
        tenant: &str,
        execution: Uuid,
        value: &mut Value,
    ) -> Result<(), CryptoError> {
        let Some(state) = self.writing_key(tenant, execution).await? else {
            return Ok(());
        };
        match &state {
            KeyState::Live(key) => seal_payload(
                key,
                execution,
                &payload_aad(execution),
                PayloadMut::Json(value),
            ),
            KeyState::Erased | KeyState::Missing | KeyState::Unreadable => {
                Redaction::Erased.apply(PayloadMut::Json(value));
                Ok(())
            }
        }
    }

    async fn reading_keys(
        &self,
        executions: impl IntoIterator<Item = Uuid>,
    ) -> Result<HashMap<Uuid, KeyState>, CryptoError> {
        let Some(keyring) = &self.keyring else {
            return Ok(HashMap::new());
        };
        let mut distinct: Vec<Uuid> = executions.into_iter().collect();
        distinct.sort_unstable();
        distinct.dedup();
        // Concurrently: each key this process has not cached is a database read.
        let states = futures::future::join_all(
            distinct
                .iter()
                .map(|execution| keyring.key_for_reading(*execution)),
        )
        .await;
        distinct
            .into_iter()
            .zip(states)
            .map(|(execution, state)| Ok((execution, state?)))
            .collect()
    }

    /// Opens the payloads of stored envelopes in place (erased: redacted as erased;
    /// altered: redacted as tampered).
    pub async fn open_envelopes(&self, envelopes: &mut [EventEnvelope]) -> Result<(), CryptoError> {
        if self.keyring.is_none() {
            return Ok(());
        }
        self.open_envelope_refs(envelopes.iter_mut().collect())
            .await
    }

    /// [`PayloadCodec::open_envelopes`] for envelopes held elsewhere (bus deliveries).
    pub async fn open_envelope_refs(
        &self,
        mut envelopes: Vec<&mut EventEnvelope>,
    ) -> Result<(), CryptoError> {
        if self.keyring.is_none() {
            return Ok(());
        }
        // Only what holds a sealed payload needs a key: plaintext (written before
        // encryption was on) and `null` payloads cost no key lookup.
        envelopes.retain_mut(|e| {
            execution_of(&e.stream_id).is_some()
                && e.event.has_payload()
                && holds_sealed(&mut e.event)
        });
        if envelopes.is_empty() {
            return Ok(());
        }
        let keys = self
            .reading_keys(envelopes.iter().filter_map(|e| execution_of(&e.stream_id)))
            .await?;
        for envelope in envelopes {
            let Some(execution) = execution_of(&envelope.stream_id) else {
                continue;
            };
            let state = keys.get(&execution).unwrap_or(&KeyState::Missing);
            envelope
                .event
                .for_each_payload_mut(&mut |payload| open_payload(execution, state, payload));
        }
        Ok(())
    }

    /// Opens every sealed payload anywhere inside `value` — a read model's JSON, a
    /// ticket's input — which belongs to `execution`.
    pub async fn open_json(&self, execution: Uuid, value: &mut Value) -> Result<(), CryptoError> {
        if self.keyring.is_none() {
            return Ok(());
        }
        let mut any = false;
        for_each_sealed_mut(value, &mut |_| any = true);
        if !any {
            return Ok(());
        }
        let keys = self.reading_keys([execution]).await?;
        let state = keys.get(&execution).unwrap_or(&KeyState::Missing);
        for_each_sealed_mut(value, &mut |payload| {
            open_payload(execution, state, payload)
        });
        Ok(())
    }
}

/// Hides every payload of `envelopes` (a caller whose role may not see payloads).
pub fn hide_envelopes(envelopes: &mut [EventEnvelope]) {
    for envelope in envelopes.iter_mut().filter(|e| e.event.has_payload()) {
        envelope
            .event
            .for_each_payload_mut(&mut |payload| Redaction::Hidden.apply(payload));
    }
}
