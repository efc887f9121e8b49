//! The wire shapes the document names: the real body types of `conflux_schema::api`
//! (handlers build them, and their derived schemas document them), and the workflow
//! definition (the body of `POST /api/v1/workflows`), `conflux_schema::definition`.

pub use conflux_schema::api::*;
pub use conflux_schema::definition::WorkflowDefinition;
pub use conflux_schema::EventEnvelope as Envelope;
