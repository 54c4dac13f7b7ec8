//! Planner tests: hand-made cases and properties over random DAGs.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::workflow::{
    AgentSpec, Barrier, CacheSpec, CrossValidation, GroupSpec, Location, Need, OnFailure, Resources, Retry,
};

fn agent(id: &str, needs: &[(&str, DependencyKind)], estimate: Option<u64>) -> AgentSpec {
    AgentSpec {
        id: id.to_owned(),
        component: PathBuf::from(format!("{id}.wasm")),
        owns: vec![id.to_owned()],
        reads: None,
        needs: needs
            .iter()
            .map(|(a, kind)| Need { agent: (*a).to_owned(), kind: *kind, location: Location::default() })
            .collect(),
        config: Vec::new(),
        cpu: 10,
        memory: 16,
        fuel: None,
        timeout: None,
        estimate: estimate.map(Duration::from_secs),
        priority: None,
        retry: Retry::default(),
        defaults: BTreeMap::new(),
        wasi: false,
        grants: Default::default(),
        cache: None,
        location: Location::default(),
    }
}

fn group(name: &str, agents: &[&str], validators: &[&str]) -> GroupSpec {
    GroupSpec {
        name: name.to_owned(),
        agents: agents.iter().map(|a| (*a).to_owned()).collect(),
        barrier: Barrier::default(),
        cross_validation: (!validators.is_empty()).then(|| CrossValidation {
            validators: validators.iter().map(|v| (*v).to_owned()).collect(),
            timeout: None,
            on_failure: OnFailure::Warn,
        }),
        location: Location::default(),
    }
}

fn workflow(agents: Vec<AgentSpec>, groups: Vec<GroupSpec>) -> Workflow {
    Workflow {
        name: "test".to_owned(),
        path: PathBuf::from("workflow.yaml"),
        resources: Resources::default(),
        agents,
        shared: Vec::new(),
        groups,
        cache: CacheSpec { enabled: false, dir: PathBuf::new(), max_size: 0, compress_above: 0 },
        templates: None,
        outputs: None,
        ready_order: std::sync::OnceLock::new(),
    }
}

const DATA: DependencyKind = DependencyKind::Data;

/// analyst → pm → [ux_expert ∥ architect] → developer → qa, in minutes.
fn seed() -> Workflow {
    workflow(
        vec![
            agent("analyst", &[], Some(240)),
            agent("pm", &[("analyst", DATA)], Some(300)),
            agent("ux_expert", &[("pm", DATA), ("architect", DependencyKind::Context)], Some(360)),
            agent("architect", &[("pm", DATA)], Some(420)),
            agent("developer", &[("ux_expert", DATA), ("architect", DATA)], Some(600)),
            agent("qa", &[("developer", DATA), ("pm", DependencyKind::Validation)], None),
        ],
        vec![group("design", &["ux_expert", "architect"], &["architect", "ux_expert"])],
    )
}

#[test]
fn seed_plan() {
    let plan = plan(&seed());
    let groups: Vec<(&str, Vec<&str>)> = plan
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.agents.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        groups,
        [
            ("level-1", vec!["analyst"]),
            ("level-2", vec!["pm"]),
            ("design", vec!["ux_expert", "architect"]),
            ("level-4", vec!["developer"]),
            ("level-5", vec!["qa"]),
        ]
    );
    assert_eq!(plan.critical_path.agents, ["analyst", "pm", "architect", "developer", "qa"]);
    assert_eq!(plan.critical_path.length, Duration::from_secs(240 + 300 + 420 + 600 + 1));
    let ux = plan.agent("ux_expert").unwrap();
    assert_eq!(ux.slack, Duration::from_secs(60));
    assert_eq!((ux.priority, ux.priority_reason), (PRIORITY_VALIDATOR, PriorityReason::Validator));
    let qa = plan.agent("qa").unwrap();
    assert!(qa.default_estimate);
    assert_eq!((qa.priority, qa.priority_reason), (PRIORITY_CRITICAL, PriorityReason::CriticalPath));
    // Three slots fit both designers, so the makespan is the critical path.
    assert_eq!(plan.makespan.estimate, plan.critical_path.length);
    assert_eq!(plan.group("design").unwrap().after, ["level-2"]);
}

#[test]
fn one_slot_runs_everything_in_turn() {
    let mut w = seed();
    w.resources.max_concurrent = 1;
    let plan = plan(&w);
    assert_eq!(plan.makespan.estimate, plan.makespan.total_work);
}

#[test]
fn memory_limits_the_makespan() {
    // Three independent agents; memory fits two at a time.
    let mut agents: Vec<AgentSpec> = ["a", "b", "c"].iter().map(|id| agent(id, &[], Some(10))).collect();
    for a in &mut agents {
        a.memory = 40;
    }
    let plan = plan(&workflow(agents, Vec::new()));
    assert_eq!(plan.makespan.estimate, Duration::from_secs(20));
    assert_eq!(plan.groups.len(), 1);
    assert_eq!(plan.agents[0].priority_reason, PriorityReason::CriticalPath);
}

#[test]
fn declared_priority_wins_and_the_queue_serves_it_first() {
    let mut agents: Vec<AgentSpec> = ["a", "b"].iter().map(|id| agent(id, &[], Some(10))).collect();
    agents[0].priority = Some(3);
    let mut w = workflow(agents, Vec::new());
    w.resources.max_concurrent = 1;
    let plan = plan(&w);
    assert_eq!(plan.agents[0].priority_reason, PriorityReason::Declared);
    assert_eq!(plan.agents[1].priority_reason, PriorityReason::CriticalPath);
    assert_eq!(plan.agents[1].scheduled_start, Duration::ZERO);
    assert_eq!(plan.agents[0].scheduled_start, Duration::from_secs(10));
}

#[test]
fn a_declared_group_sits_after_its_latest_need() {
    // x needs a; y needs c (after a → b → c); group [x, y] goes after c's level.
    let w = workflow(
        vec![
            agent("a", &[], None),
            agent("b", &[("a", DATA)], None),
            agent("c", &[("b", DATA)], None),
            agent("x", &[("a", DATA)], None),
            agent("y", &[("c", DATA)], None),
        ],
        vec![group("pair", &["y", "x"], &[])],
    );
    let plan = plan(&w);
    let pair = plan.group("pair").unwrap();
    assert_eq!(pair.level, 4);
    assert_eq!(pair.agents, ["x", "y"]);
    assert_eq!(pair.after, ["level-1", "level-3"]);
}

#[test]
fn derived_names_do_not_clash_with_declared_ones() {
    let w = workflow(vec![agent("a", &[], None), agent("b", &[], None)], vec![group("level-1", &["b"], &[])]);
    let names: Vec<String> = plan(&w).groups.into_iter().map(|g| g.name).collect();
    assert_eq!(names, ["level-1-2", "level-1"]);
}

#[test]
fn non_blocking_cycles_are_fine() {
    let w = workflow(
        vec![agent("a", &[("b", DependencyKind::Context)], None), agent("b", &[("a", DATA)], None)],
        Vec::new(),
    );
    let plan = plan(&w);
    assert_eq!(plan.critical_path.agents, ["a", "b"]);
    assert_eq!(plan.edges.len(), 2);
}

#[test]
fn an_empty_workflow_plans_to_nothing() {
    let plan = plan(&workflow(Vec::new(), Vec::new()));
    assert!(plan.groups.is_empty() && plan.critical_path.agents.is_empty());
    assert_eq!(plan.makespan.estimate, Duration::ZERO);
}

/// A random valid workflow: agents get ranks, `data` edges only go from a
/// lower rank to a higher one, and declared groups take agents of one rank,
/// so no group holds a blocking edge and groups never contradict the order.
/// Other kinds of edges go anywhere.
fn arbitrary_workflow() -> impl Strategy<Value = Workflow> {
    (1usize..14)
        .prop_flat_map(|n| {
            (
                Just(n),
                prop::collection::vec(0usize..5, n),
                prop::collection::vec(prop::option::weighted(0.8, 1u64..20), n),
                prop::collection::vec((0..n, 0..n, 0u8..6), 0..n * 3),
                prop::collection::vec(0u8..4, n),
                1u32..4,
                prop::collection::vec(1u32..60, n),
            )
        })
        .prop_map(|(n, rank, estimates, edges, grouping, slots, memory)| {
            let ids: Vec<String> = (0..n).map(|i| format!("a{i}")).collect();
            let mut needs: Vec<Vec<(usize, DependencyKind)>> = vec![Vec::new(); n];
            for (x, y, k) in edges {
                let kind = match k {
                    0..=2 => DependencyKind::Data,
                    3 => DependencyKind::Context,
                    4 => DependencyKind::Validation,
                    _ => DependencyKind::Resource,
                };
                let (from, to) = if kind.is_blocking() {
                    match rank[x].cmp(&rank[y]) {
                        std::cmp::Ordering::Less => (x, y),
                        std::cmp::Ordering::Greater => (y, x),
                        std::cmp::Ordering::Equal => continue,
                    }
                } else {
                    (x, y)
                };
                if from != to && !needs[to].iter().any(|(a, _)| *a == from) {
                    needs[to].push((from, kind));
                }
            }
            let agents = (0..n)
                .map(|i| {
                    let need: Vec<(&str, DependencyKind)> =
                        needs[i].iter().map(|(a, k)| (ids[*a].as_str(), *k)).collect();
                    let mut spec = agent(&ids[i], &need, estimates[i]);
                    spec.memory = memory[i];
                    spec
                })
                .collect();
            // Group g of rank r: agents of rank r with grouping == g (0 = no group).
            let mut groups: BTreeMap<(usize, u8), Vec<&str>> = BTreeMap::new();
            for i in 0..n {
                if grouping[i] > 0 {
                    groups.entry((rank[i], grouping[i])).or_default().push(&ids[i]);
                }
            }
            let groups = groups
                .into_iter()
                .map(|((r, g), members)| group(&format!("g{r}-{g}"), &members, &members[..1]))
                .collect();
            let mut w = workflow(agents, groups);
            w.resources.max_concurrent = slots;
            w
        })
}

/// Longest path by brute force: every path from every agent.
fn brute_force_longest(w: &Workflow) -> Duration {
    let index: HashMap<&str, usize> = w.agents.iter().enumerate().map(|(i, a)| (a.id.as_str(), i)).collect();
    let est = |i: usize| w.agents[i].estimate.unwrap_or(DEFAULT_ESTIMATE);
    fn walk(
        w: &Workflow,
        index: &HashMap<&str, usize>,
        v: usize,
        est: &dyn Fn(usize) -> Duration,
    ) -> Duration {
        // Longest path ending at v: try every blocking need.
        let before = w.agents[v]
            .blocking_needs()
            .map(|u| walk(w, index, index[u], est))
            .max()
            .unwrap_or(Duration::ZERO);
        before + est(v)
    }
    (0..w.agents.len()).map(|v| walk(w, &index, v, &est)).max().unwrap_or(Duration::ZERO)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_ready_queue_keys_are_the_plans(w in arbitrary_workflow()) {
        let planned: Vec<(u8, Duration)> = plan(&w).agents.iter().map(|a| (a.priority, a.remaining)).collect();
        prop_assert_eq!(ready_keys(&w), planned);
    }

    #[test]
    fn every_agent_is_in_exactly_one_group(w in arbitrary_workflow()) {
        let plan = plan(&w);
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for g in &plan.groups {
            prop_assert!(!g.agents.is_empty());
            for a in &g.agents {
                *seen.entry(a.as_str()).or_default() += 1;
            }
        }
        prop_assert_eq!(seen.len(), w.agents.len());
        prop_assert!(seen.values().all(|&k| k == 1));
        for a in &plan.agents {
            prop_assert!(plan.group(&a.group).unwrap().agents.contains(&a.id));
        }
    }

    #[test]
    fn blocking_edges_point_forward_between_groups(w in arbitrary_workflow()) {
        let plan = plan(&w);
        let position: HashMap<&str, usize> = plan
            .groups
            .iter()
            .enumerate()
            .flat_map(|(g, group)| group.agents.iter().map(move |a| (a.as_str(), g)))
            .collect();
        for a in &w.agents {
            for need in a.blocking_needs() {
                prop_assert!(position[need] < position[a.id.as_str()], "{} needs {}", a.id, need);
            }
        }
        // Declared groups keep their members.
        for spec in &w.groups {
            let g = plan.group(&spec.name).unwrap();
            prop_assert_eq!(g.origin, GroupOrigin::Declared);
            let mut members = spec.agents.clone();
            members.sort();
            let mut got = g.agents.clone();
            got.sort();
            prop_assert_eq!(members, got);
        }
    }

    #[test]
    fn the_critical_path_is_the_longest(w in arbitrary_workflow()) {
        let plan = plan(&w);
        prop_assert_eq!(plan.critical_path.length, brute_force_longest(&w));
        // It is a real chain of data edges whose estimates add up to its length.
        let path = &plan.critical_path.agents;
        let sum: Duration = path.iter().map(|id| plan.agent(id).unwrap().estimate).sum();
        prop_assert_eq!(sum, plan.critical_path.length);
        for pair in path.windows(2) {
            prop_assert!(w.agent(&pair[1]).unwrap().blocking_needs().any(|n| n == pair[0]));
        }
        for a in &plan.agents {
            prop_assert!(a.earliest_start + a.remaining <= plan.critical_path.length);
            prop_assert_eq!(a.latest_start, a.earliest_start + a.slack);
            prop_assert_eq!(a.critical, a.slack.is_zero());
            if path.contains(&a.id) {
                prop_assert!(a.critical);
            }
        }
    }

    #[test]
    fn the_simulated_run_respects_dependencies_and_limits(w in arbitrary_workflow()) {
        let plan = plan(&w);
        let m = &plan.makespan;
        prop_assert!(m.estimate >= plan.critical_path.length);
        prop_assert!(m.estimate <= m.total_work);
        let by_id: HashMap<&str, &AgentPlan> = plan.agents.iter().map(|a| (a.id.as_str(), a)).collect();
        for a in &w.agents {
            let me = by_id[a.id.as_str()];
            prop_assert!(me.scheduled_start + me.estimate <= m.estimate);
            for need in a.blocking_needs() {
                let other = by_id[need];
                prop_assert!(other.scheduled_start + other.estimate <= me.scheduled_start);
            }
        }
        // At every start, the running agents fit the pool.
        for (i, a) in plan.agents.iter().enumerate() {
            let t = a.scheduled_start;
            let running: Vec<usize> = (0..plan.agents.len())
                .filter(|&j| {
                    let b = &plan.agents[j];
                    b.scheduled_start <= t && t < b.scheduled_start + b.estimate
                })
                .collect();
            prop_assert!(running.contains(&i));
            prop_assert!(running.len() <= m.max_concurrent as usize);
            let memory: u32 = running.iter().map(|&j| w.agents[j].memory).sum();
            prop_assert!(memory <= m.memory_units);
        }
    }

    #[test]
    fn planning_is_deterministic(w in arbitrary_workflow()) {
        // A copy, so nothing can depend on where the workflow sits in memory.
        let copy = w.clone();
        let second = serde_json::to_string(&plan(&copy)).unwrap();
        let first = serde_json::to_string(&plan(&w)).unwrap();
        prop_assert_eq!(first, second);
    }
}
