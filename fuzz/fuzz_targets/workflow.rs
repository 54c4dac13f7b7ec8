//! The workflow parser and validator, then the planner on what validates:
//! every input gets a workflow or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match ensemble::Workflow::parse_for_planning(text, "fuzz/workflow.yaml") {
        Ok(workflow) => {
            let plan = ensemble::plan::plan(&workflow);
            assert_eq!(plan.agents.len(), workflow.agents().len(), "the plan covers every agent");
        }
        Err(error) => {
            // Errors name the file.
            assert!(error.to_string().contains("workflow.yaml"), "{error}");
        }
    }
});
