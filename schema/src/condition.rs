//! Conditions: the CEL expressions of `when` and of a switch's `cases`.
//!
//! An expression reads two variables: `input`, the execution input, and `tasks`, a map
//! from task id to `{"output": ...}` for the tasks it names (which validation requires
//! to be upstream of the task, as for `${tasks.<id>.output}`). It is compiled when the
//! definition is validated, so a syntax error is a 422 naming the task, and evaluated
//! when the task's dependencies are done; anything but a boolean result is an error.
//! JSON numbers become CEL `int` when they are integers that fit one (so `input.n > 3`
//! compares as written), else `double`.

use std::collections::HashMap;

use cel::common::ast::operators::INDEX;
use cel::common::ast::{EntryExpr, Expr};
use cel::common::value::CelVal;
use cel::{Context, IdedExpr, Program, Value as Cel};
use serde_json::Value;

/// Longest accepted expression, in bytes: the parser recurses, so length is bounded.
pub const MAX_EXPRESSION_BYTES: usize = 4096;

/// Checks that `expression` compiles and stays cheap; returns the task ids it names
/// through `tasks` (`tasks.<id>` or `tasks["<id>"]`), each once, in order of
/// appearance. Any other use of `tasks` (a computed index, `tasks` on its own) and a
/// comprehension (`all`, `exists`, `map`, `filter`…) inside another are refused: the
/// first would hide which tasks are read, the second lets a short expression run for
/// hours.
pub fn check(expression: &str) -> Result<Vec<String>, String> {
    if expression.trim().is_empty() {
        return Err("the expression is empty".to_owned());
    }
    if expression.len() > MAX_EXPRESSION_BYTES {
        return Err(format!(
            "the expression is {} bytes, more than {MAX_EXPRESSION_BYTES}",
            expression.len()
        ));
    }
    let program = compile(expression)?;
    let mut names = Vec::new();
    walk(program.expression(), 0, &mut names).map_err(|e| format!("`{expression}`: {e}"))?;
    Ok(names)
}

/// Evaluates `expression` over `input` and the outputs `output_of` gives for the tasks
/// it names (a task without output — skipped, failed — is absent from `tasks`, so
/// `has(tasks.x)` tells). The result must be a boolean. The input is converted only if
/// the expression reads it.
pub fn evaluate(
    expression: &str,
    input: &Value,
    output_of: &dyn Fn(&str) -> Option<Value>,
) -> Result<bool, String> {
    let program = compile(expression)?;
    let mut names = Vec::new();
    walk(program.expression(), 0, &mut names).map_err(|e| format!("`{expression}`: {e}"))?;
    let mut tasks = HashMap::new();
    for id in names {
        if let Some(output) = output_of(&id) {
            let entry = HashMap::from([("output".to_owned(), to_cel(&output))]);
            tasks.insert(id, Cel::from(entry));
        }
    }
    let mut context = Context::default();
    let reads_input = program.references().has_variable("input");
    context.add_variable_from_value(
        "input",
        if reads_input {
            to_cel(input)
        } else {
            Cel::Null
        },
    );
    context.add_variable_from_value("tasks", Cel::from(tasks));
    match program.execute(&context) {
        Ok(Cel::Bool(b)) => Ok(b),
        Ok(other) => Err(format!(
            "`{expression}` gave {}, not a boolean",
            describe(&other)
        )),
        Err(e) => Err(format!("`{expression}` failed: {e}")),
    }
}

/// Evaluates `expression` over `input` alone (a rate limit's key, see
/// [`crate::rate_limit`]): a string is the key as it is, a number or a boolean its text;
/// anything else, or a failure (a missing field), is an error.
pub fn evaluate_key(expression: &str, input: &Value) -> Result<String, String> {
    let program = compile(expression)?;
    let mut context = Context::default();
    context.add_variable_from_value("input", to_cel(input));
    match program.execute(&context) {
        Ok(Cel::String(s)) => Ok(s.to_string()),
        Ok(Cel::Int(i)) => Ok(i.to_string()),
        Ok(Cel::UInt(u)) => Ok(u.to_string()),
        Ok(Cel::Float(f)) => Ok(f.to_string()),
        Ok(Cel::Bool(b)) => Ok(b.to_string()),
        Ok(other) => Err(format!(
            "`{expression}` gave {}, not a string or a number",
            describe(&other)
        )),
        Err(e) => Err(format!("`{expression}` failed: {e}")),
    }
}

/// Collects the task names an expression reads (into `names`, each once) and enforces
/// the rules of [`check`]; `depth` is how many comprehensions enclose `e`.
fn walk(e: &IdedExpr, depth: usize, names: &mut Vec<String>) -> Result<(), String> {
    let is_tasks = |e: &IdedExpr| matches!(&e.expr, Expr::Ident(n) if n == "tasks");
    let mut add = |name: &str| {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    };
    match &e.expr {
        Expr::Select(select) if is_tasks(&select.operand) => add(&select.field),
        Expr::Select(select) => walk(&select.operand, depth, names)?,
        Expr::Call(call) if call.func_name == INDEX && call.args.first().is_some_and(is_tasks) => {
            match call.args.get(1).map(|a| &a.expr) {
                Some(Expr::Literal(CelVal::String(name))) => add(name),
                _ => return Err("`tasks` may only be indexed by a literal task id".to_owned()),
            }
        }
        Expr::Ident(name) if name == "tasks" => {
            return Err("`tasks` may only be read as tasks.<id> or tasks[\"<id>\"]".to_owned())
        }
        Expr::Call(call) => {
            for arg in call.target.iter().map(|t| &**t).chain(&call.args) {
                walk(arg, depth, names)?;
            }
        }
        Expr::Comprehension(c) => {
            if depth >= 1 {
                return Err(
                    "a comprehension (all, exists, map, filter…) may not contain another"
                        .to_owned(),
                );
            }
            walk(&c.iter_range, depth, names)?;
            for part in [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                walk(part, depth + 1, names)?;
            }
        }
        Expr::List(list) => {
            for element in &list.elements {
                walk(element, depth, names)?;
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(m) = &entry.expr {
                    walk(&m.key, depth, names)?;
                    walk(&m.value, depth, names)?;
                }
            }
        }
        Expr::Struct(st) => {
            for entry in &st.entries {
                if let EntryExpr::StructField(f) = &entry.expr {
                    walk(&f.value, depth, names)?;
                }
            }
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
    Ok(())
}

fn compile(expression: &str) -> Result<Program, String> {
    // The parser may panic on input it cannot handle; that is a syntax error too.
    let compiled = std::panic::catch_unwind(|| Program::compile(expression));
    match compiled {
        Ok(Ok(program)) => Ok(program),
        Ok(Err(e)) => Err(format!("`{expression}` is not a CEL expression: {e}")),
        Err(_) => Err(format!("`{expression}` is not a CEL expression")),
    }
}

/// The CEL value of a JSON value.
fn to_cel(value: &Value) -> Cel {
    match value {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cel::Int(i),
            (None, Some(u)) => Cel::UInt(u),
            _ => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cel::from(s.clone()),
        Value::Array(items) => Cel::from(items.iter().map(to_cel).collect::<Vec<_>>()),
        Value::Object(map) => {
            let entries: HashMap<String, Cel> =
                map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            Cel::from(entries)
        }
    }
}

fn describe(value: &Cel) -> &'static str {
    match value {
        Cel::List(_) => "a list",
        Cel::Map(_) => "a map",
        Cel::Int(_) | Cel::UInt(_) | Cel::Float(_) => "a number",
        Cel::String(_) => "a string",
        Cel::Bytes(_) => "bytes",
        Cel::Null => "null",
        _ => "a value",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn none(_: &str) -> Option<Value> {
        None
    }

    #[test]
    fn expressions_compile_or_say_why() {
        assert_eq!(check("input.n > 3").unwrap(), Vec::<String>::new());
        assert!(check("input.n >")
            .unwrap_err()
            .contains("not a CEL expression"));
        assert!(check("  ").is_err());
        assert!(check(&"1 + ".repeat(2000)).is_err());
    }

    #[test]
    fn named_tasks_are_read_from_the_syntax_tree() {
        let names = check(
            "tasks.plan.output.n > 1 && tasks[\"fetch-2\"].output.ok && \"tasks.nope\" != '' && has(tasks.plan)",
        )
        .unwrap();
        assert_eq!(names, ["plan", "fetch-2"]);
        let spaced = "// don't\n(tasks\n  .score).output.n > 1 && tasks[ 'other' ].output == 1";
        assert_eq!(check(spaced).unwrap(), ["score", "other"]);
        assert_eq!(check("mytasks.x == 1").unwrap(), Vec::<String>::new());
        let inside = "input.xs.exists(x, x == tasks.deep.output)";
        assert_eq!(check(inside).unwrap(), ["deep"]);
        for bad in [
            "tasks[\"sc\" + \"ore\"].output == 1",
            "size(tasks) == 1",
            "tasks == {}",
        ] {
            let err = check(bad).unwrap_err();
            assert!(err.contains("`tasks` may only"), "{bad}: {err}");
        }
    }

    #[test]
    fn nested_comprehensions_are_refused() {
        let err = check("[1, 2].all(x, [3, 4].all(y, x < y))").unwrap_err();
        assert!(err.contains("may not contain another"), "{err}");
        assert!(check("[1, 2].all(x, x > 0)").is_ok());
    }

    #[test]
    fn evaluation_reads_input_and_upstream_outputs() {
        let input = json!({"n": 5, "tags": ["a", "b"], "big": 18446744073709551615u64});
        assert!(evaluate("input.n > 3", &input, &none).unwrap());
        assert!(!evaluate("input.n < 3", &input, &none).unwrap());
        assert!(evaluate("'b' in input.tags && size(input.tags) == 2", &input, &none).unwrap());
        let outputs = |id: &str| (id == "plan").then(|| json!({"steps": [1, 2, 3]}));
        assert!(evaluate("size(tasks.plan.output.steps) == 3", &input, &outputs).unwrap());
        assert!(evaluate("!has(tasks.other)", &input, &outputs).unwrap());
        let err = evaluate("input.n", &input, &none).unwrap_err();
        assert!(err.contains("not a boolean"), "{err}");
        let err = evaluate("tasks.missing.output == 1", &input, &none).unwrap_err();
        assert!(err.contains("failed"), "{err}");
    }
}
