//! The seed workflow end to end: six BMAD agents turn a brief into documents.

use std::collections::BTreeMap;

use ensemble::{RunOptions, RunReport, ValidationOutcome, Workflow};
use ensemble_tests::repo_root;

const DOCUMENTS: [(&str, &str); 6] = [
    ("brief.md", "analyst.documents.brief"),
    ("prd.md", "pm.documents.prd"),
    ("front-end-spec.md", "ux_expert.documents.front_end_spec"),
    ("architecture.md", "architect.documents.architecture"),
    ("implementation-plan.md", "developer.documents.implementation_plan"),
    ("qa-report.md", "qa.documents.report"),
];

/// One engine for these tests: the six components compile once.
fn engine() -> &'static ensemble::Engine {
    static ENGINE: std::sync::OnceLock<ensemble::Engine> = std::sync::OnceLock::new();
    ENGINE.get_or_init(ensemble_tests::engine)
}

async fn run(workflow: &Workflow, brief: &str) -> RunReport {
    let path = repo_root().join("examples/bmad/briefs").join(brief);
    let input = ensemble::inputs::load_input(&path).expect("the brief loads");
    let options =
        RunOptions { inputs: BTreeMap::from([("brief".to_owned(), input)]), ..RunOptions::default() };
    let report = crate::bounded(engine().run(workflow, options)).await;
    assert!(report.succeeded(), "{report:#?}");
    report
}

fn bmad() -> Workflow {
    Workflow::load(repo_root().join("examples/bmad/workflow.yaml")).expect("the bmad workflow loads")
}

fn document(report: &RunReport, key: &str) -> String {
    rmp_serde::from_slice(&report.context.get(key).unwrap_or_else(|| panic!("{key} committed")).value)
        .expect("a document is a string")
}

#[tokio::test]
async fn both_briefs_give_their_documents_byte_for_byte_every_time() {
    let workflow = bmad();
    for brief in ["taskflow.yaml", "clinic.yaml"] {
        let first = run(&workflow, brief).await;
        let second = run(&workflow, brief).await;
        for (file, key) in DOCUMENTS {
            let text = document(&first, key);
            assert_eq!(text, document(&second, key), "{brief}: {file} is deterministic");
            insta::assert_snapshot!(format!("{}-{file}", brief.trim_end_matches(".yaml")), text);
        }
    }
}

#[tokio::test]
async fn ux_and_architect_report_mobile_first_against_desktop_primary() {
    let workflow = bmad();
    let report = run(&workflow, "taskflow.yaml").await;
    let finding = report
        .validations
        .iter()
        .filter(|v| v.validator == "ux_expert" && v.subject == "architect")
        .find_map(|v| match &v.outcome {
            ValidationOutcome::Rejected { findings } => findings.first(),
            _ => None,
        })
        .expect("ux_expert rejects the architecture for taskflow");
    assert!(
        finding.message.contains("mobile-first") && finding.message.contains("desktop-primary"),
        "{}",
        finding.message
    );

    let report = run(&workflow, "clinic.yaml").await;
    assert_eq!(
        report.failed_validations().count(),
        0,
        "the clinic's users are on desktops: {:#?}",
        report.validations
    );
}

/// `ux_expert` uses `architect.technology_stack` only if it was committed
/// before it started: in the seed workflow they run side by side, so it
/// does not; with a data need on the architect, it does.
#[tokio::test]
async fn the_ux_expert_works_with_and_without_the_architects_stack() {
    let workflow = bmad();
    let without = run(&workflow, "taskflow.yaml").await;
    let spec = document(&without, "ux_expert.documents.front_end_spec");
    assert!(spec.contains("framework-agnostic"), "{spec}");

    let dir = tempfile::tempdir().expect("tempdir");
    let dist = repo_root().join("agents/dist");
    let mut yaml = String::from("name: ux-after-architect\n");
    yaml.push_str(&format!(
        "templates: {}\nagents:\n",
        repo_root().join("examples/bmad/templates").display()
    ));
    for (id, file, needs) in [
        ("analyst", "analyst", "[]"),
        ("pm", "pm", "[analyst]"),
        ("architect", "architect", "[pm]"),
        ("ux_expert", "ux-expert", "[pm, architect]"),
    ] {
        yaml.push_str(&format!(
            "  {id}: {{component: {}, needs: {needs}}}\n",
            dist.join(format!("{file}.wasm")).display()
        ));
    }
    let path = dir.path().join("workflow.yaml");
    std::fs::write(&path, yaml).expect("write");
    let with = run(&Workflow::load(&path).expect("valid"), "taskflow.yaml").await;
    let spec = document(&with, "ux_expert.documents.front_end_spec");
    assert!(spec.contains("Framework: React (TypeScript)") && !spec.contains("framework-agnostic"), "{spec}");
}

#[test]
fn the_cli_writes_the_documents() {
    let out = tempfile::tempdir().expect("tempdir");
    let workflow = repo_root().join("examples/bmad/workflow.yaml");
    // A copy in a temporary directory, its relative paths made absolute.
    let bmad = repo_root().join("examples/bmad");
    let text = std::fs::read_to_string(&workflow)
        .expect("read")
        .replace("dir: out", &format!("dir: {}", out.path().display()))
        .replace("templates: templates", &format!("templates: {}", bmad.join("templates").display()))
        .replace("../../agents/dist/", &format!("{}/", repo_root().join("agents/dist").display()));
    let copy = out.path().join("workflow.yaml");
    std::fs::write(&copy, text).expect("write");
    let brief = repo_root().join("examples/bmad/briefs/clinic.yaml");
    let state = out.path().join("state");
    let argv = [
        "ensemble".to_owned(),
        "run".into(),
        copy.to_string_lossy().into_owned(),
        "--input".into(),
        format!("brief={}", brief.display()),
        "--state-dir".into(),
        state.to_string_lossy().into_owned(),
        "--quiet".into(),
    ];
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let code = ensemble_cli::main(argv, &mut stdout, &mut stderr);
    let stdout = String::from_utf8_lossy(&stdout);
    assert_eq!(code, 0, "{stdout}\n{}", String::from_utf8_lossy(&stderr));
    for (file, _) in DOCUMENTS {
        let text = std::fs::read_to_string(out.path().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.starts_with('#'), "{file}: {text}");
    }
    assert!(stdout.contains("context: version 7, 24 keys"), "{stdout}");
}
