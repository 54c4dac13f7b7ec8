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
