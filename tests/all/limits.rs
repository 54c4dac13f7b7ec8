//! An agent's own error is reported; the rest of the run goes on. (Hostile
//! agents meeting their limits: `tests/hostile`.)

use ensemble::runtime::ReturnedKind;
use ensemble::{AgentError, AgentStatus, RunOptions};
use ensemble_tests::{FAILED, Project, engine, plain, writer};

/// A run of a good agent next to `bad` (declared with `settings`); returns
/// bad's error after checking that good committed.
async fn run_beside_good(bad: &[u8], settings: &str) -> AgentError {
    let project = Project::new();
    project.component("good", &writer("good.value")).component("bad", bad);
    let workflow = project.workflow(&format!(
        "agents:\n  good:\n    component: good.wasm\n  bad:\n    component: bad.wasm\n{settings}"
    ));
    let report = crate::bounded(engine().run(&workflow, RunOptions::default())).await;
    assert!(
        matches!(report.agent("good").map(|a| &a.status), Some(AgentStatus::Succeeded { .. })),
        "good agent must still succeed: {report:?}"
    );
    // good's write is committed, the only commit of the run.
    crate::assert_committed(&report, "good.value", b"\xa2ok", "good", 1);
    assert_eq!(report.context.iter().filter(|(k, _)| k.starts_with("bad")).count(), 0);
    report.error("bad").cloned().expect("bad agent fails")
}

#[tokio::test]
async fn agent_returned_error_is_reported() {
    let error = run_beside_good(&plain(&format!("(i32.const {FAILED})")), "").await;
    match error {
        AgentError::Returned { kind, message, .. } => {
            assert_eq!(kind, ReturnedKind::Failed);
            assert_eq!(message, "fixture failed");
        }
        other => panic!("expected the agent's own error, got {other}"),
    }
}
