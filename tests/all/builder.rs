//! The run builder (`ensemble::run`): everything `ensemble run` does, for an
//! application embedding the library.

use std::path::Path;
use std::time::Duration;

use ensemble::journal::Journal;
use ensemble::run::{RunBuilder, RunError};
use ensemble::{EventKind, Workflow};
use ensemble_tests::{Project, clocked, copier, fails_first, writer};

/// A folder whose permissions say nobody writes it, for as long as it lives
/// (root included: the builder honours the permissions).
struct ReadOnly<'a>(&'a Path);

impl<'a> ReadOnly<'a> {
    fn new(dir: &'a Path) -> Self {
        set_mode(dir, 0o555);
        Self(dir)
    }
}

impl Drop for ReadOnly<'_> {
    fn drop(&mut self) {
        set_mode(self.0, 0o755);
    }
}

fn set_mode(dir: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_id_names_the_journal_the_events_and_the_report() {
    let project = Project::new();
    project.component("w", &writer("w.value"));
    let workflow = project.workflow("agents:\n  w: {component: w.wasm}\n");
    let state = project.path().join("state");
    let mut run = RunBuilder::new(workflow).state_dir(&state).start().await.expect("starts");
    let run_id = run.run_id().to_owned();
    let mut events = run.events();
    let finished = crate::bounded(run.finish()).await.expect("finishes");
    let mut started = None;
    while let Some(event) = events.next().await {
        if let EventKind::RunStarted { run_id, .. } = event.kind {
            started = Some(run_id);
        }
    }
    assert!(finished.succeeded(), "{:#?}", finished.report);
    assert_eq!(started.as_deref(), Some(run_id.as_str()), "the events' run id");
    assert_eq!(finished.report.run_id, run_id, "the report's");
    assert_eq!(finished.metrics.run_id, run_id, "the metrics'");
    let journal_path = finished.journal.clone().expect("journaled");
    assert_eq!(journal_path, ensemble::journal::path_of(&state, &run_id));
    let journal = Journal::open(&journal_path).expect("the journal opens");
    assert_eq!(journal.run().expect("record").run_id, run_id, "the journal's");
    let stored =
        journal.report::<ensemble::RunMetrics>().expect("report").expect("the journal keeps the report");
    assert_eq!(stored.run_id, run_id, "the journaled report's");
    let json: serde_json::Value = serde_json::from_str(&finished.json()).expect("the report is JSON");
    assert_eq!(json["run_id"], run_id.as_str(), "the JSON report's");
    assert_eq!(json["agents"][0]["agent"], "w", "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_are_journaled_and_a_resumed_run_finds_them() {
    let project = Project::new();
    project.component("copy", &copier("input.topic", "copy.topic"));
    project.component("flaky", &fails_first(1, "flaky.value"));
    project.component("last", &copier("input.topic", "last.topic"));
    let workflow = project.workflow(
        "agents:\n  copy: {component: copy.wasm}\n  flaky: {component: flaky.wasm, needs: [copy]}\n  last: {component: last.wasm, needs: [flaky]}\n",
    );
    let state = project.path().join("state");
    let topic = rmp_serde::to_vec("wasm").expect("msgpack");
    let first = RunBuilder::new(workflow.clone()).state_dir(&state).input("topic", topic.clone());
    let first = crate::bounded(first.start().await.expect("starts").finish()).await.expect("ends");
    assert!(!first.succeeded(), "flaky fails its first attempt");
    let run_id = first.report.run_id.clone();
    let journal = Journal::open_in(&state, &run_id).expect("opens");
    let recorded = journal.run().expect("record").inputs;
    assert_eq!(recorded.get("topic").map(|v| v.to_vec()), Some(topic.clone()), "the input is journaled");
    drop(journal);

    // A new builder, given only the run id: no inputs.
    let resumed = RunBuilder::new(workflow).state_dir(&state).resume(&run_id);
    let resumed = crate::bounded(resumed.start().await.expect("starts").finish()).await.expect("resumes");
    assert!(resumed.succeeded(), "{:#?}", resumed.report);
    assert_eq!(resumed.report.run_id, run_id);
    assert!(resumed.report.agent("copy").expect("copy").resumed, "copy is not run again");
    let last = &resumed.report.context.get("last.topic").expect("last found the input").value;
    assert_eq!(&last[..], &topic[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_of_a_changed_workflow_is_refused_before_anything_runs() {
    let project = Project::new();
    project.component("w", &writer("w.value"));
    let path = project.workflow_file("agents:\n  w: {component: w.wasm}\n");
    let state = project.path().join("state");
    let workflow = Workflow::load(&path).expect("loads");
    let run = RunBuilder::new(workflow).state_dir(&state).start().await.expect("starts");
    let run_id = crate::bounded(run.finish()).await.expect("ends").report.run_id;
    std::fs::write(&path, "agents:\n  w: {component: w.wasm}\n# edited\n").expect("edit");
    let workflow = Workflow::load(&path).expect("loads");
    match RunBuilder::new(workflow).state_dir(&state).resume(&run_id).start().await {
        Err(RunError::Invalid(lines)) => {
            assert!(lines[0].contains("changed since the run started"), "{lines:?}")
        }
        other => panic!("not refused: {other:?}"),
    }
}

/// Six agents that each spin 1.5 s on a real clock, six at once allowed:
/// an engine sized by `RuntimeConfig::default()` (3 instances) would take
/// at least 3 s; sized from the workflow, they run together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_is_sized_from_the_workflow_so_more_than_three_agents_run_at_once() {
    let spin = Duration::from_millis(1500);
    let project = Project::new();
    for i in 0..6 {
        project.component(&format!("a{i}"), &clocked(&format!("a{i}.spun"), spin));
    }
    let agents: String = (0..6).map(|i| format!("  a{i}: {{component: a{i}.wasm, wasi: true}}\n")).collect();
    let workflow = project
        .workflow(&format!("resources: {{cpu: 100, memory: 100, max_concurrent: 6}}\nagents:\n{agents}"));
    let run = RunBuilder::new(workflow).state_dir(project.path().join("state")).journal(false).cache(false);
    let finished = crate::bounded(run.start().await.expect("starts").finish()).await.expect("ends");
    assert!(finished.succeeded(), "{:#?}", finished.report);
    let run_time = finished.report.elapsed;
    assert!(run_time < 2 * spin - Duration::from_millis(200), "the six ran in {run_time:?}: not at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_ends_with_the_runs_last_event_even_when_read_after_the_run() {
    let project = Project::new();
    project.component("a", &writer("a.value")).component("b", &copier("a.value", "b.value"));
    let workflow =
        project.workflow("agents:\n  a: {component: a.wasm}\n  b: {component: b.wasm, needs: [a]}\n");
    let mut run = RunBuilder::new(workflow)
        .journal(false)
        .state_dir(project.path().join("s"))
        .start()
        .await
        .expect("starts");
    let mut events = run.events();
    // The reader starts only once the run is over, as an application that
    // awaits the run first would.
    let finished = crate::bounded(run.finish()).await.expect("ends");
    let mut kinds = Vec::new();
    while let Some(event) = crate::bounded(events.next()).await {
        kinds.push(event.kind);
    }
    assert!(finished.succeeded());
    // The components' loading comes first (it is part of the run), then the run.
    let first = kinds
        .iter()
        .find(|k| !matches!(k, EventKind::ComponentLoadStarted { .. } | EventKind::ComponentLoaded { .. }));
    assert!(matches!(first, Some(EventKind::RunStarted { .. })), "{kinds:?}");
    assert!(kinds.iter().any(|k| matches!(k, EventKind::ComponentLoaded { .. })), "{kinds:?}");
    assert!(matches!(kinds.last(), Some(EventKind::RunDone { succeeded: true, .. })), "{kinds:?}");
    let committed = kinds.iter().filter(|k| matches!(k, EventKind::Committed { .. })).count();
    assert_eq!(committed, 2, "{kinds:?}");
    assert_eq!(events.missed(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_in_a_read_only_folder_runs_with_its_state_elsewhere() {
    let project = Project::new();
    project.component("w", &writer("w.value"));
    let path = project.workflow_file("agents:\n  w: {component: w.wasm}\n");
    let before = listing(project.path());
    let state = tempfile::tempdir().expect("tempdir");
    let _read_only = ReadOnly::new(project.path());
    for attempt in ["first", "second"] {
        let workflow = Workflow::load(&path).expect("loads");
        let run = RunBuilder::new(workflow).state_dir(state.path());
        let finished = crate::bounded(run.start().await.expect("starts").finish()).await.expect("ends");
        assert!(finished.succeeded(), "{attempt}: {:#?}", finished.report);
        let cached = finished.report.agent("w").is_some_and(|a| a.cached);
        assert_eq!(cached, attempt == "second", "{attempt}: the output cache is in the state directory");
    }
    assert_eq!(listing(project.path()), before, "nothing was written next to the workflow");
    assert!(state.path().join("cache").is_dir() && state.path().join("runs").is_dir());
}

/// The command line, with no `--state-dir`: the per-user state directory
/// takes the journal and both caches.
#[test]
fn the_cli_keeps_the_state_of_a_read_only_workflow_in_the_users_state_directory() {
    let project = Project::new();
    project.component("w", &writer("w.value"));
    let path = project.workflow_file("agents:\n  w: {component: w.wasm}\n");
    let before = listing(project.path());
    let home = tempfile::tempdir().expect("tempdir");
    let _read_only = ReadOnly::new(project.path());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ensemble-cli"))
        .args(["run", path.to_str().expect("utf-8"), "--quiet", "--run-id", "ro1"])
        .env("XDG_STATE_HOME", home.path())
        .output()
        .expect("the binary runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}{stderr}");
    let user = home.path().join("ensemble");
    assert!(user.join("runs/ro1.redb").is_file(), "{stdout}");
    assert!(user.join("compiled").is_dir() && user.join("cache").is_dir(), "{:?}", listing(&user));
    assert!(stdout.contains(&user.join("runs/ro1.redb").display().to_string()), "it says where: {stdout}");
    assert_eq!(listing(project.path()), before, "nothing was written next to the workflow");
}

#[test]
fn a_run_refuses_a_runtime_it_cannot_use() {
    let project = Project::new();
    project.component("w", &writer("w.value"));
    let workflow = project.workflow("agents:\n  w: {component: w.wasm}\n");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let started = runtime.block_on(RunBuilder::new(workflow).journal(false).start());
    match started {
        Err(RunError::Failed(why)) => assert!(why.contains("multi-thread"), "{why}"),
        other => panic!("not refused: {other:?}"),
    }
}

/// Components compile inside `prepare`, which blocks: a view subscribed to
/// the builder sees each compilation start while `prepare` still works,
/// and the run's own stream still has those events, first.
#[test]
fn component_loading_is_seen_while_prepare_blocks() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let workflow =
        Workflow::load(ensemble_tests::repo_root().join("examples/bmad/workflow.yaml")).expect("loads");
    let builder = RunBuilder::new(workflow)
        .journal(false)
        .state_dir(scratch.path().join("state"))
        .compiled_dir(scratch.path().join("compiled"));
    let mut loading = builder.subscribe();
    let preparing = std::thread::spawn(move || {
        let prepared = builder.prepare();
        (prepared, std::time::Instant::now())
    });
    let first = loading.blocking_recv().expect("an event while preparing");
    let seen = std::time::Instant::now();
    assert!(matches!(first.kind, EventKind::ComponentLoadStarted { .. }), "{:?}", first.kind);
    let (prepared, returned) = preparing.join().expect("prepare does not panic");
    let prepared = prepared.expect("prepares");
    // Six components compiled from scratch take far longer than a wake-up.
    assert!(seen < returned, "the first loading event came only after prepare returned");
    let runtime = ensemble::run::tokio_runtime().expect("runtime");
    runtime.block_on(async {
        let mut run = prepared.start().expect("starts");
        let mut events = run.events();
        let (mut started, mut loaded) = (0, 0);
        while let Some(event) = crate::bounded(events.next()).await {
            match event.kind {
                EventKind::ComponentLoadStarted { .. } => started += 1,
                EventKind::ComponentLoaded { .. } => loaded += 1,
                EventKind::RunStarted { .. } => break,
                _ => {}
            }
        }
        // One per component of the six BMAD agents (some may share one).
        assert!(
            loaded >= 1 && loaded == started,
            "the run's stream has the loading first: {started}, {loaded}"
        );
        run.cancel();
        let _ = crate::bounded(run.finish()).await;
    });
}
