//! Bad input users hit, through the command line: each is refused with one
//! clear line naming the file (and line where there is one), exit code 2,
//! and nothing written (no state directory, journal, cache or outputs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use crate::run_cli;
use ensemble_cli::{EXIT_FAILED, EXIT_INVALID, EXIT_OK};
use ensemble_tests::{Project, copier, plain, repo_root, writer, writer_of};

/// Every file under `dir` with its bytes, to show that nothing was written.
fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                files.insert(path.clone(), Vec::new());
                stack.push(path);
            } else if kind.is_file() {
                files.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
            } else {
                files.insert(path, Vec::new());
            }
        }
    }
    files
}

/// Run `args` in `project` and expect it refused: exit 2, one line on
/// stderr holding every needle, nothing on stdout, nothing written.
#[track_caller]
fn refused(project: &Project, args: &[&str], needles: &[&str]) -> String {
    let before = files_under(project.path());
    let (code, out, err) = run_cli(args);
    assert_eq!(code, EXIT_INVALID, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    for needle in needles {
        assert!(err.contains(needle), "`{needle}` missing from: {err}");
    }
    assert!(out.is_empty(), "nothing ran: {out}");
    let after = files_under(project.path());
    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>(), "nothing written: {err}");
    // Journals opened to be read may have their bookkeeping rewritten by redb.
    let changed: Vec<&PathBuf> = after
        .iter()
        .filter(|(path, bytes)| before.get(*path) != Some(bytes))
        .map(|(path, _)| path)
        .filter(|path| path.extension().is_none_or(|e| e != "redb"))
        .collect();
    assert!(changed.is_empty(), "no file changed: {changed:?}: {err}");
    err
}

fn s(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// A project with one good agent `a` (writes `a.value`).
fn one_agent() -> (Project, PathBuf) {
    let project = Project::new();
    project.component("a", &writer("a.value"));
    let path = project.workflow_file("agents:\n  a:\n    component: a.wasm\n");
    (project, path)
}

// --- --input -----------------------------------------------------------

#[test]
fn an_input_without_equals_is_refused() {
    let (project, path) = one_agent();
    std::fs::write(project.path().join("brief.yaml"), "a: 1\n").expect("write input");
    let brief = project.path().join("brief.yaml");
    refused(&project, &["run", s(&path), "--input", s(&brief)], &["--input", "NAME=FILE", "brief.yaml"]);
}

#[test]
fn a_missing_input_file_is_refused_naming_it() {
    let (project, path) = one_agent();
    let arg = format!("brief={}", project.path().join("nowhere.yaml").display());
    refused(&project, &["run", s(&path), "--input", &arg], &["nowhere.yaml"]);
}

#[test]
fn a_bad_yaml_or_json_input_is_refused_with_its_line() {
    let (project, path) = one_agent();
    std::fs::write(project.path().join("brief.yaml"), "title: ok\nitems: [1, 2\n").expect("write input");
    let arg = format!("brief={}", project.path().join("brief.yaml").display());
    refused(&project, &["run", s(&path), "--input", &arg], &["brief.yaml:"]);

    std::fs::write(project.path().join("brief.json"), "{\n  \"a\": 1,,\n}\n").expect("write input");
    let arg = format!("brief={}", project.path().join("brief.json").display());
    refused(&project, &["run", s(&path), "--input", &arg], &["brief.json:2:"]);
}

#[test]
fn an_invalid_input_name_is_refused() {
    let (project, path) = one_agent();
    std::fs::write(project.path().join("brief.yaml"), "a: 1\n").expect("write input");
    let file = project.path().join("brief.yaml");
    for name in ["bad name", "", "a..b"] {
        let arg = format!("{name}={}", file.display());
        refused(&project, &["run", s(&path), "--input", &arg], &["--input"]);
    }
}

#[test]
fn an_input_name_under_the_reserved_prefix_or_given_twice_is_refused() {
    let (project, path) = one_agent();
    std::fs::write(project.path().join("brief.yaml"), "a: 1\n").expect("write input");
    let arg = format!("input.brief={}", project.path().join("brief.yaml").display());
    refused(&project, &["run", s(&path), "--input", &arg], &["input.brief", "--input brief="]);

    let arg = format!("brief={}", project.path().join("brief.yaml").display());
    refused(&project, &["run", s(&path), "--input", &arg, "--input", &arg], &["brief", "twice"]);
}

// --- the workflow file ---------------------------------------------------

/// `check` and `run` both refuse `yaml` with one line holding the needles.
#[track_caller]
fn bad_workflow(yaml: &str, needles: &[&str]) {
    let project = Project::new();
    project.component("a", &writer("a.value")).component("b", &writer("b.value"));
    let path = project.workflow_file(yaml);
    for command in ["check", "run"] {
        let err = refused(&project, &[command, s(&path)], needles);
        assert!(err.contains(&format!("{}:", path.display())), "names the file: {err}");
    }
}

#[test]
fn workflow_syntax_errors_are_one_line_with_a_position() {
    bad_workflow("agents:\n  a:\n    component: a.wasm\n    needs: [b\n", &["workflow.yaml:4:"]);
    bad_workflow("agents:\n\ta:\n\t\tcomponent: a.wasm\n", &["workflow.yaml:2:", "tab"]);
    bad_workflow("agents:\n  a:\n    component: a.wasm\n    needs: 5\n", &["workflow.yaml:4:12:", "a list"]);
}

#[test]
fn an_empty_workflow_is_refused() {
    bad_workflow("", &["workflow.yaml", "empty"]);
    bad_workflow("# nothing but a comment\n", &["workflow.yaml", "empty"]);
}

#[test]
fn a_duplicate_agent_is_refused_at_its_second_line() {
    bad_workflow(
        "agents:\n  a:\n    component: a.wasm\n  b:\n    component: b.wasm\n  a:\n    component: b.wasm\n",
        &["workflow.yaml:6:", "`a`"],
    );
}

// --- outputs -----------------------------------------------------------

/// Run agent `a` (writes `a.value` = "ok") and `n` (writes `n.count` = 7)
/// with `outputs`, quietly, without journal or cache: exit 2, one line, no
/// output directory.
#[track_caller]
fn bad_outputs(outputs: &str, needles: &[&str]) {
    let project = Project::new();
    project.component("a", &writer("a.value")).component("n", &writer_of("n.count", &[0x07]));
    let path = project.workflow_file(&format!(
        "agents:\n  a:\n    component: a.wasm\n  n:\n    component: n.wasm\n{outputs}"
    ));
    let (code, out, err) = run_cli(&["run", s(&path), "--quiet", "--no-journal", "--no-cache"]);
    assert_eq!(code, EXIT_INVALID, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    for needle in needles {
        assert!(err.contains(needle), "`{needle}` missing from: {err}");
    }
    assert!(!project.path().join("out").exists(), "no output written: {err}");
}

#[test]
fn outputs_of_a_key_never_written_or_not_text_write_nothing() {
    let files = |key| {
        format!("outputs:\n  dir: out\n  files:\n    good.md: {{key: a.value}}\n    bad.md: {{key: {key}}}\n")
    };
    bad_outputs(&files("a.never"), &["workflow.yaml:10:", "bad.md", "a.never"]);
    bad_outputs(&files("n.count"), &["workflow.yaml:10:", "bad.md", "n.count", "not a string"]);
}

#[test]
fn outputs_under_a_file_are_refused_before_the_run() {
    let project = Project::new();
    std::fs::write(project.path().join("somefile"), "a file").expect("write file");
    project.component("a", &writer("a.value"));
    let path = project.workflow_file(
        "agents:\n  a:\n    component: a.wasm\noutputs:\n  dir: somefile/out\n  files:\n    a.md: {key: a.value}\n",
    );
    refused(&project, &["run", s(&path)], &["workflow.yaml:5:", "somefile", "not a directory"]);
    refused(&project, &["check", s(&path)], &["workflow.yaml:5:", "somefile"]);
}

// --- resume, context, caches, state ------------------------------------

#[test]
fn resume_after_a_component_changed_is_refused_naming_it() {
    let project = Project::new();
    project.component("a", &writer("a.value")).component("b", &plain("unreachable"));
    let path = project.workflow_file("agents:\n  a:\n    component: a.wasm\n  b:\n    component: b.wasm\n");
    let state = project.path().join("state");
    let (code, out, err) = run_cli(&["run", s(&path), "--quiet", "--run-id", "r1", "--state-dir", s(&state)]);
    assert_eq!(code, EXIT_FAILED, "{out}{err}");
    project.component("b", &writer("b.value"));
    refused(
        &project,
        &["resume", "r1", "--quiet", "--state-dir", s(&state)],
        &["r1", "agent `b`", "b.wasm", "--force"],
    );
    let (code, out, err) = run_cli(&["resume", "r1", "--quiet", "--force", "--state-dir", s(&state)]);
    assert_eq!(code, EXIT_OK, "{out}{err}");
}

#[test]
fn context_of_an_unknown_run_or_key_is_refused() {
    let (project, path) = one_agent();
    let state = project.path().join("state");
    let (code, out, err) = run_cli(&["run", s(&path), "--quiet", "--run-id", "r1", "--state-dir", s(&state)]);
    assert_eq!(code, EXIT_OK, "{out}{err}");
    refused(&project, &["context", "nope", "--state-dir", s(&state)], &["nope", "runs/nope.redb"]);
    refused(&project, &["context", "r1", "a.valeu", "--state-dir", s(&state)], &["r1", "a.valeu", "a.value"]);
    let (code, out, err) = run_cli(&["context", "r1", "a", "--state-dir", s(&state)]);
    assert_eq!(code, EXIT_OK, "{err}");
    assert!(out.contains("a.value"), "a prefix shows its keys: {out}");
}

#[test]
fn a_corrupt_cache_index_is_rebuilt_and_the_run_goes_on() {
    let (project, path) = one_agent();
    let (code, out, err) = run_cli(&["run", s(&path), "--quiet", "--no-journal"]);
    assert_eq!(code, EXIT_OK, "{out}{err}");
    let index = project.path().join(".ensemble/cache/index.msgpack");
    assert!(index.is_file(), "the first run wrote the index");
    std::fs::write(&index, b"\xc1 not msgpack").expect("corrupt the index");
    let (code, out, err) = run_cli(&["run", s(&path), "--quiet", "--no-journal"]);
    assert_eq!(code, EXIT_OK, "{out}{err}");
    assert!(out.contains("cached"), "the entry still hits: {out}");
    let (code, out, err) = run_cli(&["cache", "stats", s(&path)]);
    assert_eq!(code, EXIT_OK, "{err}");
    assert!(out.contains("1 entries"), "{out}");
}

#[test]
fn unwritable_state_dir_report_and_metrics_are_refused_before_the_run() {
    let (project, path) = one_agent();
    let file = project.path().join("somefile");
    std::fs::write(&file, "a file").expect("write file");
    let under = file.join("x");
    refused(
        &project,
        &["run", s(&path), "--state-dir", s(&under)],
        &["--state-dir", "somefile", "not a directory"],
    );
    refused(
        &project,
        &["run", s(&path), "--report", s(&under)],
        &["--report", "somefile", "not a directory"],
    );
    refused(
        &project,
        &["run", s(&path), "--metrics", s(&under)],
        &["--metrics", "somefile", "not a directory"],
    );
    let dir = project.path().join("adir");
    std::fs::create_dir(&dir).expect("mkdir");
    refused(&project, &["run", s(&path), "--trace", s(&dir)], &["--trace", "adir", "is a directory"]);
}

// --- component files ---------------------------------------------------

/// Run `ensemble args` in-process on another thread, giving up after a
/// minute (a FIFO or /dev/zero must never hang the command).
fn bounded(args: Vec<String>) -> (u8, String, String) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let _ = tx.send(run_cli(&args));
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("the command returned within a minute (it hung reading?)")
}

#[test]
fn a_component_that_is_not_a_regular_file_says_what_it_is() {
    let project = Project::new();
    let fifo = project.path().join("fifo.wasm");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    std::fs::create_dir(project.path().join("dir.wasm")).expect("mkdir");
    for (component, what) in
        [("/dev/zero", "character device"), ("fifo.wasm", "FIFO"), ("dir.wasm", "directory")]
    {
        let path = project.workflow_file(&format!("agents:\n  a:\n    component: {component}\n"));
        for command in ["check", "run"] {
            let before = files_under(project.path());
            let (code, out, err) = bounded(vec![command.into(), s(&path).into()]);
            assert_eq!(code, EXIT_INVALID, "{command} {component}: {out}{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains("workflow.yaml:3:") && err.contains(what), "{command} {component}: {err}");
            assert!(!err.contains("does not exist"), "{err}");
            assert_eq!(files_under(project.path()).len(), before.len(), "nothing written: {err}");
        }
    }
}

#[test]
fn check_loads_every_component_as_run_does() {
    let project = Project::new();
    project
        .component("a", &writer("a.value"))
        .component("core", &wat::parse_str("(module)").expect("wat"))
        .component("empty", &ensemble_tests::component_wat("(component)"))
        .component("wasi", &wasi_importer());
    let path = project.workflow_file(
        "agents:\n  a:\n    component: a.wasm\n  core:\n    component: core.wasm\n  empty:\n    component: empty.wasm\n  wasi:\n    component: wasi.wasm\n",
    );
    let (code, out, check) = run_cli(&["check", s(&path)]);
    assert_eq!(code, EXIT_INVALID, "{out}{check}");
    assert_eq!(check.lines().count(), 3, "one line per unusable component: {check}");
    for needle in ["agent `core`", "core wasm module", "agent `empty`", "agent `wasi`", "wasi:"] {
        assert!(check.contains(needle), "`{needle}` missing from: {check}");
    }
    let (code, _, run) = run_cli(&["run", s(&path)]);
    assert_eq!(code, EXIT_INVALID);
    let strip = |text: &str| -> Vec<String> {
        text.lines().map(|l| l.trim_start_matches("error: ").to_owned()).collect()
    };
    assert_eq!(strip(&check), strip(&run), "check reports what run would");
}

/// A component that imports a WASI interface (not granted without `wasi: true`).
fn wasi_importer() -> Vec<u8> {
    ensemble_tests::component_wat(
        r#"(component (import "wasi:cli/environment@0.2.0" (instance (export "get-arguments" (func (result (list string)))))))"#,
    )
}

// --- reading another agent's keys without a need -------------------------

#[test]
fn reading_an_unneeded_agents_key_says_which_need_to_add() {
    let project = Project::new();
    let dist = repo_root().join("agents/dist");
    let path = project.workflow_file(&format!(
        "agents:\n  greeter:\n    component: {}\n    config: {{name: Ada}}\n  shouter:\n    component: {}\n",
        dist.join("greeter.wasm").display(),
        dist.join("shouter.wasm").display()
    ));
    let (code, out, err) = run_cli(&["run", s(&path), "--quiet", "--no-journal", "--no-cache"]);
    assert_eq!(code, EXIT_FAILED, "{out}{err}");
    assert!(out.contains("greeter.message"), "{out}");
    assert!(out.contains("add `needs: [greeter]` to agent `shouter`"), "{out}");
}

#[test]
fn no_need_is_suggested_for_an_owner_already_waited_for() {
    let project = Project::new();
    // `c` waits for `a` through `b`; `a` commits without `a.other`.
    project
        .component("a", &writer("a.value"))
        .component("b", &writer("b.value"))
        .component("c", &copier("a.other", "c.value"));
    let path = project.workflow_file(
        "agents:\n  a:\n    component: a.wasm\n  b:\n    component: b.wasm\n    needs: [a]\n  c:\n    component: c.wasm\n    needs: [b]\n",
    );
    let (code, out, err) = run_cli(&["run", s(&path), "--quiet", "--no-journal", "--no-cache"]);
    assert_eq!(code, EXIT_FAILED, "{out}{err}");
    assert!(out.contains("`c` FAILED: agent `c` failed: fixture failed"), "{out}");
    assert!(!out.contains("add `needs"), "`c` already waits for `a`: {out}");

    // Without the needs, the same read says which need to add.
    let path = project.workflow_file(
        "agents:\n  a:\n    component: a.wasm\n  b:\n    component: b.wasm\n  c:\n    component: c.wasm\n",
    );
    let (code, out, err) = run_cli(&["run", s(&path), "--quiet", "--no-journal", "--no-cache"]);
    assert_eq!(code, EXIT_FAILED, "{out}{err}");
    assert!(
        out.contains("`a.other` is owned by agent `a`") && out.contains("add `needs: [a]` to agent `c`"),
        "{out}"
    );
}

#[test]
fn check_refuses_reads_of_an_agent_not_needed() {
    let project = Project::new();
    project.component("a", &writer("a.value")).component("b", &writer("b.value"));
    // `c` reaches `a` through `b`: fine. `b` names `d.*` without any need on `d`.
    let path = project.workflow_file(
        "agents:\n  a:\n    component: a.wasm\n  b:\n    component: b.wasm\n    needs: [a]\n    reads: [a.*, d.*]\n  c:\n    component: b.wasm\n    needs: [b]\n    reads: [a.value, b.*]\n  d:\n    component: a.wasm\n",
    );
    refused(&project, &["check", s(&path)], &["workflow.yaml:7:", "agent `b`", "`d.*`", "add `needs: [d]`"]);
}

// --- colour ------------------------------------------------------------

#[test]
fn help_through_a_pipe_has_no_colour_codes() {
    let binary = env!("CARGO_BIN_EXE_ensemble-cli");
    let help = Command::new(binary).arg("--help").env_remove("NO_COLOR").output().expect("runs");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("Usage") && !text.contains('\x1b'), "{text:?}");
    let bad = Command::new(binary).arg("--no-such-flag").env_remove("NO_COLOR").output().expect("runs");
    assert_eq!(bad.status.code(), Some(i32::from(EXIT_INVALID)));
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(text.contains("--no-such-flag") && !text.contains('\x1b'), "{text:?}");

    // On a terminal there is colour, unless NO_COLOR says otherwise.
    if Command::new("script").arg("--version").output().is_err() {
        ensemble_tests::skip_or_require(
            "bad_input::help_through_a_pipe_has_no_colour_codes (colour on a terminal)",
            "`script` is not installed",
            "install it (Debian package bsdutils)",
            "ENSEMBLE_REQUIRE_SCRIPT",
        );
        return;
    }
    let on_terminal = |no_colour: Option<&str>| {
        let mut command = Command::new("timeout");
        command
            .args(["60", "script", "-qec", &format!("{binary} --help"), "/dev/null"])
            .env_remove("NO_COLOR");
        if let Some(value) = no_colour {
            command.env("NO_COLOR", value);
        }
        let output = command.output().expect("script runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(on_terminal(None).contains('\x1b'), "colour on a terminal");
    assert!(!on_terminal(Some("1")).contains('\x1b'), "NO_COLOR turns it off");
}

#[test]
fn the_runtime_never_opens_a_component_that_is_not_a_regular_file() {
    let project = Project::new();
    let fifo = project.path().join("fifo.wasm");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs").success());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime =
            ensemble::Runtime::new(ensemble::RuntimeConfig { pooling: false, ..Default::default() })
                .expect("runtime");
        let _ = tx.send(runtime.load_file("a", &fifo).map(|_| ()).map_err(|e| e.to_string()));
    });
    let result = rx.recv_timeout(Duration::from_secs(60)).expect("loading returned within a minute");
    let message = result.expect_err("a FIFO is not a component");
    assert!(message.contains("agent `a`") && message.contains("FIFO"), "{message}");
}
