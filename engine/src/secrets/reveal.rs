//! Templates in, values in memory out.
//!
//! What dispatch records is a template (`conflux_schema::reference::resolve`): inputs
//! and outputs filled in, `${secrets.NAME}` kept. [`Secrets::reveal`] fetches the
//! secrets a template names and puts their values in, for the one request or poll
//! answer that needs them, and hands back a [`Redactor`] that takes those values out
//! again of anything recorded afterwards (an error message, a response that echoed a
//! header), so what the log keeps says `${secrets.NAME}` where a value was.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{SecretError, SecretValue, Secrets};

/// Why a template could not be revealed. Never holds a value.
#[derive(Debug, thiserror::Error)]
pub enum RevealError {
    /// A referenced secret does not exist (it was deleted after the workflow was
    /// created): the attempt fails for good.
    #[error("secret {0:?} does not exist (deleted after the workflow was created?)")]
    Missing(String),
    /// The template itself is not readable (not made by dispatch): the attempt fails
    /// for good.
    #[error("{0}")]
    Template(String),
    /// The secrets could not be read now (the store is down, a value does not open).
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl RevealError {
    /// Whether another attempt may succeed (the store was unavailable).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            RevealError::Secret(SecretError::Store(crate::store::StoreError::Unavailable(_)))
        )
    }
}

/// Replaces revealed values with their `${secrets.NAME}` reference. `Debug` shows
/// names only.
#[derive(Clone, Default)]
pub struct Redactor {
    /// (value, `${secrets.NAME}`), longest value first, so a value that contains
    /// another is replaced whole.
    values: Vec<(SecretValue, String)>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.values.iter().map(|(_, r)| r))
            .finish()
    }
}

impl Redactor {
    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every revealed value replaced by its reference.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (value, reference) in &self.values {
            if out.contains(value.expose()) {
                out = out.replace(value.expose(), reference);
            }
        }
        out
    }

    /// `value` with every revealed value in its strings (and keys) replaced.
    pub fn value(&self, value: Value) -> Value {
        if self.is_empty() {
            return value;
        }
        match value {
            Value::String(s) => Value::String(self.text(&s)),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.value(v)).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.text(&k), self.value(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

impl Secrets {
    /// `template` (made by dispatch) with the values of the secrets it references in
    /// `tenant` put in and its escapes undone, and the [`Redactor`] of those values.
    /// Every secret is read afresh, so a rotated value is used from the next attempt on.
    pub async fn reveal(
        &self,
        tenant: &str,
        template: &Value,
    ) -> Result<(Value, Redactor), RevealError> {
        let names =
            conflux_schema::reference::secret_names(template).map_err(RevealError::Template)?;
        let mut values = BTreeMap::new();
        for name in names {
            match self.value(tenant, &name).await? {
                Some(value) => values.insert(name, value),
                None => return Err(RevealError::Missing(name)),
            };
        }
        let revealed = conflux_schema::reference::reveal(template, &|name| {
            values.get(name).map(|v| v.expose().to_owned())
        })
        .map_err(RevealError::Template)?;
        let mut redactor = Redactor {
            values: values
                .into_iter()
                .map(|(name, value)| (value, format!("${{secrets.{name}}}")))
                .collect(),
        };
        redactor
            .values
            .sort_by_key(|(value, _)| std::cmp::Reverse(value.expose().len()));
        Ok((revealed, redactor))
    }
}

impl Secrets {
    /// The [`Redactor`] of the secrets `template` references in `tenant`, as they are
    /// now: what an agent's report on a task given those values is cleaned with. A
    /// secret that no longer exists is left out (there is no value to look for).
    pub async fn redactor(&self, tenant: &str, template: &Value) -> Result<Redactor, RevealError> {
        let names =
            conflux_schema::reference::secret_names(template).map_err(RevealError::Template)?;
        let mut values = Vec::new();
        for name in names {
            if let Some(value) = self.value(tenant, &name).await? {
                values.push((value, format!("${{secrets.{name}}}")));
            }
        }
        values.sort_by_key(|(value, _)| std::cmp::Reverse(value.expose().len()));
        Ok(Redactor { values })
    }
}

/// A template without secrets read back (escapes undone): what a task that may not use
/// secrets (a `noop`'s input) runs with. Fails if it references one anyway.
pub fn unescape(template: &Value) -> Result<Value, RevealError> {
    conflux_schema::reference::reveal(template, &|_| None).map_err(RevealError::Template)
}

impl Secrets {
    /// An `http` request template (url, headers, body) revealed as [`Secrets::reveal`]
    /// does: the request to send, and the [`Redactor`] of the values put in.
    pub async fn reveal_http(
        &self,
        tenant: &str,
        template: &conflux_schema::definition::HttpSpec,
    ) -> Result<(conflux_schema::definition::HttpSpec, Redactor), RevealError> {
        let as_json = serde_json::to_value(template)
            .map_err(|e| RevealError::Template(format!("the request cannot be read: {e}")))?;
        let (sent, redactor) = self.reveal(tenant, &as_json).await?;
        let sent = serde_json::from_value(sent)
            .map_err(|e| RevealError::Template(format!("the request cannot be read: {e}")))?;
        Ok((sent, redactor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(raw: &str) -> SecretValue {
        SecretValue::parse(raw.to_owned()).expect("value")
    }

    #[test]
    fn the_redactor_puts_references_back_longest_value_first() {
        let redactor = Redactor {
            values: vec![
                (value("abc-long"), "${secrets.LONG}".into()),
                (value("abc"), "${secrets.SHORT}".into()),
            ],
        };
        assert_eq!(
            redactor.text("x abc-long y abc"),
            "x ${secrets.LONG} y ${secrets.SHORT}"
        );
        let output = serde_json::json!({"abc": ["abc-long", 1], "k": "no"});
        assert_eq!(
            redactor.value(output),
            serde_json::json!({"${secrets.SHORT}": ["${secrets.LONG}", 1], "k": "no"})
        );
        assert_eq!(
            format!("{redactor:?}"),
            r#"["${secrets.LONG}", "${secrets.SHORT}"]"#
        );
    }

    #[test]
    fn values_and_names_are_checked_and_never_shown() {
        assert!(SecretValue::parse(String::new()).is_err());
        assert!(SecretValue::parse("x".repeat(super::super::MAX_VALUE_BYTES)).is_ok());
        assert!(SecretValue::parse("x".repeat(super::super::MAX_VALUE_BYTES + 1)).is_err());
        let v = value("hunter2");
        assert_eq!(
            (format!("{v}"), format!("{v:?}")),
            ("***".into(), "SecretValue(***)".into())
        );
        for ok in ["A", "_", "api_TOKEN_2", &"A".repeat(128)] {
            assert!(super::super::SecretName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "a-b", "a.b", "é", &"A".repeat(129)] {
            assert!(super::super::SecretName::parse(bad).is_err(), "{bad}");
        }
    }
}
