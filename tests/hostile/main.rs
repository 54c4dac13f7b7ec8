//! Hostile agents, one after another in one engine (the embedding case).
//! For each: the run names the agent and the cause, the good agent beside it
//! commits, nothing of the hostile one is committed, the next run in the same
//! engine works, and the process's memory stays bounded.
//!
//! A test binary of its own, so that the memory figures are this test's
//! alone (tests of one binary share a process).

use std::time::{Duration, Instant};

use ensemble::runtime::ReturnedKind;
use ensemble::{AgentError, AgentStatus, Engine, HostLimits, RunOptions, RuntimeConfig};
use ensemble_tests::{
    IMPORT_GET, IMPORT_PROGRESS, IMPORT_PUT, OK, Project, RET, agent_module, component_wat, core_agent,
    plain, writer,
};

const IMPORT_LOG: &str = r#"(import "ensemble:agent/log@0.1.0" "log" (func $log (param i32 i32 i32)))"#;

/// Where a `put` error is kept, and returned from as `err(context(e))`.
const SAVED: u32 = 5000;

/// WAT: after a `put` whose result is at `RET`, keep its first error.
fn keep_put_error() -> String {
    format!(
        "(if (i32.and (i32.eq (i32.load8_u (i32.const {RET})) (i32.const 1))
                      (i32.eqz (i32.load (i32.const {SAVED}))))
           (then (i32.store (i32.const {SAVED}) (i32.const 1))
                 (i32.store (i32.const {s4}) (i32.const 1))
                 (i32.store (i32.const {s8}) (i32.load (i32.const {r4})))
                 (i32.store (i32.const {s12}) (i32.load (i32.const {r8})))
                 (i32.store (i32.const {s16}) (i32.load (i32.const {r12})))))",
        s4 = SAVED + 4,
        s8 = SAVED + 8,
        s12 = SAVED + 12,
        s16 = SAVED + 16,
        r4 = RET + 4,
        r8 = RET + 8,
        r12 = RET + 12,
    )
}

/// WAT: return the kept `put` error as the agent's (an SDK agent's `?`), else ok.
fn return_put_error() -> String {
    format!(
        "(if (result i32) (i32.load (i32.const {SAVED})) (then (i32.const {SAVED})) (else (i32.const {OK})))"
    )
}

/// Puts `count` values of `size` bytes (from address 65536, the second page
/// on) under keys `bad.aa`, `bad.ab`, … until one is refused: 1 GiB in
/// 8 MiB values.
fn big_output(count: u32, size: u32) -> Vec<u8> {
    let pages = size / 65536 + 2;
    core_agent(&agent_module(
        IMPORT_PUT,
        r#"(data (i32.const 3000) "bad.aa")"#,
        &format!(
            "(local $i i32)
             (drop (memory.grow (i32.const {pages})))
             (loop $each
               (i32.store8 (i32.const 3004) (i32.add (i32.const 97) (i32.div_u (local.get $i) (i32.const 26))))
               (i32.store8 (i32.const 3005) (i32.add (i32.const 97) (i32.rem_u (local.get $i) (i32.const 26))))
               (call $put (i32.const 3000) (i32.const 6) (i32.const 65536) (i32.const {size}) (i32.const {RET}))
               {keep}
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               ;; stop at the first refusal, as an SDK agent's `?` does
               (br_if $each (i32.and (i32.eqz (i32.load (i32.const {SAVED})))
                                     (i32.lt_u (local.get $i) (i32.const {count})))))
             {ret}",
            keep = keep_put_error(),
            ret = return_put_error(),
        ),
    ))
}

/// A million `put`s, each under a new key `bad.kXXXXX` (base 26).
fn put_flood() -> Vec<u8> {
    let digits: String = (0..5)
        .map(|d| {
            format!(
                "(i32.store8 (i32.const {at}) (i32.add (i32.const 97)
                   (i32.rem_u (i32.div_u (local.get $i) (i32.const {div})) (i32.const 26))))",
                at = 3005 + d,
                div = 26u32.pow(4 - d)
            )
        })
        .collect();
    core_agent(&agent_module(
        IMPORT_PUT,
        r#"(data (i32.const 3000) "bad.kaaaaa") (data (i32.const 3500) "\a2ok")"#,
        &format!(
            "(local $i i32)
             (loop $each
               {digits}
               (call $put (i32.const 3000) (i32.const 10) (i32.const 3500) (i32.const 3) (i32.const {RET}))
               {keep}
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br_if $each (i32.lt_u (local.get $i) (i32.const 1000000))))
             {ret}",
            keep = keep_put_error(),
            ret = return_put_error(),
        ),
    ))
}

/// Calls `$call` (an imported log or progress function) a million times
/// with a 1 KiB message, then succeeds.
fn flood(import: &str, call: &str) -> Vec<u8> {
    core_agent(&agent_module(
        import,
        &format!(r#"(data (i32.const 6000) "{}")"#, "x".repeat(1024)),
        &format!(
            "(local $i i32)
             (loop $each
               {call}
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br_if $each (i32.lt_u (local.get $i) (i32.const 1000000))))
             (i32.const {OK})"
        ),
    ))
}

/// Reads `key` and succeeds whatever the answer.
fn reader(key: &str) -> Vec<u8> {
    core_agent(&agent_module(
        IMPORT_GET,
        &format!(r#"(data (i32.const 3000) "{key}")"#),
        &format!("(call $get (i32.const 3000) (i32.const {}) (i32.const {RET})) (i32.const {OK})", key.len()),
    ))
}

/// A valid component of about `bytes` bytes (one large data segment).
fn enormous(bytes: usize) -> Vec<u8> {
    let pages = bytes / 65536 + 1;
    let filler = "\\2a".repeat(bytes);
    core_agent(&format!(
        r#"(module
  (memory (export "memory") {pages})
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 0))
  (func (export "validate") (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32) (i32.const 1100))
  (func (export "run") (param i32 i32 i32 i32 i32 i32 i32) (result i32) (i32.const 1024))
  (data (i32.const 4096) "{filler}"))"#
    ))
}

struct Case {
    name: &'static str,
    component: Vec<u8>,
    /// Extra settings of the hostile agent (YAML, indented under it).
    settings: &'static str,
    /// The error it must fail with.
    expect: fn(&AgentError) -> bool,
}

fn rust_panicker() -> Vec<u8> {
    std::fs::read(ensemble_tests::repo_root().join("tests/fixtures/dist/panicker.wasm"))
        .expect("tests/fixtures/dist/panicker.wasm is built (cargo xtask build-agents)")
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "infinite loop",
            component: plain("(loop $l (br $l)) (i32.const 0)"),
            settings: "    timeout: 300ms\n",
            expect: |e| matches!(e, AgentError::Timeout { .. }),
        },
        Case {
            name: "infinite loop with a fuel budget",
            component: plain("(loop $l (br $l)) (i32.const 0)"),
            settings: "    fuel: 5000000\n",
            expect: |e| matches!(e, AgentError::OutOfFuel { budget: 5_000_000, .. }),
        },
        Case {
            name: "memory bomb",
            component: plain(
                "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable",
            ),
            settings: "    resources: {memory: 2}\n",
            expect: |e| matches!(e, AgentError::MemoryLimit { limit, requested, .. } if *limit == 8 << 20 && requested > limit),
        },
        Case {
            name: "a memory declared larger than the agent may have",
            component: core_agent(&agent_module("", "", &format!("(i32.const {OK})")).replacen(
                "(memory (export \"memory\") 1)",
                "(memory (export \"memory\") 16384)",
                1,
            )),
            settings: "",
            expect: |e| matches!(e, AgentError::MemoryLimit { requested, .. } if *requested == 1 << 30),
        },
        Case {
            name: "deep recursion",
            component: core_agent(&agent_module(
                "",
                "(func $deeper (param i32) (result i32) (i32.add (i32.const 1) (call $deeper (local.get 0))))",
                &format!("(drop (call $deeper (i32.const 0))) (i32.const {OK})"),
            )),
            settings: "",
            expect: |e| matches!(e, AgentError::Trap { message, .. } if message.contains("call stack exhausted")),
        },
        Case {
            name: "trap",
            component: plain("unreachable"),
            settings: "",
            expect: |e| {
                matches!(e, AgentError::Trap { message, backtrace: Some(backtrace), .. }
                    if message.contains("unreachable") && backtrace.contains("wasm backtrace"))
            },
        },
        Case {
            name: "Rust panic in an SDK agent",
            component: rust_panicker(),
            settings: "    owns: [panicker]\n",
            expect: |e| matches!(e, AgentError::Trap { said: Some(said), .. } if said.contains("deliberate panic in panicker")),
        },
        Case {
            name: "a 1 GiB output in 8 MiB values",
            component: big_output(128, 8 << 20),
            settings: "    resources: {memory: 4}\n",
            expect: |e| {
                matches!(e, AgentError::Returned { kind: ReturnedKind::Context, message, .. }
                    if message.contains("staged writes would total") && message.contains("the limit is 67108864"))
            },
        },
        Case {
            name: "a 1 GiB value from a 1-page memory",
            component: core_agent(&agent_module(
                IMPORT_PUT,
                r#"(data (i32.const 3000) "bad.big")"#,
                &format!(
                    "(call $put (i32.const 3000) (i32.const 7) (i32.const 0) (i32.const {}) (i32.const {RET})) (i32.const {OK})",
                    1 << 30
                ),
            )),
            settings: "",
            expect: |e| matches!(e, AgentError::Trap { message, .. } if message.contains("out of bounds")),
        },
        Case {
            name: "a million puts under new keys",
            component: put_flood(),
            settings: "",
            expect: |e| matches!(e, AgentError::Returned { message, .. } if message.contains("at most 10000 keys")),
        },
        Case {
            name: "a flood of log calls",
            component: flood(IMPORT_LOG, "(call $log (i32.const 2) (i32.const 6000) (i32.const 1024))"),
            settings: "",
            expect: |e| matches!(e, AgentError::LimitExceeded { message, .. } if message.contains("logged faster")),
        },
        Case {
            name: "writing a key it does not own",
            component: writer("good.value"),
            settings: "",
            expect: |e| matches!(e, AgentError::Ownership(o) if o.key == "good.value"),
        },
        Case {
            name: "reading a key outside its read patterns",
            component: reader("good.value"),
            settings: "    reads: [input.*]\n",
            expect: |e| matches!(e, AgentError::ReadRefused { key, .. } if key == "good.value"),
        },
        Case {
            name: "importing an interface it was not granted",
            component: component_wat(
                r#"(component (import "wasi:filesystem/preopens@0.2.0" (instance
                     (export "descriptor" (type (sub resource)))
                     (export "get-directories" (func (result (list (tuple (own 0) string))))))))"#,
            ),
            settings: "",
            expect: |e| matches!(e, AgentError::Link { import, .. } if import == "wasi:filesystem/preopens@0.2.0"),
        },
        Case {
            name: "exporting the wrong world",
            component: component_wat(
                r#"(component
                     (core module $m (func (export "run") (result i32) (i32.const 0)))
                     (core instance $i (instantiate $m))
                     (func $run (result u32) (canon lift (core func $i "run")))
                     (export "run" (func $run)))"#,
            ),
            settings: "",
            expect: |e| e.is_load_error() && e.to_string().contains("`run`"),
        },
        Case {
            name: "garbage bytes",
            component: b"\0asm garbage that only starts like wasm".to_vec(),
            settings: "",
            expect: |e| matches!(e, AgentError::Load { .. }),
        },
        Case {
            name: "an enormous valid component",
            component: enormous(3 << 20),
            settings: "",
            expect: |e| matches!(e, AgentError::Load { reason, .. } if reason.contains("more than the 2097152 a component may have")),
        },
    ]
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

async fn good_run(engine: &Engine, project: &Project) {
    let workflow = project.workflow("agents:\n  good:\n    component: good.wasm\n");
    let report = engine.run(&workflow, RunOptions::default()).await;
    assert!(report.succeeded(), "the next run in the same engine works: {report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_agents_fail_alone_and_the_host_stays_bounded() {
    let engine = Engine::new(RuntimeConfig {
        max_component_bytes: 2 << 20,
        host_limits: HostLimits::default(),
        ..RuntimeConfig::default()
    })
    .expect("engine");
    let project = Project::new();
    project.component("good", &writer("good.value"));
    good_run(&engine, &project).await;
    let baseline = status_kib("VmRSS:");
    let mut seen = Vec::new();
    // Each case twice: after `good` (alone, so the run loop polls it
    // itself) and beside it (each a task of its own).
    let both_ways = [("after", "    needs: [good]\n"), ("beside", "")];
    for ((way, needs), case) in both_ways.iter().flat_map(|w| cases().into_iter().map(move |c| (w, c))) {
        let started = Instant::now();
        project.component("bad", &case.component);
        let workflow = project.workflow(&format!(
            "agents:\n  good:\n    component: good.wasm\n  bad:\n    component: bad.wasm\n{needs}{}",
            case.settings
        ));
        let name = format!("{} ({way} the good agent)", case.name);
        let report =
            tokio::time::timeout(Duration::from_secs(120), engine.run(&workflow, RunOptions::default()))
                .await
                .unwrap_or_else(|_| panic!("{name}: the run ends"));
        assert!(
            matches!(report.agent("good").map(|a| &a.status), Some(AgentStatus::Succeeded { .. })),
            "{name}: the good agent commits: {report:#?}"
        );
        assert!(report.context.get("good.value").is_some(), "{name}: good's value is there");
        let keys: Vec<&String> = report.context.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["good.value"], "{name}: nothing of the hostile agent is committed");
        let error =
            report.error("bad").unwrap_or_else(|| panic!("{name}: the hostile agent fails: {report:#?}"));
        assert_eq!(error.agent(), "bad", "{name}");
        assert!(error.to_string().contains("`bad`"), "{name}: the message names the agent: {error}");
        assert!((case.expect)(error), "{name}: unexpected error: {error:?}");
        good_run(&engine, &project).await;
        let rss = status_kib("VmRSS:");
        seen.push(format!("{name}: {error} ({:?}, RSS {} MiB)", started.elapsed(), rss / 1024));
        assert!(
            rss < baseline + 256 * 1024,
            "{name}: resident memory grew from {baseline} KiB to {rss} KiB\n{}",
            seen.join("\n")
        );
    }
    let peak = status_kib("VmHWM:");
    println!("{}\npeak RSS {} MiB (baseline {} MiB)", seen.join("\n"), peak / 1024, baseline / 1024);
    // A 1 GiB output, a 1 GiB memory and a million puts never held more than
    // the staging limit (64 MiB) and the agent's own memory at once.
    assert!(peak < baseline + 512 * 1024, "peak resident memory {peak} KiB (baseline {baseline} KiB)");
}

/// A progress flood is coalesced: the run succeeds, the barrier still sees
/// the last report, and few events are sent.
#[tokio::test]
async fn a_progress_flood_is_coalesced_not_sent() {
    let engine = Engine::new(RuntimeConfig::default()).expect("engine");
    let project = Project::new();
    project.component(
        "chatty",
        &flood(IMPORT_PROGRESS, "(call $report (f32.const 0.5) (i32.const 6000) (i32.const 1024))"),
    );
    let workflow = project.workflow("agents:\n  chatty:\n    component: chatty.wasm\n");
    let options = RunOptions::default();
    let mut events = options.events.subscribe();
    let report = engine.run(&workflow, options).await;
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
}
