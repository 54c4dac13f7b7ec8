//! The hostile agents: core modules in WAT against the `agent` world's core
//! ABI (see `wit/agent.wit`), made components by `ensemble_tests::core_agent`.

use ensemble_tests::{IMPORT_GET, IMPORT_PUT, IMPORT_RENDER, OK, RET, agent_module, core_agent};

pub const IMPORT_LOG: &str = r#"(import "ensemble:agent/log@0.1.1" "log" (func $log (param i32 i32 i32)))"#;
pub const IMPORT_KEYS: &str =
    r#"(import "ensemble:agent/context@0.1.1" "keys" (func $keys (param i32 i32 i32)))"#;

/// Where a context error is kept, and returned from as `err(context(e))`.
const SAVED: u32 = 5000;

/// WAT: after a context call whose result is at `RET`, keep its first error.
/// (`result<T, context-error>`: tag at +0, the error's case at +4 and its
/// string at +8/+12, for every `T` of the context interface.)
fn keep_error() -> String {
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

/// WAT: return the kept error as the agent's (an SDK agent's `?`), else ok.
fn return_error() -> String {
    format!(
        "(if (result i32) (i32.load (i32.const {SAVED})) (then (i32.const {SAVED})) (else (i32.const {OK})))"
    )
}

/// `bytes` as a WAT string literal's contents.
pub fn escaped(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// WAT: store `$i` in base 26 (`a`–`z`) as the 5 bytes at `at`.
fn digits(at: u32) -> String {
    (0..5)
        .map(|d| {
            format!(
                "(i32.store8 (i32.const {at}) (i32.add (i32.const 97)
                   (i32.rem_u (i32.div_u (local.get $i) (i32.const {div})) (i32.const 26))))",
                at = at + d,
                div = 26u32.pow(4 - d)
            )
        })
        .collect()
}

/// Makes `call` (WAT that puts its result at `RET`, and may use `$i`, the
/// iteration) `count` times, or for ever when `count` is `None`, and stops
/// at the first context error, which it fails with.
fn repeat(imports: &str, fields: &str, call: &str, count: Option<u32>) -> Vec<u8> {
    let more = match count {
        Some(count) => format!("(i32.lt_u (local.get $i) (i32.const {count}))"),
        None => "(i32.const 1)".to_owned(),
    };
    core_agent(&agent_module(
        imports,
        fields,
        &format!(
            "(local $i i32)
             (loop $each
               {call}
               {keep}
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br_if $each (i32.and (i32.eqz (i32.load (i32.const {SAVED}))) {more})))
             {ret}",
            keep = keep_error(),
            ret = return_error(),
        ),
    ))
}

/// Puts `count` values of `size` bytes (from address 65536, the second page
/// on) under keys `bad.aaaaa`, `bad.aaaab`, … until one is refused.
pub fn big_output(count: u32, size: u32) -> Vec<u8> {
    let pages = size / 65536 + 2;
    repeat(
        IMPORT_PUT,
        r#"(data (i32.const 3000) "bad.aaaaa")"#,
        &format!(
            "(if (i32.eqz (local.get $i)) (then (drop (memory.grow (i32.const {pages})))))
             {digits}
             (call $put (i32.const 3000) (i32.const 9) (i32.const 65536) (i32.const {size}) (i32.const {RET}))",
            digits = digits(3004)
        ),
        Some(count),
    )
}

/// A million `put`s, each under a new key `bad.kXXXXX`.
pub fn put_flood() -> Vec<u8> {
    repeat(
        IMPORT_PUT,
        r#"(data (i32.const 3000) "bad.kaaaaa") (data (i32.const 3500) "\a2ok")"#,
        &format!(
            "{} (call $put (i32.const 3000) (i32.const 10) (i32.const 3500) (i32.const 3) (i32.const {RET}))",
            digits(3005)
        ),
        Some(1_000_000),
    )
}

/// `get` for ever, each time a new key `good.kXXXXX` (absent).
pub fn get_flood_new_keys() -> Vec<u8> {
    repeat(
        IMPORT_GET,
        r#"(data (i32.const 3000) "good.kaaaaa")"#,
        &format!("{} (call $get (i32.const 3000) (i32.const 11) (i32.const {RET}))", digits(3006)),
        None,
    )
}

/// `get` of `good.value` for ever.
pub fn get_flood_same_key() -> Vec<u8> {
    repeat(
        IMPORT_GET,
        r#"(data (i32.const 3000) "good.value")"#,
        &format!("(call $get (i32.const 3000) (i32.const 10) (i32.const {RET}))"),
        None,
    )
}

/// `keys("")` (the whole context) for ever.
pub fn keys_flood_everything() -> Vec<u8> {
    repeat(IMPORT_KEYS, "", &format!("(call $keys (i32.const 3000) (i32.const 0) (i32.const {RET}))"), None)
}

/// `keys` for ever, each time of a new 200-byte prefix.
pub fn keys_flood_new_prefixes() -> Vec<u8> {
    repeat(
        IMPORT_KEYS,
        &format!(r#"(data (i32.const 3000) "good.{}")"#, "x".repeat(195)),
        &format!("{} (call $keys (i32.const 3000) (i32.const 200) (i32.const {RET}))", digits(3195)),
        None,
    )
}

/// Renders `t.md` for ever, each time with new data `{x: "XXXXX"}`.
pub fn render_flood() -> Vec<u8> {
    repeat(
        IMPORT_RENDER,
        r#"(data (i32.const 3000) "t.md") (data (i32.const 3100) "\81\a1x\a5aaaaa")"#,
        // A render's own error (`result<string, string>`) is ignored.
        &format!(
            "{} (call $render (i32.const 3000) (i32.const 4) (i32.const 3100) (i32.const 9) (i32.const {RET}))
             (i32.store8 (i32.const {RET}) (i32.const 0))",
            digits(3104)
        ),
        None,
    )
}

/// Which context function [`one_call`] calls.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Get,
    Keys,
    Put,
}

/// One call of `op` with the raw bytes `key` (odd or not UTF-8 at all);
/// it fails with the call's error, else succeeds.
pub fn one_call(op: Op, key: &[u8]) -> Vec<u8> {
    let len = key.len();
    let (import, call) = match op {
        Op::Get => (IMPORT_GET, format!("(call $get (i32.const 3000) (i32.const {len}) (i32.const {RET}))")),
        Op::Keys => {
            (IMPORT_KEYS, format!("(call $keys (i32.const 3000) (i32.const {len}) (i32.const {RET}))"))
        }
        Op::Put => (
            IMPORT_PUT,
            format!(
                "(call $put (i32.const 3000) (i32.const {len}) (i32.const 3500) (i32.const 3) (i32.const {RET}))"
            ),
        ),
    };
    repeat(
        import,
        &format!(r#"(data (i32.const 3000) "{}") (data (i32.const 3500) "\a2ok")"#, escaped(key)),
        &call,
        Some(1),
    )
}

/// Puts one value of `size` bytes (zeros) under `key` and fails with the
/// put's error, if any.
pub fn value_of(key: &str, size: u32) -> Vec<u8> {
    let pages = size / 65536 + 2;
    repeat(
        IMPORT_PUT,
        &format!(r#"(data (i32.const 3000) "{key}")"#),
        &format!(
            "(drop (memory.grow (i32.const {pages})))
             (call $put (i32.const 3000) (i32.const {len}) (i32.const 65536) (i32.const {size}) (i32.const {RET}))",
            len = key.len()
        ),
        Some(1),
    )
}

/// Where a long message is kept: clear of the frame's allocations, which
/// start at 8192 (the invocation's strings go there).
pub const MESSAGE_AT: u32 = 20_000;

/// Logs `message` (at most 40 KiB) at `level` (0 trace … 4 error), then runs `then`.
pub fn logs(level: u32, message: &str, then: &str) -> Vec<u8> {
    core_agent(&agent_module(
        IMPORT_LOG,
        &format!(r#"(data (i32.const {MESSAGE_AT}) "{}")"#, escaped(message.as_bytes())),
        &format!(
            "(call $log (i32.const {level}) (i32.const {MESSAGE_AT}) (i32.const {})) {then}",
            message.len()
        ),
    ))
}

/// Calls `$call` (an imported log or progress function) a million times
/// with a 1 KiB message, then succeeds.
pub fn flood(import: &str, call: &str) -> Vec<u8> {
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
pub fn reader(key: &str) -> Vec<u8> {
    core_agent(&agent_module(
        IMPORT_GET,
        &format!(r#"(data (i32.const 3000) "{key}")"#),
        &format!("(call $get (i32.const 3000) (i32.const {}) (i32.const {RET})) (i32.const {OK})", key.len()),
    ))
}

/// A valid component of about `bytes` bytes (one large data segment).
pub fn enormous(bytes: usize) -> Vec<u8> {
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

/// An agent whose `cabi_realloc` returns the frame's bump allocation passed
/// through `adjust` (WAT of `$p`, the pointer, and `$align`), and whose
/// `run` puts `bad.x` and then lists `bad` (a `list<string>`: the host
/// allocates it with alignment 4).
pub fn bad_realloc(adjust: &str) -> Vec<u8> {
    let module = agent_module(
        &format!("{IMPORT_PUT}\n  {IMPORT_KEYS}"),
        &format!(
            r#"(data (i32.const 3000) "bad.x") (data (i32.const 3500) "\a2ok")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32) (local $align i32)
    (local.set $align (local.get 2))
    (local.set $p (call $bump (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
    {adjust})"#
        ),
        &format!(
            "(call $put (i32.const 3000) (i32.const 5) (i32.const 3500) (i32.const 3) (i32.const {RET}))
             (call $keys (i32.const 3000) (i32.const 3) (i32.const {RET}))
             (i32.const {OK})"
        ),
    );
    // The frame's allocator stays, as `$bump`, not exported.
    let module = module.replacen(r#"(func (export "cabi_realloc")"#, "(func $bump", 1);
    assert!(module.contains("(func $bump"), "the frame has a `cabi_realloc` to rename");
    core_agent(&module)
}

pub fn rust_panicker() -> Vec<u8> {
    std::fs::read(ensemble_tests::repo_root().join("tests/fixtures/dist/panicker.wasm"))
        .expect("tests/fixtures/dist/panicker.wasm is built (cargo xtask build-agents)")
}
