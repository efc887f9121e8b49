//! The engine's round sizes: how it shares its work between tenants against how much it
//! commits per transaction (README "Fair shares between tenants" measures the trade).
//! Unset: the engine's defaults.

use clap::Args;
use conflux_engine::executor::EngineOptions;
use serde_json::{json, Value};

/// Round sizes of the engine.
#[derive(Debug, Clone, Default, Args)]
pub struct EngineRounds {
    /// Events one engine round appends at most while one tenant has work (default
    /// 1,024): the single-tenant throughput knob.
    #[arg(long, global = true, env = "CONFLUX_ENGINE_ROUND_EVENTS")]
    pub engine_round_events: Option<usize>,

    /// Events one round appends at most while several tenants have work (default 128):
    /// smaller answers every tenant sooner, at the cost of more transactions.
    #[arg(long, global = true, env = "CONFLUX_ENGINE_SHARED_ROUND_EVENTS")]
    pub engine_shared_round_events: Option<usize>,

    /// Positions the engine's own appends may run ahead of what it has read back from
    /// the bus (default 2,048): another tenant's new execution waits behind about this
    /// many events.
    #[arg(long, global = true, env = "CONFLUX_ENGINE_MAX_UNREAD")]
    pub engine_max_unread: Option<u64>,
}

impl EngineRounds {
    /// `options` with the sizes that were set (at least 1 each).
    pub fn apply(&self, mut options: EngineOptions) -> EngineOptions {
        if let Some(n) = self.engine_round_events {
            options.round_events = n.max(1);
        }
        if let Some(n) = self.engine_shared_round_events {
            options.shared_round_events = n.max(1);
        }
        if let Some(n) = self.engine_max_unread {
            options.max_unread = n.max(1);
        }
        options
    }

    /// For `--dump-config`: the sizes in force.
    pub fn dump(&self) -> Value {
        let o = self.apply(EngineOptions::default());
        json!({
            "round_events": o.round_events,
            "shared_round_events": o.shared_round_events,
            "max_unread": o.max_unread,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_sizes_replace_the_defaults_and_unset_ones_keep_them() {
        let defaults = EngineOptions::default();
        let rounds = EngineRounds {
            engine_round_events: Some(256),
            engine_shared_round_events: None,
            engine_max_unread: Some(0),
        };
        let o = rounds.apply(EngineOptions::default());
        assert_eq!(o.round_events, 256);
        assert_eq!(o.shared_round_events, defaults.shared_round_events);
        assert_eq!(o.max_unread, 1, "at least 1");
    }
}
