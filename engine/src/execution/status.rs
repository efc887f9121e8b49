//! The statuses of an execution and of its tasks: part of the contract, so they live in
//! `conflux-schema` (where the API bodies and the OpenAPI document use them too).

pub use conflux_schema::status::{ExecutionStatus, TaskStatus};
