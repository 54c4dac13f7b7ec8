//! Workflow files: every problem reported, each at file:line:col, with a
//! way to fix it. Diagnostics are snapshots (insta): they are read by people.

use ensemble::workflow::{DependencyKind, Success, TimeoutStrategy};
use ensemble::{Workflow, WorkflowError};
use ensemble_tests::{Project, writer};

/// The diagnostics for `yaml`, with the temporary directory shown as `<dir>`.
fn problems(yaml: &str) -> String {
    let project = Project::new();
    project.component("a", &writer("a.value"));
    match Workflow::load(project.workflow_file(yaml)) {
        Ok(_) => panic!("workflow should be invalid"),
        Err(e @ WorkflowError::Invalid { .. }) => {
            e.to_string().replace(&project.path().display().to_string(), "<dir>")
        }
        Err(e) => panic!("expected validation problems, got {e}"),
    }
}

#[test]
fn unknown_need_points_at_the_line_and_suggests() {
    insta::assert_snapshot!(problems(
        "agents:\n  architect:\n    component: a.wasm\n  pm:\n    component: a.wasm\n    needs: [archtect]\n"
    ), @"<dir>/workflow.yaml:6:13: agent `pm` needs unknown agent `archtect` (did you mean `architect`?)");
}

#[test]
fn all_problems_are_reported() {
    insta::assert_snapshot!(problems(
        "agents:\n  a:\n    component: missing.wasm\n    timeout: soon\n  b:\n    component: a.wasm\n    needs: [nobody]\n",
    ), @r"
    <dir>/workflow.yaml:3:16: agent `a`: component file <dir>/missing.wasm does not exist
    <dir>/workflow.yaml:4:14: agent `a`: timeout `soon` is not a duration (expected number at 0); write e.g. `30s` or `2m`
    <dir>/workflow.yaml:7:13: agent `b` needs unknown agent `nobody`
    ");
}

#[test]
fn cycles_name_every_agent_on_them() {
    insta::assert_snapshot!(problems(
        "agents:\n  a:\n    component: a.wasm\n    needs: [c]\n  b:\n    component: a.wasm\n    needs: [a]\n  c:\n    component: a.wasm\n    needs: [b]\n",
    ), @"<dir>/workflow.yaml:3:5: dependency cycle: a → c → b → a (each needs the next): remove one of these needs");
}

#[test]
fn non_blocking_needs_do_not_make_cycles() {
    let project = Project::new();
    project.component("a", &writer("a.value"));
    let workflow = project.workflow(
        "agents:\n  a:\n    component: a.wasm\n    needs: [{agent: b, kind: context}]\n  b:\n    component: a.wasm\n    needs: [a, {agent: a, kind: validation}]\n",
    );
    let a = workflow.agent("a").expect("a");
    assert_eq!(a.needs[0].kind, DependencyKind::Context);
    assert_eq!(a.blocking_needs().count(), 0);
    assert_eq!(workflow.agent("b").expect("b").blocking_needs().collect::<Vec<_>>(), ["a"]);
}

/// Overlaps are found both ways (an agent owning what covers an earlier
/// one's prefix, or what it covers), whole segments only, in file order.
#[test]
fn overlapping_ownership_is_found_above_and_below() {
    let yaml = "agents:\n  a:\n    component: a.wasm\n    owns: [notes.a, pm.x]\n  b:\n    component: a.wasm\n    owns: [pmx]\n  c:\n    component: a.wasm\n    owns: [notes, pm]\n";
    insta::assert_snapshot!(problems(yaml), @r"
    <dir>/workflow.yaml:9:5: agent `c` owns `notes`, which overlaps `notes.a` owned by agent `a`: give each agent its own prefix, or declare `notes.a` under `shared` with a conflict policy
    <dir>/workflow.yaml:9:5: agent `c` owns `pm`, which overlaps `pm.x` owned by agent `a`: give each agent its own prefix, or declare `pm.x` under `shared` with a conflict policy
    ");
}

#[test]
fn unknown_fields_are_errors_with_a_hint() {
    insta::assert_snapshot!(
        problems("agents:\n  a:\n    component: a.wasm\n    need: [b]\n"),
        @"<dir>/workflow.yaml:4:5: unknown field `need`, expected one of component, owns, reads, needs, config, resources, fuel, timeout, estimate, priority, retry, defaults, wasi, grants, cache (did you mean `needs`?)"
    );
}

#[test]
fn overlapping_ownership_is_refused_unless_shared() {
    let yaml = "agents:\n  a:\n    component: a.wasm\n    owns: [notes]\n  b:\n    component: a.wasm\n    owns: [notes.b]\n";
    insta::assert_snapshot!(problems(yaml), @"<dir>/workflow.yaml:6:5: agent `b` owns `notes.b`, which overlaps `notes` owned by agent `a`: give each agent its own prefix, or declare `notes.b` under `shared` with a conflict policy");
    let project = Project::new();
    project.component("a", &writer("a.value"));
    let shared = project.workflow(&format!("shared:\n  notes: merge_or_fail\n{yaml}"));
    assert_eq!(shared.shared()[0].prefix, "notes");
}

#[test]
fn agent_larger_than_the_pool_is_refused() {
    insta::assert_snapshot!(problems(
        "resources:\n  memory: 8\n  cpu: 10\nagents:\n  a:\n    component: a.wasm\n    resources:\n      memory: 9\n      cpu: 13\n"
    ), @r"
    <dir>/workflow.yaml:8:15: agent `a` asks for 9 memory units but the pool has 8: lower it or raise resources.memory
    <dir>/workflow.yaml:9:12: agent `a` asks for 13 cpu units but the pool has 12: lower it or raise resources.cpu
    ");
}

#[test]
fn groups_that_contradict_the_dependencies() {
    insta::assert_snapshot!(problems(
        "agents:\n  a:\n    component: a.wasm\n  b:\n    component: a.wasm\n    needs: [a]\n  c:\n    component: a.wasm\n    needs: [b]\n\
         groups:\n  inside:\n    agents: [a, b]\n  across:\n    agents: [c]\n  other:\n    agents: [c, nobody]\n"
    ), @r"
    <dir>/workflow.yaml:6:13: group `inside` runs `b` and `a` in parallel, but `b` needs `a`: make it a `context` need or move one out of the group
    <dir>/workflow.yaml:16:14: agent `c` is in group `across` and in group `other`: an agent belongs to one group
    <dir>/workflow.yaml:16:17: group `other` lists unknown agent `nobody`
    ");
    insta::assert_snapshot!(problems(
        "agents:\n  a:\n    component: a.wasm\n  b:\n    component: a.wasm\n    needs: [a]\n  c:\n    component: a.wasm\n    needs: [b]\n\
         groups:\n  ends:\n    agents: [a, c]\n"
    ), @"<dir>/workflow.yaml:12:5: groups contradict the dependencies: group `ends` → agent `b` → group `ends` (each needs the next)");
}

#[test]
fn zero_and_malformed_durations() {
    insta::assert_snapshot!(problems(
        "agents:\n  a:\n    component: a.wasm\n    timeout: 0s\n    estimate: -3m\n    retry: {attempts: 0, backoff: 1m, max_backoff: 1s}\n\
         groups:\n  g:\n    agents: [a]\n    barrier:\n      on_timeout: [{extend_timeout: {by: 1m}}]\n"
    ), @r"
    <dir>/workflow.yaml:4:14: agent `a`: timeout must be longer than zero
    <dir>/workflow.yaml:5:15: agent `a`: estimate `-3m` is not a duration (expected number at 0); write e.g. `30s` or `2m`
    <dir>/workflow.yaml:6:12: agent `a`: retry.max_backoff is shorter than retry.backoff
    <dir>/workflow.yaml:6:23: agent `a`: retry.attempts counts the first attempt, so it is at least 1
    <dir>/workflow.yaml:11:20: group `g`: extend_timeout needs a barrier.timeout to extend
    ");
}

#[test]
fn defaults_and_outputs_must_be_owned() {
    insta::assert_snapshot!(problems(
        "agents:\n  a:\n    component: a.wasm\n    defaults: {b.x: 1}\noutputs:\n  dir: out\n  files:\n    x.md: {key: nobody.doc}\n"
    ), @r"
    <dir>/workflow.yaml:4:15: agent `a` has a default for `b.x`, which it does not own
    <dir>/workflow.yaml:8:17: output `x.md`: no agent owns `nobody.doc`, so nothing can write it
    ");
}

#[test]
fn defaults_are_sane() {
    let project = Project::new();
    project.component("a", &writer("a.value"));
    let workflow = project.workflow("agents:\n  a:\n    component: a.wasm\n    config: {name: Ada}\n");
    let a = workflow.agent("a").expect("agent a");
    assert_eq!(a.owns, ["a"]);
    assert_eq!(workflow.resources().max_concurrent, 3);
    assert_eq!(workflow.resources().cpu_oversubscription, 1.2);
    assert!(workflow.resources().memory_strict);
    assert_eq!(a.memory_bytes(workflow.resources()), 64 << 20);
    assert_eq!(a.retry.attempts, 1);
    assert!(!a.config.is_empty());
    assert!(workflow.cache().enabled);
    assert_eq!(workflow.cache().max_size, 100 << 20);
    assert_eq!(workflow.cache().compress_above, 10 << 10);
}

#[test]
fn the_bmad_example_is_the_seed() {
    let path = ensemble_tests::repo_root().join("examples/bmad/workflow.yaml");
    let workflow = Workflow::load_for_planning(&path).expect("bmad workflow is valid");
    let ids: Vec<&str> = workflow.agents().iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["analyst", "pm", "ux_expert", "architect", "developer", "qa"]);
    let design = &workflow.groups()[0];
    assert_eq!(design.agents, ["ux_expert", "architect"]);
    assert_eq!(design.barrier.success, Success::AtLeastOne);
    assert!(matches!(design.barrier.on_timeout[0], TimeoutStrategy::ExtendTimeout { count: 1, .. }));
    assert_eq!(design.cross_validation.as_ref().map(|c| c.validators.len()), Some(2));
    assert_eq!(workflow.resources().cpu_oversubscription, 1.2);
    assert_eq!(workflow.outputs().map(|o| o.files.len()), Some(6));
}

#[test]
fn the_input_prefix_is_reserved() {
    insta::assert_snapshot!(
        problems("agents:\n  input:\n    component: a.wasm\n"),
        @"<dir>/workflow.yaml:3:5: agent `input` owns `input`, but `input` is reserved for the run's inputs (`--input NAME=FILE`): rename it"
    );
}

/// A large workflow parses: 30 000 agents, each with needs and resources
/// (the YAML parser's default budget refused one of some 14 000).
#[test]
fn a_workflow_of_thirty_thousand_agents_parses() {
    let n = 30_000;
    let mut yaml = String::from("agents:\n");
    for i in 0..n {
        let needs = if i < 100 {
            String::new()
        } else {
            format!("agent{}, agent{}, agent{}", i - 100, i - 99, i - 98)
        };
        yaml.push_str(&format!(
            "  agent{i}: {{component: a.wasm, needs: [{needs}], resources: {{cpu: 10, memory: 8}}, estimate: 1s}}\n"
        ));
    }
    let workflow =
        Workflow::parse_for_planning(&yaml, "workflow.yaml").unwrap_or_else(|e| panic!("{e:.300}"));
    assert_eq!(workflow.agents().len(), n);
}
