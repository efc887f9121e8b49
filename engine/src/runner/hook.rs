//! Calling a task's `pre` or `post` hook: one POST of JSON under the tenant's egress
//! policy (the same client `http` tasks use, so a hook cannot reach what a task may
//! not), within the hook's timeout, its answer read as a [`HookVerdict`].

use conflux_schema::task_hooks::{verdict_of, HookCall, HookVerdict};
use serde_json::Value;

use super::BuiltinRunner;

/// Most bytes of a hook's answer read.
const MAX_ANSWER_BYTES: usize = 1 << 20;

impl BuiltinRunner {
    /// Calls `hook` for `tenant` with `body`. `Err` says why the call failed (the
    /// attempt it was made for fails, and may be retried); a veto is an `Ok`.
    pub async fn call_hook(
        &self,
        tenant: &str,
        hook: &HookCall,
        body: &Value,
    ) -> Result<HookVerdict, String> {
        let (_, client) = self.inner.for_tenant(tenant);
        let client = client?;
        let call = async {
            let response = client
                .post(&hook.url)
                .json(body)
                .send()
                .await
                .map_err(|e| match super::egress::denial_in(&e) {
                    Some(denied) => denied.to_string(),
                    None => format!("calling it failed: {e}"),
                })?;
            let mut response = response;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("it answered {}", status.as_u16()));
            }
            // Read at most the cap: a hook cannot make the engine hold more.
            let (bytes, whole) = super::http::read_body(&mut response, MAX_ANSWER_BYTES)
                .await
                .map_err(|e| format!("reading its answer failed: {e}"))?;
            if !whole {
                return Err(format!("its answer is over {MAX_ANSWER_BYTES} bytes"));
            }
            verdict_of(&bytes)
        };
        match tokio::time::timeout(hook.timeout(), call).await {
            Ok(verdict) => verdict,
            Err(_) => Err(format!(
                "it did not answer within {} s",
                hook.timeout().as_secs()
            )),
        }
    }
}
