//! The engine's defences against a workflow the file check would refuse:
//! such a workflow can only be made inside the crate (a [`Workflow`] is
//! always validated), so these tests live here.

use std::time::Duration;

use crate::exec::{Engine, RunOptions};
use crate::runtime::RuntimeConfig;
use crate::workflow::Workflow;

/// The hello example: `greeter`, then `shouter` and `counter` side by side.
fn hello() -> Workflow {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello/workflow.yaml");
    Workflow::load(path).expect("the hello workflow loads")
}

#[tokio::test]
async fn an_agent_larger_than_the_pool_fails_instead_of_waiting_for_ever() {
    // The file check refuses this; only the crate itself can still ask.
    let mut workflow = hello();
    let counter = workflow.agents.iter().position(|a| a.id == "counter").expect("counter");
    workflow.agents[counter].memory = workflow.resources.memory + 1;
    let engine = Engine::new(RuntimeConfig::default()).expect("engine starts");
    let report = tokio::time::timeout(Duration::from_secs(120), engine.run(&workflow, RunOptions::default()))
        .await
        .expect("the run ends");
    let error = report.error("counter").expect("counter fails").to_string();
    assert!(error.contains("more than the whole pool has"), "{error}");
    assert!(
        report.context.get("greeter.message").is_some() && report.context.get("shouter.message").is_some()
    );
}
