//! The agent output cache: unchanged inputs are not run again; a change
//! re-runs exactly the agents that read it.

use std::sync::Arc;

use crate::run_cli as cli;
use ensemble::cache::AgentCache;
use ensemble::{Engine, RunOptions, RunReport, Workflow};
use ensemble_tests::{Project, config_writer, copier, writer};

/// Write the project's components and workflow: `src` writes its config
/// (`{v: V}`); `copy1` reads it; `copy2` reads `copy1`'s output; `other`
/// reads nothing.
fn rewrite(project: &Project, v: u32) -> Workflow {
    project.component("src", &config_writer("src.value"));
    project.component("copy1", &copier("src.value", "copy1.value"));
    project.component("copy2", &copier("copy1.value", "copy2.value"));
    if !project.path().join("other.wasm").exists() {
        project.component("other", &writer("other.value"));
    }
    project.workflow(&format!(
        "agents:
  src: {{component: src.wasm, config: {{v: {v}}}}}
  copy1: {{component: copy1.wasm, needs: [src]}}
  copy2: {{component: copy2.wasm, needs: [copy1]}}
  other: {{component: other.wasm}}
"
    ))
}

async fn run(engine: &Engine, workflow: &Workflow) -> RunReport {
    let spec = workflow.cache();
    let cache = Arc::new(AgentCache::open(&spec.dir, spec.max_size, spec.compress_above));
    let report =
        crate::bounded(engine.run(workflow, RunOptions { cache: Some(cache), ..RunOptions::default() }))
            .await;
    assert!(report.succeeded(), "{report:#?}");
    report
}

fn cached(report: &RunReport) -> Vec<&str> {
    report.agents.iter().filter(|a| a.cached).map(|a| a.agent.as_str()).collect()
}

fn context(report: &RunReport) -> Vec<(String, Vec<u8>)> {
    report.context.iter().map(|(k, e)| (k.clone(), e.value.to_vec())).collect()
}

#[tokio::test]
async fn a_second_run_instantiates_nothing_and_commits_the_same_context() {
    let project = Project::new();
    let workflow = rewrite(&project, 1);
    let engine = ensemble_tests::engine();
    let first = run(&engine, &workflow).await;
    assert!(cached(&first).is_empty());
    let instances = engine.runtime().instantiations();
    let second = run(&engine, &workflow).await;
    assert_eq!(cached(&second), ["src", "copy1", "copy2", "other"]);
    assert_eq!(engine.runtime().instantiations(), instances, "no agent was instantiated");
    assert_eq!(context(&second), context(&first));
}

#[tokio::test]
async fn a_changed_input_reruns_exactly_the_agents_that_read_it() {
    let project = Project::new();
    let workflow = rewrite(&project, 1);
    let engine = ensemble_tests::engine();
    run(&engine, &workflow).await;
    let changed = rewrite(&project, 2);
    let report = run(&engine, &changed).await;
    assert_eq!(cached(&report), ["other"], "src's config changed, copy1 and copy2 read what followed");
    let value: serde_json::Value =
        rmp_serde::from_slice(&report.context.get("copy2.value").expect("committed").value).expect("msgpack");
    assert_eq!(value, serde_json::json!({"v": 2}));
}

#[tokio::test]
async fn a_changed_component_reruns_that_agent() {
    let project = Project::new();
    let workflow = rewrite(&project, 1);
    let engine = ensemble_tests::engine();
    run(&engine, &workflow).await;
    project.component("other", &ensemble_tests::writer_of("other.value", b"\xa3new"));
    let fresh = ensemble_tests::engine(); // loads the new bytes
    let report = run(&fresh, &workflow).await;
    assert_eq!(cached(&report), ["src", "copy1", "copy2"]);
    assert_eq!(&report.context.get("other.value").expect("committed").value[..], b"\xa3new");
}

#[tokio::test]
async fn damaged_entries_are_recomputed() {
    let project = Project::new();
    let workflow = rewrite(&project, 1);
    let engine = ensemble_tests::engine();
    let first = run(&engine, &workflow).await;
    let mut damaged = 0;
    for family in std::fs::read_dir(&workflow.cache().dir).expect("cache dir").filter_map(Result::ok) {
        if family.path().is_dir() {
            for entry in std::fs::read_dir(family.path()).expect("family").filter_map(Result::ok) {
                let mut bytes = std::fs::read(entry.path()).expect("read");
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x55;
                std::fs::write(entry.path(), bytes).expect("write");
                damaged += 1;
            }
        }
    }
    assert_eq!(damaged, 4);
    let second = run(&engine, &workflow).await;
    assert!(cached(&second).is_empty(), "nothing damaged is trusted");
    assert_eq!(context(&second), context(&first));
    let third = run(&engine, &workflow).await;
    assert_eq!(cached(&third).len(), 4, "and the entries were written anew");
}

#[test]
fn the_cache_commands_and_no_cache() {
    let project = Project::new();
    let path = rewrite(&project, 1).path().to_string_lossy().into_owned();
    let (code, out, _) = cli(&["run", &path, "--quiet"]);
    assert_eq!(code, 0, "{out}");
    let (_, out, _) = cli(&["run", &path, "--quiet"]);
    assert_eq!(out.matches("cached ").count(), 4, "{out}");
    let (_, out, _) = cli(&["run", &path, "--quiet", "--no-cache"]);
    assert_eq!(out.matches("cached ").count(), 0, "{out}");

    let (code, out, _) = cli(&["cache", "stats", &path]);
    assert_eq!(code, 0);
    assert!(out.contains("4 entries") && out.contains("4 hits in 8 lookups (50%)"), "{out}");
    assert!(out.contains("compiled components"), "{out}");
    let (code, out, _) = cli(&["cache", "gc", &path]);
    assert_eq!(code, 0);
    assert!(out.contains("evicted 0 entries"), "{out}");
    let (code, _, _) = cli(&["cache", "clear", &path]);
    assert_eq!(code, 0);
    let (_, out, _) = cli(&["cache", "stats", &path]);
    assert!(out.contains("0 entries"), "{out}");
}

/// An entry made when the agent owned its keys is not used once it does not.
#[tokio::test]
async fn a_cached_output_is_not_committed_to_keys_no_longer_owned() {
    let project = Project::new();
    let workflow = rewrite(&project, 1);
    let engine = ensemble_tests::engine();
    run(&engine, &workflow).await;
    let text = std::fs::read_to_string(workflow.path())
        .expect("read")
        .replace("src: {component: src.wasm,", "src: {component: src.wasm, owns: [elsewhere],");
    std::fs::write(workflow.path(), text).expect("write");
    let moved = Workflow::load(workflow.path()).expect("valid");
    let spec = moved.cache();
    let cache = Arc::new(AgentCache::open(&spec.dir, spec.max_size, spec.compress_above));
    let report =
        crate::bounded(engine.run(&moved, RunOptions { cache: Some(cache), ..RunOptions::default() })).await;
    assert!(!report.agent("src").expect("src").cached, "{report:#?}");
    assert!(
        matches!(report.error("src"), Some(ensemble::AgentError::Ownership(_))),
        "it ran, and broke the rule"
    );
}

#[test]
fn clearing_the_cache_leaves_other_files_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("runs")).expect("mkdir");
    std::fs::write(dir.path().join("runs/keep.redb"), b"journal").expect("write");
    let cache = AgentCache::open(dir.path(), 1 << 20, 1 << 20);
    let snapshot = ensemble::context::ContextStore::new().snapshot();
    let family = ensemble::cache::Family {
        agent: "a",
        component: "c",
        config: &[],
        templates: None,
        reads: None,
        grants: None,
    };
    cache.store(&family, &Default::default(), &Default::default(), std::time::Duration::ZERO);
    assert!(cache.lookup(&family, &snapshot).is_some());
    cache.clear().expect("cleared");
    assert!(cache.lookup(&family, &snapshot).is_none());
    assert!(dir.path().join("runs/keep.redb").exists(), "not a cache file: kept");
}

/// An agent with `reads` patterns that lists keys is cached like any other
/// (its listing is recorded as the cache compares it), and narrowing its
/// patterns makes it run again.
#[tokio::test]
async fn an_agent_with_read_patterns_that_lists_keys_is_cached() {
    use ensemble_tests::{IMPORT_PUT, OK, RET, agent_module, core_agent};
    let import_keys = r#"(import "ensemble:agent/context@0.1.1" "keys" (func $keys (param i32 i32 i32)))"#;
    let lister = core_agent(&agent_module(
        &format!("{import_keys}\n  {IMPORT_PUT}"),
        r#"(data (i32.const 3000) "src") (data (i32.const 3100) "lister.value") (data (i32.const 3500) "\a2ok")"#,
        &format!(
            "(call $keys (i32.const 3000) (i32.const 0) (i32.const {RET}))
             (call $put (i32.const 3100) (i32.const 12) (i32.const 3500) (i32.const 3) (i32.const {RET}))
             (i32.const {OK})"
        ),
    ));
    let project = Project::new();
    project
        .component("src", &writer("src.value"))
        .component("other", &writer("other.value"))
        .component("lister", &lister);
    // It lists every key (prefix ""), `other.value` among them, which it may not read.
    let workflow = |reads: &str| {
        project.workflow(&format!(
            "agents:\n  src: {{component: src.wasm}}\n  other: {{component: other.wasm}}\n  lister: {{component: lister.wasm, needs: [src, other], reads: [{reads}]}}\n"
        ))
    };
    let engine = ensemble_tests::engine();
    assert!(cached(&run(&engine, &workflow("src.*")).await).is_empty());
    assert_eq!(cached(&run(&engine, &workflow("src.*")).await), ["src", "other", "lister"]);
    assert_eq!(
        cached(&run(&engine, &workflow("src.value")).await),
        ["src", "other"],
        "other patterns: it runs again"
    );
}
