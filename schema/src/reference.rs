//! `${...}` references inside task inputs, and their resolution at run time.
//!
//! A definition wires data between tasks with references written inside JSON strings:
//! `${input}`, `${input.a.b}` (the execution input) and `${tasks.<id>.output}`,
//! `${tasks.<id>.output.x.y}` (a completed task's output), and names stored secrets
//! with `${secrets.NAME}`. The validator parses them ([`references`]) to check that each
//! one names an upstream task; the executor resolves them ([`resolve`]) when it
//! schedules a task. Both share one scanner, so what validates is exactly what
//! resolves. The upstream rule itself (a reference may only name an ancestor) is
//! checked here too, by the crate-internal `Ancestry`.
//!
//! Secrets resolve in two stages, so that their values never reach the log:
//! [`resolve`] (at dispatch, recorded in `TaskDispatched`) fills in inputs and outputs
//! but leaves every `${secrets.NAME}` in place, and returns a *template*: every string
//! in it is written in this grammar again (a `${` that came from data or from a `$${`
//! escape is written `$${`), so a value from an execution's input can never turn into
//! a secret reference. [`reveal`] (in memory, just before a request is sent or a lease
//! is handed out) reads a template back: it substitutes secret values and undoes the
//! escapes. A string that is exactly one secret reference becomes the value's text.
//!
//! Grammar: a reference is `${` + dot-separated non-empty segments + `}`. A task id
//! (which may contain dots) runs up to the first `output` segment. Segments that are
//! decimal numbers also index arrays. `$${` writes a literal `${`. Only string *values*
//! are scanned, never object keys. Any other `${...}` is an error.

use serde_json::Value;

/// One parsed `${...}` reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reference {
    /// `${input}` or `${input.a.b}`: the execution input, then this path.
    Input(Vec<String>),
    /// `${tasks.<id>.output}` or `${tasks.<id>.output.x.y}`: a task's output, then this path.
    TaskOutput {
        /// The referenced task id, as written.
        task: String,
        /// The path inside the task's output.
        path: Vec<String>,
    },
    /// `${secrets.NAME}`: a stored secret of the execution's tenant, by name.
    Secret(String),
    /// `${item}` or `${item.a.b}`: in a map's template, the element this item runs for.
    Item(Vec<String>),
    /// `${index}`: in a map's template, the 0-based position of this item.
    Index,
}

/// The element a map item runs for and its 0-based position, which `${item}` and
/// `${index}` read; `None` outside a map's template.
pub type ItemScope<'a> = Option<(&'a Value, usize)>;

/// Whether `name` is a valid secret name: `^[A-Za-z_][A-Za-z0-9_]{0,127}$`.
pub fn is_secret_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The names of every secret referenced in `value` (sorted, each once). Errors name the
/// first `${...}` that is not a valid reference.
pub fn secret_names(value: &Value) -> Result<std::collections::BTreeSet<String>, String> {
    let mut names = std::collections::BTreeSet::new();
    for_each_reference(value, &mut |reference| {
        if let Reference::Secret(name) = reference {
            names.insert(name);
        }
    })?;
    Ok(names)
}

/// A piece of a scanned string.
enum Piece<'a> {
    /// Literal text, inserted as is.
    Text(&'a str),
    /// A reference.
    Ref(Reference),
}

/// Every reference in every string value of `value` (objects and arrays included), in
/// document order. Errors name the first `${...}` that is not a valid reference.
pub fn references(value: &Value) -> Result<Vec<Reference>, String> {
    let mut found = Vec::new();
    for_each_reference(value, &mut |reference| found.push(reference))?;
    Ok(found)
}

/// Like [`references`], but hands each reference to `found` and allocates nothing for
/// values without any (validation calls this once per task).
pub(crate) fn for_each_reference(
    value: &Value,
    found: &mut dyn FnMut(Reference),
) -> Result<(), String> {
    match value {
        Value::String(s) => for_each_reference_in_str(s, found),
        Value::Array(_) | Value::Object(_) => {
            let mut stack = vec![value];
            while let Some(current) = stack.pop() {
                match current {
                    Value::String(s) => for_each_reference_in_str(s, found)?,
                    Value::Array(items) => stack.extend(items.iter().rev()),
                    Value::Object(map) => stack.extend(map.values().rev()),
                    Value::Null | Value::Bool(_) | Value::Number(_) => {}
                }
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// [`for_each_reference`] for one string.
pub(crate) fn for_each_reference_in_str(
    s: &str,
    found: &mut dyn FnMut(Reference),
) -> Result<(), String> {
    if !s.contains('$') {
        return Ok(());
    }
    for piece in scan(s)? {
        if let Piece::Ref(reference) = piece {
            found(reference);
        }
    }
    Ok(())
}

/// Resolves every reference in `value` against the execution `input` and the task
/// `outputs` (a lookup returning `None` for a task with no output yet).
///
/// A string that is exactly one reference becomes the referenced JSON value (a path
/// that leads nowhere gives `null`); otherwise each reference is interpolated as text:
/// strings raw, other values as compact JSON. Objects and arrays are resolved
/// recursively (JSON parsed by serde_json is at most 128 levels deep). Fails on an
/// invalid reference or a task whose output is not available.
///
/// The result is a template (see the module docs): `${secrets.NAME}` stays as written,
/// and every `${` in a string is written `$${`; [`reveal`] reads it back.
pub fn resolve(
    value: &Value,
    input: &Value,
    outputs: &dyn Fn(&str) -> Option<Value>,
) -> Result<Value, String> {
    resolve_item(value, input, outputs, None)
}

/// [`resolve`] for one item of a map, where `${item...}` and `${index}` read `item`
/// (with `None`, they fail: they exist only in a map's template).
pub fn resolve_item(
    value: &Value,
    input: &Value,
    outputs: &dyn Fn(&str) -> Option<Value>,
    item: ItemScope<'_>,
) -> Result<Value, String> {
    match value {
        Value::String(s) => resolve_string(s, input, outputs, item),
        Value::Array(items) => items
            .iter()
            .map(|v| resolve_item(v, input, outputs, item))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(key, v)| Ok((key.clone(), resolve_item(v, input, outputs, item)?)))
            .collect::<Result<serde_json::Map<_, _>, String>>()
            .map(Value::Object),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(value.clone()),
    }
}

fn resolve_string(
    s: &str,
    input: &Value,
    outputs: &dyn Fn(&str) -> Option<Value>,
    item: ItemScope<'_>,
) -> Result<Value, String> {
    if !s.contains('$') {
        return Ok(Value::String(s.to_owned()));
    }
    let pieces = scan(s)?;
    match pieces.as_slice() {
        [Piece::Ref(Reference::Secret(name))] => return Ok(Value::String(secret_ref(name))),
        [Piece::Ref(reference)] => {
            return Ok(escape_value(lookup(reference, input, outputs, item)?))
        }
        _ => {}
    }
    // Plain text (literal and looked up) is escaped as a whole, so that a `$` at the end
    // of one piece and a `{` at the start of the next cannot make a reference.
    let mut template = String::with_capacity(s.len());
    let mut plain = String::new();
    for piece in &pieces {
        match piece {
            Piece::Text(t) => plain.push_str(t),
            Piece::Ref(Reference::Secret(name)) => {
                template.push_str(&escape(&plain));
                plain.clear();
                template.push_str(&secret_ref(name));
            }
            Piece::Ref(reference) => match lookup(reference, input, outputs, item)? {
                Value::String(inner) => plain.push_str(&inner),
                other => plain.push_str(&other.to_string()),
            },
        }
    }
    template.push_str(&escape(&plain));
    Ok(Value::String(template))
}

/// `${secrets.NAME}`.
fn secret_ref(name: &str) -> String {
    format!("${{secrets.{name}}}")
}

/// Text written so that [`scan`] reads it back as exactly this text: each `${` as `$${`.
fn escape(text: &str) -> String {
    if text.contains("${") {
        text.replace("${", "$${")
    } else {
        text.to_owned()
    }
}

/// [`escape`] applied to every string of `value` (object keys are never scanned).
fn escape_value(value: Value) -> Value {
    match value {
        Value::String(s) if s.contains("${") => Value::String(escape(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(escape_value).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, item)| (key, escape_value(item)))
                .collect(),
        ),
        other => other,
    }
}

/// Reads a template made by [`resolve`] back into plain JSON: each `${secrets.NAME}`
/// becomes `secret(NAME)` (a string that is exactly one such reference becomes that
/// text), and each `$${` a literal `${`. Fails with the name of a secret `secret`
/// does not know, or on any other reference (a template holds none).
pub fn reveal(value: &Value, secret: &dyn Fn(&str) -> Option<String>) -> Result<Value, String> {
    match value {
        Value::String(s) if s.contains('$') => {
            let mut text = String::with_capacity(s.len());
            for piece in scan(s)? {
                match piece {
                    Piece::Text(t) => text.push_str(t),
                    Piece::Ref(Reference::Secret(name)) => match secret(&name) {
                        Some(value) => text.push_str(&value),
                        None => return Err(format!("secret {name:?} does not exist")),
                    },
                    Piece::Ref(_) => {
                        return Err("a task template holds an unresolved reference".into())
                    }
                }
            }
            Ok(Value::String(text))
        }
        Value::Array(items) => items
            .iter()
            .map(|item| reveal(item, secret))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(key, item)| Ok((key.clone(), reveal(item, secret)?)))
            .collect::<Result<serde_json::Map<_, _>, String>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

/// The value a reference points at.
fn lookup(
    reference: &Reference,
    input: &Value,
    outputs: &dyn Fn(&str) -> Option<Value>,
    item: ItemScope<'_>,
) -> Result<Value, String> {
    let outside = || "`${item}` and `${index}` exist only in a map's template".to_owned();
    match reference {
        Reference::Item(path) => item.map(|(v, _)| follow(v, path)).ok_or_else(outside),
        Reference::Index => item.map(|(_, k)| Value::from(k)).ok_or_else(outside),
        Reference::Input(path) => Ok(follow(input, path)),
        Reference::TaskOutput { task, path } => outputs(task)
            .map(|output| follow(&output, path))
            .ok_or_else(|| format!("the output of task `{task}` is not available")),
        // Never looked up here: resolution keeps them (see `resolve_string`).
        Reference::Secret(name) => Ok(Value::String(secret_ref(name))),
    }
}

/// Follows `path` into `root`; object keys by name, array items by decimal index.
fn follow(root: &Value, path: &[String]) -> Value {
    let mut current = root;
    for segment in path {
        let next = match current {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => array_index(segment).and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(value) => current = value,
            None => return Value::Null,
        }
    }
    current.clone()
}

fn array_index(segment: &str) -> Option<usize> {
    if segment.bytes().all(|b| b.is_ascii_digit()) {
        segment.parse().ok()
    } else {
        None
    }
}

/// Splits a string into literal text and references.
fn scan(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        let after = &rest[at..];
        if after.starts_with("$${") {
            // Escaped: the text up to and including `$`, then `{` continues as text.
            pieces.push(Piece::Text(&rest[..at]));
            pieces.push(Piece::Text("${"));
            rest = &rest[at + 3..];
        } else if let Some(body_and_rest) = after.strip_prefix("${") {
            let close = body_and_rest
                .find('}')
                .ok_or_else(|| format!("unterminated reference `{after}`"))?;
            pieces.push(Piece::Text(&rest[..at]));
            pieces.push(Piece::Ref(parse_reference(&body_and_rest[..close])?));
            rest = &body_and_rest[close + 1..];
        } else {
            pieces.push(Piece::Text(&rest[..at + 1]));
            rest = &rest[at + 1..];
        }
    }
    pieces.push(Piece::Text(rest));
    pieces.retain(|piece| !matches!(piece, Piece::Text("")));
    Ok(pieces)
}

/// Parses the text between `${` and `}`.
fn parse_reference(body: &str) -> Result<Reference, String> {
    let segments: Vec<&str> = body.split('.').collect();
    if segments.iter().any(|segment| segment.is_empty()) {
        return Err(format!("reference `${{{body}}}` has an empty path segment"));
    }
    let owned = |segments: &[&str]| segments.iter().map(|s| (*s).to_owned()).collect();
    match segments.as_slice() {
        ["input", path @ ..] => Ok(Reference::Input(owned(path))),
        ["item", path @ ..] => Ok(Reference::Item(owned(path))),
        ["index"] => Ok(Reference::Index),
        ["secrets", name] if is_secret_name(name) => Ok(Reference::Secret((*name).to_owned())),
        ["secrets", ..] => Err(format!(
            "reference `${{{body}}}` must have the form `${{secrets.NAME}}`, NAME of A-Z, a-z, 0-9 and _ (not starting with a digit, at most 128)"
        )),
        ["tasks", after @ ..] => {
            // The task id may itself contain dots: it runs up to the first `output`.
            let output_at = after
                .iter()
                .skip(1)
                .position(|segment| *segment == "output")
                .map(|i| i + 1)
                .ok_or_else(|| {
                    format!(
                        "reference `${{{body}}}` must have the form `${{tasks.<id>.output...}}`"
                    )
                })?;
            Ok(Reference::TaskOutput {
                task: after[..output_at].join("."),
                path: owned(&after[output_at + 1..]),
            })
        }
        _ => Err(format!(
            "`${{{body}}}` is not a reference: it must start with `input`, `tasks.<id>.output`, `secrets`, or in a map's template `item` or be `index`"
        )),
    }
}

/// A `${tasks.<id>...}` reference found in a task, with where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TaskRef {
    /// The referenced task id, as written.
    pub(crate) task: String,
    /// Where it was found, for error messages (`"input"`, `"compensate.http.url"`…).
    pub(crate) place: String,
    /// Whether it may name the task that holds it (true inside `compensate`).
    pub(crate) allow_self: bool,
}

/// Checks the upstream rule: a task's references may only name its ancestors (and, in
/// its `compensate`, the task itself). Walks upstream from one task at a time; the
/// marks are reused across tasks (a new generation per walk), so a walk costs only
/// what it visits, and tasks without task references cost nothing.
pub(crate) struct Ancestry {
    mark: Vec<u32>,
    generation: u32,
    stack: Vec<u32>,
    wanted: Vec<u32>,
}

impl Ancestry {
    /// A checker for a graph of `count` tasks.
    pub(crate) fn new(count: usize) -> Self {
        Ancestry {
            mark: vec![0; count],
            generation: 0,
            stack: Vec::new(),
            wanted: Vec::new(),
        }
    }

    /// Checks the references `refs` found in task `task` (named `task_id`); `lookup`
    /// gives a task's index by id, `dependencies` a task's direct dependencies. The
    /// error is the reason of an `invalid_task`.
    pub(crate) fn check<'g>(
        &mut self,
        (task, task_id): (u32, &str),
        refs: &[TaskRef],
        lookup: impl Fn(&str) -> Option<u32>,
        dependencies: impl Fn(u32) -> &'g [u32],
    ) -> Result<(), String> {
        let mut targets = Vec::with_capacity(refs.len());
        for r in refs {
            match lookup(&r.task) {
                None => {
                    return Err(format!(
                        "{} references task `{}`, which is not a task of this workflow",
                        r.place, r.task
                    ))
                }
                Some(t) if t == task && r.allow_self => {}
                Some(t) if t == task => {
                    return Err(format!(
                        "{} references the output of the task itself",
                        r.place
                    ))
                }
                Some(t) => targets.push((t, r)),
            }
        }
        if targets.is_empty() {
            return Ok(());
        }
        self.wanted.clear();
        self.wanted.extend(targets.iter().map(|(t, _)| *t));
        self.wanted.sort_unstable();
        self.wanted.dedup();
        self.walk(task, dependencies);
        match targets
            .iter()
            .find(|(t, _)| self.mark[*t as usize] != self.generation)
        {
            None => Ok(()),
            Some((_, r)) => Err(format!(
                "{} references task `{}`, which is not an upstream dependency of `{task_id}`",
                r.place, r.task
            )),
        }
    }

    /// Marks the ancestors of `task` with a new generation, stopping early once every
    /// task in `self.wanted` is marked.
    fn walk<'g>(&mut self, task: u32, dependencies: impl Fn(u32) -> &'g [u32]) {
        self.generation += 1;
        let generation = self.generation;
        let mut remaining = self.wanted.len();
        self.stack.clear();
        self.stack.extend(dependencies(task));
        while let Some(node) = self.stack.pop() {
            if self.mark[node as usize] == generation {
                continue;
            }
            self.mark[node as usize] = generation;
            if self.wanted.binary_search(&node).is_ok() {
                remaining -= 1;
                if remaining == 0 {
                    return;
                }
            }
            let mark = &self.mark;
            let unmarked = dependencies(node)
                .iter()
                .filter(|d| mark[**d as usize] != generation);
            self.stack.extend(unmarked);
        }
    }
}
