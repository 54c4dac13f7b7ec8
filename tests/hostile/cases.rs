//! Agents that fail in `run`, each after and beside a good agent.

use std::time::Instant;

use ensemble::runtime::ReturnedKind;
use ensemble::{AgentError, Engine, HostLimits, RunOptions, RuntimeConfig};
use ensemble_tests::{IMPORT_PROGRESS, OK, agent_module, component_wat, core_agent, plain, writer_of};

use crate::fixtures::{self, IMPORT_LOG, Op};
use crate::{Memory, assert_good_unharmed, bounded, good_run, isolated};

struct Case {
    name: String,
    component: Vec<u8>,
    /// Extra settings of the hostile agent (YAML, indented under it).
    settings: &'static str,
    /// The error it must fail with.
    expect: Box<dyn Fn(&AgentError) -> bool>,
}

fn case(
    name: impl Into<String>,
    component: Vec<u8>,
    settings: &'static str,
    expect: impl Fn(&AgentError) -> bool + 'static,
) -> Case {
    Case { name: name.into(), component, settings, expect: Box::new(expect) }
}

/// It failed with the context error it was given, whose message has `text`.
fn context_error(text: impl Into<String>) -> impl Fn(&AgentError) -> bool {
    let text = text.into();
    move |e| matches!(e, AgentError::Returned { kind: ReturnedKind::Context, message, .. } if message.contains(&text))
}

fn trapped(text: &'static str) -> impl Fn(&AgentError) -> bool {
    move |e| matches!(e, AgentError::Trap { message, .. } if message.contains(text))
}

/// It trapped in the component model's glue with exactly `text`: one line,
/// its wasm backtrace kept apart.
fn glue_error(text: &'static str) -> impl Fn(&AgentError) -> bool {
    move |e| matches!(e, AgentError::Trap { message, backtrace: Some(_), .. } if message == text)
}

/// Keys no context function may take: (what, bytes, what `get` and `put`
/// say, what `keys` says).
const BAD_KEYS: &[(&str, &[u8], &str, &str)] = &[
    ("an empty key", b"", "context key is empty", ""),
    ("a 300-byte key", &[b'a'; 300], "is longer than 256 bytes", "is longer than 256 bytes"),
    ("`..`", b"..", "context key `..` is not a dotted name", "prefix `..` starts no valid key"),
    (
        "a fullwidth dot",
        "good\u{ff0e}value".as_bytes(),
        "context key `good\u{ff0e}value` is not a dotted name",
        "prefix `good\u{ff0e}value` starts no valid key",
    ),
    (
        "a zero-width joiner",
        "good.val\u{200d}ue".as_bytes(),
        "context key `good.val\u{200d}ue` is not a dotted name",
        "prefix `good.val\u{200d}ue` starts no valid key",
    ),
];

/// Invalid keys to each context function; and a key that is not UTF-8 (an
/// overlong `.`), which the component model refuses to lift as a string.
fn bad_keys() -> Vec<Case> {
    let mut cases = Vec::new();
    for (op, name) in [(Op::Get, "get"), (Op::Put, "put"), (Op::Keys, "keys")] {
        for &(what, key, refused, prefix_refused) in BAD_KEYS {
            let expected = match op {
                Op::Keys if key.is_empty() => continue, // `keys("")` lists everything
                Op::Keys => prefix_refused,
                Op::Get | Op::Put => refused,
            };
            cases.push(case(
                format!("`{name}` of {what}"),
                fixtures::one_call(op, key),
                "",
                context_error(expected),
            ));
        }
        cases.push(case(
            format!("`{name}` of a key that is not UTF-8"),
            fixtures::one_call(op, b"good\xc0\xaevalue"),
            "",
            glue_error("invalid utf-8 sequence of 1 bytes from index 4"),
        ));
    }
    cases
}

fn floods() -> Vec<Case> {
    vec![
        case("a million puts under new keys", fixtures::put_flood(), "", context_error("at most 10000 keys")),
        case(
            "a flood of log calls",
            fixtures::flood(IMPORT_LOG, "(call $log (i32.const 2) (i32.const 6000) (i32.const 1024))"),
            "",
            |e| matches!(e, AgentError::LimitExceeded { message, .. } if message.contains("logged faster")),
        ),
        case(
            "`get` of new keys for ever",
            fixtures::get_flood_new_keys(),
            "    timeout: 30s\n",
            context_error("may read at most 100000 keys and prefixes"),
        ),
        case(
            "`keys` of new 200-byte prefixes for ever",
            fixtures::keys_flood_new_prefixes(),
            "    timeout: 30s\n",
            context_error("may read at most 100000 keys and prefixes"),
        ),
        case("`get` of one key for ever", fixtures::get_flood_same_key(), "    fuel: 20000000\n", |e| {
            matches!(e, AgentError::OutOfFuel { budget: 20_000_000, .. })
        }),
        case(
            "`keys` of everything for ever",
            fixtures::keys_flood_everything(),
            "    fuel: 20000000\n",
            |e| matches!(e, AgentError::OutOfFuel { budget: 20_000_000, .. }),
        ),
        case("renders of new data for ever", fixtures::render_flood(), "    timeout: 2s\n", |e| {
            matches!(e, AgentError::Timeout { .. })
        }),
    ]
}

fn cases() -> Vec<Case> {
    let mut cases = vec![
        case("infinite loop", plain("(loop $l (br $l)) (i32.const 0)"), "    timeout: 300ms\n", |e| {
            matches!(e, AgentError::Timeout { .. })
        }),
        case(
            "infinite loop with a fuel budget",
            plain("(loop $l (br $l)) (i32.const 0)"),
            "    fuel: 5000000\n",
            |e| matches!(e, AgentError::OutOfFuel { budget: 5_000_000, .. }),
        ),
        case(
            "memory bomb",
            plain("(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable"),
            "    resources: {memory: 2}\n",
            |e| matches!(e, AgentError::MemoryLimit { limit, requested, .. } if *limit == 8 << 20 && requested > limit),
        ),
        case(
            "a memory declared larger than the agent may have",
            core_agent(&agent_module("", "", &format!("(i32.const {OK})")).replacen(
                "(memory (export \"memory\") 1)",
                "(memory (export \"memory\") 16384)",
                1,
            )),
            "",
            |e| matches!(e, AgentError::MemoryLimit { requested, .. } if *requested == 1 << 30),
        ),
        case(
            "deep recursion",
            core_agent(&agent_module(
                "",
                "(func $deeper (param i32) (result i32) (i32.add (i32.const 1) (call $deeper (local.get 0))))",
                &format!("(drop (call $deeper (i32.const 0))) (i32.const {OK})"),
            )),
            "",
            trapped("call stack exhausted"),
        ),
        case("trap", plain("unreachable"), "", |e| {
            matches!(e, AgentError::Trap { message, backtrace: Some(backtrace), .. }
                if message.contains("unreachable") && backtrace.contains("wasm backtrace"))
        }),
        case(
            "Rust panic in an SDK agent",
            fixtures::rust_panicker(),
            "    owns: [panicker]\n",
            |e| matches!(e, AgentError::Trap { said: Some(said), .. } if said.contains("deliberate panic in panicker")),
        ),
        case(
            "an error log of 6000 bytes of 3-byte characters, then a trap",
            fixtures::logs(4, &"€".repeat(2000), "unreachable"),
            "",
            // Cut at 4096 bytes, back to the character boundary before it.
            |e| matches!(e, AgentError::Trap { said: Some(said), .. } if *said == format!("{}…", "€".repeat(1365))),
        ),
        case(
            "a 1 GiB output in 8 MiB values",
            fixtures::big_output(128, 8 << 20),
            "    resources: {memory: 4}\n",
            context_error("staged writes would total 75497472 bytes; the limit is 67108864"),
        ),
        case(
            "a value one byte over 16 MiB",
            fixtures::value_of("bad.big", (16 << 20) + 1),
            "    resources: {memory: 5}\n",
            context_error("value of `bad.big` is 16777217 bytes; the limit is 16777216"),
        ),
        case(
            "a 1 GiB value from a 1-page memory",
            core_agent(&agent_module(
                ensemble_tests::IMPORT_PUT,
                r#"(data (i32.const 3000) "bad.big")"#,
                &format!(
                    "(call $put (i32.const 3000) (i32.const 7) (i32.const 0) (i32.const {}) (i32.const {})) (i32.const {OK})",
                    1 << 30,
                    ensemble_tests::RET
                ),
            )),
            "",
            glue_error("list pointer/length out of bounds of memory"),
        ),
        case(
            "a `cabi_realloc` that returns a pointer past the memory",
            fixtures::bad_realloc("(drop (local.get $p)) (drop (local.get $align)) (i32.const -256)"),
            "",
            // Before `run`: lowering the invocation's strings allocates.
            |e| matches!(e, AgentError::Trap { message, .. } if message == "realloc return: beyond end of memory"),
        ),
        case(
            "a `cabi_realloc` that returns a misaligned pointer",
            fixtures::bad_realloc(
                "(if (result i32) (i32.gt_u (local.get $align) (i32.const 1))
                   (then (i32.add (local.get $p) (i32.const 1))) (else (local.get $p)))",
            ),
            "",
            glue_error("realloc return: result not aligned"),
        ),
        // Its value differs from good's, so a write that got through would show.
        case(
            "writing a key it does not own",
            writer_of("good.value", b"\xa3bad"),
            "",
            |e| matches!(e, AgentError::Ownership(o) if o.key == "good.value"),
        ),
        case(
            "reading a key outside its read patterns",
            fixtures::reader("good.value"),
            "    reads: [input.*]\n",
            |e| matches!(e, AgentError::ReadRefused { key, .. } if key == "good.value"),
        ),
        case(
            "importing an interface it was not granted",
            component_wat(
                r#"(component (import "wasi:filesystem/preopens@0.2.0" (instance
                     (export "descriptor" (type (sub resource)))
                     (export "get-directories" (func (result (list (tuple (own 0) string))))))))"#,
            ),
            "",
            |e| matches!(e, AgentError::Link { import, .. } if import == "wasi:filesystem/preopens@0.2.0"),
        ),
        case(
            "exporting the wrong world",
            component_wat(
                r#"(component
                     (core module $m (func (export "run") (result i32) (i32.const 0)))
                     (core instance $i (instantiate $m))
                     (func $run (result u32) (canon lift (core func $i "run")))
                     (export "run" (func $run)))"#,
            ),
            "",
            |e| e.is_load_error() && e.to_string().contains("`run`"),
        ),
        case("garbage bytes", b"\0asm garbage that only starts like wasm".to_vec(), "", |e| {
            matches!(e, AgentError::Load { .. })
        }),
        case(
            "an enormous valid component",
            fixtures::enormous(3 << 20),
            "",
            |e| matches!(e, AgentError::Load { reason, .. } if reason.contains("more than the 2097152 a component may have")),
        ),
    ];
    cases.extend(floods());
    cases.extend(bad_keys());
    // While working on one: `ENSEMBLE_HOSTILE_ONLY=realloc cargo test --test hostile`.
    if let Ok(only) = std::env::var("ENSEMBLE_HOSTILE_ONLY") {
        cases.retain(|c| c.name.contains(&only));
        assert!(!cases.is_empty(), "no case's name contains {only:?}");
    }
    cases
}

isolated! {
    async fn hostile_agents_fail_alone_and_the_host_stays_bounded() {
        let engine = Engine::new(RuntimeConfig {
            max_component_bytes: 2 << 20,
            host_limits: HostLimits::default(),
            ..RuntimeConfig::default()
        })
        .expect("engine");
        let project = crate::project();
        good_run(&engine, &project).await;
        let mut memory = Memory::baseline();
        // Each case twice: after `good` (alone, so the run loop polls it
        // itself) and beside it (each a task of its own).
        let both_ways = [("after", "    needs: [good]\n"), ("beside", "")];
        for ((way, needs), case) in both_ways.iter().flat_map(|w| cases().into_iter().map(move |c| (w, c))) {
            let started = Instant::now();
            project.component("bad", &case.component);
            let workflow = project.workflow(&format!(
                "templates: tpl\nagents:\n  good:\n    component: good.wasm\n  bad:\n    component: bad.wasm\n{needs}{}",
                case.settings
            ));
            let name = format!("{} ({way} the good agent)", case.name);
            let report = bounded(&name, engine.run(&workflow, RunOptions::default())).await;
            assert_good_unharmed(&name, &report);
            let keys: Vec<&String> = report.context.iter().map(|(k, _)| k).collect();
            assert_eq!(keys, ["good.value"], "{name}: nothing of the hostile agent is committed");
            let error =
                report.error("bad").unwrap_or_else(|| panic!("{name}: the hostile agent fails: {report:#?}"));
            assert_eq!(error.agent(), "bad", "{name}");
            assert!(error.to_string().contains("`bad`"), "{name}: the message names the agent: {error}");
            let expected = (case.expect)(error);
            good_run(&engine, &project).await;
            memory.check(&format!("{name}: {error} ({:?})", started.elapsed()), 256);
            assert!(expected, "{name}: unexpected error: {error:?}");
        }
        // A 1 GiB output, a 1 GiB memory and a million puts never held more
        // than the staging limit (64 MiB) and the agent's own memory at once.
        memory.finish(512);
    }
}

isolated! {
    /// A progress flood is coalesced: the run succeeds, the barrier still
    /// sees the last report, and few events are sent.
    async fn a_progress_flood_is_coalesced_not_sent() {
        let engine = Engine::new(RuntimeConfig::default()).expect("engine");
        let project = crate::project();
        project.component(
            "chatty",
            &fixtures::flood(IMPORT_PROGRESS, "(call $report (f32.const 0.5) (i32.const 6000) (i32.const 1024))"),
        );
        let workflow = project.workflow("agents:\n  chatty:\n    component: chatty.wasm\n");
        let options = RunOptions::default();
        let mut events = options.events.subscribe();
        let memory = Memory::baseline();
        let report = bounded("chatty", engine.run(&workflow, options)).await;
        assert!(report.succeeded(), "{report:#?}");
        let mut progress = 0;
        while let Ok(event) = events.try_recv() {
            if matches!(event.kind, ensemble::EventKind::Progress { .. }) {
                progress += 1;
            }
        }
        let elapsed = report.agent("chatty").and_then(|a| a.elapsed).expect("ran");
        // One per 50 ms, the first at once, and the last report held back till the end.
        let allowed = 2 + (elapsed.as_secs_f64() * 20.0).ceil() as usize;
        assert!(progress >= 1 && progress <= allowed, "{progress} progress events in {elapsed:?}");
        // A million 1 KiB messages (1 GiB) were never kept.
        memory.finish(128);
    }
}
