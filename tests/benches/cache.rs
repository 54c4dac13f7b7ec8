//! What the caches save (BENCHMARKS.md, figure 4):
//! - the agent output cache: the seed's shape (analyst → pm → [ux_expert ∥
//!   architect] → developer → qa) of CPU-bound agents, run cold (empty
//!   cache) and warm (every agent a hit);
//! - the compiled-component cache: the `ensemble` process running the BMAD
//!   example (six Rust agents) with an empty state directory (every
//!   component compiled) and with the one a previous run left (every
//!   component read from the compiled cache).
//!
//! Medians of `RUNS` (default 9). `cargo bench -p ensemble-tests --bench cache`

use std::sync::Arc;
use std::time::Instant;

use ensemble::cache::AgentCache;
use ensemble::{Engine, RunOptions, RuntimeConfig, Workflow};
use ensemble_tests::{Project, busy, min_median_max};

fn main() {
    let runs: usize = std::env::var("RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(9);
    let project = Project::new();
    let shape: [(&str, &str); 6] = [
        ("analyst", ""),
        ("pm", "analyst"),
        ("ux_expert", "pm"),
        ("architect", "pm"),
        ("developer", "ux_expert, architect"),
        ("qa", "developer"),
    ];
    let mut yaml = String::from("agents:\n");
    for (id, needs) in shape {
        project.component(id, &busy(&format!("{id}.value"), 40_000_000));
        yaml.push_str(&format!("  {id}: {{component: {id}.wasm, needs: [{needs}]}}\n"));
    }
    let workflow: Workflow = project.workflow(&yaml);
    let engine = Engine::new(RuntimeConfig::default()).expect("engine");
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    let run = |dir: &std::path::Path| {
        let cache = Arc::new(AgentCache::open(dir, 100 << 20, 10 << 10));
        let started = Instant::now();
        let report =
            tokio.block_on(engine.run(&workflow, RunOptions { cache: Some(cache), ..RunOptions::default() }));
        assert!(report.succeeded());
        (started.elapsed(), report.agents.iter().filter(|a| a.cached).count())
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    run(&scratch.path().join("warm-up")); // compiles the components
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let dir = scratch.path().join(format!("c{i}"));
        let (t, hits) = run(&dir);
        assert_eq!(hits, 0);
        cold.push(t);
        let (t, hits) = run(&dir);
        assert_eq!(hits, 6);
        warm.push(t);
    }
    let (cmin, cmed, cmax) = min_median_max(cold);
    let (wmin, wmed, wmax) = min_median_max(warm);
    println!("seed shape, 6 agents of ~50 ms, {runs} runs each (min / median / max)");
    println!("  cold  {cmin:>10.1?} / {cmed:>10.1?} / {cmax:>10.1?}");
    println!("  warm  {wmin:>10.1?} / {wmed:>10.1?} / {wmax:>10.1?}");
    println!("  cold / warm (medians): {:.0}", cmed.as_secs_f64() / wmed.as_secs_f64());

    // Process start: the CLI on the BMAD example, compiled cache cold and warm.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let process = |state: &std::path::Path| {
        let started = Instant::now();
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_ensemble-cli"))
            .args([
                "run",
                "examples/bmad/workflow.yaml",
                "--input",
                "brief=examples/bmad/briefs/taskflow.yaml",
            ])
            .args(["--no-journal", "--no-cache", "--quiet", "--state-dir"])
            .arg(state)
            .current_dir(&root)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("ensemble runs");
        assert!(status.success());
        started.elapsed()
    };
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let state = scratch.path().join(format!("state{i}"));
        cold.push(process(&state));
        warm.push(process(&state));
    }
    let (cmin, cmed, cmax) = min_median_max(cold);
    let (wmin, wmed, wmax) = min_median_max(warm);
    println!("`ensemble run` of the BMAD example (a process each), {runs} runs (min / median / max)");
    println!("  compiled cache cold  {cmin:>10.1?} / {cmed:>10.1?} / {cmax:>10.1?}");
    println!("  compiled cache warm  {wmin:>10.1?} / {wmed:>10.1?} / {wmax:>10.1?}");
    println!("  cold / warm (medians): {:.1}", cmed.as_secs_f64() / wmed.as_secs_f64());
}
