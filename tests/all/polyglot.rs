//! Agents in Python and JavaScript, built from source by
//! `examples/polyglot/build.sh`, run beside a Rust agent; and agents in both
//! languages that read a granted file and call an allowed HTTP endpoint.
//!
//! The components are build products (not committed). CI builds them and
//! sets `ENSEMBLE_REQUIRE_POLYGLOT=1`, which makes their absence a failure;
//! elsewhere the tests say they were skipped.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use ensemble::{AgentError, Engine, RunOptions, RunReport, Workflow};
use ensemble_tests::repo_root;

/// How long compiling a workflow's components may take. The Python and
/// JavaScript components are large (12 to 18 MB): compiling one takes most
/// of a minute on a loaded two-core machine, longer when several compile at
/// once.
const COMPILE_BOUND: Duration = Duration::from_secs(600);

/// The tests of this module take turns (so their compilations do not
/// compete) and share one engine, which keeps the components it loaded.
/// A turn compiles `workflow`'s components, within [`COMPILE_BOUND`], and
/// returns the engine with what loading them said.
async fn turn(
    workflow: &Workflow,
) -> (tokio::sync::MutexGuard<'static, ()>, Engine, Result<(), Vec<AgentError>>) {
    static TURNS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    let guard =
        tokio::time::timeout(3 * COMPILE_BOUND, TURNS.lock()).await.expect("the other tests took turns");
    let engine = ENGINE.get_or_init(ensemble_tests::engine).clone();
    let loading = tokio::task::spawn_blocking({
        let (engine, workflow) = (engine.clone(), workflow.clone());
        move || engine.load_components(&workflow)
    });
    let loaded = tokio::time::timeout(COMPILE_BOUND, loading)
        .await
        .unwrap_or_else(|_| panic!("compiling the components took over {COMPILE_BOUND:?}"))
        .expect("loading does not panic");
    (guard, engine, loaded)
}

/// Compile `workflow`'s components (in its [`turn`]) and run it.
async fn run(workflow: &Workflow) -> RunReport {
    let (_turn, engine, loaded) = turn(workflow).await;
    if let Err(errors) = loaded {
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("the components do not load:\n{}", errors.join("\n"));
    }
    crate::bounded(engine.run(workflow, RunOptions::default())).await
}

/// `examples/polyglot/`, if `components` are built there; otherwise the
/// test is skipped visibly (or fails, in CI).
fn built(test: &str, components: &[&str]) -> Option<PathBuf> {
    let dir = repo_root().join("examples/polyglot");
    if components.iter().all(|c| dir.join("dist").join(c).is_file()) {
        return Some(dir);
    }
    ensemble_tests::skip_or_require(
        &format!("polyglot::{test}"),
        "examples/polyglot/dist/ is not built",
        "run examples/polyglot/build.sh",
        "ENSEMBLE_REQUIRE_POLYGLOT",
    );
    None
}

/// The committed value of `key`, decoded from MessagePack.
fn value(report: &RunReport, key: &str) -> serde_json::Value {
    let entry = report.context.get(key).unwrap_or_else(|| panic!("{key} is not committed: {report:#?}"));
    rmp_serde::from_slice(&entry.value).expect("msgpack")
}

#[tokio::test]
async fn python_and_javascript_agents_run_beside_rust() {
    let Some(dir) =
        built("python_and_javascript_agents_run_beside_rust", &["py-counter.wasm", "js-slugger.wasm"])
    else {
        return;
    };
    let workflow = Workflow::load(dir.join("workflow.yaml")).expect("the polyglot workflow loads");
    let report = run(&workflow).await;
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(value(&report, "py_counter.words"), serde_json::json!(3), "Python counted the words");
    assert_eq!(
        value(&report, "js_slugger.slug"),
        serde_json::json!("hello-ada-lovelace"),
        "JavaScript made the slug"
    );
}

/// The URL the agents of `io.yaml` call by default (its README starts a
/// server there); the tests put a port of their own in its place.
const EXAMPLE_ORIGIN: &str = "127.0.0.1:8787";

/// `examples/polyglot/io.yaml`, its text changed by `edit`.
fn io_workflow(dir: &Path, edit: impl Fn(&str) -> String) -> Workflow {
    let path = dir.join("io.yaml");
    let text = std::fs::read_to_string(&path).expect("io.yaml");
    assert_eq!(text.matches(EXAMPLE_ORIGIN).count(), 2, "each agent of io.yaml calls {EXAMPLE_ORIGIN}");
    Workflow::parse(&edit(&text), &path).unwrap_or_else(|e| panic!("io.yaml: {e}"))
}

/// Each agent of `io.yaml` reads `/docs/notes.md` through its read-only file
/// grant and GETs its URL through its HTTP grant (`http://127.0.0.1:*`) from
/// a real server on loopback; both commit what they got.
#[tokio::test]
async fn python_and_javascript_agents_read_a_granted_file_and_call_an_allowed_endpoint() {
    let test = "python_and_javascript_agents_read_a_granted_file_and_call_an_allowed_endpoint";
    let Some(dir) = built(test, &["py-reader.wasm", "js-reader.wasm"]) else {
        return;
    };
    let server = Loopback::start();
    let workflow =
        io_workflow(&dir, |text| text.replace(EXAMPLE_ORIGIN, &format!("127.0.0.1:{}", server.port)));
    let report = run(&workflow).await;
    assert!(report.succeeded(), "{report:#?}");

    let notes = std::fs::read_to_string(dir.join("docs/notes.md")).expect("docs/notes.md");
    for (agent, language) in [("py_reader", "python"), ("js_reader", "javascript")] {
        assert_eq!(
            value(&report, &format!("{agent}.file")),
            serde_json::json!(notes),
            "{agent} read the file"
        );
        assert_eq!(
            value(&report, &format!("{agent}.reply")),
            serde_json::json!(format!("hello, /hello.txt?from={language}")),
            "{agent} received the server's reply"
        );
    }
    let mut requests = server.requests();
    requests.sort();
    assert_eq!(
        requests,
        ["GET /hello.txt?from=javascript", "GET /hello.txt?from=python"],
        "one request from each agent"
    );
}

/// The same components under agents without the `http` grant are refused at
/// load, naming the agent and its `wasi:http` import: their HTTP client is
/// in the component, and only the grant lets it link.
#[tokio::test]
async fn the_readers_without_an_http_grant_do_not_load() {
    let Some(dir) =
        built("the_readers_without_an_http_grant_do_not_load", &["py-reader.wasm", "js-reader.wasm"])
    else {
        return;
    };
    let workflow = io_workflow(&dir, |text| {
        let kept: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with("http:")).collect();
        assert_eq!(kept.len() + 2, text.lines().count(), "io.yaml grants http to both agents");
        kept.join("\n")
    });
    assert!(workflow.agents().iter().all(|a| a.grants.http.is_none() && !a.grants.files.is_empty()));
    let (_turn, _, loaded) = turn(&workflow).await;
    let errors = loaded.expect_err("no http grant");
    let mut refused: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| match e {
            AgentError::Link { agent, import, .. } => (agent.as_str(), import.as_str()),
            other => panic!("not a link error: {other}"),
        })
        .collect();
    refused.sort();
    assert_eq!(refused.len(), 2, "{errors:?}");
    for ((agent, import), expected) in refused.iter().zip(["js_reader", "py_reader"]) {
        assert_eq!(*agent, expected);
        assert!(import.starts_with("wasi:http/"), "{agent} is refused for its HTTP import, not {import}");
    }
    for e in &errors {
        let text = e.to_string();
        assert!(text.contains(e.agent()) && text.contains("wasi:http/"), "the error names both: {text}");
    }
}

/// A real HTTP/1.1 server on 127.0.0.1 for one test, on a thread of its own:
/// answers every request with `200` and the body `hello, <request target>`,
/// and records each request line. Stopped when dropped.
struct Loopback {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Loopback {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (requests, stop) = (requests.clone(), stop.clone());
            move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream
                        && let Some(line) = answer(stream)
                    {
                        requests.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                    }
                }
            }
        });
        Self { port, requests, stop, thread: Some(thread) }
    }

    /// The request lines received so far, without the HTTP version.
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Read one request head (a GET has no body) and answer it; the request line.
fn answer(mut stream: TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 || head.len() > 64 << 10 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.lines().next()?.split(' ');
    let (method, target) = (words.next()?, words.next()?);
    let body = format!("hello, {target}");
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).ok()?;
    let _ = stream.shutdown(Shutdown::Write);
    Some(format!("{method} {target}"))
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
