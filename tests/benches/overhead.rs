//! Engine overhead per agent against the raw wasmtime limit (BENCHMARKS.md,
//! figure 1).
//!
//! Workloads, every agent the same no-op component (`relay`: copies one
//! small value to its own key):
//! - W1, no-op chain: 200 agents in a line, each reading the previous
//!   agent's value and writing its own;
//! - W2, no-op fan: 10 layers × 50 agents, every agent of a layer needing
//!   all 50 of the previous one.
//!
//! In the same run, interleaved with the workflows:
//! - **raw**: a plain loop of `InstancePre::instantiate` + `run` on the same
//!   component with wasmtime alone (the engine's settings: component model,
//!   fuel, epochs, pooling with 128 KiB kept resident), stub host functions,
//!   synchronous calls, no scheduler, context or journal;
//! - **raw, async on a fiber**: the same with `instantiate_async` and an
//!   async `run`, as the engine must call agents to interrupt them (time
//!   slices, deadlines, cancellation): what the fiber alone costs;
//! - **runtime**: the same loop through `ensemble::Runtime::run_agent` (our
//!   store, limits and host side of the WIT, no scheduler).
//!
//! Prints per-agent min / median / max (wall time / agents for the
//! workflows) and engine / raw and engine / runtime ratios of medians.
//! `cargo bench -p ensemble-tests --bench overhead` (`RUNS=n`, default 15).
//! For a profiler, `ONLY=w1|w2|raw|fiber|runtime` runs just that one, RUNS times,
//! and prints its min / median / max; with `ONLY=w1`, `CHAIN=n` sets the
//! chain's length (per-run costs show as a per-agent cost falling with n).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ensemble::context::Ownership;
use ensemble::runtime::{AgentCall, Limits};
use ensemble::{Engine, EventSink, RunOptions, RuntimeConfig, Workflow};
use ensemble_tests::{Project, min_median_max, relay};

mod raw {
    //! wasmtime alone: the floor any host of this component pays.

    use wasmtime::component::{Component, HasSelf, Linker};
    use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

    wasmtime::component::bindgen!({ path: "../wit", world: "agent" });

    /// The same world with `run` called asynchronously, on a fiber, as the
    /// engine must to interrupt agents; the imports are the ones above.
    mod on_fiber {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "agent",
            exports: { default: async },
            with: {
                "ensemble:agent/types": super::ensemble::agent::types,
                "ensemble:agent/context": super::ensemble::agent::context,
                "ensemble:agent/progress": super::ensemble::agent::progress,
                "ensemble:agent/log": super::ensemble::agent::log,
                "ensemble:agent/templates": super::ensemble::agent::templates,
            },
        });
    }

    use self::ensemble::agent::types::ContextError;

    #[derive(Default)]
    pub struct Host {
        pub writes: Vec<(String, Vec<u8>)>,
    }

    impl ensemble::agent::types::Host for Host {}
    impl ensemble::agent::context::Host for Host {
        fn get(&mut self, _key: String) -> Result<Option<Vec<u8>>, ContextError> {
            Ok(Some(b"\xa2ok".to_vec()))
        }
        fn keys(&mut self, _prefix: String) -> Result<Vec<String>, ContextError> {
            Ok(Vec::new())
        }
        fn put(&mut self, key: String, value: Vec<u8>) -> Result<(), ContextError> {
            self.writes.push((key, value));
            Ok(())
        }
    }
    impl ensemble::agent::progress::Host for Host {
        fn report(&mut self, _done: f32, _message: String) {}
    }
    impl ensemble::agent::log::Host for Host {
        fn log(&mut self, _level: ensemble::agent::log::Level, _message: String) {}
    }
    impl ensemble::agent::templates::Host for Host {
        fn render(&mut self, _name: String, _data: Vec<u8>) -> Result<String, String> {
            Err("no templates".into())
        }
    }

    pub struct Raw {
        engine: Engine,
        pre: AgentPre<Host>,
        pre_on_fiber: on_fiber::AgentPre<Host>,
    }

    impl Raw {
        pub fn new(component: &[u8]) -> Self {
            let mut cfg = Config::new();
            cfg.wasm_component_model(true).epoch_interruption(true).consume_fuel(true);
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(16)
                .total_core_instances(16)
                .total_memories(16)
                .total_tables(16)
                .linear_memory_keep_resident(128 << 10)
                .table_keep_resident(128 << 10);
            cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            let engine = Engine::new(&cfg).expect("raw engine");
            let component = Component::new(&engine, component).expect("component compiles");
            let mut linker = Linker::new(&engine);
            Agent::add_to_linker::<_, HasSelf<_>>(&mut linker, |h| h).expect("link");
            let pre = AgentPre::new(linker.instantiate_pre(&component).expect("pre")).expect("agent pre");
            let mut linker = Linker::new(&engine);
            on_fiber::Agent::add_to_linker::<_, HasSelf<_>>(&mut linker, |h| h).expect("link");
            let pre_on_fiber =
                on_fiber::AgentPre::new(linker.instantiate_pre(&component).expect("pre")).expect("agent pre");
            Self { engine, pre, pre_on_fiber }
        }

        fn store(&self) -> Store<Host> {
            let mut store = Store::new(&self.engine, Host::default());
            store.set_fuel(u64::MAX).expect("fuel");
            store.set_epoch_deadline(u64::MAX / 2);
            store
        }

        fn invocation(config: &[u8]) -> ensemble::agent::types::Invocation {
            ensemble::agent::types::Invocation {
                agent: "a1".into(),
                run_id: "raw".into(),
                attempt: 1,
                config: config.to_vec(),
            }
        }

        /// [`run`](Self::run) with asynchronous calls: instantiated and run
        /// on a fiber, as the engine runs agents.
        pub async fn run_on_fiber(&self, config: &[u8]) {
            let mut store = self.store();
            let agent = self.pre_on_fiber.instantiate_async(&mut store).await.expect("instantiates");
            agent.call_run(&mut store, &Self::invocation(config)).await.expect("runs").expect("succeeds");
            assert_eq!(store.data().writes.len(), 1);
        }

        /// Instantiate and run once with `config`.
        pub fn run(&self, config: &[u8]) {
            let mut store = self.store();
            let agent = self.pre.instantiate(&mut store).expect("instantiates");
            agent.call_run(&mut store, &Self::invocation(config)).expect("runs").expect("succeeds");
            assert_eq!(store.data().writes.len(), 1);
        }
    }
}

const CHAIN: usize = 200;
const LAYERS: usize = 10;
const WIDTH: usize = 50;

fn chain(project: &Project, length: usize) -> Workflow {
    let mut yaml =
        String::from("name: w1\nagents:\n  a0: {component: relay.wasm, config: [none, a0.value]}\n");
    for i in 1..length {
        yaml.push_str(&format!(
            "  a{i}: {{component: relay.wasm, needs: [a{p}], config: [a{p}.value, a{i}.value]}}\n",
            p = i - 1
        ));
    }
    let path = project.path().join("w1.yaml");
    std::fs::write(&path, yaml).expect("write");
    Workflow::load(&path).expect("valid")
}

fn fan(project: &Project) -> Workflow {
    let mut yaml = String::from("name: w2\nagents:\n");
    for layer in 0..LAYERS {
        for j in 0..WIDTH {
            let id = format!("l{layer}x{j}");
            if layer == 0 {
                yaml.push_str(&format!("  {id}: {{component: relay.wasm, config: [none, {id}.v]}}\n"));
            } else {
                let needs: Vec<String> = (0..WIDTH).map(|k| format!("l{}x{k}", layer - 1)).collect();
                yaml.push_str(&format!(
                    "  {id}: {{component: relay.wasm, needs: [{}], config: [l{}x{j}.v, {id}.v]}}\n",
                    needs.join(", "),
                    layer - 1
                ));
            }
        }
    }
    let path = project.path().join("w2.yaml");
    std::fs::write(&path, yaml).expect("write");
    Workflow::load(&path).expect("valid")
}

fn main() {
    let runs: usize = std::env::var("RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(15);
    let only = std::env::var("ONLY").ok();
    let project = Project::new();
    let component = relay();
    project.component("relay", &component);
    // `CHAIN=n` changes W1's length in `ONLY` mode (to tell per-run from per-agent costs).
    let length =
        std::env::var("CHAIN").ok().and_then(|n| n.parse().ok()).filter(|_| only.as_deref() == Some("w1"));
    if std::env::var_os("CHAIN").is_some() && only.as_deref() != Some("w1") {
        eprintln!("CHAIN applies to ONLY=w1 only; ignored");
    }
    // Shared with each run's task, as an app running a workflow many times
    // would (`Engine::run` copies the workflow for its task).
    let (w1, w2) = (Arc::new(chain(&project, length.unwrap_or(CHAIN))), Arc::new(fan(&project)));
    let config = rmp_serde::to_vec(&["a0.value", "a1.value"]).expect("msgpack");

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .global_queue_interval(1)
        .enable_all()
        .build()
        .expect("tokio");
    let engine = Engine::new(RuntimeConfig::default()).expect("engine");
    let raw = raw::Raw::new(&component);
    let runtime = engine.runtime().clone();
    let loaded = runtime.load_file("a1", &project.path().join("relay.wasm")).expect("loads");
    let snapshot = tokio.block_on(engine.run(&w1, RunOptions::default())).context; // warm-up
    let call = AgentCall {
        agent: "a1".into(),
        run_id: "bench".into(),
        attempt: 1,
        config: config.clone(),
        snapshot,
        ownership: Ownership::new([("a1", "a1")]),
        limits: Limits { memory_bytes: 64 << 20, fuel: None, timeout: None, slice: 1 },
        events: EventSink::new(),
        pulse: Default::default(),
        templates: None,
        reads: None,
        capabilities: Default::default(),
    };

    let per_agent = |took: Duration, n: usize| took.as_secs_f64() * 1e6 / n as f64;
    let workflow = |w: &Arc<Workflow>| {
        let started = Instant::now();
        let report = tokio.block_on(engine.run_shared(w.clone(), RunOptions::default()));
        assert!(report.succeeded(), "{:?}", report.error);
        per_agent(started.elapsed(), w.agents().len())
    };
    let raw_loop = |n: usize| {
        let started = Instant::now();
        for _ in 0..n {
            raw.run(&config);
        }
        per_agent(started.elapsed(), n)
    };
    let fiber_loop = |n: usize| {
        let started = Instant::now();
        tokio.block_on(async {
            for _ in 0..n {
                raw.run_on_fiber(&config).await;
            }
        });
        per_agent(started.elapsed(), n)
    };
    let runtime_loop = |n: usize| {
        let started = Instant::now();
        tokio.block_on(async {
            for _ in 0..n {
                runtime.run_agent(&loaded, call.clone()).await.expect("runs");
            }
        });
        per_agent(started.elapsed(), n)
    };
    // For a profiler: just one workload, RUNS times.
    if let Some(only) = only {
        if only == "raw" || only == "fiber" || only == "runtime" {
            let each: &dyn Fn(usize) -> f64 = match only.as_str() {
                "raw" => &raw_loop,
                "fiber" => &fiber_loop,
                _ => &runtime_loop,
            };
            let times: Vec<f64> = (0..runs).map(|_| each(CHAIN)).collect();
            let (min, med, max) = min_median_max(times);
            println!("{only} loop of {CHAIN}, per agent: {min:.1} / {med:.1} / {max:.1} µs");
            return;
        }
        let w = if only == "w2" { &w2 } else { &w1 };
        let times: Vec<f64> = (0..runs).map(|_| workflow(w)).collect();
        let (min, med, max) = min_median_max(times);
        println!("{only} of {} agents, per agent: {min:.1} / {med:.1} / {max:.1} µs", w.agents().len());
        return;
    }
    // Warm-up of each.
    workflow(&w2);
    raw_loop(CHAIN);
    fiber_loop(CHAIN);
    runtime_loop(CHAIN);

    let (mut e1, mut e2, mut r, mut rf, mut rt) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        e1.push(workflow(&w1));
        r.push(raw_loop(CHAIN));
        rf.push(fiber_loop(CHAIN));
        rt.push(runtime_loop(CHAIN));
        e2.push(workflow(&w2));
    }
    let show = |name: &str, s: &[f64]| {
        let (min, med, max) = min_median_max(s.to_vec());
        println!("  {name:<34} {min:>8.1} / {med:>8.1} / {max:>8.1} µs");
        med
    };
    println!(
        "engine overhead per no-op agent, {runs} runs interleaved, {} cores (min / median / max)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let m1 = show("W1 chain of 200 (wall / agents)", &e1);
    let m2 = show("W2 10 × 50 fan (wall / agents)", &e2);
    let mr = show("raw wasmtime instantiate + run", &r);
    let mf = show("raw, async on a fiber", &rf);
    let mrt = show("ensemble Runtime::run_agent", &rt);
    println!("  W1 engine / raw {:.2}   engine / runtime {:.2}", m1 / mr, m1 / mrt);
    println!("  W2 engine / raw {:.2}   engine / runtime {:.2}", m2 / mr, m2 / mrt);
    println!("  raw on a fiber / raw {:.2}   runtime / raw {:.2}", mf / mr, mrt / mr);
}
