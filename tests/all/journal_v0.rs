//! A journal written by the ensemble of before typed outcomes (outcomes,
//! conflict resolutions and barrier decisions as plain strings) still opens,
//! reads back, lists and resumes.
//!
//! `tests/fixtures/journals/v0-mixed.redb` was written once, by
//! [`write_the_v0_fixture`] run with that ensemble (commit "journal fixture:
//! a run journaled by the ensemble of before typed outcomes"). Never
//! regenerate it with a newer one: it stands for the journals users already
//! have. A later format change gets a fixture of its own.

use std::path::PathBuf;
use std::sync::Arc;

use ensemble::context::{Conflict, Resolution};
use ensemble::journal::{Journal, RunStatus, list_runs, path_of};
use ensemble::{AgentOutcome, AgentStatus, Decision, Engine, EventKind, RunMetrics, RunOptions, Workflow};
use ensemble_tests::{Project, copier, plain, stalls_after_progress, writer, writer_of};

/// The run's id, and the fixture's file.
const RUN: &str = "v0";

fn fixture() -> PathBuf {
    ensemble_tests::repo_root().join("tests/fixtures/journals/v0-mixed.redb")
}

/// The fixture run's workflow. `first` succeeds; `a` and `b` write
/// `shared.doc` concurrently (a conflict, the first writer's value kept);
/// `broken` traps and `orphan`, which needs it, is skipped; group `g` gives
/// up on `slow` (it stalls), which stands in with its defaults (partial);
/// `long` runs on them until the run is cancelled.
const YAML: &str = "name: journal-v0
shared:
  shared.doc: first_writer_wins
agents:
  first: {component: first.wasm}
  a: {component: a.wasm, owns: [a, shared.doc]}
  b: {component: b.wasm, owns: [b, shared.doc]}
  broken: {component: broken.wasm, needs: [first]}
  orphan: {component: orphan.wasm, needs: [broken]}
  fast: {component: fast.wasm, needs: [a, b]}
  slow:
    component: slow.wasm
    needs: [a, b]
    defaults:
      slow.value: default
  long: {component: long.wasm, needs: [slow]}
groups:
  g:
    agents: [fast, slow]
    barrier: {timeout: 300ms, success: at_least_one, progress_window: 50ms, on_timeout: [continue_with_partial]}
";

/// The fixture's project; `long` stalls (as in the fixture run) or, once
/// mended, writes `long.value`.
fn project(long_stalls: bool) -> (Project, Workflow) {
    let project = Project::new();
    project.component("first", &writer("first.value"));
    project.component("a", &writer_of("shared.doc", b"\x81\xa1v\x01"));
    project.component("b", &writer_of("shared.doc", b"\x81\xa1v\x02"));
    project.component("broken", &plain("unreachable"));
    project.component("orphan", &writer("orphan.value"));
    project.component("fast", &writer("fast.value"));
    project.component("slow", &stalls_after_progress());
    let long = if long_stalls { stalls_after_progress() } else { copier("slow.value", "long.value") };
    project.component("long", &long);
    let workflow = project.workflow(YAML);
    (project, workflow)
}

/// The fixture in a state directory of `project`, as `runs/v0.redb`.
fn installed(project: &Project) -> PathBuf {
    let state = project.path().join("state");
    std::fs::create_dir_all(state.join("runs")).expect("mkdir");
    std::fs::copy(fixture(), path_of(&state, RUN)).expect("fixture copied");
    state
}

/// Writes the fixture: `ENSEMBLE_WRITE_JOURNAL_FIXTURE=1 cargo test -p
/// ensemble-tests --test all -- --ignored write_the_v0_fixture`. See the
/// module docs before doing so.
#[tokio::test]
#[ignore = "writes the committed fixture; run once, with the ensemble it stands for"]
async fn write_the_v0_fixture() {
    if std::env::var_os("ENSEMBLE_WRITE_JOURNAL_FIXTURE").is_none() {
        return;
    }
    let (project, workflow) = project(true);
    let state = project.path().join("state");
    let engine = ensemble_tests::engine();
    let journal = Arc::new(engine.create_journal(&workflow, &state, RUN).expect("journal"));
    let inputs = std::collections::BTreeMap::from([("doc".to_owned(), b"\xa2hi".to_vec())]);
    journal.set_inputs(&inputs).expect("inputs recorded");
    let options =
        RunOptions { run_id: Some(RUN.into()), journal: Some(journal), inputs, ..Default::default() };
    let mut events = options.events.subscribe();
    let cancel = options.cancel.clone();
    let run = tokio::spawn(async move { engine.run(&workflow, options).await });
    crate::bounded(async {
        loop {
            match events.recv().await.expect("events").kind {
                EventKind::AgentStarted { agent, .. } if agent == "long" => break,
                _ => {}
            }
        }
    })
    .await;
    cancel.cancel();
    let report = crate::bounded(run).await.expect("run");
    assert!(report.cancelled, "{report:#?}");
    drop(report);
    let out = fixture();
    std::fs::create_dir_all(out.parent().expect("dir")).expect("mkdir");
    std::fs::copy(path_of(&state, RUN), &out).expect("fixture written");
}

#[test]
fn the_v0_journal_opens_and_reads_back() {
    let (project, _) = project(true);
    let state = installed(&project);
    let runs = list_runs(&state);
    assert_eq!(runs.len(), 1);
    let record = runs[0].1.as_ref().expect("its run record reads");
    assert_eq!((record.run_id.as_str(), record.workflow.as_str()), (RUN, "journal-v0"));
    assert_eq!(record.status, RunStatus::Cancelled);
    assert!(record.inputs.contains_key("doc"));

    let journal = Journal::open(&path_of(&state, RUN)).expect("opens");
    let outcomes: Vec<(String, AgentOutcome)> = journal
        .agents()
        .expect("agent records read")
        .into_iter()
        .map(|(agent, r)| (agent, r.outcome))
        .collect();
    use AgentOutcome::*;
    let expected = [
        ("a", Succeeded),
        ("b", Succeeded),
        ("broken", Failed),
        ("fast", Succeeded),
        ("first", Succeeded),
        ("input", Input),
        ("long", Cancelled),
        ("orphan", Skipped),
        ("slow", Partial),
    ];
    let expected: Vec<(String, AgentOutcome)> = expected.iter().map(|(a, o)| (a.to_string(), *o)).collect();
    assert_eq!(outcomes, expected);

    let commits = journal.commits().expect("commits read");
    let conflicts: Vec<&Conflict> = commits.iter().flat_map(|c| &c.conflicts).collect();
    assert_eq!(conflicts.len(), 1, "{commits:#?}");
    assert_eq!(conflicts[0].key, "shared.doc");
    assert_eq!(conflicts[0].resolution, Resolution::KeptFirst { path: "v".into() });

    let decisions = journal.decisions().expect("decisions read");
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].group, "g");
    assert_eq!(decisions[0].decision, Decision::ContinueWithPartial);
    let report = journal.report::<RunMetrics>().expect("its report reads").expect("a cancelled run has one");
    assert_eq!(report.agents.len(), 8);
    assert_eq!(report.agent("slow").map(|a| a.outcome), Some(Partial));
    assert_eq!(report.decisions[0].decision, Decision::ContinueWithPartial);
    assert_eq!(report.conflicts.list[0].resolution, Resolution::KeptFirst { path: "v".into() });
}

#[test]
fn the_v0_journal_is_listed_by_the_command() {
    let (project, _) = project(true);
    let state = installed(&project);
    let state_arg = state.to_string_lossy().into_owned();
    let (code, out, err) = crate::run_cli(&["runs", "--state-dir", &state_arg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(RUN) && out.contains("journal-v0") && out.contains("cancelled"), "{out}");
}

#[tokio::test]
async fn the_v0_journal_resumes_keeping_its_partial_agent() {
    // `long` is mended: the only change since the run.
    let (project, workflow) = project(false);
    let state = installed(&project);
    let journal = Arc::new(Journal::open(&path_of(&state, RUN)).expect("opens"));
    let changes = Engine::resume_changes(&workflow, &journal).expect("compared");
    assert!(changes.iter().any(|c| c.contains("agent `long`")), "{changes:?}");
    let engine = ensemble_tests::engine();
    let report = crate::bounded(engine.resume(&workflow, journal, RunOptions::default(), true))
        .await
        .expect("resumes");
    let status = |id: &str| &report.agent(id).expect(id).status;
    let slow = report.agent("slow").expect("slow");
    assert!(slow.resumed, "not run again: {slow:?}");
    let AgentStatus::Partial { defaults, .. } = &slow.status else { panic!("slow stays partial: {slow:?}") };
    assert_eq!(defaults, &["slow.value"]);
    for kept in ["first", "a", "b", "fast"] {
        let agent = report.agent(kept).expect(kept);
        assert!(agent.resumed && matches!(agent.status, AgentStatus::Succeeded { .. }), "{agent:?}");
    }
    assert!(matches!(status("long"), AgentStatus::Succeeded { .. }), "{report:#?}");
    assert!(matches!(status("broken"), AgentStatus::Failed(_)), "it fails again: {report:#?}");
    assert!(matches!(status("orphan"), AgentStatus::Skipped { .. }));
    let long: Vec<u8> = report.context.get("long.value").expect("long ran on the defaults").value.to_vec();
    assert_eq!(rmp_serde::from_slice::<String>(&long).expect("string"), "default");
}
