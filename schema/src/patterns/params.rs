//! Reading a pattern's parameters: every problem is collected, none stops the reading,
//! so one `422` names every bad parameter at once.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::ids::WorkflowName;

/// One bad parameter of a pattern request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, ToSchema)]
pub struct ParameterError {
    /// The parameter, as the request names it (`max_rounds`, `agents[2]`).
    #[schema(example = "max_rounds")]
    pub field: String,
    /// What is wrong with it, for humans.
    pub reason: String,
}

/// Most characters of the `name` parameter: the generated names add a suffix, and a
/// workflow name may have 200.
pub const MAX_NAME_CHARS: usize = 120;

/// The parameters of one request, read field by field; each getter records its problem
/// and returns a placeholder, so reading goes on to the end.
pub(crate) struct Params<'a> {
    fields: Map<String, Value>,
    known: Vec<&'a str>,
    errors: Vec<ParameterError>,
}

impl<'a> Params<'a> {
    /// The parameters of `body` (an object; anything else is one error naming `body`).
    pub(crate) fn new(body: &Value) -> Params<'a> {
        let mut params = Params {
            fields: Map::new(),
            known: Vec::new(),
            errors: Vec::new(),
        };
        match body {
            Value::Object(fields) => params.fields = fields.clone(),
            Value::Null => {}
            _ => params.bad("body", "the parameters must be a JSON object"),
        }
        params
    }

    /// Records a problem with `field`.
    pub(crate) fn bad(&mut self, field: &str, reason: impl Into<String>) {
        self.errors.push(ParameterError {
            field: field.to_owned(),
            reason: reason.into(),
        });
    }

    fn take(&mut self, field: &'a str) -> Option<Value> {
        self.known.push(field);
        self.fields.get(field).filter(|v| !v.is_null()).cloned()
    }

    /// `name`: required, the name of the main workflow and the stem of the others.
    pub(crate) fn name(&mut self) -> String {
        match self.take("name") {
            None => {
                self.bad("name", "required: the name of the main workflow");
                String::new()
            }
            Some(Value::String(name)) => {
                if name.chars().count() > MAX_NAME_CHARS {
                    self.bad(
                        "name",
                        format!("must be at most {MAX_NAME_CHARS} characters"),
                    );
                } else if let Err(e) = WorkflowName::parse(&name) {
                    self.bad("name", e.message);
                }
                name
            }
            Some(_) => {
                self.bad("name", "must be a string");
                String::new()
            }
        }
    }

    /// A role name at `field` (`default` when absent; required when `None`).
    pub(crate) fn role(&mut self, field: &'a str, default: Option<&str>) -> String {
        match (self.take(field), default) {
            (None, Some(default)) => default.to_owned(),
            (None, None) => {
                self.bad(field, "required: an agent role");
                String::new()
            }
            (Some(value), _) => self.role_value(field, &value),
        }
    }

    fn role_value(&mut self, field: &str, value: &Value) -> String {
        let Value::String(role) = value else {
            self.bad(field, "must be a string (an agent role)");
            return String::new();
        };
        if let Err(reason) = check_role(role) {
            self.bad(field, reason);
        }
        role.clone()
    }

    /// A list of `min..=max` role names at `field`, required; `unique`: no repeats.
    pub(crate) fn roles(
        &mut self,
        field: &'a str,
        min: usize,
        max: usize,
        unique: bool,
    ) -> Vec<String> {
        let Some(value) = self.take(field) else {
            self.bad(
                field,
                format!("required: a list of {min} to {max} agent roles"),
            );
            return Vec::new();
        };
        let Value::Array(items) = value else {
            self.bad(field, "must be a list of agent roles");
            return Vec::new();
        };
        if items.len() < min || items.len() > max {
            self.bad(
                field,
                format!("must name {min} to {max} roles, got {}", items.len()),
            );
        }
        let mut roles = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let role = self.role_value(&format!("{field}[{i}]"), item);
            if unique && roles.contains(&role) {
                self.bad(
                    &format!("{field}[{i}]"),
                    format!("role {role:?} is named twice"),
                );
            }
            roles.push(role);
        }
        roles
    }

    /// A whole number in `min..=max` at `field` (`default` when absent; required when
    /// `None`).
    pub(crate) fn count(
        &mut self,
        field: &'a str,
        default: Option<u32>,
        min: u32,
        max: u32,
    ) -> u32 {
        match (self.take(field), default) {
            (None, Some(default)) => default,
            (None, None) => {
                self.bad(
                    field,
                    format!("required: a whole number from {min} to {max}"),
                );
                min
            }
            (Some(value), _) => match value.as_u64() {
                Some(n) if (u64::from(min)..=u64::from(max)).contains(&n) => n as u32,
                _ => {
                    self.bad(
                        field,
                        format!("must be a whole number from {min} to {max}, got {value}"),
                    );
                    min
                }
            },
        }
    }

    /// An optional whole number in `min..=max` at `field`.
    pub(crate) fn optional(&mut self, field: &'a str, min: u32, max: u32) -> Option<u32> {
        self.fields.get(field).filter(|v| !v.is_null())?;
        Some(self.count(field, None, min, max))
    }

    /// One of `choices` at `field` (`default` when absent).
    pub(crate) fn choice(&mut self, field: &'a str, choices: &[&str], default: &str) -> String {
        match self.take(field) {
            None => default.to_owned(),
            Some(Value::String(s)) if choices.contains(&s.as_str()) => s,
            Some(other) => {
                self.bad(field, format!("must be one of {choices:?}, got {other}"));
                default.to_owned()
            }
        }
    }

    /// The problems found, unknown parameters included, or `Ok` when there are none.
    pub(crate) fn finish(mut self) -> Result<(), Vec<ParameterError>> {
        let unknown: Vec<String> = self
            .fields
            .keys()
            .filter(|k| !self.known.contains(&k.as_str()))
            .cloned()
            .collect();
        for field in unknown {
            let known = self.known.join(", ");
            self.bad(&field, format!("unknown parameter (known: {known})"));
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// Whether `role` may name a role in a pattern: 1 to 40 letters, digits, `_` and `-`
/// (it becomes part of task ids, signal names and workflow names).
pub fn check_role(role: &str) -> Result<(), String> {
    if role.is_empty() || role.len() > 40 {
        return Err(format!(
            "a role must be 1 to 40 characters, got {}",
            role.len()
        ));
    }
    if let Some(c) = role
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        return Err(format!(
            "role {role:?} contains {c:?}; allowed are letters, digits, '_' and '-'"
        ));
    }
    Ok(())
}
