//! Runtime figures: compile time of each agent component cold and from the
//! on-disk cache, and instantiate + run time per agent.
//!
//! `cargo bench -p ensemble --bench runtime` (release build). Prints
//! min / median / max of each figure; the machine is shared and noisy, so
//! compare medians and ratios from one run, not absolute times across runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ensemble::context::Ownership;
use ensemble::runtime::{AgentCall, Limits};
use ensemble::{EventSink, Runtime, RuntimeConfig, Workflow};

const COMPILES: usize = 10;
const RUNS: usize = 300;

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let median = samples[samples.len() / 2];
    format!(
        "min {:>9.3?}  median {:>9.3?}  max {:>9.3?}  (n={})",
        samples[0],
        median,
        samples[samples.len() - 1],
        samples.len()
    )
}

fn runtime(cache: Option<&Path>) -> Runtime {
    Runtime::new(RuntimeConfig { cache_dir: cache.map(Path::to_path_buf), ..RuntimeConfig::default() })
        .expect("runtime starts")
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let workflow = Workflow::load(root.join("examples/hello/workflow.yaml")).expect("hello workflow loads");
    let cache = tempfile::tempdir().expect("tempdir");
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");

    println!("component compile, cold (fresh engine, no cache) and from the on-disk cache (fresh engine):");
    for agent in workflow.agents() {
        let cold: Vec<Duration> = (0..COMPILES)
            .map(|_| {
                let rt = runtime(None);
                let t = Instant::now();
                rt.load_file(&agent.id, &agent.component).expect("loads");
                t.elapsed()
            })
            .collect();
        runtime(Some(cache.path())).load_file(&agent.id, &agent.component).expect("warms the cache");
        let warm: Vec<Duration> = (0..COMPILES)
            .map(|_| {
                let rt = runtime(Some(cache.path()));
                let t = Instant::now();
                rt.load_file(&agent.id, &agent.component).expect("loads");
                assert_eq!(rt.load_stats().compiled, 0, "served from the cache");
                t.elapsed()
            })
            .collect();
        let size = std::fs::metadata(&agent.component).map(|m| m.len()).unwrap_or(0);
        println!("  {:<8} {:>6} KiB  cold   {}", agent.id, size / 1024, summary(cold));
        println!("  {:<8} {:>6}      cached {}", "", "", summary(warm));
    }

    println!("instantiate + run, per agent (pooled, fuel metered, snapshot of a completed run):");
    let rt = runtime(None);
    let engine_report = {
        let engine = ensemble::Engine::new(RuntimeConfig::default()).expect("engine");
        tokio.block_on(engine.run(&workflow, ensemble::RunOptions::default()))
    };
    assert!(engine_report.succeeded(), "hello runs");
    let ownership = Ownership::new(
        workflow.agents().iter().flat_map(|a| a.owns.iter().map(|p| (p.as_str(), a.id.as_str()))),
    );
    for agent in workflow.agents() {
        let component = rt.load_file(&agent.id, &agent.component).expect("loads");
        let call = AgentCall {
            agent: agent.id.clone(),
            run_id: "bench".into(),
            attempt: 1,
            config: agent.config.clone(),
            snapshot: engine_report.context.clone(),
            ownership: ownership.clone(),
            limits: Limits {
                memory_bytes: agent.memory_bytes(workflow.resources()),
                fuel: None,
                timeout: None,
                slice: 1,
            },
            events: EventSink::new(),
            pulse: Default::default(),
            templates: None,
            reads: None,
            capabilities: Default::default(),
        };
        let samples: Vec<Duration> = (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                tokio.block_on(rt.run_agent(&component, call.clone())).expect("agent runs");
                t.elapsed()
            })
            .collect();
        println!("  {:<8} {}", agent.id, summary(samples[RUNS / 10..].to_vec()));
    }
}
