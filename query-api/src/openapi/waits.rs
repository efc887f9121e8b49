//! The routes of the waiting task kinds: signals and approval decisions.

use utoipa::openapi::path::HttpMethod::Post;

use super::shapes::*;
use super::spec::*;

const SIGNAL: &str = "Records `SignalReceived`. A `signal` task of that name waiting now \
completes with the payload as its output (`delivered_to`); otherwise the signal is kept and \
the first such task reached later consumes it. `404` when no task of the workflow waits for \
that name; `409` once the execution finished (or while it compensates). The payload counts \
against the body limit and the tenant's `event_payload_bytes`.";

const DECIDE: &str = "Records `ApprovalDecided` (actor: the caller) on the task's current \
attempt. `403` unless the caller's role is one of the task's `approvers.roles`; `409` when the \
task is not an approval waiting now (not reached yet, already decided, another kind) or the \
caller already decided on this attempt; `404` for an unknown task.";

#[rustfmt::skip]
pub(super) fn waits(s: &mut Spec) {
    let op = tagged("executions");
    op(Post, "/api/v1/executions/{id}/signals/{signal}", "signalExecution", "Send a signal")
        .describe(SIGNAL)
        .body(s.schema::<SignalRequest>(), false)
        .ok(202, "The signal was recorded.", s.schema::<SignalAccepted>())
        .fails(&[CONFLICT, OVER_SIZE_QUOTA])
        .add(s);
    let recorded = s.schema::<ApprovalRecorded>();
    let request = s.schema::<ApprovalRequest>();
    for (verb, id, summary, about) in [
        ("approve", "approveTask", "Approve an approval task", "The `approvers.count`-th distinct approval completes the task with `{\"approved_by\", \"comments\"}`."),
        ("reject", "rejectTask", "Reject an approval task", "The task fails for good (not retried)."),
    ] {
        op(Post, &format!("/api/v1/executions/{{id}}/tasks/{{task_id}}/{verb}"), id, summary)
            .describe(&format!("{DECIDE} {about}"))
            .body(request.clone(), false)
            .ok(202, "The decision was recorded.", recorded.clone())
            .fails(&[CONFLICT, OVER_SIZE_QUOTA])
            .add(s);
    }
}
