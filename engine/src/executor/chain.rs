//! Decision chaining: one append per step instead of three.
//!
//! When runners report results, the engine records the results (up to
//! [`MAX_COMMANDS`] of one execution), what they make ready (`Advance`), and the start
//! of every built-in attempt it dispatches (`StartTask`), as one decision appended at
//! once. Each link is decided on a provisional state (the
//! events folded with the time of deciding); after the append the caller folds the
//! committed envelopes instead, so the cached state always equals a replay of the log.

use chrono::{DateTime, Utc};

use crate::execution::{
    decide, fold_provisional, Command, Decision, Effect, ExecutionState, Rejection,
};

/// Longest chain of decisions folded into one append.
const MAX_LINKS: usize = 16;

/// Most commands of one execution decided in one round (the rest wait for the next):
/// a map's thousands of item results make one append of a few hundred, not thousands
/// of rounds of one each, nor one append of tens of thousands of events.
pub const MAX_COMMANDS: usize = 256;

/// Decides `commands` (none: just `Advance`) one after another on the state each leaves,
/// then `Advance` and `StartTask` for built-in dispatches, until nothing more happens.
/// A command that no longer applies is skipped; if none applies, the first rejection is
/// returned. The rest of the chain never fails (a rejected link just ends it).
pub fn chain(
    state: &ExecutionState,
    commands: Vec<Command>,
    now: DateTime<Utc>,
) -> Result<Decision, Rejection> {
    let mut total = Decision::default();
    let mut provisional = state.clone();
    let mut rejection = None;
    let mut accepted = commands.is_empty();
    for command in commands {
        match decide(&provisional, command, now) {
            Ok(decision) => {
                accepted = true;
                provisional = link(provisional, decision, &mut total, now);
            }
            Err(e) => {
                rejection.get_or_insert(e);
            }
        }
    }
    if !accepted {
        if let Some(e) = rejection {
            return Err(e);
        }
    }
    for _ in 0..MAX_LINKS {
        let Ok(decision) = decide(&provisional, Command::Advance, now) else {
            break;
        };
        if decision.is_empty() {
            break;
        }
        provisional = link(provisional, decision, &mut total, now);
    }
    Ok(total)
}

/// Adds `decision` to `total`, then starts every built-in it dispatched; returns the
/// state both leave.
fn link(
    provisional: ExecutionState,
    decision: Decision,
    total: &mut Decision,
    now: DateTime<Utc>,
) -> ExecutionState {
    let starts: Vec<Command> = decision
        .effects
        .iter()
        .filter_map(|e| match e {
            // A rate-limited attempt starts when it has its token (`effects`).
            Effect::RunBuiltin {
                task,
                rate_limit: None,
                ..
            } => Some(Command::StartTask {
                task: task.clone(),
                agent_id: None,
                lease_id: None,
                routing: None,
            }),
            _ => None,
        })
        .collect();
    let mut provisional = fold_provisional(provisional, &decision.events, now);
    total.events.extend(decision.events);
    total.effects.extend(decision.effects);
    for start in starts {
        if let Ok(d) = decide(&provisional, start, now) {
            provisional = fold_provisional(provisional, &d.events, now);
            total.events.extend(d.events);
            total.effects.extend(d.effects);
        }
    }
    provisional
}

/// The effects among `effects` that a consumer that did not append the events must
/// still perform: arm the deadlines other processes recorded, and cancel the children of
/// attempts they cancelled (a caller's cancel is appended by the API, which starts and
/// cancels nothing). Repeating either is harmless.
pub fn from_elsewhere(effects: Vec<Effect>) -> impl Iterator<Item = Effect> {
    effects
        .into_iter()
        .filter(|e| matches!(e, Effect::ArmTimer(_) | Effect::CancelChild { .. }))
}
