//! API key tokens: `cfx_<key_id>_<secret>`, the key id a uuid (32 hex digits) and the
//! secret 256 random bits (64 hex digits). Only the secret's SHA-256 is stored; a
//! presented secret is compared with it in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// A freshly issued key: the token is shown once; the hash is what the log keeps. (No
/// `Debug`: it holds the token.)
#[derive(Clone)]
pub struct IssuedToken {
    /// The key id.
    pub key_id: Uuid,
    /// `cfx_<key_id>_<secret>`: give it to the caller, never store or log it.
    pub token: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
#[error("the system's random number generator failed: {0}")]
pub struct RandomnessError(String);

/// Issues a new key id and secret.
pub fn issue() -> Result<IssuedToken, RandomnessError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| RandomnessError(e.to_string()))?;
    let secret = hex::encode(secret);
    let key_id = Uuid::now_v7();
    Ok(IssuedToken {
        key_id,
        token: format!("cfx_{}_{secret}", key_id.simple()),
        secret_sha256: sha256_hex(&secret),
    })
}

/// Generates a random token of `bytes` random bytes, hex-encoded (the bootstrap admin
/// token when none is configured).
pub fn random_hex(bytes: usize) -> Result<String, RandomnessError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| RandomnessError(e.to_string()))?;
    Ok(hex::encode(buf))
}

/// Splits `cfx_<key_id>_<secret>` into the key id and the secret (None: not an API key).
pub fn parse(token: &str) -> Option<(Uuid, &str)> {
    let rest = token.strip_prefix("cfx_")?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != 32 || secret.len() != 64 {
        return None;
    }
    Some((Uuid::try_parse(id).ok()?, secret))
}

/// Hex SHA-256 of `secret`.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `presented` hashes to `stored_sha256`, compared in constant time.
pub fn secret_matches(stored_sha256: &str, presented: &str) -> bool {
    let presented = sha256_hex(presented);
    bool::from(stored_sha256.as_bytes().ct_eq(presented.as_bytes()))
}

/// Whether two secrets are equal, in constant time (the bootstrap admin token).
pub fn same_secret(a: &str, b: &str) -> bool {
    // Hash first so the comparison's length never depends on the presented input.
    bool::from(
        Sha256::digest(a.as_bytes())
            .as_slice()
            .ct_eq(Sha256::digest(b.as_bytes()).as_slice()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_parses_and_matches_only_its_hash() {
        let t = issue().expect("issue");
        let (id, secret) = parse(&t.token).expect("parse");
        assert_eq!(id, t.key_id);
        assert!(secret_matches(&t.secret_sha256, secret));
        assert!(!secret_matches(
            &t.secret_sha256,
            &secret.replace('a', "b").replace('0', "1")
        ));
        assert!(
            !t.secret_sha256.contains(secret),
            "the hash is not the secret"
        );
        let other = issue().expect("issue");
        assert_ne!(t.token, other.token);
    }

    #[test]
    fn malformed_tokens_are_not_keys() {
        let t = issue().expect("issue").token;
        for bad in [
            "",
            "cfx_",
            "Bearer x",
            &t[..t.len() - 1],
            &t.replacen("cfx_", "cfy_", 1),
            &format!("{t}0"),
            "cfx_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz_0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn same_secret_compares_whole_values() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
