//! Components that cannot be used fail at load, naming the agent and the
//! cause, and the other agents still run.

use ensemble::{AgentError, RunOptions};
use ensemble_tests::{Project, component_wat, engine, writer};

async fn load_error(bad: &[u8]) -> AgentError {
    let project = Project::new();
    project.component("good", &writer("good.value")).component("bad", bad);
    let workflow =
        project.workflow("agents:\n  good:\n    component: good.wasm\n  bad:\n    component: bad.wasm\n");
    let report = crate::bounded(engine().run(&workflow, RunOptions::default())).await;
    // The good agent still commits, the only commit of the run.
    crate::assert_committed(&report, "good.value", b"\xa2ok", "good", 1);
    assert_eq!(report.context.len(), 1, "nothing of the bad agent");
    let error = report.error("bad").cloned().expect("bad agent fails");
    assert!(error.is_load_error(), "{error}");
    assert_eq!(error.agent(), "bad");
    error
}

#[tokio::test]
async fn forbidden_import_names_the_import() {
    let wasi = component_wat(
        r#"(component
             (import "wasi:cli/environment@0.2.0" (instance
               (export "get-arguments" (func (result (list string)))))))"#,
    );
    match load_error(&wasi).await {
        AgentError::Link { import, .. } => assert_eq!(import, "wasi:cli/environment@0.2.0"),
        other => panic!("expected a link error, got {other}"),
    }
}

#[tokio::test]
async fn garbage_bytes_are_not_a_component() {
    let error = load_error(b"this is not wasm at all").await;
    assert!(error.to_string().contains("not a WebAssembly component"), "{error}");
    assert!(error.to_string().contains("bad.wasm"), "the file is named: {error}");
}

#[tokio::test]
async fn a_core_module_is_told_to_componentize() {
    let error = load_error(&component_wat("(module)")).await;
    assert!(error.to_string().contains("core wasm module, not a component"), "{error}");
}

#[tokio::test]
async fn truncated_component_fails_to_load() {
    let mut bytes = writer("bad.value");
    bytes.truncate(bytes.len() / 2);
    let error = load_error(&bytes).await;
    assert!(matches!(error, AgentError::Load { .. }), "{error}");
}

#[tokio::test]
async fn missing_run_export_is_a_world_mismatch() {
    let error = load_error(&component_wat("(component)")).await;
    assert!(error.to_string().contains("does not implement the `ensemble:agent/agent` world"), "{error}");
}

/// Granting WASI lets a component's `wasi:*` imports link (against a locked
/// down WASI 0.2); this one then fails for the right reason: it exports no
/// `run`.
#[tokio::test]
async fn a_wasi_grant_lets_wasi_imports_link() {
    let wasi = component_wat(
        r#"(component
             (import "wasi:cli/environment@0.2.0" (instance
               (export "get-arguments" (func (result (list string)))))))"#,
    );
    let engine = engine();
    let path = std::path::Path::new("granted.wasm");
    let error = engine.runtime().load_granted("granted", path, &wasi, true).expect_err("no exports");
    let message = error.to_string();
    assert!(matches!(error, AgentError::Load { .. }) && message.contains("must export `run`"), "{message}");
    let refused = engine.runtime().load_granted("refused", path, &wasi, false).expect_err("not granted");
    assert!(matches!(refused, AgentError::Link { .. }), "{refused}");
    assert!(refused.to_string().contains("wasi: true"), "the error says how to grant it: {refused}");
}

#[tokio::test]
async fn a_broken_component_shared_by_two_agents_fails_each_by_name() {
    let project = Project::new();
    std::fs::write(project.path().join("broken.wasm"), b"\0asm\x0d\0\x01\0garbage").expect("write");
    let workflow =
        project.workflow("agents:\n  a: {component: broken.wasm}\n  b: {component: broken.wasm}\n");
    let report = crate::bounded(engine().run(&workflow, RunOptions::default())).await;
    for id in ["a", "b"] {
        match report.error(id) {
            Some(AgentError::Load { agent, .. }) => assert_eq!(agent, id),
            other => panic!("{id}: {other:?}"),
        }
    }
}

/// Loading is part of the run: each distinct component is announced and
/// timed in the run's events (name, size, agents, compiled or cached), and
/// a load made ahead of the run (as `ensemble run` does, to refuse unusable
/// components before writing anything) is counted in the run's report and
/// timeline, once.
#[tokio::test]
async fn loading_is_part_of_the_run_even_when_done_ahead_of_it() {
    use ensemble::EventKind;
    use ensemble::events::SpanKind;

    let project = Project::new();
    project.component("shared", &ensemble_tests::relay()).component("b", &writer("b.value"));
    let workflow = project.workflow(
        "agents:\n  a1: {component: shared.wasm, config: [none, a1.value]}\n  a2: {component: shared.wasm, config: [none, a2.value]}\n  b: {component: b.wasm}\n",
    );
    let engine = engine();
    let options = RunOptions::default();
    let mut events = options.events.subscribe();
    let started = std::time::Instant::now();
    engine.load_components_with(&workflow, &options.events).expect("components load");
    let ahead = started.elapsed();
    let loaded: Vec<(String, Vec<String>, bool)> = crate::drain(&mut events)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::ComponentLoaded { component, agents, bytes, cached, error: None, .. } => {
                assert!(bytes > 0);
                Some((component, agents, cached))
            }
            _ => None,
        })
        .collect();
    assert_eq!(loaded.len(), 2, "one event per distinct component: {loaded:?}");
    assert!(loaded.iter().all(|(_, _, cached)| !cached), "compiled, not cached: {loaded:?}");
    assert!(loaded.iter().any(|(c, agents, _)| c.ends_with("shared.wasm") && agents == &["a1", "a2"]));

    let report = crate::bounded(engine.run(&workflow, options)).await;
    assert!(report.succeeded(), "{report:#?}");
    let metrics = report.metrics(&workflow);
    assert!(
        metrics.load_time >= ahead.mul_f64(0.5),
        "the report's loading ({:?}) leaves out the loading done ahead of the run ({ahead:?})",
        metrics.load_time
    );
    let load = report.timeline.spans.iter().find(|s| s.kind == SpanKind::Load).expect("a load span");
    let first_agent = report.timeline.spans.iter().filter(|s| s.kind == SpanKind::Run).map(|s| s.start).min();
    assert!(load.start.is_zero() && Some(load.end) <= first_agent, "{load:?} then {first_agent:?}");
    assert!(
        !crate::drain(&mut events).iter().any(|e| matches!(e.kind, EventKind::ComponentLoaded { .. })),
        "nothing loaded twice"
    );

    // Counted once: the next run finds them in memory and counts nothing more.
    let again = crate::bounded(engine.run(&workflow, RunOptions::default())).await;
    assert!(again.metrics(&workflow).load_time < ahead, "{:?}", again.metrics(&workflow).load_time);
}

/// `ensemble cache warm` compiles every component of a workflow into the
/// compiled-component cache: the run that follows compiles nothing (its
/// events say every component came from the cache).
#[test]
fn cache_warm_leaves_a_run_nothing_to_compile() {
    let project = Project::new();
    project.component("a", &writer("a.value")).component("b", &writer("b.value"));
    let path = project.workflow_file("agents:\n  a: {component: a.wasm}\n  b: {component: b.wasm}\n");
    let path = path.to_string_lossy();
    let (code, out, err) = crate::run_cli(&["cache", "warm", &path]);
    assert_eq!(code, ensemble_cli::EXIT_OK, "{out}{err}");
    assert!(out.contains("2 compiled, 0 already there"), "{out}");
    let (code, out, err) = crate::run_cli(&["run", &path, "--events", "json"]);
    assert_eq!(code, ensemble_cli::EXIT_OK, "{out}{err}");
    let loads: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "component_loaded")
        .collect();
    assert_eq!(loads.len(), 2, "{out}");
    assert!(loads.iter().all(|e| e["cached"] == true), "compiled in the run: {loads:?}");
    let (_, out, _) = crate::run_cli(&["cache", "warm", &path]);
    assert!(out.contains("0 compiled, 2 already there"), "{out}");
}
