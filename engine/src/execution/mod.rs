//! The pure execution core: one workflow execution as a state machine.
//!
//! No I/O, no async, no clock reads: time comes in as an argument, side effects go out
//! as data. The engine shell loads events, calls these functions and performs the
//! effects; audit replay and tests call exactly the same functions.
//!
//! - [`evolve`]`(state, event) -> state` folds the log ([`ExecutionState::replay`]).
//! - [`decide`]`(state, command, now) -> Decision | Rejection` says what a command
//!   records; [`Command::Advance`] is the step the engine runs after applying any
//!   event (schedule, dispatch, retry, fail, compensate, complete).
//! - [`effects_of`] gives the effects one committed event calls for.
//!
//! # Layout
//! - `status`: [`ExecutionStatus`] and [`TaskStatus`], the API's words.
//! - `state`: [`ExecutionState`] and [`TaskState`], with read accessors.
//! - `ready`: in-degree counters and the ready set, kept incrementally.
//! - `evolve`: how each event changes the state (total, never panics).
//! - `command`: [`Command`], [`TaskRef`] (how attempts are named) and [`Rejection`].
//! - `decide`: the command dispatcher, lifecycle commands and timers.
//! - `attempt`: start/heartbeat/complete/fail, fenced by attempt number.
//! - `fanout`: the step of a running `map` (its items, its end).
//! - `judge`: a ready task's trigger rule and `when`, and a switch's choice.
//! - `advance`: the process-manager step; `saga`: compensation in reverse completion
//!   order.
//! - `dispatch`: which spec runs and its `${...}` resolution; `effect`: [`Effect`],
//!   [`Timer`], [`Decision`]; `view`: the API body, pending timers and dispatches.
//! - `child`: `workflow` tasks' child executions: their ids, the link a child records,
//!   and the command its end sends its parent.
//! - `dead_letter`: tasks that failed their execution, kept as dead letters; their
//!   redrive and acknowledgement.
//! - `waits`: the waiting kinds (`signal`, `approval`): kept signals, approval
//!   decisions, and `Advance` run to rest when a dispatch completes a task.

mod advance;
mod attempt;
mod child;
mod command;
mod dead_letter;
mod decide;
mod dispatch;
mod effect;
mod evolve;
mod fanout;
mod judge;
mod ready;
mod saga;
mod state;
mod status;
mod view;
mod waits;

pub use child::{child_execution_id, link_for, parent_command};
pub use command::{Command, Rejection, TaskRef};
pub use dead_letter::{dead_letter_id, parse_dead_letter_id, DeadLetterEntry};
pub use decide::decide;
pub use effect::{effects_of, Decision, Effect, Timer};
pub use evolve::{evolve, fold_provisional};
pub use state::{ExecutionState, TaskState};
pub use status::{ExecutionStatus, TaskStatus};
pub use waits::ApprovalBy;
