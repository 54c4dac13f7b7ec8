//! Crash safety: the real CLI killed with SIGKILL at many moments of a run,
//! then resumed, ends with the same context as a run never interrupted, and
//! no agent that had committed runs again.
//!
//! `CRASH_POINTS=50 cargo test -p ensemble-tests --test all crash` (or
//! `scripts/crash.sh`) tries more moments than CI's 10.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ensemble::journal::{Journal, path_of};
use ensemble_tests::{Project, busy, copier};

/// Eight agents: busy loops (each some tens of ms) and copiers, in a shape
/// with parallel parts.
fn project() -> Project {
    let project = Project::new();
    for i in 0..6 {
        project.component(&format!("b{i}"), &busy(&format!("b{i}.value"), 40_000_000));
    }
    project.component("c0", &copier("b1.value", "c0.value"));
    project.component("c1", &copier("b4.value", "c1.value"));
    project.workflow_file(
        "resources: {max_concurrent: 2}
agents:
  b0: {component: b0.wasm}
  b1: {component: b1.wasm, needs: [b0]}
  b2: {component: b2.wasm, needs: [b0]}
  c0: {component: c0.wasm, needs: [b1]}
  b3: {component: b3.wasm, needs: [b2, c0]}
  b4: {component: b4.wasm, needs: [b3]}
  b5: {component: b5.wasm, needs: [b3]}
  c1: {component: c1.wasm, needs: [b4, b5]}
",
    );
    project
}

fn ensemble(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ensemble-cli"));
    command.args(args).args(["--quiet", "--no-cache"]).stdout(Stdio::null()).stderr(Stdio::piped());
    command
}

/// Run the CLI to its end (killed, and the test failed, after two minutes);
/// returns how long it ran and when `watch` (if given) first existed.
fn run_to_end(args: &[&str], watch: Option<&Path>) -> (Duration, Option<Duration>) {
    let mut child = ensemble(args).spawn().expect("the CLI runs");
    let started = Instant::now();
    let mut appeared = None;
    while child.try_wait().expect("the CLI is waited for").is_none() {
        if appeared.is_none() && watch.is_some_and(Path::exists) {
            appeared = Some(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let output = child.wait_with_output().expect("reaped");
            panic!("{args:?} still running after 2 minutes: {}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let total = started.elapsed();
    let output = child.wait_with_output().expect("the CLI ends");
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    (total, appeared)
}

/// Agent → the versions of its commits, from the journal.
fn commits_by_agent(journal: &Journal) -> BTreeMap<String, Vec<u64>> {
    let mut by_agent: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for commit in journal.commits().expect("commits readable") {
        by_agent.entry(commit.agent).or_default().push(commit.version);
    }
    by_agent
}

#[test]
fn killed_runs_resume_to_the_context_of_an_uninterrupted_run() {
    let points: u32 = std::env::var("CRASH_POINTS").ok().and_then(|p| p.parse().ok()).unwrap_or(10);
    let project = project();
    let workflow = project.path().join("workflow.yaml").to_string_lossy().into_owned();
    let state = project.path().join("state");
    let state_arg = state.to_string_lossy().into_owned();
    let journal = |id: &str| path_of(&state, id);

    // Warm the compiled-component cache, then time two uninterrupted runs
    // and see when their journals appeared; the quicker of each, so that a
    // run slowed by a busy machine does not push the kills past the end.
    run_to_end(&["run", &workflow, "--state-dir", &state_arg, "--run-id", "warm"], None);
    let (mut total, mut journaled) = (Duration::MAX, Duration::MAX);
    for id in ["timing", "reference"] {
        let (took, appeared) =
            run_to_end(&["run", &workflow, "--state-dir", &state_arg, "--run-id", id], Some(&journal(id)));
        total = total.min(took);
        journaled = journaled.min(appeared.expect("the run was journaled"));
    }
    let reference = Journal::open(&journal("reference")).expect("journal").context().expect("context");
    assert_eq!(reference.len(), 8);

    // `points` kills spread over the run, then a few around the moment the
    // journal is created (a kill there must leave a whole journal or none).
    let spread = (0..points).map(|k| total.mul_f64(f64::from(k + 1) / f64::from(points + 1)));
    let around_creation = [0.6, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4].map(|f| journaled.mul_f64(f));
    // Where each spread kill landed: before the journal existed, during the
    // run (the process died of the kill), or after the run had ended.
    let (mut before_journal, mut mid_run, mut after_end) = (0, 0, 0);
    for (k, delay) in spread.chain(around_creation).enumerate() {
        let is_spread = k < points as usize;
        let id = format!("crash{k}");
        let mut child = ensemble(&["run", &workflow, "--state-dir", &state_arg, "--run-id", &id])
            .spawn()
            .expect("the CLI starts");
        std::thread::sleep(delay);
        child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
        let status = child.wait().expect("reaped");

        // Only a journal that does not exist means "killed before the run
        // began": nothing to resume, nothing committed to lose. A journal
        // that exists but cannot be opened is the bug this test is for.
        if !journal(&id).exists() {
            before_journal += usize::from(is_spread);
            continue;
        }
        let before = match Journal::open(&journal(&id)) {
            Ok(j) => commits_by_agent(&j),
            Err(e) => {
                panic!("kill point {k} ({delay:?}, {status}): the journal is unreadable after a kill: {e}")
            }
        };
        if is_spread {
            *(if status.success() { &mut after_end } else { &mut mid_run }) += 1;
        }
        run_to_end(&["resume", &id, "--state-dir", &state_arg], None);

        let after = Journal::open(&journal(&id)).expect("journal after resume");
        assert_eq!(after.context().expect("context"), reference, "kill point {k} ({delay:?})");
        let commits = commits_by_agent(&after);
        for (agent, versions) in &commits {
            assert_eq!(versions.len(), 1, "kill point {k}: `{agent}` committed {versions:?}");
        }
        for (agent, versions) in &before {
            assert_eq!(
                commits.get(agent),
                Some(versions),
                "kill point {k}: `{agent}` ran again after resume"
            );
        }
    }
    println!(
        "{points} kill points over a {total:?} run (journal created at {journaled:?}): {mid_run} mid-run, {before_journal} before the journal existed, {after_end} after the run ended"
    );
    assert!(
        mid_run * 2 >= points as usize,
        "only {mid_run} of {points} kills landed mid-run ({before_journal} before the journal, {after_end} after the end; {total:?})"
    );
}
