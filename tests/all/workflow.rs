//! Workflow files: every problem reported, each at file:line:col.

use ensemble::{Workflow, WorkflowError};
use ensemble_tests::{Project, writer};

fn problems(yaml: &str) -> String {
    let project = Project::new();
    project.component("a", &writer("a.value"));
    match Workflow::load(project.workflow_file(yaml)) {
        Ok(_) => panic!("workflow should be invalid"),
        Err(e @ WorkflowError::Invalid { .. }) => e.to_string(),
        Err(e) => panic!("expected validation problems, got {e}"),
    }
}

#[test]
fn unknown_need_points_at_the_line_and_suggests() {
    let text = problems(
        "agents:\n  architect:\n    component: a.wasm\n  pm:\n    component: a.wasm\n    needs: [archtect]\n",
    );
    assert!(text.contains("workflow.yaml:6:"), "{text}");
    assert!(text.contains("unknown agent `archtect` (did you mean `architect`?)"), "{text}");
}

#[test]
fn all_problems_are_reported() {
    let text = problems(
        "agents:\n  a:\n    component: missing.wasm\n    timeout: soon\n  b:\n    component: a.wasm\n    needs: [nobody]\n",
    );
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("missing.wasm does not exist"), "{text}");
    assert!(text.contains("timeout `soon` is not a duration"), "{text}");
    assert!(text.contains("unknown agent `nobody`"), "{text}");
}

#[test]
fn cycles_name_every_agent_on_them() {
    let text = problems(
        "agents:\n  a:\n    component: a.wasm\n    needs: [c]\n  b:\n    component: a.wasm\n    needs: [a]\n  c:\n    component: a.wasm\n    needs: [b]\n",
    );
    assert!(text.contains("dependency cycle"), "{text}");
    for agent in ["`a`", "a →", "b", "c"] {
        assert!(text.contains(agent.trim_matches('`')), "{agent} in {text}");
    }
}

#[test]
fn unknown_fields_are_errors() {
    let text = problems("agents:\n  a:\n    component: a.wasm\n    need: [b]\n");
    assert!(text.contains("workflow.yaml:4:"), "{text}");
    assert!(text.contains("need"), "{text}");
}

#[test]
fn overlapping_ownership_is_refused() {
    let text = problems(
        "agents:\n  a:\n    component: a.wasm\n    owns: [shared]\n  b:\n    component: a.wasm\n    owns: [shared.x]\n",
    );
    assert!(text.contains("overlaps `shared` owned by agent `a`"), "{text}");
}

#[test]
fn agent_larger_than_the_pool_is_refused() {
    let text = problems(
        "resources:\n  memory: 8\nagents:\n  a:\n    component: a.wasm\n    resources:\n      memory: 9\n",
    );
    assert!(text.contains("asks for 9 memory units but the pool has 8"), "{text}");
}

#[test]
fn defaults_are_sane() {
    let project = Project::new();
    project.component("a", &writer("a.value"));
    let workflow = project.workflow("agents:\n  a:\n    component: a.wasm\n    config: {name: Ada}\n");
    let a = workflow.agent("a").expect("agent a");
    assert_eq!(a.owns, ["a"]);
    assert_eq!(workflow.resources.max_concurrent, 3);
    assert_eq!(a.memory_bytes(&workflow.resources), 64 << 20);
    assert!(!a.config.is_empty());
}
