//! Validators that fail inside `validate`: a group's cross-validation runs
//! `bad`'s `validate` over `good`'s committed outputs, after the barrier.

use std::time::Instant;

use ensemble::{
    AgentError, AgentStatus, Engine, EventKind, GroupStatus, RunOptions, RuntimeConfig, ValidationOutcome,
};
use ensemble_tests::{OK, agent_module_with_validate, core_agent};

use crate::{Memory, assert_good_committed, bounded, good_run, isolated};

/// An agent whose `run` succeeds, writing nothing, and whose `validate` is `body`.
fn validator(body: &str) -> Vec<u8> {
    core_agent(&agent_module_with_validate("", "", &format!("(i32.const {OK})"), body))
}

type Expect = fn(&AgentError) -> bool;

fn cases() -> Vec<(&'static str, Vec<u8>, &'static str, Expect)> {
    vec![
        ("loops", validator("(loop $l (br $l)) (i32.const 0)"), "", |e| {
            matches!(e, AgentError::Timeout { .. })
        }),
        (
            "loops with a fuel budget",
            validator("(loop $l (br $l)) (i32.const 0)"),
            "    fuel: 5000000\n",
            |e| matches!(e, AgentError::OutOfFuel { budget: 5_000_000, .. }),
        ),
        (
            "traps",
            validator("unreachable"),
            "",
            |e| matches!(e, AgentError::Trap { message, .. } if message.contains("unreachable")),
        ),
        (
            "exhausts its memory",
            validator(
                "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable",
            ),
            "    resources: {memory: 2}\n",
            |e| matches!(e, AgentError::MemoryLimit { limit, requested, .. } if *limit == 8 << 20 && requested > limit),
        ),
    ]
}

isolated! {
    async fn a_validator_that_fails_inside_validate_fails_the_validation_alone() {
        let engine = Engine::new(RuntimeConfig::default()).expect("engine");
        let project = crate::project();
        good_run(&engine, &project).await;
        let mut memory = Memory::baseline();
        for (what, component, settings, expect) in cases() {
            let started = Instant::now();
            let name = format!("a validator that {what}");
            project.component("bad", &component);
            let workflow = project.workflow(&format!(
                "agents:
  good:
    component: good.wasm
  bad:
    component: bad.wasm
{settings}groups:
  g:
    agents: [good, bad]
    cross_validation: {{validators: [bad], timeout: 1s, on_failure: fail}}
"
            ));
            let options = RunOptions::default();
            let mut events = options.events.subscribe();
            let report = bounded(&name, engine.run(&workflow, options)).await;
            // `bad`'s `run` commits nothing, before or after `good`'s.
            let mut version = None;
            while let Ok(event) = events.try_recv() {
                if let EventKind::Committed { agent, version: v, keys } = event.kind
                    && agent == "good"
                {
                    assert_eq!(keys, ["good.value"], "{name}");
                    version = Some(v);
                }
            }
            let version = version.unwrap_or_else(|| panic!("{name}: good committed"));
            assert_good_committed(&name, &report, version);
            let keys: Vec<&String> = report.context.iter().map(|(k, _)| k).collect();
            assert_eq!(keys, ["good.value"], "{name}: only good's value is committed");
            assert!(
                matches!(report.agent("bad").map(|a| &a.status), Some(AgentStatus::Succeeded { .. })),
                "{name}: its `run` succeeded: {report:#?}"
            );
            let validation = report
                .validations
                .iter()
                .find(|v| v.validator == "bad" && v.subject == "good")
                .unwrap_or_else(|| panic!("{name}: bad validated good: {report:#?}"));
            let ValidationOutcome::Error(error) = &validation.outcome else {
                panic!("{name}: the validation failed: {report:#?}")
            };
            assert_eq!(error.agent(), "bad", "{name}");
            assert!(error.to_string().contains("`bad`"), "{name}: the message names the agent: {error}");
            assert!(expect(error), "{name}: unexpected error: {error:?}");
            let Some(GroupStatus::Failed { because }) = report.group("g").map(|g| &g.status) else {
                panic!("{name}: `on_failure: fail` fails the group: {report:#?}")
            };
            assert!(because.contains("`bad`"), "{name}: the group's failure names the validator: {because}");
            assert!(!report.succeeded(), "{name}");
            good_run(&engine, &project).await;
            memory.check(&format!("{name}: {error} ({:?})", started.elapsed()), 256);
        }
        memory.finish(512);
    }
}
