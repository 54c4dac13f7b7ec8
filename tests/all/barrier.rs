//! Smart barriers: each strategy fires exactly when it should, and what
//! completed is never thrown away.

use ensemble::{AgentError, AgentStatus, Decision, EventKind, GroupStatus, RunOptions, RunReport};
use ensemble_tests::{Project, copier, fails_first, plain, progressing, stalls_after_progress, writer};

fn decisions(report: &RunReport, group: &str) -> Vec<&'static str> {
    report.group(group).expect("group reported").decisions.iter().map(|d| d.decision.name()).collect()
}

fn string(report: &RunReport, key: &str) -> String {
    let entry = report.context.get(key).unwrap_or_else(|| panic!("{key} committed"));
    rmp_serde::from_slice(&entry.value).expect("msgpack string")
}

/// `fast` and `slow` in group `g`; `after` copies `slow.value` once the group is done.
fn project_with(slow: &[u8], barrier: &str) -> (Project, ensemble::Workflow) {
    let project = Project::new();
    project.component("fast", &writer("fast.value"));
    project.component("slow", slow);
    project.component("after", &copier("slow.value", "after.value"));
    let workflow = project.workflow(&format!(
        "agents:
  fast:
    component: fast.wasm
  slow:
    component: slow.wasm
    defaults:
      slow.value: default
  after:
    component: after.wasm
    needs: [fast, slow]
groups:
  g:
    agents: [fast, slow]
    barrier: {barrier}
"
    ));
    (project, workflow)
}

#[tokio::test]
async fn continue_with_partial_keeps_what_completed_and_fills_defaults() {
    // `slow` reported progress once, at its start: too long ago to extend.
    let (_project, workflow) = project_with(
        &stalls_after_progress(),
        "{timeout: 300ms, success: at_least_one, progress_window: 50ms, \
          on_timeout: [{extend_timeout: {by: 10s}}, continue_with_partial]}",
    );
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, RunOptions::default())).await;
    assert_eq!(decisions(&report, "g"), ["continue_with_partial"]);
    assert!(report.succeeded(), "{report:#?}");
    assert!(matches!(report.agent("fast").map(|a| &a.status), Some(AgentStatus::Succeeded { .. })));
    let Some(AgentStatus::Partial { defaults, error: None, .. }) = report.agent("slow").map(|a| &a.status)
    else {
        panic!("slow is partial: {report:#?}")
    };
    assert_eq!(defaults, &["slow.value"]);
    assert_eq!(string(&report, "fast.value"), "ok", "the completed result is kept");
    assert_eq!(string(&report, "slow.value"), "default");
    assert_eq!(string(&report, "after.value"), "default", "dependents run on the defaults");
}

#[tokio::test]
async fn extend_timeout_fires_once_while_stragglers_progress() {
    let (_project, workflow) = project_with(
        &progressing("slow.value", 200_000, None),
        "{timeout: 200ms, success: at_least_one, progress_window: 10s, \
          on_timeout: [{extend_timeout: {by: 200ms, count: 1}}, continue_with_partial]}",
    );
    let options = RunOptions::default();
    let mut events = options.events.subscribe();
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, options)).await;
    assert_eq!(decisions(&report, "g"), ["extend_timeout", "continue_with_partial"], "{report:#?}");
    let Decision::ExtendTimeout { by, extension } = &report.group("g").expect("g").decisions[0].decision
    else {
        panic!("extension first")
    };
    assert_eq!((by.as_millis(), *extension), (200, 1));
    let timeouts = crate::drain(&mut events)
        .iter()
        .filter(|e| matches!(e.kind, EventKind::GroupTimedOut { .. }))
        .count();
    assert_eq!(timeouts, 2, "the original timeout and the extended one");
    assert_eq!(string(&report, "slow.value"), "default");
}

#[tokio::test]
async fn a_slow_member_that_progresses_finishes_within_the_extension() {
    let (_project, workflow) = project_with(
        &progressing("slow.value", 1_000_000, Some(600_000_000)),
        "{timeout: 250ms, success: all, progress_window: 10s, \
          on_timeout: [{extend_timeout: {by: 60s}}, continue_with_partial]}",
    );
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, RunOptions::default())).await;
    assert_eq!(decisions(&report, "g"), ["extend_timeout", "all_completed"], "{report:#?}");
    assert!(report.succeeded());
    assert_eq!(string(&report, "after.value"), "ok");
}

#[tokio::test]
async fn fallback_sequential_reruns_failed_members_alone_with_the_whole_pool() {
    let project = Project::new();
    project.component("a", &fails_first(1, "a.value"));
    project.component("b", &fails_first(1, "b.value"));
    let workflow = project.workflow(
        "agents:
  a: {component: a.wasm}
  b: {component: b.wasm}
groups:
  g:
    agents: [a, b]
    barrier: {on_timeout: [continue_with_partial, fallback_sequential]}
",
    );
    let options = RunOptions::default();
    let mut events = options.events.subscribe();
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, options)).await;
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(decisions(&report, "g"), ["fallback_sequential"]);
    assert_eq!(report.agent("a").map(|a| a.attempts), Some(2));
    assert_eq!(report.agent("b").map(|a| a.attempts), Some(2));

    // The first attempts ran side by side; the re-runs one at a time, each
    // holding the whole pool.
    let admissions: Vec<(String, u32, u32)> = crate::drain(&mut events)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Admitted { agent, pool, .. } => Some((agent, pool.running, pool.cpu)),
            EventKind::Released { agent, pool, .. } => Some((format!("-{agent}"), pool.running, pool.cpu)),
            _ => None,
        })
        .collect();
    let reruns = &admissions[4..];
    assert_eq!(
        reruns,
        [("a".into(), 1, 120), ("-a".into(), 0, 0), ("b".into(), 1, 120), ("-b".into(), 0, 0)],
        "{admissions:?}"
    );
}

#[tokio::test]
async fn a_timed_out_group_with_no_applicable_strategy_fails_but_keeps_its_results() {
    let (_project, workflow) = project_with(
        &stalls_after_progress(),
        "{timeout: 200ms, success: all, on_timeout: [continue_with_partial]}",
    );
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, RunOptions::default())).await;
    assert_eq!(decisions(&report, "g"), ["group_failed"]);
    assert!(!report.succeeded());
    assert!(matches!(report.group("g").map(|g| &g.status), Some(GroupStatus::Failed { .. })));
    assert!(matches!(report.error("slow"), Some(AgentError::Stopped { .. })), "{report:#?}");
    assert!(matches!(report.agent("after").map(|a| &a.status), Some(AgentStatus::Skipped { .. })));
    assert_eq!(string(&report, "fast.value"), "ok", "the completed result is kept");
    assert!(report.context.get("slow.value").is_none(), "no defaults for a failed group");
}

#[tokio::test]
async fn a_trapping_member_is_partial_when_one_success_is_enough() {
    let (_project, workflow) = project_with(&plain("unreachable"), "{success: at_least_one}");
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, RunOptions::default())).await;
    assert_eq!(decisions(&report, "g"), ["continue_with_partial"]);
    assert!(report.succeeded(), "{report:#?}");
    let Some(AgentStatus::Partial { error: Some(AgentError::Trap { .. }), .. }) =
        report.agent("slow").map(|a| &a.status)
    else {
        panic!("slow is partial with its trap: {report:#?}")
    };
    assert_eq!(string(&report, "after.value"), "default");
}

/// A member whose component cannot load is not re-run by a fallback (it would
/// fail the same way); the group goes by its criterion and the run goes on.
#[tokio::test]
async fn a_member_that_cannot_load_is_partial_and_not_rerun() {
    let project = Project::new();
    project.component("broken", b"not a component");
    project.component("fine", &writer("fine.value"));
    project.component("after", &copier("fine.value", "after.value"));
    let workflow = project.workflow(
        "agents:
  broken: {component: broken.wasm}
  fine: {component: fine.wasm}
  after: {component: after.wasm, needs: [fine]}
groups:
  g:
    agents: [broken, fine]
    barrier: {success: at_least_one, on_timeout: [fallback_sequential]}
",
    );
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, RunOptions::default())).await;
    assert_eq!(decisions(&report, "g"), ["criterion_met"], "{report:#?}");
    let Some(AgentStatus::Partial { error: Some(AgentError::Load { .. }), .. }) =
        report.agent("broken").map(|a| &a.status)
    else {
        panic!("broken is partial with its load error: {report:#?}")
    };
    assert_eq!(report.agent("broken").map(|a| a.attempts), Some(0));
    assert_eq!(string(&report, "after.value"), "ok");
    assert!(report.succeeded());
}

#[tokio::test]
async fn absurd_durations_do_not_panic() {
    let (_project, workflow) = project_with(
        &writer("slow.value"),
        "{timeout: 300000000000y, on_timeout: [{extend_timeout: {by: 300000000000y}}, continue_with_partial]}",
    );
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, RunOptions::default())).await;
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(decisions(&report, "g"), ["all_completed"]);
}
