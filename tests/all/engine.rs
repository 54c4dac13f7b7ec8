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
    let report = ensemble_tests::engine().run(&workflow, options).await;
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
    ensemble_tests::engine().run(&workflow, options).await;
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
    let report = engine.run(&workflow, RunOptions::default()).await;
    assert!(report.succeeded(), "{report:?}");
}

#[tokio::test]
async fn the_default_engine_is_pooled_and_one_engine_serves_many_runs() {
    let engine = ensemble_tests::engine();
    assert!(engine.runtime().is_pooled());
    let (_project, workflow) = three_independent_writers(3);
    for _ in 0..3 {
        let report = engine.run(&workflow, RunOptions::default()).await;
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
    let report = ensemble_tests::engine().run(&workflow, options).await;
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
    let report = ensemble_tests::engine().run(&workflow, options).await;
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
    let report = ensemble_tests::engine().run(&workflow, options).await;
    assert!(report.succeeded(), "{report:?}");
    let starts: Vec<String> = timeline(&mut events).into_iter().filter(|e| e.starts_with("start")).collect();
    assert_eq!(starts, ["start c", "start a", "start b"]);
}

#[tokio::test]
async fn an_agent_larger_than_the_pool_fails_instead_of_waiting_for_ever() {
    // The file check refuses this; a workflow built in code can still ask.
    let (_project, mut workflow) = three_independent_writers(3);
    workflow.agents[0].memory = workflow.resources.memory + 1;
    let report = ensemble_tests::engine().run(&workflow, RunOptions::default()).await;
    let error = report.error("a").expect("a fails").to_string();
    assert!(error.contains("more than the whole pool has"), "{error}");
    assert!(report.context.get("b.value").is_some() && report.context.get("c.value").is_some());
}
