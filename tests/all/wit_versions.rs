//! The WIT package's versions: the host implements `ensemble:agent@0.1.1`
//! and runs components built against 0.1.0 unchanged (the ones in
//! `tests/fixtures/v0.1.0`, built before the package moved); `llm` only
//! for an agent granted it; a component newer than the host is refused.

use ensemble::runtime::{AgentError, Imports};
use ensemble::{Engine, RunOptions, RuntimeConfig};
use ensemble_tests::{Project, component_wat, repo_root};

/// The hello example's three agents, as built against 0.1.0.
#[tokio::test]
async fn agents_built_against_0_1_0_run_unchanged() {
    let project = Project::new();
    let old = repo_root().join("tests/fixtures/v0.1.0");
    for agent in ["greeter", "shouter", "counter"] {
        let bytes = std::fs::read(old.join(format!("{agent}.wasm"))).expect("a 0.1.0 component");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("ensemble:agent/context@0.1.0"), "{agent} is a 0.1.0 build");
        project.component(agent, &bytes);
    }
    let workflow = project.workflow(
        "agents:\n  greeter: {component: greeter.wasm, config: {name: Ada}}\n  shouter: {component: shouter.wasm, needs: [greeter]}\n  counter: {component: counter.wasm, needs: [greeter]}\n",
    );
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, RunOptions::default())).await;
    assert!(report.succeeded(), "{report:#?}");
    let message: String =
        rmp_serde::from_slice(&report.context.get("greeter.message").expect("greeted").value)
            .expect("a string");
    assert_eq!(message, "Hello, Ada!");
    let shouted: String =
        rmp_serde::from_slice(&report.context.get("shouter.message").expect("shouted").value)
            .expect("a string");
    assert_eq!(shouted, "HELLO, ADA!!");
    let stats: serde_json::Value =
        rmp_serde::from_slice(&report.context.get("counter.stats").expect("counted").value).expect("a map");
    assert_eq!(stats, serde_json::json!({"words": 2, "letters": 8, "vowels": 4}));
}

/// A component importing `ensemble:agent/llm` (empty: the check is by name).
fn llm_importer(version: &str) -> Vec<u8> {
    component_wat(&format!(r#"(component (import "ensemble:agent/llm@{version}" (instance)))"#))
}

#[test]
fn the_llm_interface_is_linked_only_for_an_agent_granted_it() {
    let engine = Engine::new(RuntimeConfig::default()).expect("engine");
    let runtime = engine.runtime();
    let path = std::path::Path::new("llm.wasm");
    let bytes = llm_importer("0.1.1");
    match runtime.load_granted("writer", path, &bytes, Imports::default()) {
        Err(AgentError::Link { agent, import, .. }) => {
            assert_eq!((agent.as_str(), import.as_str()), ("writer", "ensemble:agent/llm@0.1.1"));
        }
        other => panic!("not refused: {other:?}"),
    }
    let error = runtime.load_granted("writer", path, &bytes, Imports::default()).unwrap_err().to_string();
    assert!(error.contains("cannot be granted to an agent in this version"), "{error}");
    // Granted, the import links (the component then fails the world check: it exports nothing).
    let granted = Imports { llm: true, ..Imports::default() };
    match runtime.load_granted("writer", path, &bytes, granted) {
        Err(AgentError::Load { reason, .. }) => assert!(reason.contains("does not implement"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_component_newer_than_the_host_is_refused_saying_so() {
    let engine = Engine::new(RuntimeConfig::default()).expect("engine");
    let bytes = component_wat(r#"(component (import "ensemble:agent/context@0.1.9" (instance)))"#);
    let error =
        engine.runtime().load_granted("next", std::path::Path::new("next.wasm"), &bytes, Imports::default());
    let error = error.expect_err("refused").to_string();
    assert!(error.contains("newer than the ensemble:agent@0.1.1"), "{error}");
    // A new interface of a newer version says the same, not "not provided".
    let runtime = engine.runtime();
    let newer = component_wat(r#"(component (import "ensemble:agent/human@0.1.2" (instance)))"#);
    let error = runtime.load_granted("next", std::path::Path::new("next.wasm"), &newer, Imports::default());
    assert!(error.expect_err("refused").to_string().contains("newer than"));
    for version in ["0.2.0", "1.0.0", "0.1.0-rc1"] {
        let other =
            component_wat(&format!(r#"(component (import "ensemble:agent/context@{version}" (instance)))"#));
        let error =
            runtime.load_granted("other", std::path::Path::new("other.wasm"), &other, Imports::default());
        let error = error.expect_err("refused").to_string();
        assert!(error.contains("cannot run: build it against ensemble:agent@0.1"), "{version}: {error}");
    }
}
