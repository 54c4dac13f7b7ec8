//! Crash safety: the real CLI killed with SIGKILL at many moments of a run,
//! then resumed, ends with the same context as a run never interrupted, and
//! no agent that had committed runs again.
//!
//! `CRASH_POINTS=50 cargo test -p ensemble-tests --test all crash` (or
//! `scripts/crash.sh`) tries more moments than CI's 10.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

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

fn run_to_end(args: &[&str]) {
    let output = ensemble(args).output().expect("the CLI runs");
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
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

    // Warm the compiled-component cache, then time an uninterrupted run.
    run_to_end(&["run", &workflow, "--state-dir", &state_arg, "--run-id", "warm"]);
    let started = Instant::now();
    run_to_end(&["run", &workflow, "--state-dir", &state_arg, "--run-id", "reference"]);
    let total = started.elapsed();
    let reference = Journal::open(&journal("reference")).expect("journal").context().expect("context");
    assert_eq!(reference.len(), 8);

    let mut interrupted = 0;
    for k in 0..points {
        let id = format!("crash{k}");
        let delay = total.mul_f64(f64::from(k + 1) / f64::from(points + 1));
        let mut child = ensemble(&["run", &workflow, "--state-dir", &state_arg, "--run-id", &id])
            .spawn()
            .expect("the CLI starts");
        std::thread::sleep(delay);
        child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
        let status = child.wait().expect("reaped");

        let before = match Journal::open(&journal(&id)) {
            Ok(j) => commits_by_agent(&j),
            // Killed before (or while) the journal was created: there is
            // nothing to resume, so nothing committed can be lost.
            Err(_) => {
                remove(&journal(&id));
                continue;
            }
        };
        if !status.success() {
            interrupted += 1;
        }
        run_to_end(&["resume", &id, "--state-dir", &state_arg]);

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
    assert!(interrupted >= points / 2, "only {interrupted} of {points} kills hit a running run ({total:?})");
}

fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}
