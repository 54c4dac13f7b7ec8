//! The engine: instance pool, concurrency limit, events.

use ensemble::{Engine, Event, EventKind, RunOptions, RuntimeConfig};
use ensemble_tests::{Project, writer};

fn three_independent_writers(max_concurrent: u32) -> (Project, ensemble::Workflow) {
    let project = Project::new();
    for name in ["a", "b", "c"] {
        project.component(name, &writer(&format!("{name}.value")));
    }
    let workflow = project.workflow(&format!(
        "resources:\n  max_concurrent: {max_concurrent}\nagents:\n  a:\n    component: a.wasm\n  b:\n    component: b.wasm\n  c:\n    component: c.wasm\n"
    ));
    (project, workflow)
}

/// The order in which agents started and finished, from the event stream.
fn timeline(events: &mut tokio::sync::broadcast::Receiver<Event>) -> Vec<String> {
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        match event.kind {
            EventKind::AgentStarted { agent, .. } => seen.push(format!("start {agent}")),
            EventKind::AgentSucceeded { agent, .. } => seen.push(format!("end {agent}")),
            _ => {}
        }
    }
    seen
}

#[tokio::test]
async fn independent_agents_start_together_up_to_the_limit() {
    let (_project, workflow) = three_independent_writers(2);
    let options = RunOptions::default();
    let mut events = options.events.subscribe();
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, options)).await;
    assert!(report.succeeded(), "{report:?}");
    let seen = timeline(&mut events);
    assert_eq!(&seen[..2], ["start a", "start b"], "{seen:?}");
    let c = seen.iter().position(|e| e == "start c").expect("c started");
    assert!(seen[..c].iter().any(|e| e.starts_with("end")), "c waits for a free slot: {seen:?}");
}

#[tokio::test]
async fn with_room_for_all_every_agent_starts_at_once() {
    let (_project, workflow) = three_independent_writers(3);
    let options = RunOptions::default();
    let mut events = options.events.subscribe();
    crate::bounded(ensemble_tests::engine().run(&workflow, options)).await;
    let seen = timeline(&mut events);
    assert_eq!(&seen[..3], ["start a", "start b", "start c"], "{seen:?}");
}

#[tokio::test]
async fn falls_back_to_on_demand_allocation_when_the_pool_cannot_be_reserved() {
    // A million instances of 1 TiB each cannot be reserved on any machine.
    let config =
        RuntimeConfig { max_instances: 1_000_000, max_memory_bytes: 1 << 40, ..RuntimeConfig::default() };
    let engine = Engine::new(config).expect("engine starts anyway");
    assert!(!engine.runtime().is_pooled());
    let (_project, workflow) = three_independent_writers(3);
    let report = crate::bounded(engine.run(&workflow, RunOptions::default())).await;
    assert!(report.succeeded(), "{report:?}");
}

#[tokio::test]
async fn the_default_engine_is_pooled_and_one_engine_serves_many_runs() {
    let engine = ensemble_tests::engine();
    assert!(engine.runtime().is_pooled());
    let (_project, workflow) = three_independent_writers(3);
    for _ in 0..3 {
        let report = crate::bounded(engine.run(&workflow, RunOptions::default())).await;
        assert!(report.succeeded(), "{report:?}");
        assert_eq!(report.context.len(), 3);
    }
    assert_eq!(engine.runtime().load_stats().compiled, 3, "components compile once per engine");
}

#[tokio::test]
async fn agents_progress_and_log_calls_become_events() {
    let workflow = ensemble::Workflow::load(ensemble_tests::repo_root().join("examples/hello/workflow.yaml"))
        .expect("hello workflow loads");
    let options = RunOptions::default();
    let mut events = options.events.subscribe();
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, options)).await;
    assert!(report.succeeded(), "{report:?}");
    let (mut progress, mut logs) = (Vec::new(), Vec::new());
    while let Ok(event) = events.try_recv() {
        match event.kind {
            EventKind::Progress { agent, done, .. } if agent == "greeter" => progress.push(done),
            EventKind::Log { agent, message, .. } if agent == "greeter" => logs.push(message),
            _ => {}
        }
    }
    assert_eq!(progress.first(), Some(&0.0), "{progress:?}");
    assert_eq!(progress.last(), Some(&1.0), "{progress:?}");
    assert!(logs.iter().any(|m| m.contains("Ada")), "{logs:?}");
    let message: String =
        rmp_serde::from_slice(&report.context.get("greeter.message").expect("committed").value)
            .expect("msgpack");
    assert_eq!(message, "Hello, Ada!");
}

#[tokio::test]
async fn memory_units_are_never_oversubscribed() {
    // Each agent takes 60 of 100 memory units: with three slots free, they
    // still run one at a time.
    let project = Project::new();
    for name in ["a", "b"] {
        project.component(name, &writer(&format!("{name}.value")));
    }
    let workflow = project.workflow(
        "agents:\n  a:\n    component: a.wasm\n    resources: {memory: 60}\n  b:\n    component: b.wasm\n    resources: {memory: 60}\n",
    );
    let options = RunOptions::default();
    let mut events = options.events.subscribe();
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, options)).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(timeline(&mut events), ["start a", "end a", "start b", "end b"]);
}

#[tokio::test]
async fn the_ready_queue_serves_the_highest_priority_first() {
    let project = Project::new();
    for name in ["a", "b", "c"] {
        project.component(name, &writer(&format!("{name}.value")));
    }
    let workflow = project.workflow(
        // c is on a critical path (priority 10 by the planner); a and b say less.
        "resources:\n  max_concurrent: 1\nagents:\n  a:\n    component: a.wasm\n    priority: 2\n  b:\n    component: b.wasm\n    priority: 1\n  c:\n    component: c.wasm\n",
    );
    let options = RunOptions::default();
    let mut events = options.events.subscribe();
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, options)).await;
    assert!(report.succeeded(), "{report:?}");
    let starts: Vec<String> = timeline(&mut events).into_iter().filter(|e| e.starts_with("start")).collect();
    assert_eq!(starts, ["start c", "start a", "start b"]);
}

#[tokio::test]
async fn admission_never_exceeds_the_units_or_the_limit() {
    // (cpu, memory) units of eight agents, against 100 × 1.2 cpu, 100 memory, 3 slots.
    let units = [(50, 30), (40, 40), (30, 20), (60, 35), (20, 50), (70, 10), (10, 25), (45, 30)];
    let project = Project::new();
    let mut yaml = String::from("resources: {cpu: 100, memory: 100, max_concurrent: 3}\nagents:\n");
    for (i, (cpu, memory)) in units.iter().enumerate() {
        project.component(&format!("a{i}"), &ensemble_tests::busy(&format!("a{i}.value"), 2_000_000));
        yaml.push_str(&format!(
            "  a{i}: {{component: a{i}.wasm, resources: {{cpu: {cpu}, memory: {memory}}}}}\n"
        ));
    }
    let workflow = project.workflow(&yaml);
    let options = RunOptions::default();
    let mut events = options.events.subscribe();
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, options)).await;
    assert!(report.succeeded(), "{report:#?}");

    let unit = |agent: &str| units[agent[1..].parse::<usize>().expect("a<i>")];
    let (mut cpu, mut memory, mut running, mut most_at_once) = (0, 0, 0, 0);
    for event in crate::drain(&mut events) {
        match event.kind {
            EventKind::Admitted { agent, pool, .. } => {
                let (c, m) = unit(&agent);
                (cpu, memory, running) = (cpu + c, memory + m, running + 1);
                assert!(
                    cpu <= 120 && memory <= 100 && running <= 3,
                    "{agent} over the pool: {cpu} {memory} {running}"
                );
                assert_eq!(
                    (pool.cpu, pool.memory, pool.running),
                    (cpu, memory, running),
                    "the event's own account"
                );
                most_at_once = most_at_once.max(running);
            }
            EventKind::Released { agent, .. } => {
                let (c, m) = unit(&agent);
                (cpu, memory, running) = (cpu - c, memory - m, running - 1);
            }
            _ => {}
        }
    }
    assert_eq!((cpu, memory, running), (0, 0, 0), "everything was given back");
    assert!(most_at_once >= 2, "agents did run side by side");
}

/// With one worker thread, an agent spinning for ever still yields at
/// every epoch tick, so the other agents run.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_runaway_agent_does_not_starve_the_others() {
    let project = Project::new();
    project.component("spinner", &ensemble_tests::plain("(loop $spin (br $spin)) unreachable"));
    project.component("quick", &writer("quick.value"));
    let workflow =
        project.workflow("agents:\n  spinner: {component: spinner.wasm}\n  quick: {component: quick.wasm}\n");
    let options = RunOptions::default();
    let (cancel, mut events) = (options.cancel.clone(), options.events.subscribe());
    let engine = ensemble_tests::engine();
    let run = crate::bounded(engine.run(&workflow, options));
    tokio::pin!(run);
    let report = loop {
        tokio::select! {
            report = &mut run => break report,
            Ok(event) = events.recv() => {
                if matches!(&event.kind, EventKind::AgentSucceeded { agent, .. } if agent == "quick") {
                    cancel.cancel();
                }
            }
        }
    };
    assert!(report.context.get("quick.value").is_some(), "{report:#?}");
    assert!(matches!(report.agent("spinner").map(|a| &a.status), Some(ensemble::AgentStatus::Cancelled)));
}

/// Agents sharing one worker thread get time in proportion to their cpu
/// units, measured in fuel (instructions), not in wall time: `heavy` (80
/// units) runs a loop of known fuel next to `light` (10 units), which runs
/// the same loop on a budget of half that fuel. With 8:1 slices light burns about an
/// eighth of heavy's fuel by the time heavy is done, so heavy finishes
/// first; with equal slices light would burn as much as heavy and run out
/// halfway through. (The runtime looks at newly spawned tasks at every
/// tick, so both agents start slicing at once.)
#[test]
fn cpu_units_weight_the_time_slices() {
    let project = Project::new();
    project.component("heavy", &ensemble_tests::busy("heavy.value", 1_000_000_000));
    // The same loop, too long to finish on its budget.
    project.component("light", &ensemble_tests::busy("light.value", u32::MAX));
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .global_queue_interval(1)
        .enable_all()
        .build()
        .expect("runtime");
    let engine = ensemble_tests::engine();
    let alone = project.workflow("agents:\n  heavy: {component: heavy.wasm}\n");
    let report = tokio.block_on(crate::bounded(engine.run(&alone, RunOptions::default())));
    let work = report.agent("heavy").and_then(|a| a.fuel_used).expect("heavy ran");

    let workflow = project.workflow(&format!(
        "agents:
  light: {{component: light.wasm, fuel: {budget}, resources: {{cpu: 10}}}}
  heavy: {{component: heavy.wasm, resources: {{cpu: 80}}}}
",
        budget = work / 2
    ));
    let options = RunOptions::default();
    let mut events = options.events.subscribe();
    let report = tokio.block_on(crate::bounded(engine.run(&workflow, options)));
    assert!(matches!(report.error("light"), Some(ensemble::AgentError::OutOfFuel { .. })), "{report:#?}");
    let ends: Vec<String> = crate::drain(&mut events)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::AgentSucceeded { agent, .. } | EventKind::AgentFailed { agent, .. } => Some(agent),
            _ => None,
        })
        .collect();
    assert_eq!(ends, ["heavy", "light"], "heavy ({work} fuel) ends before light burns {} fuel", work / 2);
}

#[tokio::test]
async fn one_relay_component_serves_a_whole_chain() {
    // The benchmarks' no-op agent: its config says what to copy where.
    let project = Project::new();
    project.component("relay", &ensemble_tests::relay());
    let workflow = project.workflow(
        "agents:
  a0: {component: relay.wasm, config: [none, a0.value]}
  a1: {component: relay.wasm, needs: [a0], config: [a0.value, a1.value]}
  a2: {component: relay.wasm, needs: [a1], config: [a1.value, a2.value]}
",
    );
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, RunOptions::default())).await;
    assert!(report.succeeded(), "{report:#?}");
    let value = |key: &str| report.context.get(key).map(|e| e.value.to_vec());
    assert_eq!(value("a0.value"), Some(b"\xa2ok".to_vec()));
    assert_eq!(value("a2.value"), value("a0.value"), "copied down the chain");
}

/// The embedding case: one engine, 100 runs of one workflow at once. None
/// deadlocks, and each ends exactly as the workflow run alone does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_runs_in_one_engine_each_end_as_one_alone() {
    let project = Project::new();
    project
        .component("source", &writer("source.value"))
        .component("left", &ensemble_tests::copier("source.value", "left.value"))
        .component("right", &ensemble_tests::copier("source.value", "right.value"))
        .component("join", &ensemble_tests::copier("left.value", "join.value"));
    let workflow = std::sync::Arc::new(project.workflow(
        "agents:
  source: {component: source.wasm}
  left: {component: left.wasm, needs: [source]}
  right: {component: right.wasm, needs: [source]}
  join: {component: join.wasm, needs: [left, right]}
groups:
  sides: {agents: [left, right]}
",
    ));
    let engine = std::sync::Arc::new(ensemble_tests::engine());
    let outcome = |report: &ensemble::RunReport| {
        let context: Vec<(String, Vec<u8>)> =
            report.context.iter().map(|(k, e)| (k.clone(), e.value.to_vec())).collect();
        let statuses: Vec<(String, bool)> =
            report.agents.iter().map(|a| (a.agent.clone(), a.status.is_usable())).collect();
        (report.succeeded(), context, statuses)
    };
    let alone = outcome(&crate::bounded(engine.run(&workflow, RunOptions::default())).await);
    assert!(alone.0 && alone.1.len() == 4, "{alone:?}");
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..100 {
        let (engine, workflow) = (engine.clone(), workflow.clone());
        // Half share the workflow with the run's task, half have it copied.
        runs.spawn(async move {
            if i % 2 == 0 {
                engine.run_shared(workflow, RunOptions::default()).await
            } else {
                engine.run(&workflow, RunOptions::default()).await
            }
        });
    }
    let all = tokio::time::timeout(std::time::Duration::from_secs(300), runs.join_all())
        .await
        .expect("100 concurrent runs end: no deadlock");
    assert_eq!(all.len(), 100);
    let mut ids = std::collections::HashSet::new();
    for report in &all {
        assert_eq!(outcome(report), alone, "a run among 100 ends as one alone");
        assert!(ids.insert(report.run_id.clone()), "run ids are distinct");
    }
    assert_eq!(engine.runtime().load_stats().compiled, 4, "each component compiled once for all runs");
}
