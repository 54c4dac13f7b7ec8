//! Concurrent writes of a shared key: detected by content hash, merged
//! three-way when both are maps, otherwise resolved by the key's policy.

use ensemble::context::Resolution;
use ensemble::{AgentError, AgentStatus, RunOptions, RunReport};
use ensemble_tests::{Project, writer_of};
use serde_json::json;

fn msgpack(value: &serde_json::Value) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("encodes")
}

fn decoded(report: &RunReport, key: &str) -> serde_json::Value {
    rmp_serde::from_slice(&report.context.get(key).expect("committed").value).expect("msgpack")
}

/// `a` and `b` start together (both read version 0) and both write `shared.doc`.
async fn two_writers(a: serde_json::Value, b: serde_json::Value, policy: &str) -> (Project, RunReport) {
    let project = Project::new();
    project.component("a", &writer_of("shared.doc", &msgpack(&a)));
    project.component("b", &writer_of("shared.doc", &msgpack(&b)));
    let workflow = project.workflow(&format!(
        "shared:\n  shared.doc: {policy}\nagents:\n  a: {{component: a.wasm, owns: [a, shared.doc]}}\n  b: {{component: b.wasm, owns: [b, shared.doc]}}\n"
    ));
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, RunOptions::default())).await;
    (project, report)
}

#[tokio::test]
async fn disjoint_map_updates_merge_three_way() {
    let (_p, report) = two_writers(
        json!({"a": 1, "nested": {"x": 1}}),
        json!({"b": 2, "nested": {"y": 2}}),
        "first_writer_wins",
    )
    .await;
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(decoded(&report, "shared.doc"), json!({"a": 1, "b": 2, "nested": {"x": 1, "y": 2}}));
    assert_eq!(report.conflicts.len(), 1, "{:?}", report.conflicts);
    let conflict = &report.conflicts[0];
    assert_eq!(conflict.resolution, Resolution::Merged);
    assert_ne!(conflict.ours_hash, conflict.theirs_hash);
}

#[tokio::test]
async fn first_writer_wins_keeps_the_first_value_and_records_both_hashes() {
    let (_p, report) = two_writers(json!({"v": 1}), json!({"v": 2}), "first_writer_wins").await;
    assert!(report.succeeded(), "{report:#?}");
    let conflict = &report.conflicts[0];
    assert_eq!(conflict.resolution, Resolution::KeptFirst { path: "v".into() });
    let first = if conflict.other == "a" { json!({"v": 1}) } else { json!({"v": 2}) };
    assert_eq!(decoded(&report, "shared.doc"), first, "the first committed value stays");
    assert_eq!(conflict.theirs_hash.len(), 64);
}

#[tokio::test]
async fn merge_or_fail_fails_the_later_commit_when_values_disagree() {
    let (_p, report) = two_writers(json!({"v": 1}), json!({"v": 2}), "merge_or_fail").await;
    assert!(!report.succeeded());
    let failed: Vec<&str> = report
        .agents
        .iter()
        .filter(|a| matches!(&a.status, AgentStatus::Failed(AgentError::Conflict(_))))
        .map(|a| a.agent.as_str())
        .collect();
    assert_eq!(failed.len(), 1, "{report:#?}");
    let winner = if failed[0] == "a" { json!({"v": 2}) } else { json!({"v": 1}) };
    assert_eq!(decoded(&report, "shared.doc"), winner, "nothing of the refused commit");

    // The same policy merges what can merge.
    let (_p, report) = two_writers(json!({"a": 1}), json!({"b": 2}), "merge_or_fail").await;
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(decoded(&report, "shared.doc"), json!({"a": 1, "b": 2}));
}

#[tokio::test]
async fn fail_refuses_any_concurrent_change_and_equal_values_are_no_conflict() {
    let (_p, report) = two_writers(json!({"a": 1}), json!({"b": 2}), "fail").await;
    assert!(report.agents.iter().any(|a| matches!(&a.status, AgentStatus::Failed(AgentError::Conflict(_)))));

    let (_p, report) = two_writers(json!({"same": true}), json!({"same": true}), "fail").await;
    assert!(report.succeeded(), "identical values are not a conflict: {report:#?}");
    assert!(report.conflicts.is_empty());
}
