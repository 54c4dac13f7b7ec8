//! Caching stays sound with grants: an agent's entry changes when anything
//! it could read changes (its granted trees, its variables), agents that
//! talk to the network, write files or have real clocks are cached only
//! when the workflow opts in, and the report says why an agent was not.

use std::path::Path;
use std::sync::Arc;

use ensemble::cache::{AgentCache, TreeLimits};
use ensemble::{Engine, EventKind, RunMetrics, RunOptions, RunReport, Workflow};
use ensemble_tests::{Project, progressing, writer};

async fn run_with(engine: &Engine, workflow: &Workflow, cache: AgentCache) -> RunReport {
    let options = RunOptions { cache: Some(Arc::new(cache)), ..RunOptions::default() };
    let report = crate::bounded(engine.run(workflow, options)).await;
    assert!(report.succeeded(), "{report:#?}");
    report
}

async fn run(engine: &Engine, workflow: &Workflow) -> RunReport {
    let spec = workflow.cache();
    run_with(engine, workflow, AgentCache::open(&spec.dir, spec.max_size, spec.compress_above)).await
}

fn cached(report: &RunReport) -> Vec<&str> {
    report.agents.iter().filter(|a| a.cached).map(|a| a.agent.as_str()).collect()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A `read` grant is hashed whole: a file's contents, a new file, a new
/// empty directory and a symbolic link's target each make the agent run
/// again; its sibling without grants stays cached throughout.
#[tokio::test]
async fn a_read_grant_caches_until_anything_in_the_granted_tree_changes() {
    let project = Project::new();
    project.component("reader", &writer("reader.value")).component("plain", &writer("plain.value"));
    let docs = project.path().join("docs");
    write(&docs.join("a.txt"), "one");
    write(&docs.join("sub/b.txt"), "two");
    let workflow = project.workflow(
        "agents:
  reader: {component: reader.wasm, grants: {files: [{path: docs, as: /docs, mode: read}]}}
  plain: {component: plain.wasm}
",
    );
    let engine = ensemble_tests::engine();
    assert!(cached(&run(&engine, &workflow).await).is_empty());
    assert_eq!(cached(&run(&engine, &workflow).await), ["reader", "plain"], "nothing changed");

    let changes: [(&str, &dyn Fn()); 4] = [
        ("a file's contents", &|| write(&docs.join("sub/b.txt"), "TWO")),
        ("a new file", &|| write(&docs.join("c.txt"), "")),
        ("a new empty directory", &|| std::fs::create_dir(docs.join("empty")).expect("mkdir")),
        ("a symbolic link", &|| {
            #[cfg(unix)]
            std::os::unix::fs::symlink("/etc/passwd", docs.join("link")).expect("symlink");
            #[cfg(not(unix))]
            write(&docs.join("link"), "");
        }),
    ];
    for (what, change) in changes {
        change();
        assert_eq!(cached(&run(&engine, &workflow).await), ["plain"], "{what}: reader runs again");
        assert_eq!(cached(&run(&engine, &workflow).await), ["reader", "plain"], "{what}: then it is cached");
    }
    #[cfg(unix)]
    {
        // Another target text, the link not followed.
        std::fs::remove_file(docs.join("link")).expect("rm");
        std::os::unix::fs::symlink("/etc/hosts", docs.join("link")).expect("symlink");
        assert_eq!(cached(&run(&engine, &workflow).await), ["plain"], "another link target");
    }
}

/// HTTP, read-write files and real clocks are not cached unless opted in;
/// `cache: false` never is; the report says why, per agent, in every form.
#[tokio::test]
async fn agents_that_can_see_a_changing_world_are_cached_only_when_opted_in_and_the_report_says_why() {
    let project = Project::new();
    for agent in ["http", "rw", "clock", "off", "opted", "plain"] {
        project.component(agent, &writer(&format!("{agent}.value")));
    }
    std::fs::create_dir_all(project.path().join("scratch")).expect("mkdir");
    let workflow = project.workflow(
        r#"agents:
  http: {component: http.wasm, grants: {http: {allow: ["https://api.example.com"]}}}
  rw: {component: rw.wasm, grants: {files: [{path: scratch, as: /scratch, mode: read_write}]}}
  clock: {component: clock.wasm, wasi: true}
  off: {component: off.wasm, cache: false}
  opted: {component: opted.wasm, cache: true, wasi: true, grants: {http: {allow: ["https://api.example.com"]}}}
  plain: {component: plain.wasm}
"#,
    );
    let engine = ensemble_tests::engine();
    let mut events = None;
    for round in 0..2 {
        let spec = workflow.cache();
        let cache = Arc::new(AgentCache::open(&spec.dir, spec.max_size, spec.compress_above));
        let sink = ensemble::EventSink::new();
        let mut rx = sink.subscribe();
        let options = RunOptions { cache: Some(cache), events: sink, ..RunOptions::default() };
        let report = crate::bounded(engine.run(&workflow, options)).await;
        assert!(report.succeeded(), "{report:#?}");
        if round == 1 {
            assert_eq!(cached(&report), ["opted", "plain"]);
            let m = RunMetrics::new(&workflow, &report);
            let why = |id: &str| m.agent(id).and_then(|a| a.cache_skipped.clone());
            assert_eq!(why("http").as_deref(), Some("http grant"));
            assert_eq!(why("rw").as_deref(), Some("read_write files"));
            assert_eq!(why("clock").as_deref(), Some("real clocks (wasi: true)"));
            assert_eq!(why("off").as_deref(), Some("cache: false"));
            assert_eq!((why("opted"), why("plain")), (None, None));
            let markdown = ensemble::report::markdown::render(&m);
            assert!(
                markdown.contains("| rw | `files /scratch (read_write)` | read_write files |"),
                "{markdown}"
            );
            assert!(markdown.contains("| clock | `real clocks` | real clocks (wasi: true) |"), "{markdown}");
            let html = ensemble::report::html::render(&m);
            assert!(html.contains("no: cache: false") && html.contains("<table id=\"grants\">"), "{html}");
            assert!(m.to_json().contains("\"cache_skipped\": \"http grant\""));
            let trace = ensemble::report::trace::render(&m);
            assert!(trace.contains("not cached"), "a mark in the trace");
            let mut skipped = Vec::new();
            while let Ok(event) = rx.try_recv() {
                if let EventKind::CacheSkipped { agent, .. } = event.kind {
                    skipped.push(agent);
                }
            }
            skipped.sort();
            events = Some(skipped);
        }
    }
    assert_eq!(events.expect("round 2"), ["clock", "http", "off", "rw"], "one event per uncached agent");
}

/// Variables are part of an agent's family: a changed value or secret makes
/// it run again. A secret's value appears in no file of the cache, which
/// keys its hash with a key readable by its owner only.
#[tokio::test]
async fn variables_and_secrets_are_in_the_family_and_no_secret_is_in_the_cache() {
    const SECRET: &str = "tok-0f-a-very-secret-kind";
    let project = Project::new();
    project.component("caller", &writer("caller.value"));
    let workflow = |url: &str, token: &str| {
        write(&project.path().join("token.txt"), token);
        project.workflow(&format!(
            "agents:
  caller:
    component: caller.wasm
    grants: {{variables: {{API_URL: {{value: \"{url}\"}}, TOKEN: {{file: token.txt, secret: true}}}}}}
"
        ))
    };
    let engine = ensemble_tests::engine();
    let first = workflow("https://a.example", SECRET);
    assert!(cached(&run(&engine, &first).await).is_empty());
    assert_eq!(cached(&run(&engine, &first).await), ["caller"]);
    let url = workflow("https://b.example", SECRET);
    assert!(cached(&run(&engine, &url).await).is_empty(), "a variable's value changed");
    let token = workflow("https://b.example", "another-token");
    assert!(cached(&run(&engine, &token).await).is_empty(), "the secret changed");
    let back = workflow("https://b.example", SECRET);
    assert_eq!(cached(&run(&engine, &back).await), ["caller"], "as it was two runs ago");

    let dir = &first.cache().dir;
    let mut files = 0;
    for entry in walk(dir) {
        files += 1;
        let bytes = std::fs::read(&entry).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(SECRET), "{} holds the secret", entry.display());
        assert!(!bytes.windows(32).any(|w| w == blake3::hash(SECRET.as_bytes()).as_bytes()), "plain hash");
    }
    assert!(files >= 4, "entries, the index and the key: {files}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(dir.join(ensemble::cache::grants::SECRET_KEY)).expect("a key").permissions();
        assert_eq!(mode.mode() & 0o077, 0, "{:o}", mode.mode());
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

/// A tree over the hashing limits makes the agent uncacheable, with the
/// reason in the report, rather than hashing for ever.
#[tokio::test]
async fn a_granted_tree_too_large_to_hash_is_not_cached_and_the_report_says_so() {
    let project = Project::new();
    project.component("reader", &writer("reader.value"));
    for i in 0..5 {
        write(&project.path().join(format!("docs/{i}.txt")), "x");
    }
    let workflow = project.workflow(
        "agents:\n  reader: {component: reader.wasm, grants: {files: [{path: docs, as: /docs, mode: read}]}}\n",
    );
    let engine = ensemble_tests::engine();
    let open = |entries| {
        let spec = workflow.cache();
        AgentCache::open(&spec.dir, spec.max_size, spec.compress_above)
            .with_tree_limits(TreeLimits { entries, bytes: 1 << 20 })
    };
    for _ in 0..2 {
        let report = run_with(&engine, &workflow, open(4)).await;
        assert!(cached(&report).is_empty());
        let m = RunMetrics::new(&workflow, &report);
        let why = m.agent("reader").and_then(|a| a.cache_skipped.clone()).unwrap_or_default();
        assert!(why.starts_with("granted tree too large to hash"), "{why}");
    }
    // Within the limits it is cached.
    run_with(&engine, &workflow, open(5)).await;
    assert_eq!(cached(&run_with(&engine, &workflow, open(5)).await), ["reader"]);
}

/// The tree is hashed when the agent is admitted and again when it ends:
/// if it changed meanwhile, nothing is stored (else, once the tree is
/// back as it was, an output made from the changed tree would be reused).
#[tokio::test]
async fn a_tree_that_changes_while_the_agent_runs_is_not_cached() {
    let project = Project::new();
    // Reports progress, then spins (about a second on an idle machine).
    project.component("reader", &progressing("reader.value", u32::MAX, Some(400_000_000)));
    let file = project.path().join("docs/a.txt");
    write(&file, "before");
    let workflow = project.workflow(
        "agents:\n  reader: {component: reader.wasm, grants: {files: [{path: docs, as: /docs, mode: read}]}}\n",
    );
    let engine = ensemble_tests::engine();
    let spec = workflow.cache();
    let sink = ensemble::EventSink::new();
    let mut rx = sink.subscribe();
    let cache = Arc::new(AgentCache::open(&spec.dir, spec.max_size, spec.compress_above));
    let options = RunOptions { cache: Some(cache), events: sink, ..RunOptions::default() };
    let running = tokio::spawn({
        let (engine, workflow) = (engine.clone(), workflow.clone());
        async move { engine.run(&workflow, options).await }
    });
    crate::bounded(async {
        loop {
            match rx.recv().await.expect("events") {
                ensemble::Event { kind: EventKind::Progress { .. }, .. } => break,
                ensemble::Event { kind: EventKind::AgentSucceeded { .. }, .. } => {
                    panic!("the agent ended before the tree could change")
                }
                _ => {}
            }
        }
    })
    .await;
    write(&file, "during");
    let report = crate::bounded(running).await.expect("the run");
    assert!(report.succeeded(), "{report:#?}");
    write(&file, "before");
    assert!(cached(&run(&engine, &workflow).await).is_empty(), "nothing was stored for the changed tree");
    assert_eq!(cached(&run(&engine, &workflow).await), ["reader"]);
}
