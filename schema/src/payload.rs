//! Which parts of an event are *payload* — the customer's data — and how a payload looks
//! when it is sealed (encrypted at rest) or redacted (its key erased, or hidden from the
//! caller).
//!
//! Encryption at rest seals only payloads, in place: the event keeps its type, ids,
//! versions, task ids, attempts and statuses (its structure), so the log stays readable
//! and provable without any key, and a sealed event still deserialises as the same
//! [`Event`] type. A JSON payload (`input`, `output`, an HTTP body) is sealed as the
//! object `{"$sealed": "<token>"}`; a text payload (an error, an HTTP url or header
//! value) as the string `"$sealed:<token>"`. The token format and the cryptography are
//! the engine's (`conflux_engine::crypto`); this module only knows where payloads are.

use serde_json::Value;

use crate::event::Event;

/// The key of the object a sealed JSON payload is stored as.
pub const SEALED_KEY: &str = "$sealed";
/// The prefix of a sealed text payload.
pub const SEALED_TEXT_PREFIX: &str = "$sealed:";

/// One payload field of an event, to read or replace in place.
pub enum PayloadMut<'a> {
    /// A JSON payload: an input, an output, an HTTP body.
    Json(&'a mut Value),
    /// A text payload: an error message, an HTTP url or header value.
    Text(&'a mut String),
}

/// Why a payload is not shown: what a reader gets instead of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redaction {
    /// Its data key was destroyed (crypto-shredding): the data is gone for good.
    Erased,
    /// The ciphertext failed authentication: it was altered, or sealed under another key.
    Tampered,
    /// The caller's role may not see payloads.
    Hidden,
}

impl Redaction {
    /// The word the redacted form carries (`erased`, `tampered`, `hidden`).
    pub fn as_str(self) -> &'static str {
        match self {
            Redaction::Erased => "erased",
            Redaction::Tampered => "tampered",
            Redaction::Hidden => "hidden",
        }
    }

    /// What a redacted JSON payload reads as: `{"redacted": "<why>"}`.
    pub fn json(self) -> Value {
        serde_json::json!({ "redacted": self.as_str() })
    }

    /// What a redacted text payload reads as: `[redacted: <why>]`.
    pub fn text(self) -> String {
        format!("[redacted: {}]", self.as_str())
    }

    /// Replaces `payload` by its redacted form.
    pub fn apply(self, payload: PayloadMut<'_>) {
        match payload {
            PayloadMut::Json(v) => *v = self.json(),
            PayloadMut::Text(s) => *s = self.text(),
        }
    }
}

/// The token of a sealed JSON payload (`{"$sealed": "<token>"}`), if `value` is one.
pub fn sealed_json_token(value: &Value) -> Option<&str> {
    match value {
        Value::Object(map) if map.len() == 1 => map.get(SEALED_KEY)?.as_str(),
        _ => None,
    }
}

/// The token of a sealed text payload (`"$sealed:<token>"`), if `text` is one.
pub fn sealed_text_token(text: &str) -> Option<&str> {
    text.strip_prefix(SEALED_TEXT_PREFIX)
}

/// A sealed JSON payload holding `token`.
pub fn sealed_json(token: String) -> Value {
    let mut map = serde_json::Map::with_capacity(1);
    map.insert(SEALED_KEY.to_owned(), Value::String(token));
    Value::Object(map)
}

/// A sealed text payload holding `token`.
pub fn sealed_text(token: &str) -> String {
    format!("{SEALED_TEXT_PREFIX}{token}")
}

impl Event {
    /// Whether the event type carries payload fields at all (most do not: scheduling,
    /// starts, heartbeats, pauses…), so sealing and opening skip the rest cheaply.
    pub fn has_payload(&self) -> bool {
        matches!(
            self,
            Event::ExecutionStarted { .. }
                | Event::TaskDispatched { .. }
                | Event::TaskCompleted { .. }
                | Event::TaskFailed { .. }
                | Event::TaskDeadLettered { .. }
                | Event::TaskAnnotated { .. }
                | Event::CompensationStarted { .. }
                | Event::TaskCompensated { .. }
                | Event::CompensationFailed { .. }
                | Event::ExecutionCompleted { .. }
                | Event::ExecutionFailed { .. }
                | Event::ExecutionCancelled { reason: Some(_) }
                | Event::SignalReceived { .. }
                | Event::ExecutionQueued { .. }
                | Event::ApprovalDecided {
                    comment: Some(_),
                    ..
                }
        )
    }

    /// Hands every payload field of the event to `visit`, in a fixed order: execution
    /// input and output, task input, output and error, the resolved HTTP request's url,
    /// header values and body, a cancellation's reason, a signal's payload, an
    /// approval's comment, a concurrency key (computed from the input). Structure (ids,
    /// attempts, flags, header names) is never a payload.
    pub fn for_each_payload_mut(&mut self, visit: &mut dyn FnMut(PayloadMut<'_>)) {
        match self {
            Event::ExecutionStarted { input, .. } => visit(PayloadMut::Json(input)),
            Event::TaskDispatched { input, http, .. } => {
                visit(PayloadMut::Json(input));
                if let Some(http) = http {
                    visit(PayloadMut::Text(&mut http.url));
                    for value in http.headers.values_mut() {
                        visit(PayloadMut::Text(value));
                    }
                    if let Some(body) = &mut http.body {
                        visit(PayloadMut::Json(body));
                    }
                }
            }
            Event::TaskCompleted { output, .. }
            | Event::TaskCompensated { output, .. }
            | Event::ExecutionCompleted { output } => visit(PayloadMut::Json(output)),
            Event::TaskFailed { error, .. }
            | Event::TaskDeadLettered { error, .. }
            | Event::CompensationFailed { error, .. }
            | Event::ExecutionFailed { error, .. } => visit(PayloadMut::Text(error)),
            Event::CompensationStarted {
                error: Some(error), ..
            }
            | Event::ExecutionCancelled {
                reason: Some(error),
            } => visit(PayloadMut::Text(error)),
            Event::SignalReceived { payload, .. } => visit(PayloadMut::Json(payload)),
            Event::TaskAnnotated { annotations, .. } => visit(PayloadMut::Json(annotations)),
            Event::ExecutionQueued { key } => visit(PayloadMut::Text(key)),
            Event::ApprovalDecided {
                comment: Some(comment),
                ..
            } => visit(PayloadMut::Text(comment)),
            _ => {}
        }
    }
}

/// Hands every sealed payload found anywhere inside `value` to `visit` — a read model's
/// JSON, a ticket's input — so a reader can open payloads without knowing the shape
/// that holds them. Visits sealed objects as [`PayloadMut::Json`] and sealed strings as
/// [`PayloadMut::Text`]; does not descend into what it hands over.
pub fn for_each_sealed_mut(value: &mut Value, visit: &mut dyn FnMut(PayloadMut<'_>)) {
    if sealed_json_token(value).is_some() {
        visit(PayloadMut::Json(value));
        return;
    }
    match value {
        Value::String(s) if sealed_text_token(s).is_some() => visit(PayloadMut::Text(s)),
        Value::Array(items) => {
            for item in items {
                for_each_sealed_mut(item, visit);
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                for_each_sealed_mut(item, visit);
            }
        }
        _ => {}
    }
}

/// Hides the payloads of an execution body (API.md's execution, or a workflow status
/// whose `latest_execution` is one): its input, output and error, and every task's and
/// compensation's output and error read as [`Redaction::Hidden`]. Statuses, times and
/// counts stay. For callers whose role may not see payloads.
pub fn hide_execution_json(body: &mut Value) {
    let Value::Object(map) = body else { return };
    if let Some(latest) = map.get_mut("latest_execution") {
        hide_execution_json(latest);
    }
    hide_fields(map);
    if let Some(Value::Object(tasks)) = map.get_mut("tasks") {
        for task in tasks.values_mut() {
            if let Value::Object(task) = task {
                hide_fields(task);
                if let Some(Value::Object(compensation)) = task.get_mut("compensation") {
                    hide_fields(compensation);
                }
            }
        }
    }
}

fn hide_fields(map: &mut serde_json::Map<String, Value>) {
    for key in ["input", "output", "annotations"] {
        if let Some(v) = map.get_mut(key).filter(|v| !v.is_null()) {
            *v = Redaction::Hidden.json();
        }
    }
    if let Some(v) = map.get_mut("error").filter(|v| v.is_string()) {
        *v = Value::String(Redaction::Hidden.text());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::HttpSpec;
    use serde_json::json;

    fn count(event: &mut Event) -> usize {
        let mut n = 0;
        event.for_each_payload_mut(&mut |_| n += 1);
        n
    }

    #[test]
    fn payload_fields_are_found_and_structure_is_not() {
        let mut dispatched = Event::TaskDispatched {
            task_id: crate::TaskId::parse("a").unwrap(),
            attempt: 1,
            input: json!({"x": 1}),
            deadline: None,
            http: Some(HttpSpec {
                method: "POST".into(),
                url: "https://example.test/a".into(),
                headers: [("authorization".to_owned(), "Bearer t".to_owned())].into(),
                body: Some(json!({"b": 2})),
            }),
            compensation: false,
            priority: None,
        };
        assert_eq!(count(&mut dispatched), 4);
        assert!(dispatched.has_payload());
        let mut scheduled = Event::TaskScheduled {
            task_id: crate::TaskId::parse("a").unwrap(),
            attempt: 1,
            compensation: false,
        };
        assert_eq!(count(&mut scheduled), 0);
        assert!(!scheduled.has_payload());
    }

    #[test]
    fn redaction_replaces_in_place_and_keeps_types() {
        let mut failed = Event::TaskFailed {
            task_id: crate::TaskId::parse("a").unwrap(),
            attempt: 2,
            error: "card 4242 declined".into(),
            retryable: true,
            compensation: false,
        };
        failed.for_each_payload_mut(&mut |p| Redaction::Erased.apply(p));
        let (_, data) = failed.to_parts().unwrap();
        assert_eq!(data["error"], "[redacted: erased]");
        assert_eq!(data["attempt"], 2);
        let mut done = Event::ExecutionCompleted {
            output: json!({"pii": true}),
        };
        done.for_each_payload_mut(&mut |p| Redaction::Erased.apply(p));
        assert_eq!(
            done,
            Event::ExecutionCompleted {
                output: json!({"redacted": "erased"})
            }
        );
    }

    #[test]
    fn execution_bodies_hide_payloads_and_keep_the_rest() {
        let mut status = json!({"status": "failed", "latest_execution": {
            "status": "failed", "input": {"pan": 1}, "output": null, "error": "bad pan",
            "tasks": {"a": {"status": "failed", "attempts": 2, "output": {"x": 1}, "error": "e",
                            "compensation": {"status": "completed", "output": {"y": 2}, "error": null}}}
        }});
        hide_execution_json(&mut status);
        let latest = &status["latest_execution"];
        assert_eq!(latest["input"], json!({"redacted": "hidden"}));
        assert_eq!(latest["output"], Value::Null, "nothing is not a payload");
        assert_eq!(latest["error"], "[redacted: hidden]");
        assert_eq!(latest["tasks"]["a"]["attempts"], 2);
        assert_eq!(
            latest["tasks"]["a"]["output"],
            json!({"redacted": "hidden"})
        );
        assert_eq!(
            latest["tasks"]["a"]["compensation"]["output"],
            json!({"redacted": "hidden"})
        );
        assert_eq!(status["status"], "failed");
    }

    #[test]
    fn sealed_forms_are_recognised_anywhere_in_a_document() {
        let mut doc = json!({
            "input": sealed_json("t1".into()),
            "tasks": [{"error": sealed_text("t2"), "output": {"$sealed": 3}}],
            "plain": "$sealed but not a prefix match? no: has no colon",
        });
        let mut seen = Vec::new();
        for_each_sealed_mut(&mut doc, &mut |p| match p {
            PayloadMut::Json(v) => seen.push(sealed_json_token(v).unwrap().to_owned()),
            PayloadMut::Text(s) => seen.push(sealed_text_token(s).unwrap().to_owned()),
        });
        assert_eq!(seen, vec!["t1", "t2"]);
    }
}
