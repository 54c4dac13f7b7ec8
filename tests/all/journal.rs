//! The journal: what a run records, resuming, and the commands that read it.

use std::sync::Arc;

use crate::run_cli as cli;
use ensemble::journal::{Journal, RunStatus, path_of};
use ensemble::{AgentOutcome, AgentStatus, Engine, RunMetrics, RunOptions, Workflow};
use ensemble_tests::{Project, copier, fails_first, writer};

/// `first` writes, `flaky` fails its first attempt, `last` copies `first.value`.
fn project() -> (Project, Workflow) {
    let project = Project::new();
    project.component("first", &writer("first.value"));
    project.component("flaky", &fails_first(1, "flaky.value"));
    project.component("last", &copier("first.value", "last.value"));
    let workflow = project.workflow(
        "agents:\n  first: {component: first.wasm}\n  flaky: {component: flaky.wasm, needs: [first]}\n  last: {component: last.wasm, needs: [flaky]}\n",
    );
    (project, workflow)
}

fn journaled(engine: &Engine, workflow: &Workflow, state: &std::path::Path, run_id: &str) -> RunOptions {
    let journal = engine.create_journal(workflow, state, run_id).expect("journal created");
    RunOptions { run_id: Some(run_id.into()), journal: Some(Arc::new(journal)), ..RunOptions::default() }
}

#[tokio::test]
async fn a_stopped_run_resumes_without_rerunning_what_committed() {
    let (project, workflow) = project();
    let state = project.path().join(".ensemble");
    let engine = ensemble_tests::engine();
    let report = crate::bounded(engine.run(&workflow, journaled(&engine, &workflow, &state, "r1"))).await;
    assert!(!report.succeeded(), "flaky fails its first attempt");

    let journal = Journal::open(&path_of(&state, "r1")).expect("journal opens");
    assert_eq!(journal.run().expect("record").status, RunStatus::Failed);
    let agents = journal.agents().expect("agents");
    assert_eq!(agents["first"].outcome, AgentOutcome::Succeeded);
    assert_eq!(agents["flaky"].outcome, AgentOutcome::Failed);
    assert_eq!(agents["last"].outcome, AgentOutcome::Skipped);
    assert_eq!(journal.commits().expect("commits").len(), 1);

    let report = crate::bounded(engine.resume(&workflow, Arc::new(journal), RunOptions::default(), false))
        .await
        .expect("resumes");
    assert!(report.succeeded(), "{report:#?}");
    let first = report.agent("first").expect("first");
    assert!(first.resumed && first.attempts == 1, "first is not run again: {first:?}");
    assert!(!report.agent("flaky").expect("flaky").resumed);
    assert!(matches!(report.agent("last").map(|a| &a.status), Some(AgentStatus::Succeeded { .. })));

    let journal = Journal::open(&path_of(&state, "r1")).expect("journal opens");
    let record = journal.run().expect("record");
    assert_eq!((record.status, record.resumed), (RunStatus::Succeeded, 1));
    let commits = journal.commits().expect("commits");
    let committers: Vec<&str> = commits.iter().map(|c| c.agent.as_str()).collect();
    assert_eq!(committers, ["first", "flaky", "last"], "each agent committed once");
    let context = journal.context().expect("context");
    for (key, entry) in report.context.iter() {
        assert_eq!(context.get(key).map(Vec::as_slice), Some(&entry.value[..]), "{key}");
    }
}

#[tokio::test]
async fn resuming_is_refused_when_the_workflow_changed_unless_forced() {
    let (project, workflow) = project();
    let state = project.path().join(".ensemble");
    let engine = ensemble_tests::engine();
    crate::bounded(engine.run(&workflow, journaled(&engine, &workflow, &state, "r2"))).await;
    let mut text = std::fs::read_to_string(workflow.path()).expect("read");
    text.push_str("# edited\n");
    std::fs::write(workflow.path(), text).expect("write");

    let journal = Arc::new(Journal::open(&path_of(&state, "r2")).expect("opens"));
    let refused =
        crate::bounded(engine.resume(&workflow, journal.clone(), RunOptions::default(), false)).await;
    let message = refused.expect_err("refused").to_string();
    assert!(message.contains("changed since the run started") && message.contains("--force"), "{message}");
    let forced =
        crate::bounded(engine.resume(&workflow, journal, RunOptions::default(), true)).await.expect("forced");
    assert!(forced.succeeded(), "{forced:#?}");
}

#[test]
fn the_commands_list_runs_show_context_and_resume() {
    let (project, workflow) = project();
    let state = project.path().join("state");
    let state_arg = state.to_string_lossy().into_owned();
    let path = workflow.path().to_string_lossy().into_owned();
    let (code, out, _) = cli(&["run", &path, "--state-dir", &state_arg, "--run-id", "cli1", "--quiet"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ensemble resume cli1 --state-dir"), "the summary says how to finish it:\n{out}");

    let (code, out, _) = cli(&["runs", "--state-dir", &state_arg]);
    assert_eq!(code, 0);
    assert!(out.contains("cli1") && out.contains("failed"), "{out}");

    let (code, out, err) = cli(&["resume", "cli1", "--state-dir", &state_arg, "--quiet"]);
    assert_eq!(code, 0, "{out}\n{err}");

    let (code, out, _) = cli(&["context", "cli1", "--state-dir", &state_arg, "--json"]);
    assert_eq!(code, 0);
    let context: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(context["last.value"], "ok");
    let (_, out, _) = cli(&["context", "cli1", "first", "--history", "--state-dir", &state_arg]);
    assert!(out.contains("first.value") && !out.contains("last.value") && out.contains("[first]"), "{out}");
}

#[test]
fn a_damaged_journal_is_a_clear_error() {
    let project = Project::new();
    let runs = project.path().join("state/runs");
    std::fs::create_dir_all(&runs).expect("mkdir");
    std::fs::write(runs.join("bad.redb"), b"this is not a journal at all, just text").expect("write");
    let state_arg = project.path().join("state").to_string_lossy().into_owned();

    let (code, _, err) = cli(&["resume", "bad", "--state-dir", &state_arg]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.redb") && err.contains("journal"), "{err}");
    let (code, _, err) = cli(&["runs", "--state-dir", &state_arg]);
    assert_eq!(code, 0);
    assert!(err.contains("bad.redb: unreadable"), "{err}");
    let (code, _, err) = cli(&["resume", "nope", "--state-dir", &state_arg]);
    assert_eq!(code, 2);
    assert!(err.contains("no such run journal"), "{err}");
}

/// A run killed before it committed its inputs resumes with them: they are
/// in the run record.
#[tokio::test]
async fn a_run_killed_before_its_inputs_resumes_with_them() {
    let project = Project::new();
    project.component("copy", &copier("input.doc", "copy.value"));
    let workflow = project.workflow("agents:\n  copy: {component: copy.wasm}\n");
    let state = project.path().join(".ensemble");
    let engine = ensemble_tests::engine();
    let journal = engine.create_journal(&workflow, &state, "early").expect("journal");
    let inputs = std::collections::BTreeMap::from([("doc".to_owned(), b"\xa2hi".to_vec())]);
    journal.set_inputs(&inputs).expect("inputs recorded");
    // ... and the process died here.
    let report = crate::bounded(engine.resume(&workflow, Arc::new(journal), RunOptions::default(), false))
        .await
        .expect("resumes");
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(&report.context.get("copy.value").expect("copied").value[..], b"\xa2hi");
}

#[test]
fn a_journal_in_use_says_so() {
    let project = Project::new();
    project.component("first", &writer("first.value"));
    let workflow = project.workflow("agents:\n  first: {component: first.wasm}\n");
    let state = project.path().join(".ensemble");
    let engine = ensemble_tests::engine();
    let _open = engine.create_journal(&workflow, &state, "busy").expect("journal");
    let error = Journal::open(&path_of(&state, "busy")).expect_err("locked");
    assert!(error.to_string().contains("in use by another ensemble process"), "{error}");
}

#[tokio::test]
async fn a_resumed_run_drops_the_report_of_its_previous_part() {
    let project = Project::new();
    project.component("a", &writer("a.value"));
    let workflow = project.workflow("agents:\n  a: {component: a.wasm}\n");
    let engine = ensemble_tests::engine();
    let journal =
        Arc::new(engine.create_journal(&workflow, &project.path().join("state"), "r1").expect("journal"));
    let options = RunOptions { journal: Some(journal.clone()), ..Default::default() };
    let report = crate::bounded(engine.run(&workflow, options)).await;
    assert!(report.succeeded());
    // Whoever finishes the run (the command line, an application) keeps the
    // metrics it computed once as the journal's run report.
    let metrics = report.metrics(&workflow);
    ensemble::report::finish_journal(&journal, &report, &metrics).expect("finished");
    let journaled = journal.report::<RunMetrics>().expect("readable").expect("a finished run has its report");
    assert_eq!(journaled, metrics);
    assert_eq!(journaled.agents.len(), 1);
    // What a resume does first: until this part ends, there is no report.
    journal.set_resumed(&journal.run().expect("run record")).expect("resumed");
    assert!(
        journal.report::<RunMetrics>().expect("readable").is_none(),
        "no stale report from the previous part"
    );
}
