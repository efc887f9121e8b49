//! The dead-letter routes: tasks that failed for good and failed their execution.

use utoipa::openapi::path::HttpMethod::{Delete, Get, Post};

use super::shapes::*;
use super::spec::*;

const LIST: &str = "The caller's tenant's dead letters, newest first: tasks whose retries ran \
out (or whose failure may not be retried) and that failed their execution. `state`: `open` \
(default), `redriven`, `acknowledged` or `all`. Served from a read model, so a dead letter \
appears shortly after its `TaskDeadLettered` event.";

const RETRY: &str = "Redrive: records `ExecutionRedriven` (actor: the caller) and one \
`TaskRedriven` per task it brings back — the dead-lettered task with a fresh budget of \
attempts (its attempt numbers go on), the attempts the failure cancelled, and the tasks it \
skipped before they ran. The execution is `running` again. `409 conflict` when the dead \
letter is not open, the execution compensated, is a child execution (redrive the parent's \
dead letter), is past its `timeout_seconds`, or a map task would run again.";

const ACK: &str = "Records `DeadLetterAcknowledged` (actor: the caller): the dead letter is no \
longer open and can no longer be redriven; the execution stays failed. `409 conflict` when it \
is not open.";

#[rustfmt::skip]
pub(super) fn dead_letters(s: &mut Spec) {
    let op = tagged("executions");
    let one = s.schema::<DeadLetter>();
    op(Get, "/api/v1/dead-letters", "listDeadLetters", "List dead letters, newest first")
        .describe(LIST)
        .query("state", words(&["open", "redriven", "acknowledged", "all"]), "Only dead letters in this state (default `open`).")
        .query("limit", integer(1, Some(1000), Some(100)), "At most this many.")
        .ok(200, "The tenant's dead letters.", s.schema::<DeadLetterList>())
        .fails(&[BAD_QUERY])
        .add(s);
    op(Get, "/api/v1/dead-letters/{id}", "getDeadLetter", "A dead letter")
        .ok(200, "The dead letter.", one)
        .add(s);
    op(Post, "/api/v1/dead-letters/{id}/retry", "redriveDeadLetter", "Redrive a dead letter")
        .describe(RETRY)
        .ok(202, "The execution runs again.", s.schema::<DeadLetterRedriven>())
        .fails(&[CONFLICT])
        .add(s);
    op(Delete, "/api/v1/dead-letters/{id}", "acknowledgeDeadLetter", "Acknowledge a dead letter")
        .describe(ACK)
        .answer(204, "Acknowledged.", [])
        .fails(&[CONFLICT])
        .add(s);
}
