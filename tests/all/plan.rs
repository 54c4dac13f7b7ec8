//! `ensemble plan` and `ensemble graph`: the plan as people read it (table,
//! Mermaid, DOT) and as programs read it (JSON), as insta snapshots.

use ensemble_cli::{EXIT_INVALID, EXIT_OK};
use ensemble_tests::{Project, repo_root};

fn ensemble(args: &[&str]) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let argv = std::iter::once("ensemble").chain(args.iter().copied());
    let code = ensemble_cli::main(argv, &mut out, &mut err);
    (code, String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned())
}

/// The seed's shape: analyst → pm → [ux_expert ∥ architect] → developer → qa,
/// with every kind of edge. No component exists: planning does not need them.
const SEED: &str = r#"
name: seed
resources: { cpu: 100, memory: 100, max_concurrent: 3 }
agents:
  analyst:
    component: analyst.wasm
    resources: { cpu: 20, memory: 10 }
    estimate: 4m
  pm:
    component: pm.wasm
    needs: [analyst]
    resources: { cpu: 30, memory: 20 }
    estimate: 5m
  ux_expert:
    component: ux.wasm
    needs: [pm, { agent: architect, kind: context }]
    resources: { cpu: 30, memory: 25 }
    estimate: 6m
  architect:
    component: architect.wasm
    needs: [pm, { agent: pm, kind: validation }]
    resources: { cpu: 40, memory: 35 }
    estimate: 7m
  developer:
    component: developer.wasm
    needs: [ux_expert, architect]
    resources: { cpu: 50, memory: 35 }
    estimate: 10m
  qa:
    component: qa.wasm
    needs: [developer, { agent: analyst, kind: resource }]
    resources: { cpu: 20, memory: 20 }
  docs:
    component: docs.wasm
    needs: [pm]
    estimate: 2m
groups:
  design:
    agents: [ux_expert, architect]
    cross_validation:
      validators: [architect, ux_expert]
"#;

fn seed_command(project: &Project, args: &[&str]) -> String {
    let path = project.workflow_file(SEED);
    let path = path.to_string_lossy();
    let mut argv = vec![args[0], &path];
    argv.extend(&args[1..]);
    let (code, out, err) = ensemble(&argv);
    assert_eq!(code, EXIT_OK, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.is_empty(), "{err}");
    out
}

#[test]
fn plan_table() {
    insta::assert_snapshot!(seed_command(&Project::new(), &["plan"]));
}

#[test]
fn plan_json() {
    let out = seed_command(&Project::new(), &["plan", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(&out).expect("plan --json prints JSON");
    assert_eq!(plan["critical_path"]["length_ms"], (4 + 5 + 7 + 10) * 60_000 + 1000);
    insta::assert_snapshot!(out);
}

#[test]
fn graph_mermaid() {
    let project = Project::new();
    let default = seed_command(&project, &["graph"]);
    assert_eq!(default, seed_command(&project, &["graph", "--format", "mermaid"]));
    insta::assert_snapshot!(default);
}

#[test]
fn graph_dot() {
    insta::assert_snapshot!(seed_command(&Project::new(), &["graph", "--format", "dot"]));
}

#[test]
fn the_bmad_example_plans_before_its_agents_exist() {
    let path = repo_root().join("examples/bmad/workflow.yaml");
    let path = path.to_string_lossy();
    let (code, out, err) = ensemble(&["plan", &path]);
    assert_eq!(code, EXIT_OK, "{err}");
    assert!(out.contains("critical path: analyst → pm →"), "{out}");
    assert!(out.contains("design (declared)"), "{out}");
    for format in ["mermaid", "dot"] {
        let (code, out, err) = ensemble(&["graph", &path, "--format", format]);
        assert_eq!(code, EXIT_OK, "{err}");
        assert!(out.contains("ux_expert") && out.contains("architect"), "{out}");
    }
}

#[test]
fn an_invalid_workflow_exits_2_with_its_problems() {
    let project = Project::new();
    let path = project.workflow_file("agents:\n  a:\n    component: a.wasm\n    needs: [b]\n");
    for args in [&["plan"][..], &["plan", "--json"], &["graph"], &["graph", "--format", "dot"]] {
        let mut argv = args.to_vec();
        let path = path.to_string_lossy();
        argv.insert(1, &path);
        let (code, out, err) = ensemble(&argv);
        assert_eq!(code, EXIT_INVALID, "{args:?}");
        assert!(out.is_empty(), "{out}");
        assert!(err.contains("workflow.yaml:4:") && err.contains("unknown agent `b`"), "{err}");
    }
}

#[test]
fn an_unknown_graph_format_is_refused() {
    let project = Project::new();
    let path = project.workflow_file("agents:\n  a:\n    component: a.wasm\n");
    let (code, _, err) = ensemble(&["graph", &path.to_string_lossy(), "--format", "svg"]);
    assert_eq!(code, EXIT_INVALID);
    assert!(err.contains("mermaid") && err.contains("dot"), "{err}");
}
