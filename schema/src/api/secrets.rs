//! Secret bodies: a value goes in (create, rotate) and never comes out — answers carry
//! a secret's name and times only.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `POST /api/v1/secrets`.
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateSecret {
    /// `^[A-Za-z_][A-Za-z0-9_]{0,127}$`; referenced as `${secrets.NAME}`.
    #[schema(example = "API_TOKEN")]
    pub name: String,
    /// The value: a non-empty string of at most 64 KiB. Never shown again.
    pub value: String,
}

/// Body of `PUT /api/v1/secrets/{name}`: the new value (rotation).
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RotateSecret {
    /// The value: a non-empty string of at most 64 KiB. Never shown again.
    pub value: String,
}

/// A secret as answers show it: its name and times, never its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Secret {
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its value was last set (creation or rotation).
    pub updated_at: DateTime<Utc>,
}

/// `GET /api/v1/secrets`: the tenant's secrets, sorted by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SecretList {
    /// The secrets, without values.
    pub secrets: Vec<Secret>,
}

/// Never shows the value.
impl std::fmt::Debug for CreateSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateSecret")
            .field("name", &self.name)
            .field("value", &"***")
            .finish()
    }
}

/// Never shows the value.
impl std::fmt::Debug for RotateSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RotateSecret { value: \"***\" }")
    }
}
