//! `pre` and `post` hooks on a task: an HTTP call before an attempt starts and after it
//! succeeds, which may veto the attempt or annotate the task (`hooks` in a task of the
//! definition). A hook answers `2xx` with `{"veto"?: bool, "reason"?: string,
//! "annotations"?: object}` (an empty body is "go on"); anything else — another status,
//! a body that is not that, no answer within its timeout (at most 30 s) — fails the
//! attempt, and the attempt may be retried by its task's policy.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::definition::Runs;
use crate::kind::TaskKind;

/// Longest (and default) time a hook may take to answer, in seconds.
pub const MAX_HOOK_TIMEOUT_SECONDS: u64 = 30;

/// A task's hooks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, ToSchema)]
pub struct TaskHooks {
    /// Called before each attempt starts (before an agent can lease it, or a built-in
    /// runs it), with the attempt's input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre: Option<HookCall>,
    /// Called after an attempt succeeded, with its output, before the task counts as
    /// completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<HookCall>,
}

/// One hook: where it is and how long it may take.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, ToSchema)]
pub struct HookCall {
    /// An absolute `http://` or `https://` URL, reached under the egress policy.
    #[schema(example = "https://policy.example.com/conflux/pre")]
    pub url: String,
    /// Seconds it may take to answer, 1 to 30 (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 30)]
    pub timeout_seconds: Option<u64>,
}

impl HookCall {
    /// The time it may take: its own, or 30 s.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.timeout_seconds
                .unwrap_or(MAX_HOOK_TIMEOUT_SECONDS)
                .clamp(1, MAX_HOOK_TIMEOUT_SECONDS),
        )
    }
}

/// A hook's phase: `pre` or `post`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookPhase {
    /// Before the attempt starts.
    Pre,
    /// After the attempt succeeded.
    Post,
}

impl HookPhase {
    /// The word the API and the log use.
    pub fn as_str(self) -> &'static str {
        match self {
            HookPhase::Pre => "pre",
            HookPhase::Post => "post",
        }
    }
}

/// What a hook answered.
#[derive(Clone, Debug, PartialEq)]
pub enum HookVerdict {
    /// Go on; record these annotations on the task, if any.
    Proceed(Option<Value>),
    /// The attempt must not go on: it fails for good with this reason.
    Veto(String),
}

/// Reads a hook's `2xx` answer body (empty: go on).
pub fn verdict_of(body: &[u8]) -> Result<HookVerdict, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(HookVerdict::Proceed(None));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("its answer is not JSON ({e})"))?;
    let Value::Object(map) = value else {
        return Err("its answer is not a JSON object".to_owned());
    };
    let veto = match map.get("veto") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("`veto` in its answer is not a boolean".to_owned()),
    };
    if veto {
        let reason = map
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        return Ok(HookVerdict::Veto(reason.to_owned()));
    }
    match map.get("annotations") {
        None | Some(Value::Null) => Ok(HookVerdict::Proceed(None)),
        Some(a @ Value::Object(_)) => Ok(HookVerdict::Proceed(Some(a.clone()))),
        Some(_) => Err("`annotations` in its answer is not an object".to_owned()),
    }
}

/// Checks a task's `hooks` (its kind must run attempts: agent, http, sleep, noop).
pub(crate) fn check(hooks: &TaskHooks, kind: TaskKind) -> Result<(), String> {
    if !matches!(kind.runs(), Runs::Builtin | Runs::Agent) {
        return Err(format!(
            "hooks: a `{kind}` task runs no attempt of its own; hooks are for agent, http, sleep and noop tasks"
        ));
    }
    for (name, hook) in [("pre", &hooks.pre), ("post", &hooks.post)] {
        let Some(hook) = hook else { continue };
        let lower = hook.url.get(..8).unwrap_or(&hook.url).to_ascii_lowercase();
        let scheme = if lower.starts_with("https://") {
            8
        } else if lower.starts_with("http://") {
            7
        } else {
            0
        };
        let authority = hook
            .url
            .get(scheme..)
            .unwrap_or("")
            .split(['/', '?', '#'])
            .next()
            .unwrap_or("");
        if authority.contains('@') {
            return Err(format!(
                "hooks.{name}.url must not hold credentials (the definition is recorded in the log); \
                 authenticate the hook another way"
            ));
        }
        if scheme == 0 || hook.url.len() == scheme || hook.url.contains("${") {
            return Err(format!(
                "hooks.{name}.url must be an absolute http:// or https:// URL without references, not `{}`",
                hook.url
            ));
        }
        if let Some(t) = hook.timeout_seconds {
            if !(1..=MAX_HOOK_TIMEOUT_SECONDS).contains(&t) {
                return Err(format!(
                    "hooks.{name}.timeout_seconds must be 1 to {MAX_HOOK_TIMEOUT_SECONDS}, not {t}"
                ));
            }
        }
    }
    if hooks.pre.is_none() && hooks.post.is_none() {
        return Err("hooks must have a `pre` or a `post` hook".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_read_as_verdicts() {
        assert_eq!(verdict_of(b""), Ok(HookVerdict::Proceed(None)));
        assert_eq!(verdict_of(b"{}"), Ok(HookVerdict::Proceed(None)));
        assert_eq!(
            verdict_of(br#"{"annotations": {"risk": "low"}}"#),
            Ok(HookVerdict::Proceed(Some(json!({"risk": "low"}))))
        );
        assert_eq!(
            verdict_of(br#"{"veto": true, "reason": "over limit"}"#),
            Ok(HookVerdict::Veto("over limit".into()))
        );
        assert!(verdict_of(b"[1]").is_err());
        assert!(verdict_of(br#"{"veto": "yes"}"#).is_err());
        assert!(verdict_of(br#"{"annotations": 3}"#).is_err());
        assert!(verdict_of(b"nope").is_err());
    }

    #[test]
    fn hooks_are_checked() {
        let hook = |url: &str, t: Option<u64>| TaskHooks {
            pre: Some(HookCall {
                url: url.into(),
                timeout_seconds: t,
            }),
            post: None,
        };
        assert!(check(&hook("https://x.example/pre", None), TaskKind::Agent).is_ok());
        assert!(check(&hook("http://x", Some(30)), TaskKind::Noop).is_ok());
        for bad in ["ftp://x", "x", "https://", "https://x/${input.a}"] {
            assert!(check(&hook(bad, None), TaskKind::Http).is_err(), "{bad}");
        }
        assert!(check(&hook("https://x", Some(31)), TaskKind::Http).is_err());
        assert!(check(&hook("https://user:pw@x/pre", None), TaskKind::Http).is_err());
        assert!(check(&hook("https://x", Some(0)), TaskKind::Http).is_err());
        assert!(check(&hook("https://x", None), TaskKind::Switch).is_err());
        assert!(check(&TaskHooks::default(), TaskKind::Agent).is_err());
    }
}
