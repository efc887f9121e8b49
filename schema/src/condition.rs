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

use cel::{Context, Program, Value as Cel};
use serde_json::Value;

/// Longest accepted expression, in bytes: the parser recurses, so length is bounded.
pub const MAX_EXPRESSION_BYTES: usize = 4096;

/// Checks that `expression` compiles; returns the task ids it names through `tasks`
/// (`tasks.<id>` or `tasks["<id>"]`), each once, in order of appearance.
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
    compile(expression)?;
    Ok(named_tasks(expression))
}

/// Evaluates `expression` over `input` and the outputs `output_of` gives for the tasks
/// it names (a task without output — skipped, failed, not upstream — is absent from
/// `tasks`, so `has(tasks.x)` tells). The result must be a boolean.
pub fn evaluate(
    expression: &str,
    input: &Value,
    output_of: &dyn Fn(&str) -> Option<Value>,
) -> Result<bool, String> {
    let program = compile(expression)?;
    let mut tasks = HashMap::new();
    for id in named_tasks(expression) {
        if let Some(output) = output_of(&id) {
            let entry = HashMap::from([("output".to_owned(), to_cel(&output))]);
            tasks.insert(id, Cel::from(entry));
        }
    }
    let mut context = Context::default();
    context.add_variable_from_value("input", to_cel(input));
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

/// The ids named as `tasks.<id>` or `tasks["<id>"]` / `tasks['<id>']` outside string
/// literals, each once, in order of appearance.
pub fn named_tasks(expression: &str) -> Vec<String> {
    let bytes = expression.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut found: Vec<String> = Vec::new();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(q) = quote {
            if b == b'\\' {
                i += 2;
                continue;
            }
            if b == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if b == b'"' || b == b'\'' {
            quote = Some(b);
            i += 1;
            continue;
        }
        let starts_word = i == 0 || !(ident(bytes[i - 1]) || bytes[i - 1] == b'.');
        if starts_word && bytes[i..].starts_with(b"tasks") {
            let mut j = i + 5;
            if j < bytes.len() && ident(bytes[j]) {
                i = j;
                continue;
            }
            while j < bytes.len() && bytes[j] == b' ' {
                j += 1;
            }
            let name = match bytes.get(j) {
                Some(b'.') => {
                    let start = j + 1;
                    let end = bytes[start..]
                        .iter()
                        .position(|&c| !(ident(c) || c == b'-'))
                        .map_or(bytes.len(), |p| start + p);
                    // `a-b` parses as a subtraction: only the identifier part is a name.
                    let end = bytes[start..end]
                        .iter()
                        .position(|&c| c == b'-')
                        .map_or(end, |p| start + p);
                    expression.get(start..end)
                }
                Some(b'[') => {
                    let q = bytes.get(j + 1).copied();
                    match q {
                        Some(q @ (b'"' | b'\'')) => {
                            let start = j + 2;
                            bytes[start..]
                                .iter()
                                .position(|&c| c == q)
                                .and_then(|p| expression.get(start..start + p))
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            if let Some(name) = name.filter(|n| !n.is_empty()) {
                if !found.iter().any(|f| f == name) {
                    found.push(name.to_owned());
                }
            }
            i = j;
            continue;
        }
        i += 1;
    }
    found
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
    fn named_tasks_are_found_in_both_notations_and_not_in_strings() {
        let names = named_tasks(
            r#"tasks.plan.output.n > 1 && tasks["fetch-2"].output.ok && "tasks.nope" != '' && has(tasks.plan)"#,
        );
        assert_eq!(names, ["plan", "fetch-2"]);
        assert_eq!(named_tasks("mytasks.x == 1"), Vec::<String>::new());
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
