//! The research example (`examples/research`) as its README runs it: the
//! demo API on loopback (`api.py`, a real HTTP server), the CLI with the
//! variables in its environment. A copy of the example runs, so nothing is
//! written into the repository.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use ensemble_tests::repo_root;

/// The API's token in these tests: a secret that must appear in no artefact.
const TOKEN: &str = "tok-3f9c1e7a-research-secret";

/// `api.py` on a free loopback port, killed when dropped.
struct Api {
    child: Child,
    url: String,
}

impl Api {
    fn start() -> Self {
        let mut child = Command::new("python3")
            .arg(repo_root().join("examples/research/api.py"))
            .arg("0")
            .env("RESEARCH_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs examples/research/api.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the API's first line");
        let url = line.split_whitespace().find(|w| w.starts_with("http://")).expect("its address").to_owned();
        Self { child, url }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example and its three components, laid out as in the repository.
fn copy_example(root: &Path) -> PathBuf {
    let example = root.join("examples/research");
    for dir in ["papers", "templates"] {
        std::fs::create_dir_all(example.join(dir)).expect("mkdir");
        for entry in std::fs::read_dir(repo_root().join("examples/research").join(dir)).expect("ls") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), example.join(dir).join(entry.file_name())).expect("copy");
        }
    }
    std::fs::copy(repo_root().join("examples/research/workflow.yaml"), example.join("workflow.yaml"))
        .expect("copy");
    std::fs::create_dir_all(root.join("agents/dist")).expect("mkdir");
    for agent in ["librarian", "scout", "synthesist"] {
        let file = format!("{agent}.wasm");
        std::fs::copy(repo_root().join("agents/dist").join(&file), root.join("agents/dist").join(&file))
            .expect("copy");
    }
    example.join("workflow.yaml")
}

fn run(workflow: &Path, state: &Path, api: &str, token: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ensemble-cli"))
        .arg("run")
        .arg(workflow)
        .arg("--state-dir")
        .arg(state)
        .args(["--events", "json"])
        .env("RESEARCH_API", api)
        .env("RESEARCH_TOKEN", token)
        .env("ENSEMBLE_LOG", "debug")
        .output()
        .expect("the CLI runs")
}

/// Every file under `dir`, recursively.
fn files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { files(&path, found) } else { found.push(path) }
    }
}

#[test]
fn the_research_example_reads_papers_calls_the_api_and_keeps_the_token_secret() {
    let api = Api::start();
    let root = tempfile::tempdir().expect("tempdir");
    let workflow = copy_example(root.path());
    let state = root.path().join("state");
    let output = run(&workflow, &state, &api.url, TOKEN);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");

    // The grant summary leads the run (on stderr, as stdout carries the events).
    for line in [
        "librarian  files",
        "as /papers  read",
        "scout      http      http://127.0.0.1:*",
        "scout      secret    API_TOKEN from env RESEARCH_TOKEN",
    ] {
        assert!(stderr.contains(line), "no `{line}` in the header:\n{stderr}");
    }
    let brief =
        std::fs::read_to_string(workflow.with_file_name("out").join("brief.md")).expect("out/brief.md");
    assert!(brief.contains("3 documents read, 5 related works found."), "{brief}");
    assert!(
        brief.contains("- Snapshot isolation in multiversion databases (1995), cited 1720 times"),
        "{brief}"
    );
    assert!(brief.contains("## Scheduling agent workflows"), "{brief}");
    // The report saw scout's three requests to the API.
    assert!(stderr.contains("3 requests"), "{stderr}");

    // The token reached the API (it answered 200) but no artefact.
    let mut artefacts = Vec::new();
    files(root.path(), &mut artefacts);
    assert!(artefacts.iter().any(|p| p.extension().is_some_and(|e| e == "redb")), "a journal: {artefacts:?}");
    for path in artefacts {
        let bytes = std::fs::read(&path).expect("read");
        assert!(
            !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
            "the token is in {}",
            path.display()
        );
    }
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN), "the token is in the output");
}

#[test]
fn the_research_example_fails_clearly_on_a_wrong_token_or_an_address_off_the_list() {
    let api = Api::start();
    let root = tempfile::tempdir().expect("tempdir");
    let workflow = copy_example(root.path());

    let wrong = run(&workflow, &root.path().join("state1"), &api.url, "not-the-token");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("scout") && stderr.contains("401"), "{stderr}");
    assert!(!stderr.contains("not-the-token"), "a secret shown: {stderr}");

    // Off the allow-list: refused in the host, before any connection.
    let off = run(&workflow, &root.path().join("state2"), "http://example.com", TOKEN);
    let stderr = String::from_utf8_lossy(&off.stderr);
    assert_eq!(off.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("scout") && stderr.contains("http://example.com:80"), "{stderr}");
    // librarian does not need scout: it committed (from the cache the
    // first run filled, as its papers did not change).
    let stdout = String::from_utf8_lossy(&off.stdout);
    assert!(stdout.contains(r#""event":"committed","agent":"librarian""#), "{stdout}");
    assert!(stdout.contains(r#""event":"cache_hit","agent":"librarian""#), "{stdout}");
    assert!(!workflow.with_file_name("out").join("brief.md").exists(), "no brief without scout");
}
