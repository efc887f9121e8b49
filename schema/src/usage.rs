//! What LLM work costs, and how much of it an execution may spend.
//!
//! Agents may report [`Usage`] with a result (`POST /api/v1/tasks/{lease}/complete`
//! `{"output", "usage": {"cost", "input_tokens", "output_tokens"}}`); it is recorded as
//! `UsageRecorded` beside the result, so the audit log holds what every attempt spent.
//! An execution started with a [`Budget`] (`POST /api/v1/workflows/{id}/execute`
//! `{"input", "budget": {"max_cost", "max_tokens"}}`) stops dispatching and fails with
//! `budget_exceeded` once its usage passes either limit.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What one attempt (or, summed, one execution) spent. Every field defaults to 0.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Usage {
    /// Money spent, in the agent's currency unit (a finite number, at least 0).
    #[schema(minimum = 0.0)]
    pub cost: f64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
}

impl Usage {
    /// Why the reported usage cannot be recorded (a cost that is negative or not a
    /// finite number), naming the field.
    pub fn check(&self) -> Result<(), String> {
        if !self.cost.is_finite() || self.cost < 0.0 {
            return Err(format!(
                "usage.cost must be a finite number of at least 0, got {}",
                self.cost
            ));
        }
        Ok(())
    }

    /// Input and output tokens together (saturating).
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// The sum of two usages (tokens saturate).
    pub fn plus(&self, other: &Usage) -> Usage {
        Usage {
            cost: self.cost + other.cost,
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
        }
    }
}

/// How much an execution may spend; absent limits do not apply.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Most cost the execution's attempts may report in all (a finite number above 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0)]
    pub max_cost: Option<f64>,
    /// Most tokens (input and output) the execution's attempts may report in all (at
    /// least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_tokens: Option<u64>,
}

impl Budget {
    /// Why the budget is not acceptable, naming the field: a limit that is not a
    /// positive finite number, or a budget without any limit.
    pub fn check(&self) -> Result<(), String> {
        if let Some(cost) = self.max_cost {
            if !cost.is_finite() || cost <= 0.0 {
                return Err(format!(
                    "budget.max_cost must be a finite number above 0, got {cost}"
                ));
            }
        }
        if self.max_tokens == Some(0) {
            return Err("budget.max_tokens must be at least 1".into());
        }
        if self.max_cost.is_none() && self.max_tokens.is_none() {
            return Err("budget must set max_cost, max_tokens or both".into());
        }
        Ok(())
    }

    /// Which limit `spent` is past, as the execution's error says it
    /// (`budget_exceeded: cost 0.12 is over max_cost 0.1`); None while within both.
    pub fn exceeded_by(&self, spent: &Usage) -> Option<String> {
        if let Some(max) = self.max_cost.filter(|max| spent.cost > *max) {
            return Some(format!(
                "budget_exceeded: cost {} is over max_cost {max}",
                spent.cost
            ));
        }
        let tokens = spent.tokens();
        if let Some(max) = self.max_tokens.filter(|max| tokens > *max) {
            return Some(format!(
                "budget_exceeded: {tokens} tokens are over max_tokens {max}"
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_and_usage_are_checked_and_compared() {
        assert!(Usage {
            cost: -0.1,
            ..Usage::default()
        }
        .check()
        .is_err());
        assert!(Usage {
            cost: f64::NAN,
            ..Usage::default()
        }
        .check()
        .is_err());
        assert!(Budget::default().check().is_err());
        assert!(Budget {
            max_cost: Some(0.0),
            max_tokens: None
        }
        .check()
        .is_err());
        assert!(Budget {
            max_cost: None,
            max_tokens: Some(0)
        }
        .check()
        .is_err());
        let budget = Budget {
            max_cost: Some(0.1),
            max_tokens: Some(1000),
        };
        assert_eq!(budget.check(), Ok(()));
        let spent = Usage {
            cost: 0.1,
            input_tokens: 600,
            output_tokens: 400,
        };
        assert_eq!(
            budget.exceeded_by(&spent),
            None,
            "at the limit is within it"
        );
        let more = spent.plus(&Usage {
            cost: 0.0,
            input_tokens: 1,
            output_tokens: 0,
        });
        assert_eq!(
            budget.exceeded_by(&more).as_deref(),
            Some("budget_exceeded: 1001 tokens are over max_tokens 1000")
        );
        let dearer = spent.plus(&Usage {
            cost: 0.05,
            ..Usage::default()
        });
        assert!(budget
            .exceeded_by(&dearer)
            .is_some_and(|e| e.starts_with("budget_exceeded: cost")));
    }
}
