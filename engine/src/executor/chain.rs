//! Decision chaining: one append per step instead of three.
//!
//! When a runner reports a result, the engine records the result, what it makes ready
//! (`Advance`), and the start of every built-in attempt it dispatches (`StartTask`), as
//! one decision appended at once. Each link is decided on a provisional state (the
//! events folded with the time of deciding); after the append the caller folds the
//! committed envelopes instead, so the cached state always equals a replay of the log.

use chrono::{DateTime, Utc};

use crate::execution::{
    decide, fold_provisional, Command, Decision, Effect, ExecutionState, Rejection,
};

/// Longest chain of decisions folded into one append.
const MAX_LINKS: usize = 16;

/// Decides `command` (if any), then `Advance` and `StartTask` for built-in dispatches,
/// until nothing more happens. A rejected `command` is returned as the error; the rest
/// of the chain never fails (a rejected link just ends the chain).
pub fn chain(
    state: &ExecutionState,
    command: Option<Command>,
    now: DateTime<Utc>,
) -> Result<Decision, Rejection> {
    let mut total = Decision::default();
    let mut provisional = state.clone();
    let mut next = Some(match command {
        Some(c) => c,
        None => Command::Advance,
    });
    let mut first = true;
    let mut links = 0;
    while let Some(command) = next.take() {
        links += 1;
        let is_advance = matches!(command, Command::Advance);
        let decision = match decide(&provisional, command, now) {
            Ok(d) => d,
            Err(e) if first => return Err(e),
            Err(_) => break,
        };
        first = false;
        let starts: Vec<Command> = decision
            .effects
            .iter()
            .filter_map(|e| match e {
                Effect::RunBuiltin { task, .. } => Some(Command::StartTask {
                    task: task.clone(),
                    agent_id: None,
                    lease_id: None,
                }),
                _ => None,
            })
            .collect();
        provisional = fold_provisional(provisional, &decision.events, now);
        let progressed = !decision.is_empty();
        total.events.extend(decision.events);
        total.effects.extend(decision.effects);
        if links >= MAX_LINKS {
            break;
        }
        // Start every built-in just dispatched, then advance again.
        for start in starts {
            if let Ok(d) = decide(&provisional, start, now) {
                provisional = fold_provisional(provisional, &d.events, now);
                total.events.extend(d.events);
                total.effects.extend(d.effects);
            }
        }
        if progressed || !is_advance {
            next = Some(Command::Advance);
        }
    }
    Ok(total)
}

/// Only the timers among `effects` (what a consumer that did not append the events must
/// still do: arm the deadlines other processes recorded).
pub fn timers_only(effects: Vec<Effect>) -> impl Iterator<Item = Effect> {
    effects
        .into_iter()
        .filter(|e| matches!(e, Effect::ArmTimer(_)))
}
