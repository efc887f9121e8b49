//! `handoff`: a chain of agents where each one's output names the role that takes over
//! next, up to `max_hops` agents.
//!
//! Hop 1 is the main workflow `<name>`, run by the `start` role. Hop k > 1 served by
//! role r is the workflow `<name>-hop-<k>-<r>`. In each hop, the role's agent acts
//! (`act`), then a `switch` on its output's `next` chooses a `workflow` task
//! `to-<role>` starting hop k + 1 of that role, or `done` when `next` names no role
//! (null, absent, unknown). The last hop has no switch: the chain ends there whatever
//! its agent says. Every hop is a child execution of the one before, so the chain is
//! visible as nested runs, at most `max_hops - 1` deep.
//!
//! Parameters: `name` (required), `roles` (1–8 distinct roles, required), `start`
//! (one of `roles`, default the first), `max_hops` (1–10, default 5),
//! `timeout_seconds` (1–86400, optional).
//!
//! What the agents see: `action: "handoff"` with `me`, `roles`, `task`, `from` (the
//! previous role), `previous` (its result), `hop`, `max_hops`, `last_hop`; they answer
//! `{"next": <role or null>, "result"}`.

use serde_json::{json, Value};

use super::build::{agent, child, definition, output_is, switch, task};
use super::params::{ParameterError, Params};
use super::Expansion;
use crate::definition::{TaskKind, WorkflowDefinition};

/// Most hops of a chain (a hop is one nested run: within the default depth limit).
pub const MAX_HOPS: u32 = 10;

/// The expansion of `params`, or every bad parameter.
pub fn expand(params: &Value) -> Result<Expansion, Vec<ParameterError>> {
    let mut p = Params::new(params);
    let name = p.name();
    let roles = p.roles("roles", 1, 8, true);
    let start = p.role("start", Some(roles.first().map_or("", String::as_str)));
    if !roles.is_empty() && !roles.contains(&start) {
        p.bad("start", format!("{start:?} is not one of roles"));
    }
    let max_hops = p.count("max_hops", Some(5), 1, MAX_HOPS);
    let timeout = p.optional("timeout_seconds", 1, 86_400);
    p.finish()?;
    let chain = Chain {
        name: &name,
        roles: &roles,
        max_hops,
        timeout,
    };
    let mut workflows = Vec::new();
    for k in (2..=max_hops).rev() {
        for role in &roles {
            workflows.push(chain.hop(k, role));
        }
    }
    workflows.push(chain.hop(1, &start));
    Ok(Expansion {
        pattern: "handoff",
        main: name,
        workflows,
    })
}

struct Chain<'a> {
    name: &'a str,
    roles: &'a [String],
    max_hops: u32,
    timeout: Option<u32>,
}

/// The workflow of hop `k` served by `role` (hop 1 is the main one, named `name`).
pub fn hop_name(name: &str, k: u32, role: &str) -> String {
    if k == 1 {
        name.to_owned()
    } else {
        format!("{name}-hop-{k}-{role}")
    }
}

impl Chain<'_> {
    fn hop(&self, k: u32, role: &str) -> WorkflowDefinition {
        let last = k == self.max_hops;
        let act = agent(
            "act",
            role,
            &[],
            json!({"pattern": "handoff", "action": "handoff", "me": role, "roles": self.roles,
                   "task": "${input.task}", "from": "${input.from}",
                   "previous": "${input.previous}", "hop": k, "max_hops": self.max_hops,
                   "last_hop": last}),
            self.timeout,
        );
        let done = |after: &str| {
            task(
                "done",
                TaskKind::Noop,
                &[after],
                json!({"result": "${tasks.act.output.result}", "by": role, "hops": k,
                       "max_hops": self.max_hops}),
            )
        };
        let mut tasks = vec![act];
        if last {
            tasks.push(done("act"));
        } else {
            let cases = self
                .roles
                .iter()
                .map(|r| (output_is("act", "next", r), format!("to-{r}")))
                .collect();
            tasks.push(switch("route", "act", cases, "done"));
            for r in self.roles {
                tasks.push(child(
                    &format!("to-{r}"),
                    &hop_name(self.name, k + 1, r),
                    &["route"],
                    json!({"task": "${input.task}", "from": role,
                           "previous": "${tasks.act.output.result}"}),
                ));
            }
            tasks.push(done("route"));
        }
        let description = format!(
            "handoff hop {k} of at most {}: {role} acts{}",
            self.max_hops,
            if last {
                ", and the chain ends".to_owned()
            } else {
                format!(
                    ", then hands off to the role its output names as next (one of {})",
                    self.roles.join(", ")
                )
            }
        );
        definition(
            &hop_name(self.name, k, role),
            "handoff",
            description,
            &[role],
            tasks,
        )
    }
}
