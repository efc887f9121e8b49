//! The waiting kinds in the pure core (`signal`, `approval`): given events, when a
//! command, then exactly these events (or this rejection).

mod approvals;
mod given;
mod signals;

use conflux_engine::execution::Rejection;
use serde_json::json;

use given::*;

#[test]
fn the_rejections_map_to_their_api_codes() {
    assert_eq!(Rejection::UnknownSignal("x".into()).code(), "not_found");
    let task = id("t");
    let not_waiting = Rejection::NotWaiting {
        task: task.clone(),
        reason: "r".into(),
    };
    assert_eq!(not_waiting.code(), "conflict");
    let twice = Rejection::AlreadyDecided {
        task: task.clone(),
        by: "key:a".into(),
    };
    assert_eq!(twice.code(), "conflict");
    let role = Rejection::NotApprover {
        task,
        role: "viewer".into(),
        roles: "admin".into(),
    };
    assert_eq!(role.code(), "forbidden");
}

#[test]
fn waiting_kinds_are_validated_by_their_own_rules() {
    let reason = invalid(json!({"id": "g", "kind": "approval"}));
    assert!(reason.contains("approvers is required"), "{reason}");
    let reason = invalid(json!({"id": "g", "kind": "approval", "approvers": {"roles": []}}));
    assert!(reason.contains("approvers.roles"), "{reason}");
    let reason = invalid(
        json!({"id": "g", "kind": "approval", "approvers": {"roles": ["admin"], "count": 0}}),
    );
    assert!(reason.contains("approvers.count"), "{reason}");
    let reason =
        invalid(json!({"id": "g", "kind": "approval", "approvers": {"roles": ["viewer"]}}));
    assert!(reason.contains("\"viewer\""), "{reason}");
    let reason = invalid(json!({"id": "g", "kind": "approval", "approvers": {"roles": ["boss"]}}));
    assert!(reason.contains("\"boss\""), "{reason}");
    let reason = invalid(json!({"id": "s", "kind": "signal", "signal": "no spaces"}));
    assert!(reason.contains("signal"), "{reason}");
    let reason = invalid(json!({"id": "s", "kind": "noop",
        "compensate": {"kind": "signal"}}));
    assert!(reason.contains("cannot compensate"), "{reason}");
    // A wait without timeout_seconds has no deadline; an agent attempt gets the default.
    let wf = workflow(json!({"name": "w", "tasks": [
        {"id": "s", "kind": "signal"}, {"id": "n", "kind": "agent", "agent_role": "r"},
    ]}));
    assert_eq!(wf.body_of(0, false).and_then(|b| b.timeout()), None);
    assert!(wf.body_of(1, false).and_then(|b| b.timeout()).is_some());
}

#[test]
fn signal_payloads_and_approval_comments_are_customer_data() {
    let mut event = signal_received("s", json!({"secret": 1}));
    assert!(event.has_payload());
    let mut seen = 0;
    event.for_each_payload_mut(&mut |_| seen += 1);
    let mut comment = decided("g", true, "key:a", Some("why"));
    assert!(comment.has_payload());
    comment.for_each_payload_mut(&mut |_| seen += 1);
    assert_eq!(seen, 2);
    assert!(!decided("g", true, "key:a", None).has_payload());
}
