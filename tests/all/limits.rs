//! Hostile agents meet their limits; the rest of the run goes on.

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
    let report = engine().run(&workflow, RunOptions::default()).await;
    assert!(
        matches!(report.agent("good").map(|a| &a.status), Some(AgentStatus::Succeeded { .. })),
        "good agent must still succeed: {report:?}"
    );
    assert!(report.context.get("good.value").is_some(), "good agent's write is committed");
    assert_eq!(report.context.iter().filter(|(k, _)| k.starts_with("bad")).count(), 0);
    report.error("bad").cloned().expect("bad agent fails")
}

const LOOP_FOREVER: &str = "(loop $l (br $l)) (i32.const 0)";

#[tokio::test]
async fn infinite_loop_times_out() {
    let error = run_beside_good(&plain(LOOP_FOREVER), "    timeout: 300ms\n").await;
    assert!(matches!(error, AgentError::Timeout { ref agent, .. } if agent == "bad"), "{error}");
    assert!(error.to_string().contains("timed out"), "{error}");
}

#[tokio::test]
async fn infinite_loop_runs_out_of_fuel() {
    let error = run_beside_good(&plain(LOOP_FOREVER), "    fuel: 1000000\n    timeout: 30s\n").await;
    assert!(matches!(error, AgentError::OutOfFuel { budget: 1_000_000, .. }), "{error}");
}

#[tokio::test]
async fn memory_growth_past_the_cap_is_a_memory_limit_error() {
    // Grow by 16 pages (1 MiB) until refused, then die the way an allocator does.
    let bomb = plain("(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable");
    let project_settings = "    resources:\n      memory: 2\n"; // 2 units × 4 MiB
    let error = run_beside_good(&bomb, project_settings).await;
    match error {
        AgentError::MemoryLimit { limit, requested, .. } => {
            assert_eq!(limit, 8 << 20);
            assert!(requested > limit);
        }
        other => panic!("expected a memory limit error, got {other}"),
    }
}

#[tokio::test]
async fn trap_fails_the_agent() {
    let error = run_beside_good(&plain("unreachable"), "").await;
    match error {
        AgentError::Trap { message, backtrace, .. } => {
            assert!(message.contains("unreachable"), "{message}");
            assert!(backtrace.as_ref().is_some_and(|b| b.contains("wasm backtrace")), "{backtrace:?}");
        }
        other => panic!("expected a trap, got {other}"),
    }
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

#[tokio::test]
async fn rust_panic_is_a_trap_that_says_why() {
    let panicker = std::fs::read(ensemble_tests::repo_root().join("tests/fixtures/dist/panicker.wasm"))
        .expect("tests/fixtures/dist/panicker.wasm is built (cargo xtask build-agents)");
    let project = Project::new();
    project.component("good", &writer("good.value")).component("panicker", &panicker);
    let workflow = project
        .workflow("agents:\n  good:\n    component: good.wasm\n  panicker:\n    component: panicker.wasm\n");
    let report = engine().run(&workflow, RunOptions::default()).await;
    assert!(report.context.get("good.value").is_some());
    assert!(report.context.get("panicker.before").is_none(), "a panicking agent commits nothing");
    match report.error("panicker") {
        Some(AgentError::Trap { said, .. }) => {
            let said = said.as_deref().unwrap_or_default();
            assert!(said.contains("deliberate panic in panicker"), "{said}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}
