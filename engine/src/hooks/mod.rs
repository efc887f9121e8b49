//! Webhooks: a tenant's events, as the log has them, POSTed to a URL of its choosing,
//! signed, at least once, in log order.
//!
//! A hook's definition is a stream like any other (`HookCreated`, `HookDeleted` on
//! `hook-<id>`), so its lifecycle is audited; its delivery state lives beside the log in
//! a [`HookStore`] (its sealed signing secret, its cursor — the last log position it
//! handled — its lease, and a record of every delivery). Delivery reads the log itself,
//! never the bus: a hook's cursor only moves past an event once that event was
//! delivered (a 2xx) or dead-lettered, so a restart, a crash or a second server resumes
//! where the last one stopped and nothing of the tenant that matches is missed.
//!
//! # Layout
//! - [`state`]: the pure fold of hook streams into a [`state::Directory`].
//! - [`store`]: the [`HookStore`] trait; [`postgres`] and [`sqlite`] implement it.
//! - [`sign`]: the `Conflux-Signature` header (HMAC-SHA256, Stripe-style).
//! - [`deliver`]: one HTTP attempt through the egress policy's guarded client.
//! - [`worker`]: the loops every engine process runs: one per hook, under a lease.
//! - this module: [`Hooks`], the service the API calls (create, get, list, delete,
//!   deliveries), typed [`HookError`]s, no HTTP.

pub mod deliver;
pub mod postgres;
pub mod sign;
pub mod sqlite;
pub mod state;
pub mod store;
pub mod worker;

use std::sync::Arc;

use chrono::Utc;
use conflux_schema::api::{Hook, HookCreated, HookDelivery};
use conflux_schema::event_types::is_event_type;
use conflux_schema::{Event, EventMetadata, NewEvent, StreamId};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::runner::egress::EgressPolicy;
use crate::secrets::SecretCipher;
use crate::store::{EventStore, StoreError};
use state::{Directory, ALL_EVENTS};
pub use store::{DeliveryRecord, HookRow, HookStore};

/// The longest hook URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// The most event types one hook names.
pub const MAX_EVENT_TYPES: usize = 100;
/// The shortest and longest signing secret a client may choose, in characters.
pub const SECRET_CHARS: (usize, usize) = (8, 256);

/// Why a hook request was refused. No variant ever holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The URL is not an absolute `http`/`https` URL (422, field `url`).
    #[error("url {url:?} {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL names an address the egress policy denies (422).
    #[error(
        "url {url:?} is not allowed: {reason} (the operator opens it with CONFLUX_EGRESS_ALLOW)"
    )]
    EgressDenied {
        /// The URL given.
        url: String,
        /// The rule that denies it.
        reason: String,
    },
    /// `events` names types the log does not have, or none (422, field `events`).
    #[error("{reason}")]
    InvalidEvents {
        /// The unknown names (empty when the list itself is wrong).
        unknown: Vec<String>,
        /// What is wrong.
        reason: String,
    },
    /// The secret given is too short, too long or has control characters (422).
    #[error("secret must be {} to {} characters without control characters", SECRET_CHARS.0, SECRET_CHARS.1)]
    InvalidSecret,
    /// No such hook in the caller's tenant (404).
    #[error("hook {0} not found")]
    NotFound(Uuid),
    /// The secret could not be sealed or made (500).
    #[error("the hook's secret cannot be {0}")]
    Cipher(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A hook to create, as the client asked.
#[derive(Debug, Clone)]
pub struct NewHook {
    /// Where deliveries go.
    pub url: String,
    /// The event types delivered.
    pub events: Vec<String>,
    /// The signing secret (None: generated).
    pub secret: Option<String>,
}

/// The associated data a hook's secret is sealed under: it opens only for its tenant
/// and hook.
fn aad(tenant: &str, hook: Uuid) -> Vec<u8> {
    format!("hook\0{tenant}\0{hook}").into_bytes()
}

/// The webhooks service: validation, the hook streams folded into a directory (caught
/// up before every answer, so a caller reads its own writes), sealed secrets and the
/// delivery records. Cheap to clone.
#[derive(Clone)]
pub struct Hooks {
    store: Arc<dyn EventStore>,
    hooks: Arc<dyn HookStore>,
    cipher: Arc<dyn SecretCipher>,
    egress: Arc<EgressPolicy>,
    directory: Arc<Mutex<Directory>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooks")
    }
}

impl Hooks {
    /// Hooks over `store` (the store as the API reads it: payloads opened), their
    /// delivery state in `hooks`, secrets sealed by `cipher`, URLs judged by `egress`.
    pub fn new(
        store: Arc<dyn EventStore>,
        hooks: Arc<dyn HookStore>,
        cipher: Arc<dyn SecretCipher>,
        egress: EgressPolicy,
    ) -> Self {
        Self {
            store,
            hooks,
            cipher,
            egress: Arc::new(egress),
            directory: Arc::default(),
        }
    }

    /// The event store deliveries are read from.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The delivery state.
    pub fn hook_store(&self) -> &Arc<dyn HookStore> {
        &self.hooks
    }

    /// The operator's egress policy.
    pub fn egress(&self) -> &Arc<EgressPolicy> {
        &self.egress
    }

    /// Reads every hook event after the directory's position into it; returns a copy.
    pub async fn refresh(&self) -> Result<Directory, StoreError> {
        let mut directory = self.directory.lock().await;
        loop {
            let page = self
                .store
                .read_all_of(&Directory::STREAMS, directory.position(), 1000)
                .await?;
            directory.apply_all(&page);
            if page.len() < 1000 {
                return Ok(directory.clone());
            }
        }
    }

    /// Checks `url` against the scheme rules and the egress policy (IP literals and
    /// `localhost`; other names are checked at each connection).
    pub fn check_url(&self, url: &str) -> Result<(), HookError> {
        let invalid = |reason: &str| HookError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if url.len() > MAX_URL_BYTES {
            return Err(invalid(&format!("is longer than {MAX_URL_BYTES} bytes")));
        }
        let parsed = url::Url::parse(url).map_err(|e| invalid(&format!("is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(&format!(
                "has scheme {:?}: only http and https are delivered to",
                parsed.scheme()
            )));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            // The URL is recorded in the log and shown to every reader of the tenant:
            // deliveries are authenticated by their signature instead.
            return Err(invalid(
                "carries credentials: the URL is recorded in the log; receivers check Conflux-Signature instead",
            ));
        }
        let host = parsed.host().ok_or_else(|| invalid("has no host"))?;
        self.egress
            .check_url_host(&host)
            .map_err(|denied| HookError::EgressDenied {
                url: url.to_owned(),
                reason: denied.to_string(),
            })
    }

    /// Creates a hook in the tenant of `metadata`: the URL must be allowed and every
    /// event type must exist. Its secret is returned once, here. Nothing is written
    /// unless everything is valid.
    pub async fn create(
        &self,
        new: NewHook,
        metadata: EventMetadata,
    ) -> Result<HookCreated, HookError> {
        self.check_url(&new.url)?;
        let events = check_events(new.events)?;
        let secret = match new.secret {
            Some(secret) => check_secret(secret)?,
            None => generate_secret()?,
        };
        let tenant = metadata.tenant().to_owned();
        let id = Uuid::now_v7();
        let sealed = self
            .cipher
            .seal(&tenant, &aad(&tenant, id), secret.as_bytes())
            .await
            .map_err(|e| HookError::Cipher(format!("sealed: {e}")))?;
        let start_after = self.store.head_position().await?;
        let created_at = now();
        self.hooks
            .insert(&HookRow {
                hook_id: id,
                tenant: tenant.clone(),
                sealed_secret: sealed,
                cursor: start_after,
                created_at,
            })
            .await?;
        let event = Event::HookCreated {
            hook_id: id,
            url: new.url.clone(),
            events: events.clone(),
            start_after,
        };
        let appended = self
            .store
            .append(&StreamId::hook(id), 0, vec![NewEvent::new(event, metadata)])
            .await;
        let recorded = match appended {
            Ok(recorded) => recorded,
            Err(e) => {
                // No event, no hook: the row would only be an orphan.
                if let Err(cleanup) = self.hooks.remove(id).await {
                    tracing::warn!(hook = %id, error = %cleanup, "a hook row without its event is left behind");
                }
                return Err(e.into());
            }
        };
        Ok(HookCreated {
            id,
            url: new.url,
            events,
            start_after,
            created_at: recorded.first().map_or(created_at, |e| e.recorded_at),
            secret,
        })
    }

    /// Hook `id` of `tenant`.
    pub async fn get(&self, tenant: &str, id: Uuid) -> Result<Hook, HookError> {
        let directory = self.refresh().await?;
        directory
            .get_in(tenant, id)
            .map(state::HookState::view)
            .ok_or(HookError::NotFound(id))
    }

    /// A page of `tenant`'s hooks (newest first, ids below `before`), and the cursor of
    /// the next page.
    pub async fn list(
        &self,
        tenant: &str,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<(Vec<Hook>, Option<Uuid>), StoreError> {
        let directory = self.refresh().await?;
        let (page, more) = directory.page(tenant, before, limit);
        let next = more.then(|| page.last().map(|h| h.id)).flatten();
        Ok((page.into_iter().map(state::HookState::view).collect(), next))
    }

    /// Deletes hook `id` of the tenant of `metadata`: nothing more is delivered, its
    /// secret and its delivery records are forgotten.
    pub async fn delete(&self, id: Uuid, metadata: EventMetadata) -> Result<(), HookError> {
        let tenant = metadata.tenant().to_owned();
        let mut last = None;
        for _ in 0..8 {
            let directory = self.refresh().await?;
            let hook = directory
                .get_in(&tenant, id)
                .ok_or(HookError::NotFound(id))?;
            let deleted = NewEvent::new(Event::HookDeleted {}, metadata.clone());
            match self
                .store
                .append(&StreamId::hook(id), hook.version, vec![deleted])
                .await
            {
                Ok(_) => {
                    self.hooks.remove(id).await?;
                    return Ok(());
                }
                Err(e @ StoreError::Conflict { .. }) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last
            .unwrap_or_else(|| StoreError::Backend("no attempt made".into()))
            .into())
    }

    /// A page of hook `id`'s deliveries (highest position first, below `before`), and
    /// the cursor of the next page; [`HookError::NotFound`] if it is not `tenant`'s.
    pub async fn deliveries(
        &self,
        tenant: &str,
        id: Uuid,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<HookDelivery>, Option<u64>), HookError> {
        self.get(tenant, id).await?;
        let mut page = self.hooks.deliveries(id, before, limit + 1).await?;
        let more = page.len() > limit;
        page.truncate(limit);
        let next = more.then(|| page.last().map(|d| d.position)).flatten();
        Ok((page.into_iter().map(view).collect(), next))
    }

    /// The plaintext secret of hook `id` of `tenant`, in memory only (None: no row).
    pub(crate) async fn open_secret(
        &self,
        tenant: &str,
        id: Uuid,
    ) -> Result<Option<String>, HookError> {
        let Some(sealed) = self.hooks.sealed_secret(id).await? else {
            return Ok(None);
        };
        let plain = self
            .cipher
            .open(tenant, &aad(tenant, id), &sealed)
            .await
            .map_err(|e| HookError::Cipher(format!("opened: {e}")))?;
        String::from_utf8(plain)
            .map(Some)
            .map_err(|_| HookError::Cipher("opened: it is not text".into()))
    }
}

/// The answer body of a delivery record.
fn view(d: DeliveryRecord) -> HookDelivery {
    HookDelivery {
        position: d.position,
        event_id: d.event_id,
        event_type: d.event_type,
        state: d.state,
        attempts: d.attempts,
        last_status: d.last_status,
        last_error: d.last_error,
        created_at: d.created_at,
        updated_at: d.updated_at,
    }
}

/// The event types, checked against the log's own (`*`: all), without duplicates.
fn check_events(events: Vec<String>) -> Result<Vec<String>, HookError> {
    if events.is_empty() {
        return Err(HookError::InvalidEvents {
            unknown: Vec::new(),
            reason: "events must name at least one event type (or \"*\")".into(),
        });
    }
    if events.len() > MAX_EVENT_TYPES {
        return Err(HookError::InvalidEvents {
            unknown: Vec::new(),
            reason: format!("events names more than {MAX_EVENT_TYPES} types"),
        });
    }
    let mut unknown: Vec<String> = events
        .iter()
        .filter(|e| e.as_str() != ALL_EVENTS && !is_event_type(e))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        unknown.dedup();
        return Err(HookError::InvalidEvents {
            reason: format!("unknown event types: {}", unknown.join(", ")),
            unknown,
        });
    }
    let mut out: Vec<String> = Vec::with_capacity(events.len());
    for e in events {
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

fn check_secret(secret: String) -> Result<String, HookError> {
    let chars = secret.chars().count();
    if chars < SECRET_CHARS.0 || chars > SECRET_CHARS.1 || secret.chars().any(char::is_control) {
        return Err(HookError::InvalidSecret);
    }
    Ok(secret)
}

/// `whsec_` and 256 random bits in hex.
fn generate_secret() -> Result<String, HookError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| HookError::Cipher(format!("made: {e}")))?;
    Ok(format!("whsec_{}", hex::encode(bytes)))
}

/// Now, to the microsecond (what both stores keep).
pub(crate) fn now() -> chrono::DateTime<Utc> {
    let now = Utc::now();
    chrono::DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_the_logs_own() {
        let ok = check_events(vec![
            "ExecutionCompleted".into(),
            "ExecutionCompleted".into(),
            "*".into(),
        ]);
        assert_eq!(ok.unwrap(), vec!["ExecutionCompleted", "*"]);
        match check_events(vec![
            "ExecutionCompleted".into(),
            "Nope".into(),
            "executionfailed".into(),
        ]) {
            Err(HookError::InvalidEvents { unknown, reason }) => {
                assert_eq!(unknown, vec!["Nope", "executionfailed"]);
                assert!(reason.contains("Nope"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(check_events(Vec::new()).is_err());
    }

    #[test]
    fn generated_secrets_are_256_random_bits() {
        let a = generate_secret().unwrap();
        assert!(a.starts_with("whsec_") && a.len() == 6 + 64, "{a}");
        assert_ne!(a, generate_secret().unwrap());
        assert!(check_secret("short".into()).is_err());
        assert!(check_secret("long enough".into()).is_ok());
    }
}
