//! Agents in Python and JavaScript, built from source by
//! `examples/polyglot/build.sh`, run beside a Rust agent.
//!
//! The components are build products (not committed). CI builds them and
//! sets `ENSEMBLE_REQUIRE_POLYGLOT=1`, which makes their absence a failure;
//! elsewhere the test says it was skipped.

use ensemble::{RunOptions, Workflow};
use ensemble_tests::repo_root;

#[tokio::test]
async fn python_and_javascript_agents_run_beside_rust() {
    let dir = repo_root().join("examples/polyglot");
    let built = ["py-counter.wasm", "js-slugger.wasm"].iter().all(|c| dir.join("dist").join(c).is_file());
    if !built {
        ensemble_tests::skip_or_require(
            "polyglot::python_and_javascript_agents_run_beside_rust",
            "examples/polyglot/dist/ is not built",
            "run examples/polyglot/build.sh",
            "ENSEMBLE_REQUIRE_POLYGLOT",
        );
        return;
    }
    let workflow = Workflow::load(dir.join("workflow.yaml")).expect("the polyglot workflow loads");
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, RunOptions::default())).await;
    assert!(report.succeeded(), "{report:#?}");
    let value = |key: &str| -> serde_json::Value {
        rmp_serde::from_slice(&report.context.get(key).unwrap_or_else(|| panic!("{key}")).value)
            .expect("msgpack")
    };
    assert_eq!(value("py_counter.words"), serde_json::json!(3), "Python counted the words");
    assert_eq!(value("js_slugger.slug"), serde_json::json!("hello-ada-lovelace"), "JavaScript made the slug");
}
