//! From a [`WorkflowDefinition`] to a [`ValidatedWorkflow`]: the only way to obtain one.
//!
//! Validation decides every `422` of `POST /api/v1/workflows` (codes in API.md) and
//! precomputes what an executor needs so it never rescans the definition: a
//! topological order, and for each task its upstream and downstream task indices.
//!
//! Everything here is linear in the size of the definition (plus a sort of each task's
//! own `depends_on`), except the ancestry check of `${tasks.<id>...}` references, which
//! walks upstream only from the tasks that have such references. It allocates a fixed
//! number of buffers, plus one per task id, and never copies a task. No recursion: a
//! 100,000-task chain validates on any stack.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::hash::{BuildHasher, RandomState};

use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::{json, Value};

use crate::definition::{TaskBody, TaskSpec, WorkflowDefinition};
use crate::ids::{TaskId, WorkflowName};
use crate::reference::{Ancestry, TaskRef};

/// Bounds a definition must stay within.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most tasks a workflow may have (default 10,000).
    pub max_tasks: usize,
    /// The start-to-close limit, in seconds, of an agent attempt whose task names no
    /// `timeout_seconds` (default 300), so an agent that dies holding a task does not
    /// leave it waiting forever.
    pub default_task_timeout_seconds: u64,
}

/// The default of [`Limits::default_task_timeout_seconds`].
pub const DEFAULT_TASK_TIMEOUT_SECONDS: u64 = 300;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tasks: 10_000,
            default_task_timeout_seconds: DEFAULT_TASK_TIMEOUT_SECONDS,
        }
    }
}

/// Why a definition is not a valid workflow. Each variant is one API error code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// `invalid_request`: a workflow-level field is unacceptable (e.g. the name).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// `empty_workflow`: there are no tasks.
    #[error("the workflow has no tasks")]
    EmptyWorkflow,
    /// `too_many_tasks`: more tasks than [`Limits::max_tasks`].
    #[error("the workflow has {count} tasks, more than the limit of {limit}")]
    TooManyTasks {
        /// The limit in force.
        limit: usize,
        /// The number of tasks in the definition.
        count: usize,
    },
    /// `duplicate_task_id`: two tasks share an id.
    #[error("task id `{task_id}` is used by more than one task")]
    DuplicateTaskId {
        /// The repeated id.
        task_id: String,
    },
    /// `unknown_dependency`: a `depends_on` entry names no task.
    #[error("task `{task}` depends on `{dependency}`, which is not a task of this workflow")]
    UnknownDependency {
        /// The task whose `depends_on` is wrong.
        task: String,
        /// The entry that names no task.
        dependency: String,
    },
    /// `cycle`: the dependencies form a cycle (a task depending on itself included).
    #[error("the dependencies form a cycle: {} -> {}", .cycle.join(" -> "), .cycle.first().map_or("", String::as_str))]
    Cycle {
        /// The task ids around one cycle, each once, in dependency order: each task
        /// depends on the one before it, and the first depends on the last.
        cycle: Vec<String>,
    },
    /// `invalid_task`: one task is malformed (bad id, missing field for its kind, bad
    /// retry policy, bad or disallowed `${...}` reference).
    #[error("task `{task}` is invalid: {reason}")]
    InvalidTask {
        /// The id of the task, as written.
        task: String,
        /// What is wrong, for humans.
        reason: String,
    },
}

impl ValidationError {
    /// The stable API error code (`cycle`, `unknown_dependency`, …) of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ValidationError::InvalidRequest(_) => "invalid_request",
            ValidationError::EmptyWorkflow => "empty_workflow",
            ValidationError::TooManyTasks { .. } => "too_many_tasks",
            ValidationError::DuplicateTaskId { .. } => "duplicate_task_id",
            ValidationError::UnknownDependency { .. } => "unknown_dependency",
            ValidationError::Cycle { .. } => "cycle",
            ValidationError::InvalidTask { .. } => "invalid_task",
        }
    }

    /// The `details` object of the API error body.
    pub fn details(&self) -> Value {
        match self {
            ValidationError::InvalidRequest(reason) => json!({ "reason": reason }),
            ValidationError::EmptyWorkflow => json!({}),
            ValidationError::TooManyTasks { limit, count } => {
                json!({ "limit": limit, "count": count })
            }
            ValidationError::DuplicateTaskId { task_id } => json!({ "task_id": task_id }),
            ValidationError::UnknownDependency { task, dependency } => {
                json!({ "task": task, "dependency": dependency })
            }
            ValidationError::Cycle { cycle } => json!({ "cycle": cycle }),
            ValidationError::InvalidTask { task, reason } => {
                json!({ "task": task, "reason": reason })
            }
        }
    }
}

/// A definition that passed [`validate`], with its graph precomputed.
///
/// Tasks are addressed by *index*: their position in [`ValidatedWorkflow::tasks`], which
/// is a topological order (every task comes after all of its dependencies).
#[derive(Clone, Debug)]
pub struct ValidatedWorkflow {
    definition: WorkflowDefinition,
    name: WorkflowName,
    ids: Vec<TaskId>,
    index: IdIndex,
    dependencies: Adjacency,
    dependents: Adjacency,
    roots: Vec<u32>,
    sinks: Vec<u32>,
    default_timeout_seconds: u64,
}

impl ValidatedWorkflow {
    /// The definition as submitted, except that its tasks are in the topological order
    /// of [`ValidatedWorkflow::tasks`]; when the submitted order already was one (every
    /// task listed after its dependencies), it is unchanged.
    pub fn definition(&self) -> &WorkflowDefinition {
        &self.definition
    }

    /// Gives back the definition (tasks in topological order, as [`Self::definition`]).
    pub fn into_definition(self) -> WorkflowDefinition {
        self.definition
    }

    /// The validated workflow name.
    pub fn name(&self) -> &WorkflowName {
        &self.name
    }

    /// Every secret the tasks (and their compensations) reference with
    /// `${secrets.NAME}`, sorted, each once: what must exist when the workflow is
    /// created.
    pub fn secret_names(&self) -> std::collections::BTreeSet<String> {
        self.definition.secret_names()
    }

    /// Number of tasks (never 0).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Always `false`: a validated workflow has at least one task.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// All tasks in topological order: a task's dependencies all have smaller indices.
    /// Among tasks that could go in either order, the submitted order is kept.
    pub fn tasks(&self) -> &[TaskSpec] {
        &self.definition.tasks
    }

    /// The `workflow` tasks and the workflows they start, in definition order.
    pub fn child_workflows(
        &self,
    ) -> impl Iterator<Item = (&str, &crate::kind::ChildWorkflow)> + '_ {
        self.tasks()
            .iter()
            .filter_map(|t| Some((t.id.as_str(), t.workflow.as_ref()?)))
    }

    /// The task at `index`, if in range.
    pub fn task(&self, index: usize) -> Option<&TaskSpec> {
        self.definition.tasks.get(index)
    }

    /// What one attempt of task `index` runs (or, with `compensation`, of its
    /// `compensate`), with the attempt limit in force: the spec's own
    /// `timeout_seconds`, else for an `agent` attempt [`Limits::default_task_timeout_seconds`]
    /// as validated (see [`crate::kind::KindRules::default_timeout`]).
    /// `None` when there is no such task or it has no `compensate`.
    pub fn body_of(&self, index: usize, compensation: bool) -> Option<TaskBody<'_>> {
        let task = self.task(index)?;
        let mut body = if compensation {
            task.compensate.as_ref()?.body()
        } else {
            task.body()
        };
        if body.kind.rules().default_timeout() {
            body.timeout_seconds = body.timeout_seconds.or(Some(self.default_timeout_seconds));
        }
        Some(body)
    }

    /// What one item of map task `index` runs: its template, with the default attempt
    /// limit when the template names none. `None` when the task is not a map.
    pub fn template_of(&self, index: usize) -> Option<TaskBody<'_>> {
        let mut body = self.task(index)?.template.as_ref()?.body();
        if body.kind.rules().default_timeout() {
            body.timeout_seconds = body.timeout_seconds.or(Some(self.default_timeout_seconds));
        }
        Some(body)
    }

    /// What one attempt of task (or map item) `id` runs: [`Self::body_of`] for a
    /// declared task, [`Self::template_of`] its map for an item (which has no
    /// compensation). `None` for an id that is neither.
    pub fn body_for(&self, id: &TaskId, compensation: bool) -> Option<TaskBody<'_>> {
        if let Some(index) = self.index_of(id) {
            return self.body_of(index, compensation);
        }
        let (map, _) = id.item_of()?;
        if compensation {
            return None;
        }
        self.template_of(self.index_of_str(map)?)
    }

    /// The attempt limit of a task that names none, in seconds.
    pub fn default_task_timeout_seconds(&self) -> u64 {
        self.default_timeout_seconds
    }

    /// The validated ids, parallel to [`ValidatedWorkflow::tasks`].
    pub fn task_ids(&self) -> &[TaskId] {
        &self.ids
    }

    /// The `pre`/`post` hooks of declared task `id`, if it has any.
    pub fn hooks_of(&self, id: &TaskId) -> Option<&crate::task_hooks::TaskHooks> {
        self.task(self.index_of(id)?)?.hooks.as_ref()
    }

    /// The index of task `id` among the declared tasks.
    pub fn index_of(&self, id: &TaskId) -> Option<usize> {
        self.index_of_str(id.as_str())
    }

    /// The index of the task with this id, given as text.
    pub fn index_of_str(&self, id: &str) -> Option<usize> {
        let ids = &self.ids;
        self.index
            .get(id, |i| ids[i as usize].as_str())
            .map(|i| i as usize)
    }

    /// Indices of the tasks `index` depends on: ascending, without repeats, each smaller
    /// than `index`. Empty for an index out of range.
    pub fn dependencies(&self, index: usize) -> &[u32] {
        self.dependencies.of(index)
    }

    /// Indices of the tasks that depend on `index`: ascending, without repeats, each
    /// greater than `index`. Empty for an index out of range.
    pub fn dependents(&self, index: usize) -> &[u32] {
        self.dependents.of(index)
    }

    /// For each task, how many dependencies it has: the starting in-degree counters of
    /// an executor, which decrements the counters of `dependents` as tasks complete.
    pub fn in_degrees(&self) -> Vec<u32> {
        (0..self.len())
            .map(|i| u32::try_from(self.dependencies(i).len()).unwrap_or(u32::MAX))
            .collect()
    }

    /// Indices of the tasks with no dependencies, ascending (never empty).
    pub fn roots(&self) -> &[u32] {
        &self.roots
    }

    /// Indices of the tasks nothing depends on, ascending (never empty); the execution
    /// output is the map of their outputs.
    pub fn sinks(&self) -> &[u32] {
        &self.sinks
    }
}

/// Checks `def` and, if it is a valid workflow within `limits`, returns it validated.
///
/// Checks, in this order: the name and workflow timeout (`invalid_request`); the task
/// count (`empty_workflow`, `too_many_tasks`); then task by task, its id
/// (`invalid_task`, `duplicate_task_id`) and its own fields and reference syntax
/// (`invalid_task`); then `depends_on` (`unknown_dependency`); cycles (`cycle`); and
/// last, that every `${tasks.<id>...}` reference names an upstream task
/// (`invalid_task`). The first failure is returned.
pub fn validate(
    mut def: WorkflowDefinition,
    limits: &Limits,
) -> Result<ValidatedWorkflow, ValidationError> {
    let name = WorkflowName::parse(&def.name)
        .map_err(|e| ValidationError::InvalidRequest(format!("name: {}", e.message)))?;
    if def.timeout_seconds == Some(0) {
        return Err(ValidationError::InvalidRequest(
            "timeout_seconds must be at least 1".to_owned(),
        ));
    }
    if let Some(concurrency) = &def.concurrency {
        concurrency
            .check()
            .map_err(ValidationError::InvalidRequest)?;
    }
    let count = def.tasks.len();
    if count == 0 {
        return Err(ValidationError::EmptyWorkflow);
    }
    if count > limits.max_tasks || count >= IdIndex::EMPTY as usize {
        return Err(ValidationError::TooManyTasks {
            limit: limits.max_tasks,
            count,
        });
    }

    let (mut ids, mut index, task_refs) = check_tasks(&def.tasks)?;
    let tasks = &def.tasks;
    let lookup = |id: &str| index.get(id, |j| &tasks[j as usize].id);
    let dependencies = Adjacency::from_lists(tasks.iter().map(|task| {
        task.depends_on.iter().map(|dep| {
            lookup(dep).ok_or_else(|| ValidationError::UnknownDependency {
                task: task.id.clone(),
                dependency: dep.clone(),
            })
        })
    }))?;
    let dependents = dependencies.reversed();
    check_acyclic(&dependencies, &dependents, &ids)?;
    check_switches(tasks, &lookup)?;
    if !task_refs.is_empty() {
        let mut ancestry = Ancestry::new(count);
        for (i, refs) in &task_refs {
            let task = &tasks[*i as usize];
            let upstream = |t: u32| dependencies.of(t as usize);
            ancestry
                .check((*i, &task.id), refs, lookup, upstream)
                .map_err(|reason| invalid(task, reason))?;
        }
    }

    // Renumber everything from submitted order to topological order (usually a no-op:
    // definitions tend to list tasks after their dependencies).
    let order = stable_topological_order(&dependencies, &dependents);
    let (dependencies, dependents) = if order.iter().zip(0u32..).all(|(&o, i)| o == i) {
        (dependencies, dependents)
    } else {
        let mut position = vec![0u32; count];
        for (topo, &original) in (0u32..).zip(&order) {
            position[original as usize] = topo;
        }
        permute(&mut def.tasks, &position);
        permute(&mut ids, &position);
        index.renumber(&position);
        let renumbered = Adjacency::from_lists(order.iter().map(|&original| {
            let deps = dependencies.of(original as usize).iter();
            deps.map(|&d| Ok::<_, ValidationError>(position[d as usize]))
        }))?;
        let reversed = renumbered.reversed();
        (renumbered, reversed)
    };
    let without_edges = |adjacency: &Adjacency| {
        (0..count as u32)
            .filter(|&i| adjacency.of(i as usize).is_empty())
            .collect()
    };
    Ok(ValidatedWorkflow {
        roots: without_edges(&dependencies),
        sinks: without_edges(&dependents),
        definition: def,
        name,
        ids,
        index,
        dependencies,
        dependents,
        default_timeout_seconds: limits.default_task_timeout_seconds.max(1),
    })
}

/// The task references of one task, by submitted index.
type TaskRefs = Vec<(u32, Vec<TaskRef>)>;

/// One pass over the tasks for everything that needs only the task itself: parses the
/// ids, indexes them (rejecting repeats), checks each task's own fields, and collects
/// the tasks that have `${tasks...}` references.
fn check_tasks(tasks: &[TaskSpec]) -> Result<(Vec<TaskId>, IdIndex, TaskRefs), ValidationError> {
    let mut ids = Vec::with_capacity(tasks.len());
    let mut index = IdIndex::with_capacity(tasks.len());
    let mut task_refs = Vec::new();
    for (i, task) in (0u32..).zip(tasks) {
        let id = TaskId::parse(&task.id)
            .map_err(|e| invalid(task, format!("invalid id: {}", e.message)))?;
        if id.item_of().is_some() {
            let reason = "invalid id: `[index]` at the end names a map's item".to_owned();
            return Err(invalid(task, reason));
        }
        if index
            .insert(&task.id, i, |j| &tasks[j as usize].id)
            .is_some()
        {
            let task_id = task.id.clone();
            return Err(ValidationError::DuplicateTaskId { task_id });
        }
        ids.push(id);
        let refs = task.check().map_err(|reason| invalid(task, reason))?;
        if !refs.is_empty() {
            task_refs.push((i, refs));
        }
    }
    Ok((ids, index, task_refs))
}

/// Every task a switch's `cases[].next` or `default` names must exist and depend
/// directly on the switch (a branch is chosen among the switch's own dependents).
fn check_switches(
    tasks: &[TaskSpec],
    lookup: &dyn Fn(&str) -> Option<u32>,
) -> Result<(), ValidationError> {
    for task in tasks
        .iter()
        .filter(|t| t.kind == crate::kind::TaskKind::Switch)
    {
        let cases = task.cases.iter().enumerate();
        let named = cases
            .flat_map(|(i, c)| c.next.iter().map(move |n| (format!("cases[{i}].next"), n)))
            .chain(
                task.default_next
                    .iter()
                    .flatten()
                    .map(|n| ("default".to_owned(), n)),
            );
        for (place, next) in named {
            let Some(j) = lookup(next) else {
                return Err(invalid(
                    task,
                    format!("{place} names `{next}`, which is not a task"),
                ));
            };
            if !tasks[j as usize].depends_on.contains(&task.id) {
                return Err(invalid(
                    task,
                    format!("{place} names `{next}`, which does not depend on the switch: add `{}` to its depends_on", task.id),
                ));
            }
        }
    }
    Ok(())
}

fn invalid(task: &TaskSpec, reason: String) -> ValidationError {
    ValidationError::InvalidTask {
        task: task.id.clone(),
        reason,
    }
}

/// A directed graph as adjacency lists packed into one buffer: the targets of node `i`
/// are `targets[offsets[i]..offsets[i + 1]]`, ascending and without repeats.
#[derive(Clone, Debug)]
struct Adjacency {
    offsets: Vec<usize>,
    targets: Vec<u32>,
}

impl Adjacency {
    /// Packs one list of targets per node, sorting and deduplicating each; the first
    /// error met is returned.
    fn from_lists<E, L, T>(lists: L) -> Result<Adjacency, E>
    where
        L: ExactSizeIterator<Item = T>,
        T: Iterator<Item = Result<u32, E>>,
    {
        let mut offsets = Vec::with_capacity(lists.len() + 1);
        let mut targets = Vec::new();
        let mut list = Vec::new();
        offsets.push(0);
        for targets_of_node in lists {
            list.clear();
            for target in targets_of_node {
                list.push(target?);
            }
            list.sort_unstable();
            list.dedup();
            targets.extend_from_slice(&list);
            offsets.push(targets.len());
        }
        Ok(Adjacency { offsets, targets })
    }

    /// The targets of `node` (empty if out of range).
    fn of(&self, node: usize) -> &[u32] {
        match (self.offsets.get(node), self.offsets.get(node + 1)) {
            (Some(&start), Some(&end)) => &self.targets[start..end],
            _ => &[],
        }
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The same edges, reversed (a counting sort, so each list stays ascending).
    fn reversed(&self) -> Adjacency {
        let mut offsets = vec![0usize; self.len() + 1];
        for &t in &self.targets {
            offsets[t as usize + 1] += 1;
        }
        for i in 0..self.len() {
            offsets[i + 1] += offsets[i];
        }
        let mut next = offsets.clone();
        let mut targets = vec![0u32; self.targets.len()];
        for node in 0..self.len() {
            for &t in self.of(node) {
                targets[next[t as usize]] = node as u32;
                next[t as usize] += 1;
            }
        }
        Adjacency { offsets, targets }
    }
}

/// Detects a cycle with petgraph and reports one actual cycle through the node it names.
fn check_acyclic(
    dependencies: &Adjacency,
    dependents: &Adjacency,
    ids: &[TaskId],
) -> Result<(), ValidationError> {
    let mut graph: DiGraph<(), ()> =
        DiGraph::with_capacity(dependencies.len(), dependencies.targets.len());
    for _ in 0..dependencies.len() {
        graph.add_node(());
    }
    for task in 0..dependencies.len() {
        for &dep in dependencies.of(task) {
            graph.add_edge(NodeIndex::new(dep as usize), NodeIndex::new(task), ());
        }
    }
    let Err(cycle) = toposort(&graph, None) else {
        return Ok(());
    };
    let members = cycle_through(cycle.node_id().index(), dependents);
    let mut names: Vec<String> = members
        .iter()
        .map(|&i| ids[i as usize].as_str().to_owned())
        .collect();
    // Start at the smallest id, so the report does not depend on graph internals.
    if let Some(first) = (0..names.len()).min_by(|&a, &b| names[a].cmp(&names[b])) {
        names.rotate_left(first);
    }
    Err(ValidationError::Cycle { cycle: names })
}

/// A shortest cycle through `start` (which must lie on one), following `dependents`
/// edges: breadth-first search until an edge leads back to `start`.
fn cycle_through(start: usize, dependents: &Adjacency) -> Vec<u32> {
    const UNSEEN: u32 = u32::MAX;
    let mut parent = vec![UNSEEN; dependents.len()];
    let mut queue = VecDeque::from([start as u32]);
    parent[start] = start as u32;
    while let Some(node) = queue.pop_front() {
        for &next in dependents.of(node as usize) {
            if next as usize == start {
                let mut cycle = vec![node];
                let mut at = node;
                while at as usize != start {
                    at = parent[at as usize];
                    cycle.push(at);
                }
                cycle.reverse();
                return cycle;
            }
            if parent[next as usize] == UNSEEN {
                parent[next as usize] = node;
                queue.push_back(next);
            }
        }
    }
    // Unreachable when `start` lies on a cycle; report the node alone rather than panic.
    vec![start as u32]
}

/// Kahn's algorithm, taking the lowest submitted index among the ready tasks, so a
/// definition already in topological order keeps its order. Returns submitted indices.
fn stable_topological_order(dependencies: &Adjacency, dependents: &Adjacency) -> Vec<u32> {
    let mut pending: Vec<u32> = (0..dependencies.len())
        .map(|i| dependencies.of(i).len() as u32)
        .collect();
    let mut ready: BinaryHeap<Reverse<u32>> = (0u32..)
        .zip(&pending)
        .filter(|(_, n)| **n == 0)
        .map(|(i, _)| Reverse(i))
        .collect();
    let mut order = Vec::with_capacity(dependencies.len());
    while let Some(Reverse(task)) = ready.pop() {
        order.push(task);
        for &next in dependents.of(task as usize) {
            pending[next as usize] -= 1;
            if pending[next as usize] == 0 {
                ready.push(Reverse(next));
            }
        }
    }
    order
}

/// Moves `items[i]` to `items[position[i]]`, in place, by following the permutation's
/// cycles (nothing moves when it is the identity).
fn permute<T>(items: &mut [T], position: &[u32]) {
    let mut placed = vec![false; items.len()];
    for start in 0..items.len() {
        if placed[start] {
            continue;
        }
        placed[start] = true;
        // Swapping start with its target brings the target's item to `start`; repeat.
        let mut target = position[start] as usize;
        while target != start {
            items.swap(start, target);
            placed[target] = true;
            target = position[target] as usize;
        }
    }
}

/// A hash table from task id text to task index that stores only `u32` indices (the
/// text lives with the ids), so building it allocates one buffer, not one per task.
/// Open addressing with linear probing, at most half full, keyed by `RandomState`.
#[derive(Clone, Debug)]
struct IdIndex {
    hasher: RandomState,
    slots: Vec<u32>,
}

impl IdIndex {
    /// Marks a free slot; no index may equal it.
    const EMPTY: u32 = u32::MAX;

    fn with_capacity(count: usize) -> IdIndex {
        let size = count.saturating_mul(2).max(2).next_power_of_two();
        IdIndex {
            hasher: RandomState::new(),
            slots: vec![Self::EMPTY; size],
        }
    }

    /// The slot holding `key`, or the free slot where it would go; `text` gives the id
    /// of an index.
    fn slot<'t>(&self, key: &str, text: impl Fn(u32) -> &'t str) -> usize {
        let mask = self.slots.len() - 1;
        let mut slot = self.hasher.hash_one(key) as usize & mask;
        loop {
            let index = self.slots[slot];
            if index == Self::EMPTY || text(index) == key {
                return slot;
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Adds `key → index`, unless `key` is present: then returns the index it has.
    fn insert<'t>(&mut self, key: &str, index: u32, text: impl Fn(u32) -> &'t str) -> Option<u32> {
        let slot = self.slot(key, text);
        match self.slots[slot] {
            Self::EMPTY => {
                self.slots[slot] = index;
                None
            }
            existing => Some(existing),
        }
    }

    fn get<'t>(&self, key: &str, text: impl Fn(u32) -> &'t str) -> Option<u32> {
        match self.slots[self.slot(key, text)] {
            Self::EMPTY => None,
            index => Some(index),
        }
    }

    /// Replaces every stored index `i` by `position[i]`.
    fn renumber(&mut self, position: &[u32]) {
        for slot in &mut self.slots {
            if *slot != Self::EMPTY {
                *slot = position[*slot as usize];
            }
        }
    }
}
