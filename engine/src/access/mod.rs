//! Identity: tenants and API keys, event-sourced like everything else, and who a bearer
//! token is.
//!
//! Creating a tenant, issuing a key and revoking one are events (`TenantCreated`,
//! `ApiKeyCreated`, `ApiKeyRevoked`) with their actor, in streams `tenant-<uuid>` and
//! `key-<key id>`. Every process keeps a [`KeyDirectory`] folded from those events and
//! tails them (an indexed read of just those streams) every 250 ms and on its own
//! commits, so a key revoked through any server stops working on every server within
//! a second. The bootstrap admin token is never stored in the log.
//!
//! # Layout
//! - `token`: the `cfx_<key_id>_<secret>` format, hashing, constant-time comparison.
//! - `directory`: the pure fold and `authenticate`.
//! - `jwt`: bearer JWTs of the organisation's identity provider (JWKS, issuer,
//!   audience, role and tenant claims).
//! - `stream_token`: short-lived tokens for one live stream, signed with the store's
//!   shared secret; [`Access::authenticate_for`] also checks their minting key.

pub mod directory;
pub mod jwt;
pub mod stream_token;
pub mod token;

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use conflux_schema::access::{Role, TenantName};
use conflux_schema::{Event, EventMetadata, NewEvent, StreamId, StreamType};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use directory::{AuthError, KeyDirectory, KeyRecord, Principal, TenantPolicyRecord};
pub use stream_token::StreamToken;

use crate::store::{EventStore, StoreError};

/// How often every process re-reads the tenants and keys.
pub const REFRESH_EVERY: Duration = Duration::from_millis(250);
const ACCESS_STREAMS: [StreamType; 2] = [StreamType::Tenant, StreamType::Key];
/// Namespace of tenant stream ids (uuid v5 of the name).
const TENANT_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a3e_5b7d_4e90_8a21_c3d4_e5f6_0718);

/// The stream of `tenant`'s access events (`tenant-<uuid v5 of its name>`).
pub fn tenant_stream(tenant: &TenantName) -> StreamId {
    StreamId::tenant(Uuid::new_v5(&TENANT_NAMESPACE, tenant.as_str().as_bytes()))
}

/// What an access command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No such tenant or key (in the caller's scope).
    #[error("{0}")]
    NotFound(String),
    /// It exists already.
    #[error("{0}")]
    Conflict(String),
    /// The request is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No randomness for a secret.
    #[error(transparent)]
    Randomness(#[from] token::RandomnessError),
    /// A stream token could not be made.
    #[error(transparent)]
    Mint(#[from] stream_token::MintError),
}

/// A key to issue.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// For humans.
    pub name: String,
    /// Its tenant (must exist).
    pub tenant: TenantName,
    /// Its role.
    pub role: Role,
    /// Agent roles (agent keys only; required for them).
    pub agent_roles: Vec<String>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
}

impl crate::runner::egress::TenantAllowlists for Access {
    fn allowlist(&self, tenant: &str) -> Option<Arc<crate::runner::egress::EgressPolicy>> {
        self.tenant_egress(tenant)
    }
}

/// Tenants, keys and authentication for one process. Clones share the directory.
#[derive(Clone)]
pub struct Access {
    store: Arc<dyn EventStore>,
    directory: Arc<RwLock<KeyDirectory>>,
    admin_token: Option<Arc<str>>,
    jwt: Option<Arc<jwt::JwtVerifier>>,
    stream_tokens: stream_token::StreamTokens,
    revocations: Arc<watch::Sender<usize>>,
    /// One refresh at a time: two overlapping ones could apply an older batch after a
    /// newer one.
    refreshing: Arc<tokio::sync::Mutex<()>>,
    /// Whether a [`Access::run`] loop already refreshes this directory.
    running: Arc<std::sync::atomic::AtomicBool>,
}

impl Access {
    /// Reads every tenant and key from `store`, and the secret its stream tokens are
    /// signed with (created on first use). `admin_token`: the system administrator's
    /// bootstrap token, if any.
    pub async fn open(
        store: Arc<dyn EventStore>,
        admin_token: Option<String>,
    ) -> Result<Self, StoreError> {
        let secret = store.signing_secret(stream_token::SECRET_NAME).await?;
        let access = Self {
            stream_tokens: stream_token::StreamTokens::new(secret, stream_token::DEFAULT_TTL),
            store,
            directory: Arc::new(RwLock::new(KeyDirectory::default())),
            admin_token: admin_token.map(Arc::from),
            jwt: None,
            revocations: Arc::new(watch::channel(0).0),
            refreshing: Arc::default(),
            running: Arc::default(),
        };
        access.refresh().await?;
        Ok(access)
    }

    /// The same directory with `admin_token` as the bootstrap token (decided once the
    /// keys are known: a token is generated only for a store without keys).
    pub fn with_admin_token(mut self, admin_token: Option<String>) -> Self {
        self.admin_token = admin_token.map(Arc::from);
        self
    }

    /// The same directory, also accepting the identity provider's JWTs.
    pub fn with_jwt(mut self, verifier: jwt::JwtVerifier) -> Self {
        self.jwt = Some(Arc::new(verifier));
        self
    }

    /// The same directory, minting stream tokens good for `ttl`.
    pub fn with_stream_token_ttl(mut self, ttl: Duration) -> Self {
        self.stream_tokens = self.stream_tokens.with_ttl(ttl);
        self
    }

    fn read(&self) -> RwLockReadGuard<'_, KeyDirectory> {
        // Every write is one `apply` of a whole event: a panic cannot leave it torn.
        self.directory.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Folds tenant and key events committed since the last refresh; returns how many.
    /// A store that went back below what was folded (restored from a backup) is folded
    /// again from the start, so keys revoked or issued since the restore point count.
    pub async fn refresh(&self) -> Result<usize, StoreError> {
        let _one = self.refreshing.lock().await;
        let folded = self.read().position;
        if folded > 0 && self.store.head_position().await? < folded {
            tracing::warn!(
                folded,
                "the store went back (restored?): reading tenants and keys again"
            );
            *self.directory.write().unwrap_or_else(|p| p.into_inner()) = KeyDirectory::default();
        }
        let mut n = 0;
        loop {
            let after = self.read().position;
            let events = self.store.read_all_of(&ACCESS_STREAMS, after, 1000).await?;
            if events.is_empty() {
                break;
            }
            n += events.len();
            let revoked = {
                let mut dir = self.directory.write().unwrap_or_else(|p| p.into_inner());
                for e in &events {
                    dir.apply(e);
                }
                dir.revoked_ids().len()
            };
            self.revocations.send_if_modified(|count| {
                let changed = *count != revoked;
                *count = revoked;
                changed
            });
        }
        Ok(n)
    }

    /// Refreshes every [`REFRESH_EVERY`] until `shutdown` (this process's own key
    /// commands refresh at once). One loop per directory: a second call (a process
    /// that both serves HTTP and runs the engine) returns at once.
    pub async fn run(self, shutdown: CancellationToken) {
        if self.running.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let mut failing = false;
        loop {
            match self.refresh().await {
                Ok(_) => failing = false,
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "reading tenants and keys failed; retrying");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(REFRESH_EVERY) => {}
            }
        }
    }

    /// Who `token` is. The bootstrap admin token is compared in constant time. A
    /// stream token is nobody here: it counts only on its stream
    /// ([`Access::authenticate_for`]).
    pub fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if stream_token::is_stream_token(token) {
            return Err(AuthError::Unknown);
        }
        if let Some(admin) = &self.admin_token {
            if token::same_secret(admin, token) {
                return Ok(Principal::system_admin());
            }
        }
        if let (Some(jwt), false) = (&self.jwt, token.starts_with("cfx_")) {
            let who = jwt.verify(token)?;
            // Only tenants that exist: a token naming another is nobody here.
            return if self.has_tenant(&who.tenant) {
                Ok(who)
            } else {
                Err(AuthError::Unknown)
            };
        }
        self.read().authenticate(token, Utc::now())
    }

    /// Who `token` is on a request for the live stream `stream` (its canonical path;
    /// None: the request is for no live stream). A stream token counts only on the
    /// stream it was minted for, while it has not expired and while the key that
    /// minted it still works (revoked or expired since: refused); any other token is
    /// [`Access::authenticate`]'s.
    pub fn authenticate_for(
        &self,
        token: &str,
        stream: Option<&str>,
    ) -> Result<Principal, AuthError> {
        if !stream_token::is_stream_token(token) {
            return self.authenticate(token);
        }
        let scope = stream.ok_or(AuthError::Unknown)?;
        let now = Utc::now();
        let who = self.stream_tokens.verify(token, scope, now)?;
        if let Some(key_id) = who.key_id {
            let dir = self.read();
            let key = dir.key(key_id).ok_or(AuthError::Unknown)?;
            if key.revoked_at.is_some() {
                return Err(AuthError::Revoked);
            }
            if key.expires_at.is_some_and(|at| at <= now) {
                return Err(AuthError::Expired);
            }
        }
        Ok(who)
    }

    /// A token that opens the live stream `stream` (its canonical path) as `who`, for
    /// the configured time (default 60 s). Whether `who` may see that stream is the
    /// caller's to check first.
    pub fn mint_stream_token(
        &self,
        who: &Principal,
        stream: &str,
    ) -> Result<StreamToken, AccessError> {
        Ok(self.stream_tokens.mint(who, stream, Utc::now())?)
    }

    /// Changes whenever a key is revoked anywhere (live streams re-check their key).
    pub fn revocations(&self) -> watch::Receiver<usize> {
        self.revocations.subscribe()
    }

    /// Whether `key_id` still authenticates (not revoked, not expired).
    pub fn key_is_valid(&self, key_id: Uuid) -> bool {
        self.read().key(key_id).is_some_and(|k| {
            k.revoked_at.is_none() && k.expires_at.is_none_or(|at| at > Utc::now())
        })
    }

    /// Every tenant (`default` first).
    pub fn tenants(&self) -> Vec<(TenantName, Option<DateTime<Utc>>)> {
        self.read().tenants()
    }

    /// Whether `tenant` exists.
    pub fn has_tenant(&self, tenant: &TenantName) -> bool {
        self.read().has_tenant(tenant)
    }

    /// The keys of `tenant` (None: all), never their secrets.
    pub fn keys(&self, tenant: Option<&TenantName>) -> Vec<KeyRecord> {
        self.read().keys(tenant)
    }

    /// Whether any key was ever issued (the bootstrap token is generated only before).
    pub fn any_key(&self) -> bool {
        !self.read().keys(None).is_empty()
    }

    /// Creates `tenant`; 409 if it exists.
    pub async fn create_tenant(
        &self,
        tenant: TenantName,
        metadata: EventMetadata,
    ) -> Result<(), AccessError> {
        if self.has_tenant(&tenant) {
            return Err(AccessError::Conflict(format!("tenant {tenant} exists")));
        }
        let stream = tenant_stream(&tenant);
        let event = NewEvent::new(
            Event::TenantCreated {
                tenant: tenant.clone(),
            },
            metadata,
        );
        match self.store.append(&stream, 0, vec![event]).await {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => {
                return Err(AccessError::Conflict(format!("tenant {tenant} exists")))
            }
            Err(e) => return Err(e.into()),
        }
        self.refresh().await?;
        Ok(())
    }

    /// `tenant`'s policy, if the system administrator ever set one.
    pub fn tenant_policy(&self, tenant: &str) -> Option<TenantPolicyRecord> {
        self.read().policy(tenant).cloned()
    }

    /// The routing weights of `tenant`'s agents: its policy's, else the defaults.
    pub fn routing_weights(&self, tenant: &str) -> conflux_schema::routing::RoutingWeights {
        self.read()
            .policy(tenant)
            .and_then(|p| p.routing_weights)
            .unwrap_or_default()
    }

    /// The egress allowlist of `tenant`'s own policy, if it has one.
    pub fn tenant_egress(&self, tenant: &str) -> Option<Arc<crate::runner::egress::EgressPolicy>> {
        self.read()
            .policy(tenant)
            .filter(|p| !p.egress_allow.is_empty())
            .map(|p| p.egress.clone())
    }

    /// Sets `tenant`'s whole policy (`TenantPolicySet`); 404 for an unknown tenant, 400
    /// for an allowlist entry that does not parse or routing weights that cannot be used.
    pub async fn set_tenant_policy(
        &self,
        tenant: TenantName,
        egress_allow: Vec<String>,
        quotas: conflux_schema::quota::QuotaLimits,
        routing_weights: Option<conflux_schema::routing::RoutingWeights>,
        metadata: EventMetadata,
    ) -> Result<TenantPolicyRecord, AccessError> {
        if !self.has_tenant(&tenant) {
            return Err(AccessError::NotFound(format!("no tenant {tenant}")));
        }
        if let Some(weights) = &routing_weights {
            weights.check().map_err(AccessError::Invalid)?;
        }
        let egress_allow: Vec<String> = egress_allow
            .into_iter()
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect();
        for entry in &egress_allow {
            if entry.contains(',') {
                return Err(AccessError::Invalid(format!(
                    "egress_allow: `{entry}` holds a comma; give one entry per item"
                )));
            }
            crate::runner::egress::EgressPolicy::parse_tenant(entry)
                .map_err(|e| AccessError::Invalid(format!("egress_allow: {e}")))?;
        }
        let stream = tenant_stream(&tenant);
        let event = Event::TenantPolicySet {
            tenant: tenant.clone(),
            egress_allow,
            quotas,
            routing_weights,
        };
        let mut attempts = 0;
        loop {
            let version = self.store.stream_version(&stream).await?;
            let new = NewEvent::new(event.clone(), metadata.clone());
            match self.store.append(&stream, version, vec![new]).await {
                Ok(_) => break,
                Err(StoreError::Conflict { .. }) if attempts < 8 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        }
        self.refresh().await?;
        self.tenant_policy(tenant.as_str())
            .ok_or_else(|| StoreError::Backend("a set policy is not in the log".into()).into())
    }

    /// Issues a key; returns its record and the token (shown once).
    pub async fn create_key(
        &self,
        key: NewKey,
        metadata: EventMetadata,
    ) -> Result<(KeyRecord, String), AccessError> {
        if key.name.trim().is_empty() || key.name.len() > 200 {
            return Err(AccessError::Invalid(
                "name must be 1 to 200 characters".into(),
            ));
        }
        if !self.has_tenant(&key.tenant) {
            return Err(AccessError::NotFound(format!("no tenant {}", key.tenant)));
        }
        match (key.role, key.agent_roles.is_empty()) {
            (Role::Agent, true) => {
                return Err(AccessError::Invalid(
                    "an agent key needs agent_roles".into(),
                ))
            }
            (r, false) if r != Role::Agent => {
                return Err(AccessError::Invalid(
                    "only agent keys take agent_roles".into(),
                ))
            }
            _ => {}
        }
        if key.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err(AccessError::Invalid("expires_at is in the past".into()));
        }
        let issued = token::issue()?;
        let event = Event::ApiKeyCreated {
            key_id: issued.key_id,
            name: key.name,
            tenant: key.tenant,
            role: key.role,
            agent_roles: key.agent_roles,
            expires_at: key.expires_at,
            secret_sha256: issued.secret_sha256,
        };
        self.store
            .append(
                &StreamId::key(issued.key_id),
                0,
                vec![NewEvent::new(event, metadata)],
            )
            .await?;
        self.refresh().await?;
        let record = self
            .read()
            .key(issued.key_id)
            .cloned()
            .ok_or_else(|| StoreError::Backend("an issued key is not in the log".into()))?;
        Ok((record, issued.token))
    }

    /// Revokes `key_id`, if it is in `scope` (None: any tenant). Revoking twice is fine.
    pub async fn revoke_key(
        &self,
        key_id: Uuid,
        scope: Option<&TenantName>,
        metadata: EventMetadata,
    ) -> Result<(), AccessError> {
        let known = self.read().key(key_id).cloned();
        let Some(key) = known.filter(|k| scope.is_none_or(|t| &k.tenant == t)) else {
            return Err(AccessError::NotFound(format!("no key {key_id}")));
        };
        if key.revoked_at.is_some() {
            return Ok(());
        }
        let stream = StreamId::key(key_id);
        let version = self.store.stream_version(&stream).await?;
        let event = NewEvent::new(Event::ApiKeyRevoked { key_id }, metadata);
        match self.store.append(&stream, version, vec![event]).await {
            Ok(_) | Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.refresh().await?;
        Ok(())
    }
}
