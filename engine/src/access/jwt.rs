//! Bearer JWTs from the organisation's identity provider (the `jsonwebtoken` crate):
//! keys from a JWKS file, the signature, issuer, audience and expiry checked, the role
//! (and agent roles) read from configurable claims. Only asymmetric keys are accepted
//! (RSA, EC, Ed25519), each with the one algorithm its type implies, so a token cannot
//! choose a weaker one (`alg: none` does not even parse).

use std::path::Path;

use conflux_schema::access::{Role, TenantName};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::directory::{AuthError, Principal};

/// What the identity provider's tokens must carry.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// The `iss` every token must have.
    pub issuer: String,
    /// An `aud` every token must have.
    pub audience: String,
    /// The claim naming the tenant (absent: `default`).
    pub tenant_claim: String,
    /// The claim naming the role (`viewer` … `agent`).
    pub role_claim: String,
}

/// Why the JWT configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    /// The JWKS file could not be read or parsed.
    #[error("JWKS file {path}: {reason}")]
    Jwks {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

struct VerificationKey {
    kid: Option<String>,
    key: DecodingKey,
    validation: Validation,
}

/// Verifies identity-provider tokens.
pub struct JwtVerifier {
    keys: Vec<VerificationKey>,
    settings: JwtSettings,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .field("settings", &self.settings)
            .finish()
    }
}

impl JwtVerifier {
    /// Loads the keys of the JWKS at `path`.
    pub fn from_file(path: &Path, settings: JwtSettings) -> Result<Self, JwtConfigError> {
        let error = |reason: String| JwtConfigError::Jwks {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        let set: JwkSet = serde_json::from_str(&text).map_err(|e| error(e.to_string()))?;
        Self::from_jwks(&set, settings).map_err(error)
    }

    /// The verifier of `set`'s asymmetric keys.
    pub fn from_jwks(set: &JwkSet, settings: JwtSettings) -> Result<Self, String> {
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(p) => match p.curve {
                    EllipticCurve::P256 => Algorithm::ES256,
                    EllipticCurve::P384 => Algorithm::ES384,
                    _ => continue,
                },
                AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                // A shared secret in a published key set is a mistake: never trust it.
                AlgorithmParameters::OctetKey(_) => continue,
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
            let mut validation = Validation::new(algorithm);
            validation.set_issuer(&[&settings.issuer]);
            validation.set_audience(&[&settings.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.leeway = 30;
            keys.push(VerificationKey {
                kid: jwk.common.key_id.clone(),
                key,
                validation,
            });
        }
        if keys.is_empty() {
            return Err("no RSA, EC (P-256, P-384) or Ed25519 key in the set".into());
        }
        Ok(Self { keys, settings })
    }

    /// Who `token` is, if one of the keys signed it and its claims hold.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Unknown)?;
        let candidates = self
            .keys
            .iter()
            .filter(|k| header.kid.is_none() || k.kid.is_none() || k.kid == header.kid);
        let mut expired = false;
        for k in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &k.key, &k.validation) {
                Ok(data) => return self.principal(&data.claims),
                Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    expired = true
                }
                Err(_) => {}
            }
        }
        Err(if expired {
            AuthError::Expired
        } else {
            AuthError::Unknown
        })
    }

    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, AuthError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(AuthError::Unknown)?;
        let tenant = match claims.get(&self.settings.tenant_claim) {
            None => TenantName::default_tenant(),
            Some(Value::String(t)) => TenantName::parse(t).map_err(|_| AuthError::Unknown)?,
            Some(_) => return Err(AuthError::Unknown),
        };
        let role = claims
            .get(&self.settings.role_claim)
            .cloned()
            .and_then(|v| serde_json::from_value::<Role>(v).ok())
            .ok_or(AuthError::Unknown)?;
        let agent_roles = claims
            .get("agent_roles")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_i64)
            .and_then(|exp| chrono::DateTime::from_timestamp(exp, 0));
        Ok(Principal {
            expires_at,
            actor: format!("jwt:{subject}"),
            tenant,
            role: Some(role),
            agent_roles,
            key_id: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    /// Ed25519 test keys made for these tests only (`openssl genpkey -algorithm
    /// ed25519`, PKCS#8 DER in base64): the first is in the key set, the second is not.
    const SIGNER: &str = "MC4CAQAwBQYDK2VwBCIEII+7PqHEkU9n8ZsUVDTAlbUIWpkIKeflQqfVq9clO8pi";
    const SIGNER_X: &str = "MEpgT6IMrpWIVmk48YzfWQEcv_9WgpyQyq8bLINBOnA";
    const STRANGER: &str = "MC4CAQAwBQYDK2VwBCIEIL9g1M6UVC4Uxr9d/EDD1li9UMO1d9VXX1tbNkGyA8PV";

    fn verifier() -> JwtVerifier {
        let set: JwkSet = serde_json::from_value(json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": SIGNER_X, "kid": "k1"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "shared"}
        ]}))
        .expect("jwks");
        JwtVerifier::from_jwks(
            &set,
            JwtSettings {
                issuer: "https://idp.example".into(),
                audience: "conflux".into(),
                tenant_claim: "tenant".into(),
                role_claim: "conflux_role".into(),
            },
        )
        .expect("verifier")
    }

    fn claims(patch: Value) -> Value {
        let mut c = json!({
            "sub": "ada", "iss": "https://idp.example", "aud": "conflux",
            "exp": chrono::Utc::now().timestamp() + 600, "conflux_role": "operator"
        });
        if let (Some(c), Some(p)) = (c.as_object_mut(), patch.as_object()) {
            for (k, v) in p {
                c.insert(k.clone(), v.clone());
            }
        }
        c
    }

    fn sign(der_base64: &str, claims: &Value) -> String {
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD
            .decode(der_base64)
            .expect("der");
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("k1".into());
        encode(&header, claims, &EncodingKey::from_ed_der(&der)).expect("sign")
    }

    #[test]
    fn a_valid_token_names_its_subject_role_and_tenant() {
        let who = verifier()
            .verify(&sign(SIGNER, &claims(json!({}))))
            .expect("valid");
        assert_eq!(who.actor, "jwt:ada");
        assert_eq!(who.role, Some(Role::Operator));
        assert_eq!(who.tenant.as_str(), "default");
    }

    #[test]
    fn bad_tokens_are_refused() {
        let v = verifier();
        let now = chrono::Utc::now().timestamp();
        for (why, token) in [
            ("wrong signature", sign(STRANGER, &claims(json!({})))),
            (
                "wrong audience",
                sign(SIGNER, &claims(json!({"aud": "other"}))),
            ),
            (
                "wrong issuer",
                sign(SIGNER, &claims(json!({"iss": "https://evil.example"}))),
            ),
            (
                "no role",
                sign(SIGNER, &claims(json!({"conflux_role": null}))),
            ),
            (
                "unknown role",
                sign(SIGNER, &claims(json!({"conflux_role": "root"}))),
            ),
            (
                "bad tenant",
                sign(SIGNER, &claims(json!({"tenant": "Not A Tenant"}))),
            ),
            ("malformed", "a.b.c".to_owned()),
        ] {
            assert_eq!(v.verify(&token), Err(AuthError::Unknown), "{why}");
        }
        let expired = sign(SIGNER, &claims(json!({"exp": now - 3600})));
        assert_eq!(v.verify(&expired), Err(AuthError::Expired));
        // alg: none, with the valid claims.
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&claims(json!({})).to_string())
        );
        assert_eq!(v.verify(&none), Err(AuthError::Unknown), "alg none");
        // HS256 signed with the shared secret listed in the set: never trusted.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("shared".into());
        let hs = encode(
            &header,
            &claims(json!({})),
            &EncodingKey::from_secret(b"secret"),
        )
        .expect("sign");
        assert_eq!(
            v.verify(&hs),
            Err(AuthError::Unknown),
            "symmetric keys are ignored"
        );
    }

    fn b64(s: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }
}
