//! Planning figures: `plan()` over generated workflows of 10k and 100k agents.
//!
//! `cargo bench -p ensemble --bench plan` (release build). Each workflow is a
//! layered DAG, 100 agents wide: every agent after the first layer has three
//! `data` needs in the layer before and, one time in four, a `context` need;
//! one agent in five has no estimate; every tenth layer holds a declared group
//! of five. The workflows are generated as YAML and parsed
//! (`Workflow::parse_for_planning`, outside the measurements). Sizes are
//! measured in interleaved rounds; prints min / median / max per size and
//! the ratios.
//!
//! Every phase of planning is linear in agents and edges (the ready-queue
//! simulation adds a log factor), but the cost per agent still rises between
//! 10k and 30k agents, where the working set stops fitting in the caches; the
//! 30k → 100k step shows the asymptotic growth. Instruction counts confirm
//! it (callgrind, `PLAN_ONCE=N`): 63.1 M for 10k agents, 658.9 M for 100k,
//! a ratio of 10.4. The machine is shared and
//! noisy: compare ratios from one run, not absolute times across runs.

use std::time::{Duration, Instant};

use ensemble::Workflow;

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
    use std::fmt::Write as _;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut yaml =
        format!("name: layered-{n}\nresources: {{max_concurrent: 8}}\ncache: {{enabled: false}}\nagents:\n");
    for i in 0..n {
        let layer = i / WIDTH;
        // (agent, kind): three `data` needs in the layer before, sometimes a `context` one.
        let mut needs: Vec<(usize, &str)> = Vec::new();
        if layer > 0 {
            let prev = (layer - 1) * WIDTH;
            for _ in 0..3 {
                let j = prev + rng.next(WIDTH);
                if !needs.iter().any(|x| x.0 == j) {
                    needs.push((j, "data"));
                }
            }
            if rng.next(4) == 0 {
                let j = rng.next(i);
                if !needs.iter().any(|x| x.0 == j) {
                    needs.push((j, "context"));
                }
            }
        }
        // An id alone is a `data` need (the shortest form: fewer YAML nodes).
        let needs: Vec<String> = needs
            .iter()
            .map(|&(j, kind)| {
                if kind == "data" {
                    format!("agent{j}")
                } else {
                    format!("{{agent: agent{j}, kind: {kind}}}")
                }
            })
            .collect();
        let (cpu, memory) = (10 + rng.next(30), 8 + rng.next(40));
        let estimate = (rng.next(5) != 0).then(|| format!(", estimate: {}s", 1 + rng.next(600)));
        writeln!(
            yaml,
            "  agent{i}: {{component: agent.wasm, needs: [{}], resources: {{cpu: {cpu}, memory: {memory}}}{}}}",
            needs.join(", "),
            estimate.unwrap_or_default(),
        )
        .expect("writing to a String");
    }
    // Agents of one layer never need each other, so any five of a layer may form a group.
    for layer in (0..n / WIDTH).step_by(10) {
        if layer == 0 {
            yaml.push_str("groups:\n");
        }
        let members: Vec<String> = (0..5).map(|k| format!("agent{}", layer * WIDTH + k)).collect();
        writeln!(yaml, "  group{layer}: {{agents: [{}]}}", members.join(", ")).expect("writing to a String");
    }
    // Planning needs no component files.
    Workflow::parse_for_planning(&yaml, "workflow.yaml").expect("the generated workflow is valid")
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
        let edges: usize = self.workflow.agents().iter().map(|a| a.needs.len()).sum();
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
