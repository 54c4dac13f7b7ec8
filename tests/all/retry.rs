//! Retries: failed attempts are retried with backoff, unless the error says
//! another attempt cannot help.

use ensemble::{AgentError, EventKind, RunOptions};
use ensemble_tests::{FAILED, IMPORT_PUT, OK, Project, RET, agent_module, core_agent, engine};

/// Fails its first attempt, then writes `flaky.value` (param 4 of `run` is
/// the attempt number).
fn flaky() -> Vec<u8> {
    core_agent(&agent_module(
        IMPORT_PUT,
        r#"(data (i32.const 3000) "flaky.value") (data (i32.const 3500) "\a2ok")"#,
        &format!(
            "(if (result i32) (i32.eq (local.get 4) (i32.const 1))
               (then (i32.const {FAILED}))
               (else
                 (call $put (i32.const 3000) (i32.const 11) (i32.const 3500) (i32.const 3) (i32.const {RET}))
                 (i32.const {OK})))"
        ),
    ))
}

#[tokio::test]
async fn a_failed_attempt_is_retried_after_a_backoff() {
    let project = Project::new();
    project.component("flaky", &flaky());
    let workflow = project.workflow(
        "agents:\n  flaky:\n    component: flaky.wasm\n    retry: {attempts: 3, backoff: 20ms, max_backoff: 1s}\n",
    );
    let options = RunOptions::default();
    let mut events = options.events.subscribe();
    let report = crate::bounded(engine().run(&workflow, options)).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(report.agent("flaky").map(|a| a.attempts), Some(2));
    assert_eq!(report.context.get("flaky.value").map(|e| &*e.value), Some(&b"\xa2ok"[..]));
    let mut retried = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let EventKind::AgentRetrying { attempt, after, error, .. } = event.kind {
            retried.push((attempt, after, error));
        }
    }
    assert_eq!(retried.len(), 1, "{retried:?}");
    let (attempt, after, error) = &retried[0];
    assert_eq!(*attempt, 2);
    assert!(
        after.as_millis() >= 10 && after.as_millis() <= 20,
        "jittered backoff in [0.5, 1] × 20ms: {after:?}"
    );
    assert!(error.contains("fixture failed"), "{error}");
}

#[tokio::test]
async fn without_retries_the_first_failure_is_final() {
    let project = Project::new();
    project.component("flaky", &flaky());
    let workflow = project.workflow("agents:\n  flaky:\n    component: flaky.wasm\n");
    let report = crate::bounded(engine().run(&workflow, RunOptions::default())).await;
    assert_eq!(report.agent("flaky").map(|a| a.attempts), Some(1));
    crate::assert_fixture_failed(&report, "flaky");
}

#[tokio::test]
async fn ownership_violations_are_never_retried() {
    let trespasser = core_agent(&agent_module(
        IMPORT_PUT,
        r#"(data (i32.const 3000) "elsewhere.key") (data (i32.const 3500) "\a2ok")"#,
        &format!(
            "(call $put (i32.const 3000) (i32.const 13) (i32.const 3500) (i32.const 3) (i32.const {RET})) (i32.const {OK})"
        ),
    ));
    let project = Project::new();
    project.component("bad", &trespasser);
    let workflow = project
        .workflow("agents:\n  bad:\n    component: bad.wasm\n    retry: {attempts: 5, backoff: 10ms}\n");
    let report = crate::bounded(engine().run(&workflow, RunOptions::default())).await;
    assert!(matches!(report.error("bad"), Some(AgentError::Ownership(_))));
    assert_eq!(report.agent("bad").map(|a| a.attempts), Some(1));
}

#[tokio::test]
async fn an_agent_that_fails_twice_succeeds_on_its_third_attempt() {
    let project = Project::new();
    project.component("flaky", &ensemble_tests::fails_first(2, "flaky.value"));
    let workflow = project.workflow(
        "agents:\n  flaky:\n    component: flaky.wasm\n    retry: {attempts: 3, backoff: 5ms, max_backoff: 10ms}\n",
    );
    let report = crate::bounded(engine().run(&workflow, RunOptions::default())).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(report.agent("flaky").map(|a| a.attempts), Some(3));

    let workflow = project.workflow(
        "agents:\n  flaky:\n    component: flaky.wasm\n    retry: {attempts: 2, backoff: 5ms, max_backoff: 10ms}\n",
    );
    let report = crate::bounded(engine().run(&workflow, RunOptions::default())).await;
    assert_eq!(report.agent("flaky").map(|a| a.attempts), Some(2));
    // Two attempts are not enough: the second fails as the fixture does.
    crate::assert_fixture_failed(&report, "flaky");
}
