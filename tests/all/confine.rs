//! The host's own writes (and reads) stay inside their directories: outputs,
//! the state directory (journals, compiled components), the agent output
//! cache and the templates, whatever `..`, absolute path or symbolic link
//! is met inside them; and an `outputs.dir` outside the workflow's folder
//! needs `--allow-outputs-outside`.

#![cfg(unix)]

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ensemble::cache::{AgentCache, Family};
use ensemble::context::ContextStore;
use ensemble::runtime::Reads;
use ensemble::{EventKind, RunOptions};
use ensemble_cli::{EXIT_FAILED, EXIT_INVALID, EXIT_OK};
use ensemble_tests::{Project, plain, renderer, writer};

use crate::run_cli;

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Every entry under `dir`, links not followed.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").map(|e| e.expect("entry")) {
        let path = entry.path();
        if entry.file_type().expect("type").is_dir() {
            found.extend(entries(&path));
        }
        found.push(path);
    }
    found
}

/// `a` writes `a.value` = "ok"; outputs `files` (YAML lines) into `dir`.
fn project_with_outputs(dir: &str, files: &str) -> (Project, PathBuf) {
    let project = Project::new();
    project.component("a", &writer("a.value"));
    let path = project.workflow_file(&format!(
        "agents:\n  a:\n    component: a.wasm\noutputs:\n  dir: {dir}\n  files:\n{files}"
    ));
    (project, path)
}

// --- outputs -------------------------------------------------------------

/// The bug as a new user met it: `out/etc -> /etc` and an output
/// `etc/evil.md` wrote `/etc/evil.md`. Now the output is refused, naming it
/// and why; nothing reaches the link's target; the other output is written;
/// and with the link gone the next run writes both.
#[test]
fn an_output_is_not_written_through_a_symbolic_link_out_of_outputs_dir() {
    let (project, path) =
        project_with_outputs("out", "    etc/evil.md: {key: a.value}\n    good.md: {key: a.value}\n");
    let etc = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(project.path().join("out")).expect("mkdir");
    symlink(etc.path(), project.path().join("out/etc")).expect("symlink");

    let (code, out, err) = run_cli(&["run", s(&path), "--quiet", "--no-journal", "--no-cache"]);
    assert_eq!(code, EXIT_INVALID, "as for any output that cannot be written\n{out}\n{err}");
    let line = err.lines().find(|l| l.contains("evil.md")).unwrap_or_else(|| panic!("no error: {err}"));
    assert!(line.contains("out/etc/evil.md") && line.contains("leads outside"), "{line}");
    assert!(entries(etc.path()).is_empty(), "nothing written through the link: {:?}", entries(etc.path()));
    assert_eq!(std::fs::read_to_string(project.path().join("out/good.md")).expect("good.md"), "ok");

    std::fs::remove_file(project.path().join("out/etc")).expect("unlink");
    let (code, out, err) = run_cli(&["run", s(&path), "--quiet", "--no-journal", "--no-cache"]);
    assert_eq!(code, EXIT_OK, "{out}\n{err}");
    assert_eq!(std::fs::read_to_string(project.path().join("out/etc/evil.md")).expect("written"), "ok");
}

/// An output named with `..` or an absolute path is refused by the file
/// check, so no workflow has one (the library's own guard against such a
/// name is tested inside the crate, in `ensemble::outputs`).
#[test]
fn an_output_name_with_dotdot_or_an_absolute_path_is_refused_by_the_file_check() {
    let elsewhere = tempfile::tempdir().expect("tempdir");
    for name in ["../escaped.md".to_owned(), elsewhere.path().join("abs.md").display().to_string()] {
        let (_project, path) = project_with_outputs("out", &format!("    \"{name}\": {{key: a.value}}\n"));
        let error = ensemble::Workflow::load(&path).expect_err("refused").to_string();
        let expected = format!("output file `{name}` must be a relative path inside outputs.dir");
        assert!(error.contains(&expected), "{name}: {error}");
    }
}

/// `outputs.dir` outside the workflow's folder (written so, or through a
/// link inside it) is refused before anything runs, naming the resolved
/// directory and the flag; with the flag the run writes there.
#[test]
fn outputs_outside_the_workflows_folder_need_the_flag() {
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let target = elsewhere.path().canonicalize().expect("canonical");
    let absolute = target.join("docs");
    let (project, path) = project_with_outputs(s(&absolute), "    doc.md: {key: a.value}\n");
    let state = project.path().join("state");
    let args = ["run", s(&path), "--quiet", "--state-dir", s(&state), "--no-cache"];
    let (code, out, err) = run_cli(&args);
    assert_eq!(code, EXIT_INVALID, "{out}\n{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(&absolute.display().to_string()) && err.contains("--allow-outputs-outside"),
        "{err}"
    );
    assert!(!state.exists() && !absolute.exists(), "nothing ran, nothing written");
    let (_, out, _) = run_cli(&["check", s(&path)]);
    assert!(out.contains("--allow-outputs-outside"), "check says so too: {out}");

    let (code, out, err) = run_cli(&[&args[..], &["--allow-outputs-outside"]].concat());
    assert_eq!(code, EXIT_OK, "{out}\n{err}");
    assert_eq!(std::fs::read_to_string(absolute.join("doc.md")).expect("written"), "ok");

    // A link inside the folder that leads out is outside too: its target is named.
    let (project, path) = project_with_outputs("out", "    doc.md: {key: a.value}\n");
    symlink(&target, project.path().join("out")).expect("symlink");
    let (code, out, err) = run_cli(&["run", s(&path), "--quiet", "--no-journal", "--no-cache"]);
    assert_eq!(code, EXIT_INVALID, "{out}\n{err}");
    assert!(err.contains(&format!("outputs.dir {} is outside", target.display())), "{err}");
    assert!(!target.join("doc.md").exists());
    // The library refuses it as well unless allowed.
    let workflow = ensemble::Workflow::load(&path).expect("valid");
    let (written, errors) =
        ensemble::outputs::write_outputs(&workflow, &ContextStore::new().snapshot(), false);
    assert!(
        written.is_empty() && matches!(errors[..], [ensemble::outputs::OutputError::Outside(_)]),
        "{errors:?}"
    );
}

/// `resume` asks for the flag as `run` does, before it runs anything.
#[test]
fn resume_needs_the_flag_too() {
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let docs = elsewhere.path().join("docs");
    let project = Project::new();
    project.component("a", &writer("a.value")).component("b", &plain("unreachable"));
    let path = project.workflow_file(&format!(
        "agents:\n  a:\n    component: a.wasm\n  b:\n    component: b.wasm\noutputs:\n  dir: {}\n  files:\n    doc.md: {{key: a.value}}\n",
        docs.display()
    ));
    let state = project.path().join("state");
    let run = ["run", s(&path), "--quiet", "--no-cache", "--run-id", "r1", "--state-dir", s(&state)];
    let (code, out, err) = run_cli(&[&run[..], &["--allow-outputs-outside"]].concat());
    assert_eq!(code, EXIT_FAILED, "`b` traps\n{out}\n{err}");
    project.component("b", &writer("b.value"));
    let resume = ["resume", "r1", "--quiet", "--no-cache", "--force", "--state-dir", s(&state)];
    let (code, out, err) = run_cli(&resume);
    assert_eq!(code, EXIT_INVALID, "{out}\n{err}");
    assert!(err.contains("--allow-outputs-outside") && !docs.exists(), "{err}");
    let (code, out, err) = run_cli(&[&resume[..], &["--allow-outputs-outside"]].concat());
    assert_eq!(code, EXIT_OK, "{out}\n{err}");
    assert_eq!(std::fs::read_to_string(docs.join("doc.md")).expect("written"), "ok");
}

// --- state directory -------------------------------------------------------

/// A journal is created through the state directory: a `runs` link that
/// leads out, or a run id with `..`, is refused, and nothing is written
/// outside.
#[test]
fn a_journal_is_not_created_outside_the_state_directory() {
    let project = Project::new();
    project.component("a", &writer("a.value"));
    let path = project.workflow_file("agents:\n  a:\n    component: a.wasm\n");
    let outside = tempfile::tempdir().expect("tempdir");
    let state = project.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    symlink(outside.path(), state.join("runs")).expect("symlink");
    let (code, out, err) =
        run_cli(&["run", s(&path), "--quiet", "--no-cache", "--state-dir", s(&state), "--run-id", "r1"]);
    assert_eq!(code, EXIT_FAILED, "{out}\n{err}");
    assert!(err.contains("journal") && err.contains("leads outside"), "{err}");
    assert!(entries(outside.path()).is_empty(), "{:?}", entries(outside.path()));

    std::fs::remove_file(state.join("runs")).expect("unlink");
    let (code, out, err) = run_cli(&[
        "run",
        s(&path),
        "--quiet",
        "--no-cache",
        "--state-dir",
        s(&state),
        "--run-id",
        "../../escaped",
    ]);
    assert_eq!(code, EXIT_FAILED, "{out}\n{err}");
    assert!(err.contains("leads outside"), "{err}");
    assert!(
        !project.path().join("escaped.redb").exists()
            && !project.path().join("escaped.redb.partial").exists()
    );

    // The state directory itself may be reached through a link the user chose.
    let chosen = project.path().join("chosen");
    symlink(&state, &chosen).expect("symlink");
    let (code, out, err) =
        run_cli(&["run", s(&path), "--quiet", "--no-cache", "--state-dir", s(&chosen), "--run-id", "r2"]);
    assert_eq!(code, EXIT_OK, "{out}\n{err}");
    assert!(state.join("runs/r2.redb").is_file());
    let (code, out, err) = run_cli(&["context", "r2", "--state-dir", s(&chosen)]);
    assert_eq!((code, out.contains("a.value")), (EXIT_OK, true), "{out}\n{err}");
}

/// Compiled components are kept through the state directory: a `compiled`
/// link that leads out is refused; an entry planted as a link is neither
/// read through nor written through (it is replaced by a real file).
#[test]
fn compiled_components_stay_inside_their_directory() {
    let project = Project::new();
    project.component("a", &writer("a.value"));
    let path = project.workflow_file("agents:\n  a:\n    component: a.wasm\n");
    let outside = tempfile::tempdir().expect("tempdir");
    let state = project.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    symlink(outside.path(), state.join("compiled")).expect("symlink");
    let args = ["run", s(&path), "--quiet", "--no-cache", "--no-journal", "--state-dir", s(&state)];
    let (code, out, err) = run_cli(&args);
    assert_eq!(code, EXIT_INVALID, "{out}\n{err}");
    assert!(err.contains("compiled") && err.contains("leads outside"), "{err}");
    assert!(entries(outside.path()).is_empty(), "{:?}", entries(outside.path()));

    std::fs::remove_file(state.join("compiled")).expect("unlink");
    let (code, out, err) = run_cli(&args);
    assert_eq!(code, EXIT_OK, "{out}\n{err}");
    let compiled = entries(&state.join("compiled"));
    let [entry] = &compiled[..] else { panic!("one compiled component: {compiled:?}") };
    // Moved out and linked back: a link to a file outside.
    let moved = outside.path().join("moved.cwasm");
    std::fs::rename(entry, &moved).expect("move");
    symlink(&moved, entry).expect("symlink");
    let (code, out, err) = run_cli(&args);
    assert_eq!(code, EXIT_OK, "{out}\n{err}");
    let kind = std::fs::symlink_metadata(entry).expect("entry").file_type();
    assert!(kind.is_file(), "the link was not read through: compiled again and replaced by a file");
    assert_eq!(entries(outside.path()), [moved], "nothing else written outside");
}

// --- agent output cache -------------------------------------------------------

/// A family directory of the output cache replaced by a link that leads
/// out: an entry planted there is not read, and a new one is not written
/// there.
#[test]
fn the_output_cache_does_not_follow_a_link_out_of_its_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    let family =
        Family { agent: "a", component: "c", config: &[], templates: None, reads: None, grants: None };
    let snapshot = ContextStore::new().snapshot();
    let writes = BTreeMap::from([("a.out".to_owned(), vec![1u8])]);
    let cache = AgentCache::open(dir.path(), 1 << 20, 1 << 20);
    cache.store(&family, &Reads::default(), &writes, Duration::from_millis(1));
    assert!(cache.lookup(&family, &snapshot).is_some(), "stored and found");
    let family_dir = std::fs::read_dir(dir.path())
        .expect("read")
        .map(|e| e.expect("entry").path())
        .find(|p| p.is_dir())
        .expect("a family directory");
    // The family's entries moved outside, the family a link to them.
    for entry in std::fs::read_dir(&family_dir).expect("read").map(|e| e.expect("entry")) {
        std::fs::rename(entry.path(), outside.path().join(entry.file_name())).expect("move");
    }
    std::fs::remove_dir(&family_dir).expect("rmdir");
    symlink(outside.path(), &family_dir).expect("symlink");
    let planted = entries(outside.path());

    let cache = AgentCache::open(dir.path(), 1 << 20, 1 << 20);
    assert!(cache.lookup(&family, &snapshot).is_none(), "the planted entry outside was not read");
    let mut reads = Reads::default();
    reads.values.insert("in.x".into(), None);
    cache.store(&family, &reads, &writes, Duration::from_millis(1));
    assert_eq!(entries(outside.path()), planted, "nothing written through the link");
    cache.clear().expect("clear");
    assert_eq!(entries(outside.path()), planted, "clear does not follow the link either");
}

// --- templates -------------------------------------------------------------------

/// Render `template` from `tpl/` (which holds `doc.md`, and `link.md`
/// linking to `secret.md` beside `tpl/`): the render's error, if any.
async fn render(template: &str) -> Option<String> {
    let project = Project::new();
    std::fs::create_dir(project.path().join("tpl")).expect("mkdir");
    std::fs::write(project.path().join("tpl/doc.md"), "doc").expect("template");
    std::fs::write(project.path().join("secret.md"), "SECRET").expect("secret");
    symlink(project.path().join("secret.md"), project.path().join("tpl/link.md")).expect("symlink");
    project.component("r", &renderer("r.doc", template, &rmp_serde::to_vec(&()).expect("nil")));
    let workflow = project.workflow("templates: tpl\nagents:\n  r: {component: r.wasm}\n");
    let options = RunOptions::default();
    let mut events = options.events.subscribe();
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, options)).await;
    if let Some(doc) = report.context.get("r.doc") {
        assert_ne!(&doc.value[..], b"SECRET", "read through the link");
    }
    let error = crate::drain(&mut events).into_iter().find_map(|e| match e.kind {
        EventKind::Rendered { error, .. } => error,
        _ => None,
    });
    assert_eq!(report.succeeded(), error.is_none(), "{report:#?}");
    error
}

#[tokio::test]
async fn templates_are_read_only_from_inside_their_directory() {
    assert_eq!(render("doc.md").await, None, "a template inside renders");
    let error = render("link.md").await.expect("refused");
    assert!(error.contains("link.md") && error.contains("leads outside"), "{error}");
    let error = render("../secret.md").await.expect("refused");
    assert!(error.contains("../secret.md") && error.contains("refused"), "{error}");
}

/// A file grant must not reach the host's own directories: an agent granted
/// the state directory could forge a compiled component (native code the
/// host loads) or a journal; one granted the cache, a cache entry.
#[test]
fn a_grant_reaching_the_state_directory_or_the_cache_is_refused() {
    let project = Project::new();
    project.component("w", &writer("w.out"));
    std::fs::create_dir_all(project.path().join("work/inner")).expect("mkdir");
    let workflow = |path: &str| {
        project.workflow_file(&format!(
            "agents:\n  w:\n    component: w.wasm\n    grants:\n      files: [{{ path: {path}, mode: read_write }}]\n"
        ))
    };
    // The workflow's folder holds the default state directory (.ensemble).
    let file = workflow(".");
    let (code, _, stderr) = run_cli(&["run", s(&file)]);
    assert_eq!(code, EXIT_INVALID, "{stderr}");
    assert!(
        stderr.contains("agent `w`: the granted directory") && stderr.contains("holds the state directory"),
        "{stderr}"
    );
    assert!(!project.path().join(".ensemble/runs").exists(), "nothing written");
    let (code, _, stderr) = run_cli(&["check", s(&file)]);
    assert_eq!(code, EXIT_INVALID, "{stderr}");
    assert!(stderr.contains("holds the state directory"), "{stderr}");

    // A grant inside an explicit --state-dir.
    let file = workflow("work/inner");
    let state = project.path().join("work");
    let (code, _, stderr) = run_cli(&["run", s(&file), "--state-dir", s(&state)]);
    assert_eq!(code, EXIT_INVALID, "{stderr}");
    assert!(stderr.contains("is inside the state directory"), "{stderr}");

    // Beside them, the same grant runs.
    let (code, _, stderr) = run_cli(&["run", s(&file), "--state-dir", s(&project.path().join("state"))]);
    assert_eq!(code, EXIT_OK, "{stderr}");
}
