//! Workflow definitions (API.md bodies) of the shapes the scenarios run. Task ids are
//! short (`t123`) so large definitions stay small on the wire.

use serde_json::{json, Value};

/// What one task does.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    /// A built-in `noop`.
    Noop,
    /// An `agent` task for this role.
    Agent(&'a str),
}

fn task(id: String, step: Step<'_>, depends_on: &[String]) -> Value {
    let mut t = match step {
        Step::Noop => json!({"id": id, "kind": "noop"}),
        Step::Agent(role) => json!({"id": id, "kind": "agent", "agent_role": role}),
    };
    if !depends_on.is_empty() {
        t["depends_on"] = json!(depends_on);
    }
    t
}

/// A chain of the given steps, `t0 → t1 → …`.
pub fn chain_of(name: &str, steps: &[Step<'_>]) -> Value {
    let tasks: Vec<Value> = steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let deps: Vec<String> = i
                .checked_sub(1)
                .map(|p| format!("t{p}"))
                .into_iter()
                .collect();
            task(format!("t{i}"), *step, &deps)
        })
        .collect();
    json!({"name": name, "tasks": tasks})
}

/// A chain of `n` tasks all doing `step`.
pub fn chain(name: &str, n: usize, step: Step<'_>) -> Value {
    chain_of(name, &vec![step; n.max(1)])
}

/// `start → width parallel noops → join`: `width + 2` tasks.
pub fn diamond(name: &str, width: usize) -> Value {
    diamond_of(name, width, Step::Noop)
}

/// `start → width parallel `middle` steps → join` (start and join are noops).
pub fn diamond_of(name: &str, width: usize, middle_step: Step<'_>) -> Value {
    let mut tasks = vec![task("start".into(), Step::Noop, &[])];
    let start = ["start".to_owned()];
    let middle: Vec<String> = (0..width.max(1)).map(|i| format!("p{i}")).collect();
    for id in &middle {
        tasks.push(task(id.clone(), middle_step, &start));
    }
    tasks.push(task("join".into(), Step::Noop, &middle));
    json!({"name": name, "tasks": tasks})
}

/// A layered DAG of `n` noop tasks: one root, and each task has up to `fanout`
/// dependents in the next layer (task `i` depends on task `(i - 1) / fanout`), so
/// layers hold 1, fanout, fanout², … tasks.
pub fn layered_dag(name: &str, n: usize, fanout: usize) -> Value {
    let fanout = fanout.max(1);
    let tasks: Vec<Value> = (0..n.max(1))
        .map(|i| {
            let deps: Vec<String> = if i == 0 {
                Vec::new()
            } else {
                vec![format!("t{}", (i - 1) / fanout)]
            };
            task(format!("t{i}"), Step::Noop, &deps)
        })
        .collect();
    json!({"name": name, "tasks": tasks})
}

/// Tasks in a definition.
pub fn task_count(definition: &Value) -> usize {
    definition["tasks"].as_array().map_or(0, Vec::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_have_the_expected_tasks_and_edges() {
        let c = chain("c", 3, Step::Noop);
        assert_eq!(task_count(&c), 3);
        assert_eq!(c["tasks"][2]["depends_on"], json!(["t1"]));
        assert!(c["tasks"][0].get("depends_on").is_none());

        let d = diamond("d", 10);
        assert_eq!(task_count(&d), 12);
        assert_eq!(
            d["tasks"][11]["depends_on"].as_array().map(Vec::len),
            Some(10)
        );

        let g = layered_dag("g", 111, 10);
        assert_eq!(task_count(&g), 111);
        assert_eq!(g["tasks"][10]["depends_on"], json!(["t0"]));
        assert_eq!(g["tasks"][11]["depends_on"], json!(["t1"]));
        assert_eq!(g["tasks"][110]["depends_on"], json!(["t10"]));

        let a = chain_of("a", &[Step::Noop, Step::Agent("r")]);
        assert_eq!(a["tasks"][1]["agent_role"], "r");
    }
}
