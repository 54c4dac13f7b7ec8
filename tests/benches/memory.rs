//! Host memory per concurrently running agent, beyond its linear memory
//! (BENCHMARKS.md, figure 5).
//!
//! Runs N busy agents at once (all admitted together: one cpu unit, one
//! memory unit and a slot each) on a fresh engine whose components are
//! already loaded, samples the process's resident set every millisecond
//! while they run, and takes the peak above the resident set before the
//! run. The per-agent figure is the slope between N = 8 and
//! N = 48, which cancels what a run costs whatever its size; from it the
//! linear memory each agent touches (one 64 KiB page) is subtracted.
//!
//! `cargo bench -p ensemble-tests --bench memory` (`RUNS=n`, default 7).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ensemble::{Engine, RunOptions, RuntimeConfig, Workflow};
use ensemble_tests::{Project, busy, min_median_max};

const SMALL: usize = 8;
const LARGE: usize = 48;
const PAGE: f64 = 65536.0;

/// Resident set size of this process, bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn workflow(project: &Project, n: usize) -> Workflow {
    let mut yaml = format!(
        "name: m{n}\nresources: {{max_concurrent: {n}, cpu: {n}, memory: {n}, memory_unit: 1MiB}}\nagents:\n"
    );
    for i in 0..n {
        yaml.push_str(&format!("  a{i}: {{component: a{i}.wasm, resources: {{cpu: 1, memory: 1}}}}\n"));
    }
    let path = project.path().join(format!("m{n}.yaml"));
    std::fs::write(&path, yaml).expect("write");
    Workflow::load(&path).expect("valid")
}

fn main() {
    let runs: usize = std::env::var("RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(7);
    let project = Project::new();
    for i in 0..LARGE {
        project.component(&format!("a{i}"), &busy(&format!("a{i}.value"), 30_000_000));
    }
    let (small, large) = (workflow(&project, SMALL), workflow(&project, LARGE));
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .global_queue_interval(1)
        .enable_all()
        .build()
        .expect("tokio");
    let compiled = tempfile::tempdir().expect("tempdir");
    // A fresh engine (and instance pool) for each measurement, its
    // components read from the compiled cache and loaded before `before`.
    let peak_during = |w: &Workflow| {
        let config = RuntimeConfig {
            max_instances: LARGE as u32,
            cache_dir: Some(compiled.path().to_path_buf()),
            ..RuntimeConfig::default()
        };
        let engine = Engine::new(config).expect("engine");
        engine.load_components(w).expect("components load");
        let before = rss();
        let (running, peak) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU64::new(before)));
        let sampler = {
            let (running, peak) = (running.clone(), peak.clone());
            std::thread::spawn(move || {
                while running.load(Ordering::Relaxed) {
                    peak.fetch_max(rss(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        let report = tokio.block_on(engine.run(w, RunOptions::default()));
        running.store(false, Ordering::Relaxed);
        let _ = sampler.join();
        assert!(report.succeeded(), "{:?}", report.agents.iter().find(|a| !a.status.is_usable()));
        peak.load(Ordering::Relaxed).saturating_sub(before) as f64
    };
    // Warm-up: compile, fill the pool's slots once.
    peak_during(&large);
    peak_during(&small);
    let (mut per_agent, mut beyond) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let s = peak_during(&small);
        let l = peak_during(&large);
        let slope = (l - s) / (LARGE - SMALL) as f64;
        per_agent.push(slope / 1024.0);
        beyond.push((slope - PAGE) / 1024.0);
    }
    let (min, med, max) = min_median_max(per_agent);
    println!(
        "host memory per concurrently running agent, {SMALL} vs {LARGE} at once, {runs} runs (min / median / max)"
    );
    println!("  resident set per agent          {min:>8.1} / {med:>8.1} / {max:>8.1} KiB");
    let (min, med, max) = min_median_max(beyond);
    println!("  beyond its 64 KiB linear memory {min:>8.1} / {med:>8.1} / {max:>8.1} KiB");
}
