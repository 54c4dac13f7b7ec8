//! How close the executor gets to the best possible makespan.
//!
//! BENCHMARKS.md, figure 2. Two workloads of CPU-bound wasm busy loops
//! (~50 ms each, calibrated at start-up and printed):
//! - W3, seed shape: analyst → pm → [ux_expert ∥ architect] → developer → qa;
//! - W4, CPU fan: 20 independent agents, then one join.
//!
//! For each, with fuel metering on and off, the ratio makespan / lower bound,
//! where the lower bound is max(critical path, total work / cores) computed
//! from each agent's own time running alone, measured right before each
//! repetition (these shared machines drift too much for one calibration to
//! hold through a whole benchmark). 1.00 is perfect; a little under 1 is
//! possible because an agent's time alone includes one run's overhead.
//!
//! `cargo bench -p ensemble-tests --bench makespan` (`RUNS=n` repetitions, default 7).

use std::time::{Duration, Instant};

use ensemble::{Engine, RunOptions, RuntimeConfig, Workflow};
use ensemble_tests::{Project, busy, min_median_max};

const TARGET: Duration = Duration::from_millis(50);

/// A workflow of busy agents: (id, needs) pairs.
fn workflow(
    project: &Project,
    name: &str,
    agents: &[(String, Vec<String>)],
    iterations: u32,
    slots: u32,
) -> Workflow {
    let mut yaml = format!("name: {name}\nresources: {{max_concurrent: {slots}}}\nagents:\n");
    for (id, needs) in agents {
        project.component(id, &busy(&format!("{id}.value"), iterations));
        yaml.push_str(&format!("  {id}: {{component: {id}.wasm, needs: [{}]}}\n", needs.join(", ")));
    }
    let path = project.path().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("write workflow");
    Workflow::load(&path).expect("valid workflow")
}

fn seed_shape() -> Vec<(String, Vec<String>)> {
    let edges: [(&str, &[&str]); 6] = [
        ("analyst", &[]),
        ("pm", &["analyst"]),
        ("ux_expert", &["pm"]),
        ("architect", &["pm"]),
        ("developer", &["ux_expert", "architect"]),
        ("qa", &["developer"]),
    ];
    edges.iter().map(|(id, needs)| (id.to_string(), needs.iter().map(|n| n.to_string()).collect())).collect()
}

fn fan(width: usize) -> Vec<(String, Vec<String>)> {
    let mut agents: Vec<(String, Vec<String>)> = (0..width).map(|i| (format!("w{i}"), Vec::new())).collect();
    agents.push(("join".into(), (0..width).map(|i| format!("w{i}")).collect()));
    agents
}

fn run(tokio: &tokio::runtime::Runtime, engine: &Engine, workflow: &Workflow) -> Duration {
    let started = Instant::now();
    let report = tokio.block_on(engine.run(workflow, RunOptions::default()));
    assert!(report.succeeded(), "{report:?}");
    if std::env::var_os("SHOW_AGENTS").is_some() {
        let times: Vec<String> = report
            .agents
            .iter()
            .map(|a| format!("{}={:.0?}", a.agent, a.elapsed.unwrap_or_default()))
            .collect();
        println!("    {}", times.join(" "));
    }
    started.elapsed()
}

/// Iterations for about TARGET alone, and the measured time of one agent.
fn calibrate(tokio: &tokio::runtime::Runtime, engine: &Engine) -> (u32, Duration) {
    let mut iterations = 10_000_000u32;
    for _ in 0..4 {
        let project = Project::new();
        let one = workflow(&project, "one", &[("one".into(), Vec::new())], iterations, 1);
        let took = min_median_max((0..5).map(|_| run(tokio, engine, &one).as_secs_f64()).collect()).1;
        let scale = TARGET.as_secs_f64() / took;
        iterations = ((f64::from(iterations) * scale) as u32).max(1000);
        if (0.95..1.05).contains(&scale) {
            break;
        }
    }
    let project = Project::new();
    let one = workflow(&project, "one", &[("one".into(), Vec::new())], iterations, 1);
    let alone = min_median_max((0..7).map(|_| run(tokio, engine, &one).as_secs_f64()).collect()).1;
    (iterations, Duration::from_secs_f64(alone))
}

/// max(critical path, total work / cores), from each agent's time alone.
fn lower_bound(
    tokio: &tokio::runtime::Runtime,
    engine: &Engine,
    project: &Project,
    agents: &[(String, Vec<String>)],
    cores: usize,
) -> f64 {
    let mut finish: std::collections::HashMap<&str, f64> = Default::default();
    let mut total = 0.0;
    for (id, needs) in agents {
        let path = project.path().join(format!("alone-{id}.yaml"));
        std::fs::write(&path, format!("agents:\n  {id}: {{component: {id}.wasm}}\n")).expect("write");
        let alone = Workflow::load(&path).expect("valid");
        let w = run(tokio, engine, &alone).as_secs_f64();
        total += w;
        // Agents are listed after their needs.
        let start = needs.iter().map(|n| finish[n.as_str()]).fold(0.0, f64::max);
        finish.insert(id, start + w);
    }
    let critical = finish.values().copied().fold(0.0, f64::max);
    critical.max(total / cores as f64)
}

fn main() {
    let runs: usize = std::env::var("RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(7);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .global_queue_interval(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("makespan / lower bound, {cores} cores, {runs} runs each (min / median / max)");
    for fuel in [true, false] {
        let engine = Engine::new(RuntimeConfig { fuel, max_instances: 32, ..RuntimeConfig::default() })
            .expect("engine");
        let (iterations, alone) = calibrate(&tokio, &engine);
        println!(
            "fuel {}: one agent = {iterations} iterations, {:.1} ms alone (median of 7)",
            if fuel { "on " } else { "off" },
            alone.as_secs_f64() * 1e3
        );
        let slots = u32::try_from(cores).unwrap_or(2).max(3);
        for (name, agents) in [("W3 seed shape (6 agents)", seed_shape()), ("W4 fan (20 + join)", fan(20))] {
            let project = Project::new();
            let workflow = &workflow(&project, "w", &agents, iterations, slots);
            run(&tokio, &engine, workflow); // warm-up: compiles the components
            let mut bounds = Vec::new();
            let ratios: Vec<f64> = (0..runs)
                .map(|_| {
                    let bound = lower_bound(&tokio, &engine, &project, &agents, cores);
                    bounds.push(bound);
                    run(&tokio, &engine, workflow).as_secs_f64() / bound
                })
                .collect();
            let bound = min_median_max(bounds).1;
            let (min, med, max) = min_median_max(ratios);
            println!("  {name:<25} bound {:>6.1} ms   ratio {min:.3} / {med:.3} / {max:.3}", bound * 1e3);
        }
    }
}
