//! Cross-validation in groups, and `validation` needs between agents.

use ensemble::{AgentStatus, GroupStatus, RunOptions, RunReport, ValidationOutcome};
use ensemble_tests::{
    IMPORT_GET, PASSED, Project, REJECTED, RET, agent_module_with_validate, core_agent, rejecting_validator,
    writer,
};

/// `a` rejects whatever it validates; `b` accepts; `c` needs both.
fn group_project(on_failure: &str) -> (Project, ensemble::Workflow) {
    let project = Project::new();
    project.component("a", &rejecting_validator("a.value"));
    project.component("b", &writer("b.value"));
    project.component("c", &writer("c.value"));
    let workflow = project.workflow(&format!(
        "agents:
  a: {{component: a.wasm}}
  b: {{component: b.wasm}}
  c: {{component: c.wasm, needs: [a, b]}}
groups:
  g:
    agents: [a, b]
    cross_validation: {{validators: [a, b], timeout: 5s, on_failure: {on_failure}}}
"
    ));
    (project, workflow)
}

fn outcome<'r>(report: &'r RunReport, validator: &str, subject: &str) -> &'r ValidationOutcome {
    &report
        .validations
        .iter()
        .find(|v| v.validator == validator && v.subject == subject)
        .unwrap_or_else(|| panic!("{validator} validated {subject}: {report:#?}"))
        .outcome
}

#[tokio::test]
async fn members_validate_each_other_and_a_warning_does_not_fail_the_run() {
    let (_project, workflow) = group_project("warn");
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, RunOptions::default())).await;
    let ValidationOutcome::Rejected { findings } = outcome(&report, "a", "b") else {
        panic!("a rejects b: {report:#?}")
    };
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].message, "fixture disagrees!");
    assert!(matches!(outcome(&report, "b", "a"), ValidationOutcome::Passed { .. }));
    assert_eq!(report.validations.iter().filter(|v| v.group.as_deref() == Some("g")).count(), 2);
    assert_eq!(report.failed_validations().count(), 1);
    assert_eq!(report.group("g").map(|g| &g.status), Some(&GroupStatus::Succeeded));
    assert!(report.succeeded(), "warn reports, never fails: {report:#?}");
    assert!(report.context.get("c.value").is_some());
}

#[tokio::test]
async fn a_failed_validation_with_policy_fail_fails_the_group_and_skips_dependents() {
    let (_project, workflow) = group_project("fail");
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, RunOptions::default())).await;
    assert!(!report.succeeded());
    let Some(GroupStatus::Failed { because }) = report.group("g").map(|g| &g.status) else {
        panic!("g fails: {report:#?}")
    };
    assert!(because.contains("`a` did not accept the outputs of `b`"), "{because}");
    assert!(matches!(report.agent("c").map(|a| &a.status), Some(AgentStatus::Skipped { .. })));
    assert!(report.context.get("a.value").is_some() && report.context.get("b.value").is_some());
}

#[tokio::test]
async fn a_validation_need_runs_after_both_with_the_subjects_outputs_visible() {
    // `checker` passes a subject only if it can read `<subject>.value`.
    let checker = core_agent(&agent_module_with_validate(
        IMPORT_GET,
        r#"(data (i32.const 3000) ".value")"#,
        "(i32.const 1024)",
        &format!(
            "(memory.copy (i32.const 4000) (local.get 7) (local.get 8))
             (memory.copy (i32.add (i32.const 4000) (local.get 8)) (i32.const 3000) (i32.const 6))
             (call $get (i32.const 4000) (i32.add (local.get 8) (i32.const 6)) (i32.const {RET}))
             (if (result i32) (i32.eq (i32.load8_u (i32.const {ret4})) (i32.const 1))
               (then (i32.const {PASSED}))
               (else (i32.const {REJECTED})))",
            ret4 = RET + 4
        ),
    ));
    let project = Project::new();
    project.component("maker", &writer("maker.value"));
    project.component("checker", &checker);
    project.component("other", &writer("other.elsewhere"));
    let workflow = project.workflow(
        "agents:
  checker: {component: checker.wasm, needs: [{agent: maker, kind: validation}, {agent: other, kind: validation}]}
  maker: {component: maker.wasm}
  other: {component: other.wasm}
",
    );
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, RunOptions::default())).await;
    assert!(matches!(outcome(&report, "checker", "maker"), ValidationOutcome::Passed { .. }), "{report:#?}");
    assert!(
        matches!(outcome(&report, "checker", "other"), ValidationOutcome::Rejected { .. }),
        "`other` wrote no `other.value`: {report:#?}"
    );
    assert!(report.succeeded(), "validation needs warn: {report:#?}");
}
