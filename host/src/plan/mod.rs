//! The planner: from a [`Workflow`] to a [`Plan`] — parallel groups, the
//! critical path, each agent's slack and priority, and an estimated makespan.
//!
//! Architecture invariant: planning is pure and deterministic. No I/O, no
//! async, no wasmtime; the same workflow gives the same plan, byte for byte
//! (every order in a plan comes from the file or from sorting, never from a
//! hash map). It is linear in the agents and edges, up to a log factor, so a
//! workflow of 100,000 agents plans in well under a second.
//!
//! The model, decision by decision:
//!
//! - **Dependencies.** [`DependencyGraph`] holds every `needs` edge with its
//!   kind. Only `data` edges order agents; `context`, `validation` and
//!   `resource` edges are kept (and drawn) but never delay an agent.
//! - **Estimates.** An agent's `estimate`, or [`DEFAULT_ESTIMATE`] (1s) when
//!   the file gives none; the plan marks which ones are defaults.
//! - **Groups.** Each declared group is one unit; each agent outside declared
//!   groups is a unit of its own. A unit's level is one more than the highest
//!   level of any unit it waits for (0 when it waits for none), so a declared
//!   group sits at the level right after its latest-needed dependency: it
//!   starts as early as all its members can. Agents outside declared groups
//!   are then grouped by level into derived groups named `level-N` (levels
//!   count from 1; a declared group's name wins if it is `level-N` too). Groups are ordered by level, then longest remaining path
//!   first (the groups on the critical path lead), then file order. So every
//!   agent is in exactly one group, no group holds a `data` edge between its
//!   members, and every `data` edge points from an earlier group to a later.
//! - **Critical path.** The longest chain of `data` edges by estimates. Each
//!   agent gets its earliest and latest start, its slack (latest − earliest;
//!   zero means delaying it delays the whole run) and its remaining path (its
//!   estimate plus the longest chain after it: the ready queue's tie-break).
//!   The reported path is the one made of the lowest-indexed (earliest in the
//!   file) agents among the longest ones.
//! - **Priorities** (1–10, higher first), first rule that applies: the
//!   file's `priority`; [`PRIORITY_CRITICAL`] (10) for an agent with zero
//!   slack; [`PRIORITY_VALIDATOR`] (5) for a validator (an agent with a
//!   `validation` need, or named in a group's `cross_validation.validators`);
//!   [`PRIORITY_PARALLEL`] (7) for a member of a group with two or more
//!   agents; [`PRIORITY_OTHER`] (7) for the rest.
//! - **Makespan.** A list-scheduling simulation of the ready queue under the
//!   workflow's resources: at most `max_concurrent` agents at once, their cpu
//!   units within `cpu × cpu_oversubscription` (rounded down) and their memory
//!   units within `memory` (memory is never oversubscribed). Ready agents are
//!   served by priority, then longest remaining path, then file order; the
//!   head of the queue waits until it fits and later agents do not overtake
//!   it. Barriers, retries and timeouts are not modelled.
//!
//! Durations serialize as integer milliseconds in fields ending in `_ms`.

mod graph;
pub mod render;
mod schedule;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde::{Serialize, Serializer};

pub use graph::DependencyGraph;

use crate::workflow::{DependencyKind, Workflow};

/// The estimate of an agent whose file gives none.
pub const DEFAULT_ESTIMATE: Duration = Duration::from_secs(1);
/// Priority of an agent with zero slack.
pub const PRIORITY_CRITICAL: u8 = 10;
/// Priority of a member of a group of two or more agents.
pub const PRIORITY_PARALLEL: u8 = 7;
/// Priority of a validator.
pub const PRIORITY_VALIDATOR: u8 = 5;
/// Priority of any other agent.
pub const PRIORITY_OTHER: u8 = 7;

/// What the planner decided for a workflow. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The workflow's name.
    pub workflow: String,
    /// The estimate used for agents that declare none.
    #[serde(rename = "default_estimate_ms", serialize_with = "millis")]
    pub default_estimate: Duration,
    /// Groups in execution order.
    pub groups: Vec<Group>,
    /// The longest chain of `data` edges by estimates.
    pub critical_path: CriticalPath,
    /// The simulated run under the workflow's resources.
    pub makespan: Makespan,
    /// One per agent, in file order (`agents[i]` is `workflow.agents[i]`).
    pub agents: Vec<AgentPlan>,
    /// Every `needs` edge, in file order.
    pub edges: Vec<Edge>,
}

/// Agents that run side by side, after the groups before them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// The group's name (a derived group's is `level-N`).
    pub name: String,
    /// Declared or derived.
    pub origin: GroupOrigin,
    /// Topological level, from 1: a group at level 1 waits for nothing; one
    /// at level N waits for a group at level N − 1.
    pub level: usize,
    /// Member ids, in file order.
    pub agents: Vec<String>,
    /// The groups holding an agent that a member waits for (`data` needs), in
    /// plan order.
    pub after: Vec<String>,
}

/// Where a group comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupOrigin {
    /// Declared under `groups` in the file.
    Declared,
    /// A topological level of the agents outside declared groups.
    Derived,
}

/// The longest chain of `data` edges by estimates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CriticalPath {
    /// Agent ids, first to last.
    pub agents: Vec<String>,
    /// The sum of its agents' estimates.
    #[serde(rename = "length_ms", serialize_with = "millis")]
    pub length: Duration,
}

/// The simulated run under the workflow's resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Makespan {
    /// When the last agent finishes.
    #[serde(rename = "estimate_ms", serialize_with = "millis")]
    pub estimate: Duration,
    /// Sum of all estimates: the makespan of running one agent at a time.
    #[serde(rename = "total_work_ms", serialize_with = "millis")]
    pub total_work: Duration,
    /// The workflow's concurrent agent limit.
    pub max_concurrent: u32,
    /// `cpu × cpu_oversubscription`, rounded down.
    pub cpu_units: u32,
    /// The pool's memory units.
    pub memory_units: u32,
}

/// The planner's view of one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentPlan {
    /// The agent's id.
    pub id: String,
    /// The name of its group.
    pub group: String,
    /// Its expected duration.
    #[serde(rename = "estimate_ms", serialize_with = "millis")]
    pub estimate: Duration,
    /// The file gives no estimate; [`DEFAULT_ESTIMATE`] is used.
    pub default_estimate: bool,
    /// When it can start at the earliest.
    #[serde(rename = "earliest_start_ms", serialize_with = "millis")]
    pub earliest_start: Duration,
    /// When it must start at the latest not to delay the run.
    #[serde(rename = "latest_start_ms", serialize_with = "millis")]
    pub latest_start: Duration,
    /// How long it may be delayed without delaying the run.
    #[serde(rename = "slack_ms", serialize_with = "millis")]
    pub slack: Duration,
    /// Its estimate plus the longest chain of dependents after it.
    #[serde(rename = "remaining_ms", serialize_with = "millis")]
    pub remaining: Duration,
    /// Zero slack.
    pub critical: bool,
    /// 1 (lowest) to 10 (highest): the ready queue's order.
    pub priority: u8,
    /// Why it has its priority.
    pub priority_reason: PriorityReason,
    /// When the makespan simulation starts it.
    #[serde(rename = "scheduled_start_ms", serialize_with = "millis")]
    pub scheduled_start: Duration,
}

/// Why an agent has its priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorityReason {
    /// The file's `priority`.
    Declared,
    /// On the critical path.
    CriticalPath,
    /// It validates others.
    Validator,
    /// A member of a parallel group.
    ParallelGroup,
    /// None of the above.
    Other,
}

impl PriorityReason {
    /// The reason in words (`critical path`).
    pub fn describe(self) -> &'static str {
        match self {
            Self::Declared => "declared",
            Self::CriticalPath => "critical path",
            Self::Validator => "validator",
            Self::ParallelGroup => "parallel group",
            Self::Other => "default",
        }
    }
}

/// A `needs` edge: `to` needs `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    /// The agent needed.
    pub from: String,
    /// The agent that needs it.
    pub to: String,
    /// How it is needed.
    #[serde(serialize_with = "kind_name")]
    pub kind: DependencyKind,
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn kind_name<S: Serializer>(kind: &DependencyKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.name())
}

impl Plan {
    /// The plan of agent `id`.
    pub fn agent(&self, id: &str) -> Option<&AgentPlan> {
        self.agents.iter().find(|a| a.id == id)
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// Plan `workflow`, which is assumed valid (see [`Workflow::parse`]). See the
/// [module docs](self) for the model.
pub fn plan(workflow: &Workflow) -> Plan {
    let graph = DependencyGraph::new(workflow);
    let estimates: Vec<Duration> =
        workflow.agents.iter().map(|a| a.estimate.unwrap_or(DEFAULT_ESTIMATE)).collect();
    let timing = Timing::new(&graph, &estimates);
    let grouping = Grouping::new(workflow, &graph, &timing.remaining);
    let (priorities, reasons) = priorities(workflow, &graph, &timing, &grouping);
    let resources = &workflow.resources;
    let cpu_units = ((f64::from(resources.cpu) * resources.cpu_oversubscription).floor() as u32).max(1);
    let schedule = schedule::simulate(
        &graph,
        &schedule::Pool {
            max_concurrent: resources.max_concurrent.max(1),
            cpu: cpu_units,
            memory: resources.memory,
        },
        &schedule::Demands {
            estimates: &estimates,
            priorities: &priorities,
            remaining: &timing.remaining,
            cpu: &workflow.agents.iter().map(|a| a.cpu).collect::<Vec<_>>(),
            memory: &workflow.agents.iter().map(|a| a.memory).collect::<Vec<_>>(),
        },
    );

    let agents = workflow
        .agents
        .iter()
        .enumerate()
        .map(|(i, agent)| AgentPlan {
            id: agent.id.clone(),
            group: grouping.groups[grouping.group_of[i]].name.clone(),
            estimate: estimates[i],
            default_estimate: agent.estimate.is_none(),
            earliest_start: timing.earliest[i],
            latest_start: timing.latest(i),
            slack: timing.slack(i),
            remaining: timing.remaining[i],
            critical: timing.slack(i).is_zero(),
            priority: priorities[i],
            priority_reason: reasons[i],
            scheduled_start: schedule.start[i],
        })
        .collect();
    let id = |i: usize| workflow.agents[i].id.clone();
    Plan {
        workflow: workflow.name.clone(),
        default_estimate: DEFAULT_ESTIMATE,
        groups: grouping.groups,
        critical_path: CriticalPath {
            agents: timing.critical_path(&graph).into_iter().map(id).collect(),
            length: timing.length,
        },
        makespan: Makespan {
            estimate: schedule.makespan,
            total_work: estimates.iter().fold(Duration::ZERO, |sum, d| sum.saturating_add(*d)),
            max_concurrent: resources.max_concurrent,
            cpu_units,
            memory_units: resources.memory,
        },
        agents,
        edges: graph.edges().map(|(from, to, kind)| Edge { from: id(from), to: id(to), kind }).collect(),
    }
}

/// Each agent's priority and why (see the module docs), in workflow order.
fn priorities(
    workflow: &Workflow,
    graph: &DependencyGraph<'_>,
    timing: &Timing,
    grouping: &Grouping,
) -> (Vec<u8>, Vec<PriorityReason>) {
    let n = workflow.agents.len();
    let mut validator = vec![false; n];
    for (i, agent) in workflow.agents.iter().enumerate() {
        validator[i] = agent.needs.iter().any(|need| need.kind == DependencyKind::Validation);
    }
    for cv in workflow.groups.iter().filter_map(|g| g.cross_validation.as_ref()) {
        for v in &cv.validators {
            if let Some(i) = graph.index_of(v) {
                validator[i] = true;
            }
        }
    }
    workflow
        .agents
        .iter()
        .enumerate()
        .map(|(i, agent)| match agent.priority {
            Some(p) => (p, PriorityReason::Declared),
            None if timing.slack(i).is_zero() => (PRIORITY_CRITICAL, PriorityReason::CriticalPath),
            None if validator[i] => (PRIORITY_VALIDATOR, PriorityReason::Validator),
            None if grouping.groups[grouping.group_of[i]].agents.len() >= 2 => {
                (PRIORITY_PARALLEL, PriorityReason::ParallelGroup)
            }
            None => (PRIORITY_OTHER, PriorityReason::Other),
        })
        .unzip()
}

/// The order of the ready queue: per agent (workflow order), its priority
/// and remaining path: what [`plan`] computes for it, without the makespan
/// simulation.
pub fn ready_keys(workflow: &Workflow) -> Vec<(u8, Duration)> {
    let graph = DependencyGraph::new(workflow);
    let estimates: Vec<Duration> =
        workflow.agents.iter().map(|a| a.estimate.unwrap_or(DEFAULT_ESTIMATE)).collect();
    let timing = Timing::new(&graph, &estimates);
    let grouping = Grouping::new(workflow, &graph, &timing.remaining);
    let (priorities, _) = priorities(workflow, &graph, &timing, &grouping);
    priorities.into_iter().zip(timing.remaining).collect()
}

/// Critical-path timing over blocking dependencies with given durations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTiming {
    /// Per agent, in the workflow's order.
    pub earliest: Vec<Duration>,
    /// Per agent, the latest start that does not lengthen the longest chain.
    pub latest: Vec<Duration>,
    /// Per agent, latest minus earliest start.
    pub slack: Vec<Duration>,
    /// The longest chain (lowest index where chains tie).
    pub agents: Vec<String>,
    /// The longest chain's length.
    pub length: Duration,
}

/// What [`plan`] computes from estimates, from `durations` (one per agent,
/// in the workflow's order): the run report uses the measured run times.
pub fn critical_path(workflow: &Workflow, durations: &[Duration]) -> PathTiming {
    let graph = DependencyGraph::new(workflow);
    let n = workflow.agents.len();
    let durations: Vec<Duration> = (0..n).map(|i| durations.get(i).copied().unwrap_or_default()).collect();
    let timing = Timing::new(&graph, &durations);
    PathTiming {
        earliest: timing.earliest.clone(),
        latest: (0..n).map(|i| timing.latest(i)).collect(),
        slack: (0..n).map(|i| timing.slack(i)).collect(),
        agents: timing.critical_path(&graph).into_iter().map(|i| workflow.agents[i].id.clone()).collect(),
        length: timing.length,
    }
}

/// Earliest starts and remaining paths over blocking edges.
struct Timing {
    estimates: Vec<Duration>,
    earliest: Vec<Duration>,
    remaining: Vec<Duration>,
    /// The critical path's length.
    length: Duration,
}

impl Timing {
    fn new(graph: &DependencyGraph<'_>, estimates: &[Duration]) -> Self {
        let order = graph.blocking_order();
        let n = estimates.len();
        let mut earliest = vec![Duration::ZERO; n];
        for &v in &order {
            earliest[v] = graph
                .blocking_needs(v)
                .map(|u| earliest[u].saturating_add(estimates[u]))
                .max()
                .unwrap_or(Duration::ZERO);
        }
        let mut remaining = vec![Duration::ZERO; n];
        for &v in order.iter().rev() {
            let after = graph.blocking_dependents(v).map(|w| remaining[w]).max().unwrap_or(Duration::ZERO);
            remaining[v] = estimates[v].saturating_add(after);
        }
        let length = (0..n).map(|v| earliest[v].saturating_add(remaining[v])).max().unwrap_or(Duration::ZERO);
        Self { estimates: estimates.to_vec(), earliest, remaining, length }
    }

    fn latest(&self, v: usize) -> Duration {
        self.length.saturating_sub(self.remaining[v])
    }

    fn slack(&self, v: usize) -> Duration {
        self.latest(v).saturating_sub(self.earliest[v])
    }

    /// The longest chain, choosing the lowest index wherever chains tie.
    fn critical_path(&self, graph: &DependencyGraph<'_>) -> Vec<usize> {
        let n = self.estimates.len();
        let on_path = |v: usize| self.slack(v).is_zero();
        let Some(mut v) = (0..n).find(|&v| self.earliest[v].is_zero() && on_path(v)) else {
            return Vec::new();
        };
        let mut path = vec![v];
        loop {
            let finish = self.earliest[v].saturating_add(self.estimates[v]);
            let next =
                graph.blocking_dependents(v).filter(|&w| on_path(w) && self.earliest[w] == finish).min();
            match next {
                Some(w) => {
                    path.push(w);
                    v = w;
                }
                None => return path,
            }
        }
    }
}

/// The plan's groups and each agent's group.
struct Grouping {
    groups: Vec<Group>,
    /// Index into `groups`, per agent.
    group_of: Vec<usize>,
}

impl Grouping {
    fn new(workflow: &Workflow, graph: &DependencyGraph<'_>, remaining: &[Duration]) -> Self {
        let n = workflow.agents.len();
        let declared = workflow.groups.len();

        // Units: declared groups first, then one per agent outside them.
        let mut unit_of = vec![usize::MAX; n];
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); declared];
        for (g, spec) in workflow.groups.iter().enumerate() {
            for id in &spec.agents {
                if let Some(i) = graph.index_of(id)
                    && unit_of[i] == usize::MAX
                {
                    unit_of[i] = g;
                    members[g].push(i);
                }
            }
        }
        // Unit `declared + k` is the agent `alone[k]`.
        let mut alone = Vec::new();
        for (i, unit) in unit_of.iter_mut().enumerate() {
            if *unit == usize::MAX {
                *unit = declared + alone.len();
                alone.push(i);
            }
        }
        for m in &mut members {
            m.sort_unstable();
        }
        let members_of = |u: usize| -> &[usize] {
            if u < declared { &members[u] } else { std::slice::from_ref(&alone[u - declared]) }
        };

        // Levels of the units: Kahn's algorithm over the contracted graph.
        let units = declared + alone.len();
        let mut waiting = vec![0usize; units];
        for (u, w) in waiting.iter_mut().enumerate() {
            *w = members_of(u)
                .iter()
                .flat_map(|&a| graph.blocking_needs(a))
                .filter(|&b| unit_of[b] != u)
                .count();
        }
        let mut level = vec![0usize; units];
        let mut queue: VecDeque<usize> = (0..units).filter(|&u| waiting[u] == 0).collect();
        let mut done = 0;
        while let Some(u) = queue.pop_front() {
            done += 1;
            for &a in members_of(u) {
                for b in graph.blocking_dependents(a) {
                    let w = unit_of[b];
                    if w != u {
                        level[w] = level[w].max(level[u] + 1);
                        waiting[w] -= 1;
                        if waiting[w] == 0 {
                            queue.push_back(w);
                        }
                    }
                }
            }
        }
        if done < units {
            // A cycle through blocking edges (validation rejects these): put
            // what is left after everything else rather than fail.
            let last = level.iter().max().copied().unwrap_or(0) + 1;
            for (u, l) in level.iter_mut().enumerate() {
                if waiting[u] > 0 {
                    *l = last;
                }
            }
        }

        // Groups: declared ones, and one derived group per level.
        struct Draft {
            name: String,
            origin: GroupOrigin,
            level: usize,
            agents: Vec<usize>,
        }
        let mut drafts: Vec<Draft> = workflow
            .groups
            .iter()
            .zip(&members)
            .enumerate()
            .map(|(g, (spec, agents))| Draft {
                name: spec.name.clone(),
                origin: GroupOrigin::Declared,
                level: level[g],
                agents: agents.clone(),
            })
            .collect();
        let mut by_level: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (k, &a) in alone.iter().enumerate() {
            by_level.entry(level[declared + k]).or_default().push(a);
        }
        let taken: BTreeSet<&str> = workflow.groups.iter().map(|g| g.name.as_str()).collect();
        for (l, agents) in by_level {
            let mut name = format!("level-{}", l + 1);
            let mut k = 1;
            while taken.contains(name.as_str()) {
                k += 1;
                name = format!("level-{}-{k}", l + 1);
            }
            drafts.push(Draft { name, origin: GroupOrigin::Derived, level: l, agents });
        }
        let longest = |d: &Draft| d.agents.iter().map(|&a| remaining[a]).max().unwrap_or(Duration::ZERO);
        let first = |d: &Draft| d.agents.first().copied().unwrap_or(usize::MAX);
        drafts.sort_by_cached_key(|d| (d.level, Reverse(longest(d)), first(d)));

        let mut group_of = vec![0usize; n];
        for (g, d) in drafts.iter().enumerate() {
            for &a in &d.agents {
                group_of[a] = g;
            }
        }
        let mut after: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); drafts.len()];
        for (from, to, kind) in graph.edges() {
            if kind.is_blocking() && group_of[from] != group_of[to] {
                after[group_of[to]].insert(group_of[from]);
            }
        }
        let names: Vec<String> = drafts.iter().map(|d| d.name.clone()).collect();
        let groups = drafts
            .into_iter()
            .zip(after)
            .map(|(d, after)| Group {
                name: d.name,
                origin: d.origin,
                level: d.level + 1,
                agents: d.agents.iter().map(|&a| workflow.agents[a].id.clone()).collect(),
                after: after.into_iter().map(|g| names[g].clone()).collect(),
            })
            .collect();
        Self { groups, group_of }
    }
}

#[cfg(test)]
mod tests;
