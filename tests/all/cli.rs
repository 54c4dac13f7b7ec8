//! The command line, run in-process: output, exit codes, bad input.

use crate::run_cli as ensemble;
use ensemble_cli::{EXIT_FAILED, EXIT_INVALID, EXIT_OK};
use ensemble_tests::{Project, component_wat, plain, repo_root, writer};

#[test]
fn hello_example_runs() {
    let workflow = repo_root().join("examples/hello/workflow.yaml");
    let cache = tempfile::tempdir().expect("tempdir");
    let cache_arg = cache.path().to_string_lossy().into_owned();
    let (code, out, err) = ensemble(&["run", &workflow.to_string_lossy(), "--state-dir", &cache_arg]);
    assert_eq!(code, EXIT_OK, "stdout:\n{out}\nstderr:\n{err}");
    for expected in ["greeter", "shouter", "counter", "greeter.message", "shouter.message", "counter.stats"] {
        assert!(out.contains(expected), "{expected} missing from:\n{out}");
    }
}

#[test]
fn a_failed_agent_exits_1() {
    let project = Project::new();
    project.component("a", &writer("a.value")).component("b", &plain("unreachable"));
    let path = project.workflow_file("agents:\n  a:\n    component: a.wasm\n  b:\n    component: b.wasm\n");
    let (code, out, _) = ensemble(&["run", &path.to_string_lossy()]);
    assert_eq!(code, EXIT_FAILED);
    assert!(out.contains("FAILED") && out.contains("a.value"), "{out}");
}

#[test]
fn missing_workflow_exits_2_naming_it() {
    let (code, _, err) = ensemble(&["run", "/nonexistent/flow.yaml"]);
    assert_eq!(code, EXIT_INVALID);
    assert!(err.contains("/nonexistent/flow.yaml"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn missing_component_exits_2_with_its_line() {
    let project = Project::new();
    let path = project.workflow_file("agents:\n  a:\n    component: nowhere.wasm\n");
    let (code, _, err) = ensemble(&["run", &path.to_string_lossy()]);
    assert_eq!(code, EXIT_INVALID);
    assert!(err.contains("workflow.yaml:3:") && err.contains("nowhere.wasm"), "{err}");
}

#[test]
fn unusable_components_exit_2_before_anything_runs() {
    let project = Project::new();
    project
        .component("a", &writer("a.value"))
        .component("garbage", b"garbage")
        .component("empty", &component_wat("(component)"));
    let path = project.workflow_file(
        "agents:\n  a:\n    component: a.wasm\n  garbage:\n    component: garbage.wasm\n  empty:\n    component: empty.wasm\n",
    );
    let (code, out, err) = ensemble(&["run", &path.to_string_lossy()]);
    assert_eq!(code, EXIT_INVALID);
    assert!(out.is_empty(), "nothing ran: {out}");
    assert_eq!(err.lines().count(), 2, "one line per unusable component: {err}");
    assert!(err.contains("agent `garbage`") && err.contains("agent `empty`"), "{err}");
}

#[test]
fn help_explains_the_commands() {
    let (code, out, _) = ensemble(&["--help"]);
    assert_eq!(code, EXIT_OK);
    assert!(out.contains("run"), "{out}");
}

#[test]
fn check_accepts_the_examples_and_reports_problems() {
    let hello = repo_root().join("examples/hello/workflow.yaml");
    let (code, out, _) = ensemble(&["check", &hello.to_string_lossy()]);
    assert_eq!(code, EXIT_OK);
    assert!(out.contains("ok: workflow `hello`, 3 agents"), "{out}");

    // The BMAD agents are not built yet: the file itself must still check.
    let bmad = repo_root().join("examples/bmad/workflow.yaml");
    let (code, out, err) = ensemble(&["check", "--no-components", &bmad.to_string_lossy()]);
    assert_eq!(code, EXIT_OK, "{err}");
    assert!(out.contains("6 agents, 1 groups"), "{out}");

    let project = Project::new();
    let path = project.workflow_file("agents:\n  a:\n    component: a.wasm\n    needs: [b]\n");
    let (code, _, err) = ensemble(&["check", &path.to_string_lossy()]);
    assert_eq!(code, EXIT_INVALID);
    assert_eq!(err.lines().count(), 2, "every problem, one a line: {err}");
}

#[test]
fn schema_is_json_schema_of_the_file() {
    let (code, out, _) = ensemble(&["schema"]);
    assert_eq!(code, EXIT_OK);
    let schema: serde_json::Value = serde_json::from_str(&out).expect("schema is JSON");
    assert_eq!(schema["title"], "Ensemble workflow");
    assert!(schema["$defs"]["AgentFile"]["properties"]["needs"].is_object(), "{schema}");
}

/// A component with `extra` bytes of custom section appended (valid, and
/// ignored by the compiler): large enough for the live view's loading lines.
fn padded(mut component: Vec<u8>, extra: usize) -> Vec<u8> {
    let name = b"padding";
    let mut size = name.len() + 1 + extra;
    component.push(0);
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        component.push(if size == 0 { byte } else { byte | 0x80 });
        if size == 0 {
            break;
        }
    }
    component.push(name.len() as u8);
    component.extend_from_slice(name);
    component.resize(component.len() + extra, 0);
    component
}

#[test]
fn a_large_components_loading_is_shown_once_before_the_run() {
    let project = Project::new();
    project.component("big", &padded(writer("big.value"), 2 << 20));
    let path = project.workflow_file("agents:\n  big:\n    component: big.wasm\n");
    let state = project.path().join("state");
    let (code, out, err) =
        ensemble(&["run", &path.to_string_lossy(), "--state-dir", &state.to_string_lossy()]);
    assert_eq!(code, EXIT_OK, "stdout:\n{out}\nstderr:\n{err}");
    // The live view's lines (on stderr, stamped): the loading once, then the run.
    let line = |what: &str| err.lines().position(|l| l.contains(what));
    assert_eq!(err.matches("load     big.wasm (2.0 MiB)").count(), 1, "stderr:\n{err}\nstdout:\n{out}");
    assert_eq!(err.matches("compiled big.wasm (2.0 MiB)").count(), 1, "{err}");
    let (load, compiled, start) =
        (line("load     big.wasm"), line("compiled big.wasm"), line("start    big"));
    assert!(load < compiled && compiled < start && load.is_some(), "loading, then the run:\n{err}");
    assert!(out.starts_with("grants: none"), "the grants head the report:\n{out}");
}

/// A run's journal is next to its workflow: `runs`, `report` and `context`
/// without `--state-dir`, from the folder above, find it there.
#[test]
fn journal_commands_find_a_run_next_to_its_workflow() {
    let project = Project::new();
    let folder = project.path().join("team/flow");
    std::fs::create_dir_all(&folder).expect("mkdir");
    std::fs::write(folder.join("a.wasm"), writer("a.value")).expect("component");
    std::fs::write(folder.join("workflow.yaml"), "agents:\n  a: {component: a.wasm}\n").expect("workflow");
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ensemble-cli"))
            .args(args)
            .current_dir(project.path())
            .env("XDG_STATE_HOME", project.path().join("user-state"))
            .output()
            .expect("the CLI runs");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (output.status.code(), text(&output.stdout), text(&output.stderr))
    };
    let (code, out, err) = cli(&["run", "team/flow/workflow.yaml"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(folder.join(".ensemble/runs").is_dir(), "journaled next to the workflow");
    let (code, out, err) = cli(&["runs"]);
    assert_eq!(code, Some(0), "{err}");
    let run_id = out.split_whitespace().next().expect("one run listed").to_owned();
    assert!(out.contains("team/flow/workflow.yaml") || out.contains("workflow.yaml"), "{out}");
    let (code, out, err) = cli(&["report", &run_id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&run_id), "{out}");
    let (code, out, err) = cli(&["context", &run_id, "a.value"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("a.value"), "{out}");
    // Named explicitly, a folder without runs says so.
    let (code, _, err) = cli(&["runs", "--state-dir", "elsewhere"]);
    assert_eq!(code, Some(0));
    assert!(err.contains("no runs journaled in elsewhere"), "{err}");
}
