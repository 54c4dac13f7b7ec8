//! What durability costs: a chain of agents, each copying the previous
//! agent's value, run with and without the journal (every commit one
//! fsynced redb transaction before the next agent may start).
//!
//! `cargo bench -p ensemble-tests --bench journal` (`RUNS=n`, default 9).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ensemble::{Engine, RunOptions, RuntimeConfig, Workflow};
use ensemble_tests::{Project, copier, min_median_max, writer};

const CHAIN: usize = 100;

fn main() {
    let runs: usize = std::env::var("RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(9);
    let project = Project::new();
    let mut yaml = String::from("agents:\n  a0: {component: a0.wasm}\n");
    project.component("a0", &writer("a0.value"));
    for i in 1..CHAIN {
        project.component(&format!("a{i}"), &copier(&format!("a{}.value", i - 1), &format!("a{i}.value")));
        yaml.push_str(&format!("  a{i}: {{component: a{i}.wasm, needs: [a{}]}}\n", i - 1));
    }
    let workflow: Workflow = project.workflow(&yaml);
    let engine = Engine::new(RuntimeConfig { fuel: false, ..RuntimeConfig::default() }).expect("engine");
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let state = project.path().join("state");
    let mut n = 0;
    let mut once = |journaled: bool| {
        let mut options = RunOptions::default();
        if journaled {
            n += 1;
            let journal = engine.create_journal(&workflow, &state, &format!("r{n}")).expect("journal");
            options.journal = Some(Arc::new(journal));
        }
        let started = Instant::now();
        let report = tokio.block_on(engine.run(&workflow, options));
        assert!(report.succeeded());
        started.elapsed()
    };
    once(false); // warm-up: compiles the components
    let (mut plain, mut durable) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        plain.push(once(false));
        durable.push(once(true));
    }
    let (pmin, pmed, pmax) = min_median_max(plain);
    let (dmin, dmed, dmax) = min_median_max(durable);
    let per = |d: Duration| d / CHAIN as u32;
    println!("chain of {CHAIN} agents, {runs} runs each (min / median / max per agent)");
    println!("  no journal  {:>9.1?} / {:>9.1?} / {:>9.1?}", per(pmin), per(pmed), per(pmax));
    println!("  journaled   {:>9.1?} / {:>9.1?} / {:>9.1?}", per(dmin), per(dmed), per(dmax));
    println!("  ratio of medians: {:.2}", dmed.as_secs_f64() / pmed.as_secs_f64());
}
