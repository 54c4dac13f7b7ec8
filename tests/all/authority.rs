//! No ambient authority: an agent reaches files, the environment, the
//! network, clocks, randomness or stdio only through WASI 0.2, and a
//! component importing any of it without the workflow's `wasi: true` grant
//! fails to load, naming the agent and the import. (With the grant, WASI is
//! locked down: see SECURITY.md.)

use ensemble::{AgentError, AgentStatus, RunOptions};
use ensemble_tests::{Project, component_wat, engine, writer};

/// (capability, interface, an instance type with one of its functions).
const CAPABILITIES: &[(&str, &str, &str)] = &[
    (
        "files",
        "wasi:filesystem/preopens@0.2.0",
        r#"(export "descriptor" (type (sub resource)))
           (export "get-directories" (func (result (list (tuple (own 0) string)))))"#,
    ),
    (
        "files",
        "wasi:filesystem/types@0.2.0",
        r#"(export "descriptor" (type (sub resource)))
           (export "[method]descriptor.read" (func (param "self" (borrow 0)) (param "length" u64) (param "offset" u64)
              (result (result (tuple (list u8) bool) (error u8)))))"#,
    ),
    (
        "environment",
        "wasi:cli/environment@0.2.0",
        r#"(export "get-environment" (func (result (list (tuple string string)))))"#,
    ),
    (
        "environment",
        "wasi:cli/environment@0.2.3",
        r#"(export "get-arguments" (func (result (list string))))"#,
    ),
    (
        "network",
        "wasi:sockets/instance-network@0.2.0",
        r#"(export "network" (type (sub resource)))
           (export "instance-network" (func (result (own 0))))"#,
    ),
    (
        "network",
        "wasi:sockets/tcp-create-socket@0.2.0",
        r#"(export "tcp-socket" (type (sub resource)))
           (export "create-tcp-socket" (func (param "address-family" u8) (result (result (own 0) (error u8)))))"#,
    ),
    (
        "network",
        "wasi:http/outgoing-handler@0.2.0",
        r#"(export "handle" (func (param "request" u32) (result u32)))"#,
    ),
    ("clocks", "wasi:clocks/wall-clock@0.2.0", r#"(export "now" (func (result (tuple u64 u32))))"#),
    ("clocks", "wasi:clocks/monotonic-clock@0.2.0", r#"(export "now" (func (result u64)))"#),
    ("randomness", "wasi:random/random@0.2.0", r#"(export "get-random-u64" (func (result u64)))"#),
    (
        "randomness",
        "wasi:random/insecure-seed@0.2.0",
        r#"(export "insecure-seed" (func (result (tuple u64 u64))))"#,
    ),
    (
        "stdio",
        "wasi:cli/stdout@0.2.0",
        r#"(export "output-stream" (type (sub resource)))
           (export "get-stdout" (func (result (own 0))))"#,
    ),
    (
        "stdio",
        "wasi:cli/stdin@0.2.0",
        r#"(export "input-stream" (type (sub resource)))
           (export "get-stdin" (func (result (own 0))))"#,
    ),
];

#[tokio::test]
async fn no_capability_without_a_grant() {
    let engine = engine();
    for (capability, interface, instance) in CAPABILITIES {
        let project = Project::new();
        let bad = component_wat(&format!(r#"(component (import "{interface}" (instance {instance})))"#));
        project.component("good", &writer("good.value")).component("bad", &bad);
        let workflow =
            project.workflow("agents:\n  good:\n    component: good.wasm\n  bad:\n    component: bad.wasm\n");
        let report = crate::bounded(engine.run(&workflow, RunOptions::default())).await;
        assert!(
            matches!(report.agent("good").map(|a| &a.status), Some(AgentStatus::Succeeded { .. })),
            "{capability}: the other agent runs"
        );
        match report.error("bad") {
            Some(AgentError::Link { agent, import, .. }) => {
                assert_eq!((agent.as_str(), import.as_str()), ("bad", *interface), "{capability}");
            }
            other => panic!("{capability} ({interface}): expected a link error, got {other:?}"),
        }
    }
}

/// What the grant gives is WASI 0.2 only: an interface outside it (here a
/// made-up one, and `wasi:http`, which the host never links) still fails.
#[tokio::test]
async fn a_grant_gives_wasi_and_nothing_else() {
    let engine = engine();
    let path = std::path::Path::new("granted.wasm");
    for interface in ["wasi:http/outgoing-handler@0.2.0", "acme:secrets/vault@1.0.0"] {
        let bytes = component_wat(&format!(
            r#"(component (import "{interface}" (instance (export "handle" (func (param "request" u32) (result u32))))))"#
        ));
        let error = engine.runtime().load_granted("granted", path, &bytes, true).expect_err("not provided");
        assert!(matches!(&error, AgentError::Link { import, .. } if import == interface), "{error}");
    }
}

/// The Python prober (`tests/fixtures/python/prober.py`), or `None` when it
/// is not built, or built from an older `prober.py` (CI builds it and sets
/// `ENSEMBLE_REQUIRE_POLYGLOT=1`).
fn prober(test: &str) -> Option<Vec<u8>> {
    let root = ensemble_tests::repo_root().join("tests/fixtures/python");
    let modified = |file: &str| std::fs::metadata(root.join(file)).and_then(|m| m.modified()).ok();
    let missing = match (modified("dist/prober.wasm"), modified("prober.py")) {
        (None, _) => "tests/fixtures/python/dist/prober.wasm is not built",
        (Some(built), Some(source)) if built < source => {
            "tests/fixtures/python/dist/prober.wasm is older than prober.py"
        }
        _ => match std::fs::read(root.join("dist/prober.wasm")) {
            Ok(bytes) => return Some(bytes),
            Err(_) => "tests/fixtures/python/dist/prober.wasm cannot be read",
        },
    };
    ensemble_tests::skip_or_require(
        &format!("authority::{test}"),
        missing,
        "run tests/fixtures/python/build.sh",
        "ENSEMBLE_REQUIRE_POLYGLOT",
    );
    None
}

/// With the grant, WASI is locked down: a Python agent finds no files, no
/// environment and no network; it gets clocks and randomness (which is why
/// WASI agents are never cached). And one blocked in a WASI sleep is still
/// stopped at its deadline.
#[tokio::test]
async fn granted_wasi_is_locked_down_and_a_sleeper_meets_its_deadline() {
    let Some(prober) = prober("granted_wasi_is_locked_down_and_a_sleeper_meets_its_deadline") else { return };
    let project = Project::new();
    project.component("prober", &prober);
    // A listener the prober tries to reach: nothing may arrive.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("address").port();
    // A file that really exists on the host, in the workflow's directory:
    // an agent that can read it (by its path, or by its name in a preopened
    // working directory), or write next to it, has a directory it should not.
    let canary = project.path().join("canary.txt");
    std::fs::write(&canary, "ensemble canary: a preopen leaked").expect("canary");
    let canary_path = canary.display();
    // One component for both agents: compiled once.
    let workflow = project.workflow(&format!(
        "agents:
  prober: {{component: prober.wasm, wasi: true, config: \"port {port} canary {canary_path}\"}}
  sleeper: {{component: prober.wasm, wasi: true, config: sleep, timeout: 2s, owns: [sleeper]}}
"
    ));
    let engine = engine();
    let report = crate::bounded(engine.run(&workflow, RunOptions::default())).await;
    let entry =
        report.context.get("prober.report").unwrap_or_else(|| panic!("the prober reports: {report:#?}"));
    let text: String = rmp_serde::from_slice(&entry.value).expect("a string");
    let found: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    for probe in ["read_file", "list_root", "write_file", "canary", "canary_by_name", "list_cwd", "network"] {
        let outcome = found[probe].as_str().unwrap_or_default();
        assert!(outcome.starts_with("denied"), "{probe}: {outcome} ({found})");
    }
    assert!(!found.to_string().contains("a preopen leaked"), "the canary was read: {found}");
    assert_eq!(found["environment"], serde_json::json!([]), "no environment: {found}");
    assert_eq!(found["clock"], serde_json::json!(true), "granted WASI has clocks: {found}");
    assert_eq!(found["random"], serde_json::json!(true), "granted WASI has randomness: {found}");
    let written = canary.with_extension("txt.written");
    assert!(!written.exists(), "the agent wrote {}", written.display());
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the agent reached the host's network: {other:?}"),
    }
    match report.error("sleeper") {
        Some(AgentError::Timeout { agent, after }) => {
            assert_eq!(agent, "sleeper");
            assert!(*after < std::time::Duration::from_secs(10), "stopped near its 2 s deadline: {after:?}");
        }
        other => panic!("the sleeper times out, got {other:?}"),
    }
    // The engine is fine after it: the same component runs again.
    let again = project.workflow("agents:\n  prober: {component: prober.wasm, wasi: true}\n");
    let report = crate::bounded(engine.run(&again, RunOptions::default())).await;
    assert!(report.succeeded(), "the next run in the same engine works: {report:#?}");
}
