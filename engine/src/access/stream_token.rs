//! Stream tokens: short-lived bearer tokens that open one live stream, so long-lived
//! keys stay out of URLs (`?access_token=`).
//!
//! A token is `cfs_<claims>.<tag>`, both parts base64url without padding (safe in a
//! query string as they are). The claims (JSON) name the one stream it opens — its
//! canonical path, the *scope* — when it expires, and who minted it: actor, tenant,
//! role, agent roles and key, so a stream opened with it acts exactly as its minter
//! would. The tag is HMAC-SHA256 of the claims' text under the store's `stream-tokens`
//! secret ([`crate::store::EventStore::signing_secret`]), compared in constant time
//! before anything in the claims is believed. Every server of a store shares the
//! secret, so a token minted by one opens the stream on any.
//!
//! What this module cannot know — whether the minting key has been revoked since — is
//! checked by [`super::Access::authenticate_for`] on every use.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use conflux_schema::access::{Role, TenantName};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use super::directory::{AuthError, Principal};
use crate::store::SigningSecret;

/// Every stream token starts with this.
pub const PREFIX: &str = "cfs_";
/// The name of the store secret stream tokens are signed with.
pub const SECRET_NAME: &str = "stream-tokens";
/// How long a stream token is good for, unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// What a token says, signed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    /// The canonical path of the one stream it opens.
    scope: String,
    /// When it stops working, in Unix milliseconds.
    exp: i64,
    /// The minter's `metadata.actor`.
    actor: String,
    /// The minter's tenant.
    tenant: TenantName,
    /// The minter's role (None: the system administrator).
    role: Option<Role>,
    /// The minter's agent roles.
    agent_roles: Vec<String>,
    /// The minter's key (None: the bootstrap token or a JWT).
    key_id: Option<Uuid>,
}

/// A token just minted. (No `Debug`: it holds the token.)
pub struct StreamToken {
    /// `cfs_<claims>.<tag>`: give it to the caller, never log it.
    pub token: String,
    /// The scope it is good for.
    pub scope: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
#[error("a stream token could not be made: {0}")]
pub struct MintError(String);

/// Mints and verifies stream tokens with one store's secret.
#[derive(Clone)]
pub struct StreamTokens {
    secret: SigningSecret,
    ttl: Duration,
}

impl std::fmt::Debug for StreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTokens")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Whether `token` is a stream token (it is good only for its stream).
pub fn is_stream_token(token: &str) -> bool {
    token.starts_with(PREFIX)
}

impl StreamTokens {
    /// Tokens signed with `secret`, good for `ttl` each.
    pub fn new(secret: SigningSecret, ttl: Duration) -> Self {
        Self { secret, ttl }
    }

    /// The same, good for `ttl` each.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a token is good for.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn mac(&self) -> Option<Hmac<Sha256>> {
        // HMAC takes a key of any length: this never fails.
        Hmac::<Sha256>::new_from_slice(self.secret.expose()).ok()
    }

    /// A token for `who`, good for `scope` only, until `now` + the ttl or until `who`'s
    /// own credential expires, whichever comes first.
    pub fn mint(
        &self,
        who: &Principal,
        scope: &str,
        now: DateTime<Utc>,
    ) -> Result<StreamToken, MintError> {
        let ttl = chrono::Duration::from_std(self.ttl).map_err(|e| MintError(e.to_string()))?;
        let expires_at = who.expires_at.map_or(now + ttl, |own| own.min(now + ttl));
        let claims = Claims {
            scope: scope.to_owned(),
            exp: expires_at.timestamp_millis(),
            actor: who.actor.clone(),
            tenant: who.tenant.clone(),
            role: who.role,
            agent_roles: who.agent_roles.clone(),
            key_id: who.key_id,
        };
        let json = serde_json::to_vec(&claims).map_err(|e| MintError(e.to_string()))?;
        let payload = URL_SAFE_NO_PAD.encode(json);
        let mut mac = self.mac().ok_or_else(|| MintError("no HMAC key".into()))?;
        mac.update(payload.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Ok(StreamToken {
            token: format!("{PREFIX}{payload}.{tag}"),
            scope: scope.to_owned(),
            expires_at,
        })
    }

    /// Who minted `token`, if it is one of ours (the tag matches, in constant time),
    /// made for `scope`, and not expired at `now`.
    pub fn verify(
        &self,
        token: &str,
        scope: &str,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        let rest = token.strip_prefix(PREFIX).ok_or(AuthError::Unknown)?;
        let (payload, tag) = rest.split_once('.').ok_or(AuthError::Unknown)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| AuthError::Unknown)?;
        let mut mac = self.mac().ok_or(AuthError::Unknown)?;
        mac.update(payload.as_bytes());
        // `verify_slice` compares in constant time.
        mac.verify_slice(&tag).map_err(|_| AuthError::Unknown)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| AuthError::Unknown)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| AuthError::Unknown)?;
        if claims.scope != scope {
            return Err(AuthError::Unknown);
        }
        if now.timestamp_millis() >= claims.exp {
            return Err(AuthError::Expired);
        }
        Ok(Principal {
            actor: claims.actor,
            tenant: claims.tenant,
            role: claims.role,
            agent_roles: claims.agent_roles,
            key_id: claims.key_id,
            expires_at: chrono::DateTime::from_timestamp_millis(claims.exp),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPE: &str = "/ws/executions/0190f5c4-7a2b-7cc3-9d1e-5b8a9c0d1e2f";

    fn tokens(ttl_secs: u64) -> StreamTokens {
        StreamTokens::new(
            SigningSecret::from_bytes([7; 32]),
            Duration::from_secs(ttl_secs),
        )
    }

    fn viewer() -> Principal {
        Principal {
            actor: "key:abc".into(),
            tenant: TenantName::parse("acme").expect("tenant"),
            role: Some(Role::Viewer),
            agent_roles: Vec::new(),
            key_id: Some(Uuid::now_v7()),
            expires_at: None,
        }
    }

    #[test]
    fn a_token_never_outlives_its_minters_credential() {
        let now = Utc::now();
        let soon = now + chrono::Duration::seconds(10);
        let minter = Principal {
            expires_at: Some(soon),
            ..viewer()
        };
        let minted = tokens(60).mint(&minter, SCOPE, now).expect("mint");
        assert_eq!(minted.expires_at, soon, "the key's expiry, not the ttl");
        let later = now + chrono::Duration::seconds(11);
        assert_eq!(
            tokens(60).verify(&minted.token, SCOPE, later),
            Err(AuthError::Expired)
        );
        let lasting = Principal {
            expires_at: Some(now + chrono::Duration::hours(1)),
            ..viewer()
        };
        let minted = tokens(60).mint(&lasting, SCOPE, now).expect("mint");
        assert_eq!(minted.expires_at, now + chrono::Duration::seconds(60));
    }

    #[test]
    fn a_token_opens_its_scope_as_its_minter() {
        let now = Utc::now();
        let minter = viewer();
        let minted = tokens(60).mint(&minter, SCOPE, now).expect("mint");
        assert!(minted.token.starts_with(PREFIX));
        assert_eq!(minted.expires_at, now + chrono::Duration::seconds(60));
        assert!(
            minted
                .token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)),
            "query-string safe: {}",
            minted.token
        );
        let who = tokens(60).verify(&minted.token, SCOPE, now).expect("valid");
        let expiry = who.expires_at.expect("a stream token expires");
        assert!((expiry - minted.expires_at).num_milliseconds().abs() < 1);
        assert_eq!(
            Principal {
                expires_at: None,
                ..who
            },
            minter,
            "tenant, role, actor, agent roles and key"
        );
        let admin = Principal::system_admin();
        let minted = tokens(60).mint(&admin, SCOPE, now).expect("mint");
        let who = tokens(60).verify(&minted.token, SCOPE, now).expect("valid");
        assert_eq!(
            Principal {
                expires_at: None,
                ..who
            },
            admin
        );
    }

    #[test]
    fn a_token_is_refused_elsewhere_late_altered_or_foreign() {
        let now = Utc::now();
        let t = tokens(60);
        let token = t.mint(&viewer(), SCOPE, now).expect("mint").token;
        let other_scope = SCOPE.replace("/executions/", "/workflows/");
        assert_eq!(t.verify(&token, &other_scope, now), Err(AuthError::Unknown));
        let late = now + chrono::Duration::seconds(60);
        assert_eq!(t.verify(&token, SCOPE, late), Err(AuthError::Expired));
        let foreign =
            StreamTokens::new(SigningSecret::from_bytes([8; 32]), Duration::from_secs(60));
        assert_eq!(
            foreign.verify(&token, SCOPE, now),
            Err(AuthError::Unknown),
            "another store's secret"
        );
        // Claims rewritten (another tenant, the administrator's role) keep the old tag.
        let (payload, tag) = token[PREFIX.len()..].split_once('.').expect("parts");
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("utf8");
        for forged in [
            json.replace("\"acme\"", "\"default\""),
            json.replace("\"viewer\"", "null"),
        ] {
            assert_ne!(forged, json);
            let forged = format!("{PREFIX}{}.{tag}", URL_SAFE_NO_PAD.encode(forged));
            assert_eq!(t.verify(&forged, SCOPE, now), Err(AuthError::Unknown));
        }
        let mut flipped = token.clone();
        let last = if flipped.ends_with('A') { "B" } else { "A" };
        flipped.replace_range(flipped.len() - 1.., last);
        for bad in [
            flipped.as_str(),
            "cfs_",
            "cfs_x.y",
            &token[..token.len() - 2],
            &token.replacen("cfs_", "cfx_", 1),
        ] {
            assert_eq!(t.verify(bad, SCOPE, now), Err(AuthError::Unknown), "{bad}");
        }
    }
}
