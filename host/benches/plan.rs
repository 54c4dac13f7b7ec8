//! Planning figures: `plan()` over generated workflows of 10k and 100k agents.
//!
//! `cargo bench -p ensemble --bench plan` (release build). Each workflow is a
//! layered DAG, 100 agents wide: every agent after the first layer has three
//! `data` needs in the layer before and, one time in four, a `context` need;
//! one agent in five has no estimate; every tenth layer holds a declared group
//! of five. Sizes are measured in interleaved rounds; prints min / median /
//! max per size and the ratios.
//!
//! Every phase of planning is linear in agents and edges (the ready-queue
//! simulation adds a log factor), but the cost per agent still rises between
//! 10k and 30k agents, where the working set stops fitting in the caches; the
//! 30k → 100k step shows the asymptotic growth. Instruction counts confirm
//! it (callgrind, `PLAN_ONCE=N`): 63.1 M for 10k agents, 658.9 M for 100k,
//! a ratio of 10.4. The machine is shared and
//! noisy: compare ratios from one run, not absolute times across runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ensemble::Workflow;
use ensemble::workflow::{
    AgentSpec, Barrier, CacheSpec, DependencyKind, GroupSpec, Location, Need, Resources, Retry,
};

const WIDTH: usize = 100;
/// Interleaved rounds of measurements.
const ROUNDS: usize = 12;

/// A small deterministic generator (xorshift), so every run plans the same workflows.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below as u64) as usize
    }
}

fn layered(n: usize) -> Workflow {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let id = |i: usize| format!("agent{i}");
    let need = |i: usize, kind| Need { agent: id(i), kind, location: Location::default() };
    let mut agents = Vec::with_capacity(n);
    for i in 0..n {
        let layer = i / WIDTH;
        let mut needs: Vec<Need> = Vec::new();
        if layer > 0 {
            let prev = (layer - 1) * WIDTH;
            for _ in 0..3 {
                let j = prev + rng.next(WIDTH);
                if !needs.iter().any(|x| x.agent == id(j)) {
                    needs.push(need(j, DependencyKind::Data));
                }
            }
            if rng.next(4) == 0 {
                let j = rng.next(i);
                if !needs.iter().any(|x| x.agent == id(j)) {
                    needs.push(need(j, DependencyKind::Context));
                }
            }
        }
        agents.push(AgentSpec {
            id: id(i),
            component: PathBuf::from("agent.wasm"),
            owns: vec![id(i)],
            reads: None,
            needs,
            config: Vec::new(),
            cpu: 10 + rng.next(30) as u32,
            memory: 8 + rng.next(40) as u32,
            fuel: None,
            timeout: None,
            estimate: (rng.next(5) != 0).then(|| Duration::from_secs(1 + rng.next(600) as u64)),
            priority: None,
            retry: Retry::default(),
            defaults: BTreeMap::new(),
            wasi: false,
            grants: Default::default(),
            cache: None,
            location: Location::default(),
        });
    }
    // Agents of one layer never need each other, so any five of a layer may form a group.
    let groups = (0..n / WIDTH)
        .step_by(10)
        .map(|layer| GroupSpec {
            name: format!("group{layer}"),
            agents: (0..5).map(|k| id(layer * WIDTH + k)).collect(),
            barrier: Barrier::default(),
            cross_validation: None,
            location: Location::default(),
        })
        .collect();
    // A workflow is made by parsing one; its parts are then replaced by
    // the generated ones (planning needs no component files).
    let mut workflow =
        Workflow::parse_for_planning("agents:\n  a: {component: agent.wasm}\n", "workflow.yaml")
            .expect("a one-agent workflow parses");
    workflow.name = format!("layered-{n}");
    workflow.resources = Resources { max_concurrent: 8, ..Resources::default() };
    workflow.agents = agents;
    workflow.groups = groups;
    workflow.cache = CacheSpec { enabled: false, dir: PathBuf::new(), max_size: 0, compress_above: 0 };
    workflow
}

/// One size: its workflow and the times of planning it.
struct Size {
    n: usize,
    workflow: Workflow,
    samples: Vec<Duration>,
}

impl Size {
    fn new(n: usize) -> Self {
        Self { n, workflow: layered(n), samples: Vec::new() }
    }

    fn time(&mut self) {
        let t = Instant::now();
        let plan = ensemble::plan::plan(&self.workflow);
        self.samples.push(t.elapsed());
        assert_eq!(plan.agents.len(), self.n);
    }

    /// Prints the figures; returns (min, median).
    fn report(&mut self) -> (Duration, Duration) {
        let edges: usize = self.workflow.agents.iter().map(|a| a.needs.len()).sum();
        let groups = ensemble::plan::plan(&self.workflow).groups.len();
        self.samples.sort();
        let (min, max) = (self.samples[0], self.samples[self.samples.len() - 1]);
        let median = self.samples[self.samples.len() / 2];
        println!(
            "{:>7} agents, {edges:>6} edges, {groups:>4} groups: min {min:>9.3?}  median {median:>9.3?}  max {max:>9.3?}  = {:.2}µs per agent  (n={})",
            self.n,
            median.as_secs_f64() * 1e6 / self.n as f64,
            self.samples.len(),
        );
        (min, median)
    }
}

fn main() {
    // `PLAN_ONCE=N`: plan one workflow of N agents once, for instruction
    // counts under `valgrind --tool=callgrind --toggle-collect='*plan::plan*'`.
    if let Some(n) = std::env::var("PLAN_ONCE").ok().and_then(|n| n.parse().ok()) {
        Size::new(n).time();
        return;
    }
    println!("plan() over layered DAGs, {WIDTH} agents wide:");
    let mut sizes = [Size::new(10_000), Size::new(30_000), Size::new(100_000)];
    for size in &mut sizes {
        size.time(); // warm up
        size.samples.clear();
    }
    // Interleaved rounds, each spending about as long on every size, so a
    // burst of load elsewhere on the machine hits all sizes alike.
    for _ in 0..ROUNDS {
        for size in &mut sizes {
            for _ in 0..100_000 / size.n {
                size.time();
            }
        }
    }
    let [small, middle, large] = sizes.each_mut().map(Size::report);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "100k / 10k: median {:.1}, min {:.1} (10 is linear); 100k / 30k: median {:.1}, min {:.1} (3.3 is linear)",
        ratio(large.1, small.1),
        ratio(large.0, small.0),
        ratio(large.1, middle.1),
        ratio(large.0, middle.0),
    );
}
