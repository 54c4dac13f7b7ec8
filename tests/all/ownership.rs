//! Agents write only where they own; a violation commits nothing.

use ensemble::{AgentError, AgentStatus, RunOptions};
use ensemble_tests::{IMPORT_PUT, OK, Project, RET, agent_module, core_agent, engine, writer};

#[tokio::test]
async fn writing_another_agents_key_fails_and_commits_nothing() {
    // Writes its own key first, then one owned by `good`, then claims success.
    let trespasser = core_agent(&agent_module(
        IMPORT_PUT,
        r#"(data (i32.const 3000) "bad.mine") (data (i32.const 3100) "good.value") (data (i32.const 3500) "\a2ok")"#,
        &format!(
            "(call $put (i32.const 3000) (i32.const 8) (i32.const 3500) (i32.const 3) (i32.const {RET}))
             (call $put (i32.const 3100) (i32.const 10) (i32.const 3500) (i32.const 3) (i32.const {RET}))
             (i32.const {OK})"
        ),
    ));
    let project = Project::new();
    project.component("good", &writer("good.value")).component("bad", &trespasser);
    let workflow =
        project.workflow("agents:\n  good:\n    component: good.wasm\n  bad:\n    component: bad.wasm\n");
    let report = crate::bounded(engine().run(&workflow, RunOptions::default())).await;

    match report.error("bad") {
        Some(AgentError::Ownership(e)) => {
            assert_eq!(
                (e.agent.as_str(), e.key.as_str(), e.owner.as_deref()),
                ("bad", "good.value", Some("good"))
            );
        }
        other => panic!("expected an ownership error, got {other:?}"),
    }
    assert!(report.context.get("bad.mine").is_none(), "the violator's other writes are not committed");
    assert_eq!(report.context.get("good.value").map(|e| &*e.writer), Some("good"));
    assert!(matches!(report.agent("good").map(|a| &a.status), Some(AgentStatus::Succeeded { .. })));
}

#[tokio::test]
async fn owned_prefixes_can_be_declared() {
    let project = Project::new();
    project.component("w", &writer("shared.notes.w"));
    let workflow = project.workflow("agents:\n  w:\n    component: w.wasm\n    owns: [shared.notes]\n");
    let report = crate::bounded(engine().run(&workflow, RunOptions::default())).await;
    assert!(report.succeeded(), "{report:?}");
    assert!(report.context.get("shared.notes.w").is_some());
}
