//! Pattern bodies: `POST /api/v1/patterns/{pattern}` answers the definitions a pattern
//! expands to (`200`), or with `?create=true` the workflows it created (`201`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::WorkflowCreated;
use crate::definition::WorkflowDefinition;

/// What a pattern expands to (`200` of `POST /api/v1/patterns/{pattern}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PatternExpansion {
    /// The pattern (`supervisor`, `hierarchical`, `handoff`, `swarm`, `network`).
    #[schema(example = "supervisor")]
    pub pattern: String,
    /// The name of the main workflow, the one to execute (the `name` parameter).
    pub main: String,
    /// Every definition, in an order they can be created in (each after the workflows
    /// its `workflow` tasks start); the main one is last.
    pub workflows: Vec<WorkflowDefinition>,
}

/// What a pattern created (`201` of `POST /api/v1/patterns/{pattern}?create=true`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PatternCreated {
    /// The pattern.
    #[schema(example = "supervisor")]
    pub pattern: String,
    /// The main workflow: execute this one.
    pub main: WorkflowCreated,
    /// Every workflow created, in creation order (the main one last).
    pub workflows: Vec<WorkflowCreated>,
}

pub use crate::patterns::ParameterError;
