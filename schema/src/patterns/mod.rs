//! Orchestration patterns: named shapes of multi-agent work (supervisor, hierarchical,
//! handoff, swarm, network) compiled into ordinary workflow definitions.
//!
//! A pattern adds no engine feature. [`expand`] is a pure function from a pattern's
//! parameters to the definitions it stands for, built only from kinds that exist
//! (`agent`, `switch`, `map`, `workflow`, `signal`, `noop`, `when`/trigger rules), so a
//! pattern's run is an execution like any other: streamed, replayed and audited the
//! same way. Loops are unrolled into a bounded chain of distinct workflows (round 1
//! starts round 2 …), never a workflow that starts itself, so every bound the
//! parameters give is visible in the definitions. Each definition carries its pattern
//! in the free-form `pattern` field, and every generated name derives from the `name`
//! parameter. One module per pattern; [`params`] reads and checks parameters,
//! collecting every problem so one answer names them all.

mod build;
pub mod handoff;
pub mod hierarchical;
pub mod network;
pub mod params;
pub mod supervisor;
pub mod swarm;

use serde_json::Value;

use crate::definition::WorkflowDefinition;
pub use params::{check_role, ParameterError};

/// The patterns [`expand`] knows, by the name in `POST /api/v1/patterns/{pattern}`;
/// any other name is [`PatternError::Unknown`].
pub const PATTERNS: [&str; 5] = ["supervisor", "hierarchical", "handoff", "swarm", "network"];

/// The definitions a pattern expands to.
#[derive(Clone, Debug, PartialEq)]
pub struct Expansion {
    /// The pattern's name (`"supervisor"` …).
    pub pattern: &'static str,
    /// The name of the main workflow: the one to execute. It is the `name` parameter.
    pub main: String,
    /// Every definition, in an order they can be created in: each after the workflows
    /// its `workflow` tasks name; the main one last.
    pub workflows: Vec<WorkflowDefinition>,
}

/// Why a pattern could not be expanded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// No pattern has this name (`404`).
    #[error("no pattern `{0}` (known: supervisor, hierarchical, handoff, swarm, network)")]
    Unknown(String),
    /// Parameters are missing or wrong (`422 invalid_parameters`), every one named.
    #[error("invalid parameters of pattern `{pattern}`: {}", describe(.errors))]
    Invalid {
        /// The pattern.
        pattern: String,
        /// Every bad parameter, in the order read.
        errors: Vec<ParameterError>,
    },
}

fn describe(errors: &[ParameterError]) -> String {
    let named: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.reason))
        .collect();
    named.join("; ")
}

/// Expands `pattern` with `params` (a JSON object) into its definitions. Pure: the same
/// parameters give the same definitions. Every definition it returns passes
/// [`crate::validate::validate`] with default limits (the tests check each pattern).
pub fn expand(pattern: &str, params: &Value) -> Result<Expansion, PatternError> {
    let result = match pattern {
        "supervisor" => supervisor::expand(params),
        "hierarchical" => hierarchical::expand(params),
        "handoff" => handoff::expand(params),
        "swarm" => swarm::expand(params),
        "network" => network::expand(params),
        other => return Err(PatternError::Unknown(other.to_owned())),
    };
    result.map_err(|errors| PatternError::Invalid {
        pattern: pattern.to_owned(),
        errors,
    })
}

#[cfg(test)]
mod tests;
