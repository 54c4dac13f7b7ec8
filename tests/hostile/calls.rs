//! What the host makes of odd but survivable calls: progress outside [0, 1]
//! (NaN and the infinities too), messages over the 4 KiB cut in multi-byte
//! characters, and a value exactly at the 16 MiB limit.

use ensemble::{AgentStatus, Engine, EventKind, RunOptions, RuntimeConfig};
use ensemble_tests::{IMPORT_PROGRESS, OK, agent_module, core_agent};

use crate::fixtures::{self, MESSAGE_AT};
use crate::{Memory, bounded, isolated};

/// 6000 bytes of a 3-byte character: the 4096-byte cut falls inside one.
fn long_message() -> String {
    "€".repeat(2000)
}

/// What the host keeps of [`long_message`]: whole characters, then `…`.
fn cut_message() -> String {
    format!("{}…", "€".repeat(1365))
}

/// Reports progress `done` (WAT `f32.const` syntax) with [`long_message`], then succeeds.
fn reports(done: &str) -> Vec<u8> {
    let message = long_message();
    core_agent(&agent_module(
        IMPORT_PROGRESS,
        &format!(r#"(data (i32.const {MESSAGE_AT}) "{}")"#, fixtures::escaped(message.as_bytes())),
        &format!(
            "(call $report (f32.const {done}) (i32.const {MESSAGE_AT}) (i32.const {})) (i32.const {OK})",
            message.len()
        ),
    ))
}

/// The first value under `key` anywhere in `value`.
fn find<'v>(value: &'v serde_json::Value, key: &str) -> Option<&'v serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map.get(key).or_else(|| map.values().find_map(|v| find(v, key))),
        serde_json::Value::Array(items) => items.iter().find_map(|v| find(v, key)),
        _ => None,
    }
}

isolated! {
    /// Progress outside [0, 1] is clamped into it (NaN counts as nothing
    /// done), as `wit/agent.wit` says: the agent is not failed for it, and
    /// no NaN or infinity reaches the events (JSON has neither), the live
    /// view or the barrier. Long messages are cut on a character boundary.
    async fn odd_progress_is_clamped_and_long_messages_are_cut_between_characters() {
        let engine = Engine::new(RuntimeConfig::default()).expect("engine");
        let project = crate::project();
        let reporters = [("nan", "nan", 0.0), ("inf", "inf", 1.0), ("neginf", "-inf", 0.0), ("negative", "-0.5", 0.0), ("over", "1.5", 1.0)];
        let mut yaml = String::from("agents:\n");
        for (agent, done, _) in reporters {
            project.component(agent, &reports(done));
            yaml.push_str(&format!("  {agent}: {{component: {agent}.wasm}}\n"));
        }
        project.component("logger", &fixtures::logs(2, &long_message(), &format!("(i32.const {OK})")));
        yaml.push_str("  logger: {component: logger.wasm}\n");
        let options = RunOptions::default();
        let mut events = options.events.subscribe();
        let report = bounded("reporters", engine.run(&project.workflow(&yaml), options)).await;
        assert!(report.succeeded(), "odd progress fails no agent: {report:#?}");
        let mut progress = Vec::new();
        let mut logged = Vec::new();
        while let Ok(event) = events.try_recv() {
            let json = serde_json::to_string(&event).expect("every event serialises");
            let parsed: serde_json::Value = serde_json::from_str(&json).expect("as JSON that parses");
            match &event.kind {
                EventKind::Progress { agent, done, message } => {
                    let number = find(&parsed, "done").and_then(serde_json::Value::as_f64);
                    assert_eq!(number, Some(f64::from(*done)), "`done` is a number in the JSON: {json}");
                    progress.push((agent.clone(), *done, message.clone()));
                }
                EventKind::Log { agent, message, .. } => logged.push((agent.clone(), message.clone())),
                _ => {}
            }
        }
        for (agent, _, expected) in reporters {
            let sent: Vec<_> = progress.iter().filter(|(a, ..)| a == agent).collect();
            assert_eq!(sent.len(), 1, "{agent}: one progress event: {progress:?}");
            let (_, done, message) = sent[0];
            assert_eq!(*done, expected, "{agent}: progress clamped");
            assert_eq!(*message, cut_message(), "{agent}: the message is cut between characters");
        }
        assert_eq!(logged, [("logger".to_owned(), cut_message())], "the log message is cut between characters");
    }
}

isolated! {
    /// A value of exactly 16 MiB (the limit) is committed whole.
    async fn a_value_exactly_at_the_limit_is_committed() {
        let engine = Engine::new(RuntimeConfig::default()).expect("engine");
        let project = crate::project();
        project.component("big", &fixtures::value_of("big.value", 16 << 20));
        let workflow = project.workflow("agents:\n  big:\n    component: big.wasm\n    resources: {memory: 5}\n");
        let memory = Memory::baseline();
        let report = bounded("big", engine.run(&workflow, RunOptions::default())).await;
        assert!(
            matches!(report.agent("big").map(|a| &a.status), Some(AgentStatus::Succeeded { .. })),
            "{report:#?}"
        );
        let entry = report.context.get("big.value").expect("the value is committed");
        assert_eq!(entry.value.len(), 16 << 20);
        assert!(entry.value.iter().all(|b| *b == 0), "its bytes as written");
        assert_eq!(&*entry.writer, "big");
        drop(report);
        // The value was copied out of the agent, staged and committed: a few
        // copies of 16 MiB at most, not one per step it went through.
        memory.finish(160);
    }
}
