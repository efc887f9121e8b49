//! The HTTP bodies of API.md as types. Handlers build them and answer with them, the
//! projector stores and reads them, tests and clients parse them, and the OpenAPI
//! document (`GET /api/v1/openapi.json`) is derived from them (`utoipa::ToSchema`),
//! so the document describes what the code sends — a test validates every route's real
//! answers against it.
//!
//! Request bodies are strict where they are read (`conflux-http`'s extractor refuses a
//! field the type does not define); answers may gain fields.

pub mod access;
pub mod agents;
pub mod audit;
pub mod dead_letters;
pub mod erasure;
pub mod error;
pub mod executions;
pub mod hooks;
pub mod live;
pub mod ops;
pub mod patterns;
pub mod schedules;
pub mod secrets;
pub mod waits;
pub mod workflows;

pub use access::{
    CreateKey, CreateTenant, Key, KeyCreated, KeyList, QuotaUse, SetTenantPolicy, Tenant,
    TenantList, TenantPolicy, TenantUsage,
};
pub use agents::{
    AgentChanged, AgentList, AgentRegistered, AgentState, AgentStatus, AgentView, CompleteTask,
    FailTask, Lease, LeaseRecorded, LeasedAttempt, PollAnswer, RegisterAgent,
};
pub use audit::{ChainVerification, EventPage, Replay, WorkflowEventPage};
pub use dead_letters::{
    DeadLetter, DeadLetterList, DeadLetterRedriven, DeadLetterRef, DeadLetterState,
};
pub use erasure::{DataErased, EraseTenantData};
pub use error::{ErrorBody, ErrorDetail};
pub use executions::{CancelRequest, CompensationState, Execution, ExecutionControlled, TaskState};
pub use hooks::{
    CreateHook, DeliveryState, Hook, HookCreated, HookDelivery, HookDeliveryList, HookList,
};
pub use live::LiveFrame;
pub use ops::{Health, Ready};
pub use patterns::{ParameterError, PatternCreated, PatternExpansion};
pub use schedules::{CreateSchedule, Schedule, ScheduleList};
pub use secrets::{CreateSecret, RotateSecret, Secret, SecretList};
pub use waits::{
    ApprovalProgress, ApprovalRecorded, ApprovalRequest, SignalAccepted, SignalRequest, WaitingFor,
};
pub use workflows::{
    ExecuteRequest, ExecutionAccepted, ExecutionCounts, WorkflowControlled, WorkflowCreated,
    WorkflowList, WorkflowStatus, WorkflowSummary,
};
