//! The ways an agent operation can say no, typed once here so that every caller (the
//! command API maps them to its JSON error body in one place) tells them apart the same
//! way.

use uuid::Uuid;

use crate::commands::CommandError;
use crate::execution::Rejection;
use crate::store::StoreError;

/// Why an agent operation changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The request is not valid (e.g. a registration without roles).
    #[error("{0}")]
    Invalid(String),
    /// No such agent, lease or execution in the caller's tenant: another tenant's is
    /// reported exactly as an unknown one.
    #[error("{0}")]
    NotFound(String),
    /// An agent key asked to serve agent roles that are not on it.
    #[error("this agent key may not serve these agent roles")]
    RolesNotServed {
        /// The roles asked for that the key does not serve.
        refused: Vec<String>,
        /// The roles the key serves.
        allowed: Vec<String>,
    },
    /// The caller may not do this to this lease (an agent key reporting a task of an
    /// agent role it does not serve).
    #[error("{0}")]
    Forbidden(String),
    /// The lease's attempt timed out, was cancelled or already finished: nothing was
    /// recorded.
    #[error(
        "lease {0} is no longer current: its attempt timed out, was cancelled or already finished"
    )]
    StaleLease(Uuid),
    /// The execution's state refused the command for another reason.
    #[error(transparent)]
    Rejected(Rejection),
    /// Agents are not served now: the bus (and the task queues under its prefix) is not
    /// this store's, or the task queue cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CommandError> for AgentError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::NotFound(what) => AgentError::NotFound(format!("{what} not found")),
            CommandError::Rejected(r) => AgentError::Rejected(r),
            CommandError::Store(s) => AgentError::Store(s),
            CommandError::Forbidden(why) => AgentError::Forbidden(why),
            CommandError::Invalid(why) => AgentError::Invalid(why),
        }
    }
}
