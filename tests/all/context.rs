//! Dependencies: an agent sees what the agents it needs committed, and
//! nothing of an agent that failed.

use ensemble::{AgentError, AgentStatus, RunOptions};
use ensemble_tests::{Project, copier, engine, plain, writer};

#[tokio::test]
async fn a_dependent_reads_the_committed_value() {
    let project = Project::new();
    project.component("a", &writer("a.value")).component("b", &copier("a.value", "b.copy"));
    let workflow = project
        .workflow("agents:\n  b:\n    component: b.wasm\n    needs: [a]\n  a:\n    component: a.wasm\n");
    let report = crate::bounded(engine().run(&workflow, RunOptions::default())).await;
    assert!(report.succeeded(), "{report:?}");
    let copied = report.context.get("b.copy").expect("b committed its copy");
    assert_eq!(&*copied.value, b"\xa2ok");
    assert!(copied.version > report.context.get("a.value").map_or(0, |e| e.version));
}

#[tokio::test]
async fn dependents_of_a_failed_agent_are_skipped() {
    let project = Project::new();
    project
        .component("a", &plain("unreachable"))
        .component("b", &copier("a.value", "b.copy"))
        .component("c", &writer("c.value"));
    let workflow = project.workflow(
        "agents:\n  a:\n    component: a.wasm\n  b:\n    component: b.wasm\n    needs: [a]\n  c:\n    component: c.wasm\n",
    );
    let report = crate::bounded(engine().run(&workflow, RunOptions::default())).await;
    match report.error("a") {
        Some(AgentError::Trap { agent, message, .. }) => {
            assert_eq!(agent, "a");
            assert!(message.contains("unreachable"), "the fixture's own trap: {message}");
        }
        other => panic!("`a` traps at its `unreachable`, got {other:?}"),
    }
    assert!(
        matches!(report.agent("b").map(|a| &a.status), Some(AgentStatus::Skipped { because }) if because.contains("`a`"))
    );
    assert!(matches!(report.agent("c").map(|a| &a.status), Some(AgentStatus::Succeeded { .. })));
    assert!(!report.succeeded());
}

#[tokio::test]
async fn an_agent_that_runs_without_the_dependency_sees_nothing() {
    // No `needs`: the copier may start before the writer commits, and with a
    // limit of one agent at a time, declared first, it always does.
    let project = Project::new();
    project.component("a", &writer("a.value")).component("b", &copier("a.value", "b.copy"));
    let workflow = project.workflow(
        "resources:\n  max_concurrent: 1\nagents:\n  b:\n    component: b.wasm\n  a:\n    component: a.wasm\n",
    );
    let report = crate::bounded(engine().run(&workflow, RunOptions::default())).await;
    // The copier fails (its own error) exactly when it finds no value.
    crate::assert_fixture_failed(&report, "b");
    // The host saw it read a key `a` owns without waiting for `a`: it says so.
    let Some(AgentError::Returned { missing_need: Some(need), .. }) = report.error("b") else {
        panic!("`b` failed without a missing-need hint: {:?}", report.error("b"))
    };
    assert_eq!((need.key.as_str(), need.owner.as_str()), ("a.value", "a"));
    assert!(
        report.error("b").is_some_and(|e| e.to_string().contains("add `needs: [a]`")),
        "{:?}",
        report.error("b")
    );
    assert!(report.context.get("b.copy").is_none());
    assert_eq!(report.context.get("a.value").map(|e| &*e.value), Some(&b"\xa2ok"[..]));
}
