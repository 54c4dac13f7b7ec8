//! Fixtures for the end-to-end tests: hand-written agents and throwaway
//! projects (a temporary directory with a workflow and its components).
//!
//! Most hostile agents are core modules written in WAT against the real WIT
//! (`wit/`), turned into components by `wit-component` exactly as the Rust
//! agents are. That keeps each fixture a few readable lines.

use std::path::{Path, PathBuf};

pub mod openai_server;

use ensemble::{Engine, RuntimeConfig, Workflow};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// A test that cannot run on this machine because `missing` is absent.
///
/// With the environment variable `require` set (CI sets it), this panics: the
/// test must run. Otherwise it writes one `SKIPPED` line naming the test, the
/// cause and how to enable it. The line goes to the process's stderr directly,
/// not through `eprintln!`, which libtest captures: a plain `cargo test` shows
/// it.
pub fn skip_or_require(test: &str, missing: &str, enable: &str, require: &str) {
    if std::env::var_os(require).is_some() {
        panic!("{test}: {require} is set but {missing}; {enable}");
    }
    use std::io::Write as _;
    // One write, so that the line does not interleave with libtest's output.
    let line = format!("SKIPPED {test}: {missing}; {enable}, or set {require}=1 to make this an error\n");
    // Nothing sensible to do if stderr itself is gone.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Turn a core module in WAT, written against the `agent` world's core ABI,
/// into a component.
pub fn core_agent(wat: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(repo_root().join("wit")).expect("wit/ parses");
    let world = resolve.select_world(&[package], Some("agent")).expect("world `agent` exists");
    encode(wat, &resolve, world)
}

fn encode(wat: &str, resolve: &wit_parser::Resolve, world: wit_parser::WorldId) -> Vec<u8> {
    let mut module = wat::parse_str(wat).expect("fixture WAT parses");
    wit_component::embed_component_metadata(
        &mut module,
        resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .expect("metadata embeds");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("module is accepted")
        .validate(true)
        .encode()
        .expect("component encodes")
}

/// An agent that needs `wasi: true`: it reads WASI's monotonic clock when
/// its `run` begins, spins until `at_least` has passed on that clock, and
/// writes how long it spun, in nanoseconds as it measured them, to `key`
/// (MessagePack `bin 8`, the u64 little-endian). A clock outside the
/// engine, to check the engine's own timings against.
pub fn clocked(key: &str, at_least: std::time::Duration) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    resolve.push_dir(repo_root().join("wit")).expect("wit/ parses");
    // The one function of WASI 0.2's clock the fixture calls.
    resolve
        .push_str(
            "clocks.wit",
            "package wasi:clocks@0.2.0;\ninterface monotonic-clock { now: func() -> u64; }\n",
        )
        .expect("clock WIT parses");
    let package = resolve
        .push_str(
            "clocked.wit",
            "package test:clocked;\nworld clocked {\n  include ensemble:agent/agent@0.1.1;\n  import wasi:clocks/monotonic-clock@0.2.0;\n}\n",
        )
        .expect("world WIT parses");
    let world = resolve.select_world(&[package], Some("clocked")).expect("world `clocked` exists");
    let wat = agent_module(
        &format!(
            r#"{IMPORT_PUT}
  (import "wasi:clocks/monotonic-clock@0.2.0" "now" (func $now (result i64)))"#
        ),
        &format!(r#"(data (i32.const 3000) "{key}") (data (i32.const 3500) "\c4\08")"#),
        &format!(
            "(local $t0 i64) (local $dt i64)
             (local.set $t0 (call $now))
             (loop $spin
               (local.set $dt (i64.sub (call $now) (local.get $t0)))
               (br_if $spin (i64.lt_u (local.get $dt) (i64.const {ns}))))
             (i64.store (i32.const 3502) (local.get $dt))
             (call $put (i32.const 3000) (i32.const {len}) (i32.const 3500) (i32.const 10) (i32.const {RET}))
             (i32.const {OK})",
            ns = at_least.as_nanos(),
            len = key.len()
        ),
    );
    encode(&wat, &resolve, world)
}

/// A component written directly in WAT.
pub fn component_wat(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).expect("fixture WAT parses")
}

/// The core-module frame every WAT agent shares: memory, a bump allocator,
/// a `validate` that passes, and `run` with the given body. The body returns
/// a pointer to the result: [`OK`] (zeroed memory: `ok`) or [`FAILED`].
/// Extra module fields (imports come first, data segments) go in `fields`.
pub fn agent_module(imports: &str, fields: &str, run_body: &str) -> String {
    agent_module_with_validate(imports, fields, run_body, &format!("(i32.const {PASSED})"))
}

/// Like [`agent_module`], with the body of `validate` too (it returns a
/// pointer to the result: [`PASSED`], [`REJECTED`] or [`FAILED`]).
pub fn agent_module_with_validate(
    imports: &str,
    fields: &str,
    run_body: &str,
    validate_body: &str,
) -> String {
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 8192))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (if (i32.eq (memory.grow (i32.add (i32.const 1)
                  (i32.div_u (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536))) (i32.const 65536))))
                (i32.const -1))
              (then unreachable))))
    (local.get $p))
  (func (export "validate") (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    {validate_body})
  ;; result area for `ok(validation {{ passed: true, findings: [] }})`
  (data (i32.const {PASSED}) "\00\00\00\00\01")
  ;; result area for `ok(validation {{ passed: false, findings: [finding at 1300] }})`
  (data (i32.const {REJECTED}) "\00\00\00\00\00\00\00\00\14\05\00\00\01\00\00\00")
  ;; the finding: severity error, no key, message at 1400 (18 bytes)
  (data (i32.const 1300) "\02\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\78\05\00\00\12\00\00\00")
  (data (i32.const 1400) "fixture disagrees!")
  ;; result area for `failed("fixture failed")`: tag 1, agent-error case 2, string at 1600
  (data (i32.const {FAILED}) "\01\00\00\00\02\00\00\00\40\06\00\00\0e\00\00\00")
  (data (i32.const 1600) "fixture failed")
  {fields}
  (func (export "run") (param i32 i32 i32 i32 i32 i32 i32) (result i32)
    {run_body})
)"#
    )
}

/// Address of a result area holding a passing validation without findings.
pub const PASSED: u32 = 1100;
/// Address of a result area holding a rejecting validation with one error
/// finding, "fixture disagrees!".
pub const REJECTED: u32 = 1200;

/// Address of a zeroed result area: `ok`.
pub const OK: u32 = 1024;
/// Address of a result area holding `err(failed("fixture failed"))`.
pub const FAILED: u32 = 1536;
/// Scratch space for host calls' return areas.
pub const RET: u32 = 2048;

pub const IMPORT_PUT: &str =
    r#"(import "ensemble:agent/context@0.1.1" "put" (func $put (param i32 i32 i32 i32 i32)))"#;
pub const IMPORT_GET: &str =
    r#"(import "ensemble:agent/context@0.1.1" "get" (func $get (param i32 i32 i32)))"#;

/// An agent that writes MessagePack `"ok"` to `key` and succeeds.
pub fn writer(key: &str) -> Vec<u8> {
    core_agent(&agent_module(
        IMPORT_PUT,
        &format!(r#"(data (i32.const 3000) "{key}") (data (i32.const 3500) "\a2ok")"#),
        &format!(
            "(call $put (i32.const 3000) (i32.const {len}) (i32.const 3500) (i32.const 3) (i32.const {RET})) (i32.const {OK})",
            len = key.len()
        ),
    ))
}

/// An agent that copies the value of `from` to `to`, failing if `from` is absent.
pub fn copier(from: &str, to: &str) -> Vec<u8> {
    core_agent(&agent_module(
        &format!("{IMPORT_GET}\n  {IMPORT_PUT}"),
        &format!(r#"(data (i32.const 3000) "{from}") (data (i32.const 3200) "{to}")"#),
        &format!(
            "(call $get (i32.const 3000) (i32.const {from_len}) (i32.const {RET}))
             ;; result<option<list<u8>>>: ok tag at +0, option tag at +4, list at +8/+12
             (if (result i32) (i32.and (i32.eqz (i32.load8_u (i32.const {RET})))
                                       (i32.eq (i32.load8_u (i32.const {ret4})) (i32.const 1)))
               (then
                 (call $put (i32.const 3200) (i32.const {to_len})
                            (i32.load (i32.const {ret8})) (i32.load (i32.const {ret12})) (i32.const {ret16}))
                 (i32.const {OK}))
               (else (i32.const {FAILED})))",
            from_len = from.len(),
            to_len = to.len(),
            ret4 = RET + 4,
            ret8 = RET + 8,
            ret12 = RET + 12,
            ret16 = RET + 16,
        ),
    ))
}

/// A no-op agent for overhead benchmarks, one component for any position
/// in a chain: its config is `[FROM, TO]` (two keys of under 32 bytes, so
/// MessagePack `[fixstr, fixstr]`); it copies the value of FROM to TO, or
/// writes `"ok"` to TO when FROM is absent.
pub fn relay() -> Vec<u8> {
    core_agent(&agent_module(
        &format!("{IMPORT_GET}\n  {IMPORT_PUT}"),
        r#"(data (i32.const 3500) "\a2ok")"#,
        &format!(
            "(local $from i32) (local $flen i32) (local $to i32) (local $tlen i32)
             ;; params 5 and 6: the config's address and length
             (local.set $flen (i32.and (i32.load8_u offset=1 (local.get 5)) (i32.const 31)))
             (local.set $from (i32.add (local.get 5) (i32.const 2)))
             (local.set $tlen (i32.and (i32.load8_u (i32.add (local.get $from) (local.get $flen))) (i32.const 31)))
             (local.set $to (i32.add (i32.add (local.get $from) (local.get $flen)) (i32.const 1)))
             (call $get (local.get $from) (local.get $flen) (i32.const {RET}))
             (if (i32.and (i32.eqz (i32.load8_u (i32.const {RET})))
                          (i32.eq (i32.load8_u (i32.const {ret4})) (i32.const 1)))
               (then (call $put (local.get $to) (local.get $tlen)
                                (i32.load (i32.const {ret8})) (i32.load (i32.const {ret12})) (i32.const {ret16})))
               (else (call $put (local.get $to) (local.get $tlen) (i32.const 3500) (i32.const 3) (i32.const {ret16}))))
             (i32.const {OK})",
            ret4 = RET + 4,
            ret8 = RET + 8,
            ret12 = RET + 12,
            ret16 = RET + 16,
        ),
    ))
}

pub const IMPORT_PROGRESS: &str =
    r#"(import "ensemble:agent/progress@0.1.1" "report" (func $report (param f32 i32 i32)))"#;

/// WAT that writes MessagePack `"ok"` to `key` (declared by [`key_data`]).
fn put_ok(key: &str) -> String {
    format!(
        "(call $put (i32.const 3000) (i32.const {}) (i32.const 3500) (i32.const 3) (i32.const {RET}))",
        key.len()
    )
}

fn key_data(key: &str) -> String {
    format!(r#"(data (i32.const 3000) "{key}") (data (i32.const 3500) "\a2ok")"#)
}

/// An agent that spins `iterations` times (a CPU-bound busy loop: size it
/// with fuel or time), then writes `"ok"` to `key`.
pub fn busy(key: &str, iterations: u32) -> Vec<u8> {
    core_agent(&agent_module(
        IMPORT_PUT,
        &key_data(key),
        &format!(
            "(local $i i32)
             (loop $spin (local.set $i (i32.add (local.get $i) (i32.const 1)))
                         (br_if $spin (i32.lt_u (local.get $i) (i32.const {iterations}))))
             {put} (i32.const {OK})",
            put = put_ok(key)
        ),
    ))
}

/// An agent that reports progress once, then spins for ever without reporting again.
pub fn stalls_after_progress() -> Vec<u8> {
    core_agent(&agent_module(
        IMPORT_PROGRESS,
        r#"(data (i32.const 3000) "started")"#,
        "(call $report (f32.const 0.1) (i32.const 3000) (i32.const 7))
         (loop $spin (br $spin))
         unreachable",
    ))
}

/// An agent that reports progress at its first iteration and then every
/// `every` iterations: for ever when
/// `total` is `None`, else until `total` iterations, then writes `"ok"` to `key`.
pub fn progressing(key: &str, every: u32, total: Option<u32>) -> Vec<u8> {
    let stop = match total {
        Some(total) => format!("(br_if $done (i32.ge_u (local.get $i) (i32.const {total})))"),
        None => String::new(),
    };
    core_agent(&agent_module(
        &format!("{IMPORT_PUT}\n  {IMPORT_PROGRESS}"),
        &format!(r#"{} (data (i32.const 3100) "working")"#, key_data(key)),
        &format!(
            "(local $i i32)
             (block $done
               (loop $spin
                 (local.set $i (i32.add (local.get $i) (i32.const 1)))
                 (if (i32.eq (i32.rem_u (local.get $i) (i32.const {every})) (i32.const 1))
                   (then (call $report (f32.const 0.5) (i32.const 3100) (i32.const 7))))
                 {stop}
                 (br $spin)))
             {put} (i32.const {OK})",
            put = put_ok(key)
        ),
    ))
}

/// An agent that fails its first `n` attempts, then writes `"ok"` to `key`
/// (param 4 of `run` is the attempt number).
pub fn fails_first(n: u32, key: &str) -> Vec<u8> {
    core_agent(&agent_module(
        IMPORT_PUT,
        &key_data(key),
        &format!(
            "(if (result i32) (i32.le_u (local.get 4) (i32.const {n}))
               (then (i32.const {FAILED}))
               (else {put} (i32.const {OK})))",
            put = put_ok(key)
        ),
    ))
}

/// An agent that writes `"ok"` to `key` and whose `validate` rejects every
/// subject with one error finding, "fixture disagrees!".
pub fn rejecting_validator(key: &str) -> Vec<u8> {
    core_agent(&agent_module_with_validate(
        IMPORT_PUT,
        &key_data(key),
        &format!("{} (i32.const {OK})", put_ok(key)),
        &format!("(i32.const {REJECTED})"),
    ))
}

/// An agent that writes `value` (MessagePack bytes) to `key` and succeeds.
pub fn writer_of(key: &str, value: &[u8]) -> Vec<u8> {
    let escaped: String = value.iter().map(|b| format!("\\{b:02x}")).collect();
    core_agent(&agent_module(
        IMPORT_PUT,
        &format!(r#"(data (i32.const 3000) "{key}") (data (i32.const 3500) "{escaped}")"#),
        &format!(
            "(call $put (i32.const 3000) (i32.const {}) (i32.const 3500) (i32.const {}) (i32.const {RET})) (i32.const {OK})",
            key.len(),
            value.len()
        ),
    ))
}

/// An agent that writes its own `config` (MessagePack) to `key`.
pub fn config_writer(key: &str) -> Vec<u8> {
    core_agent(&agent_module(
        IMPORT_PUT,
        &format!(r#"(data (i32.const 3000) "{key}")"#),
        &format!(
            "(call $put (i32.const 3000) (i32.const {}) (local.get 5) (local.get 6) (i32.const {RET})) (i32.const {OK})",
            key.len()
        ),
    ))
}

pub const IMPORT_RENDER: &str =
    r#"(import "ensemble:agent/templates@0.1.1" "render" (func $render (param i32 i32 i32 i32 i32)))"#;

/// An agent that renders `template` with `data` (MessagePack) and writes the
/// text (raw UTF-8) to `key`; it fails with the render's error.
pub fn renderer(key: &str, template: &str, data: &[u8]) -> Vec<u8> {
    let escaped: String = data.iter().map(|b| format!("\\{b:02x}")).collect();
    core_agent(&agent_module(
        &format!("{IMPORT_PUT}\n  {IMPORT_RENDER}"),
        &format!(
            r#"(data (i32.const 3000) "{template}") (data (i32.const 3200) "{escaped}") (data (i32.const 3600) "{key}")"#
        ),
        &format!(
            "(call $render (i32.const 3000) (i32.const {tlen}) (i32.const 3200) (i32.const {dlen}) (i32.const {RET}))
             (if (result i32) (i32.eqz (i32.load8_u (i32.const {RET})))
               (then
                 (call $put (i32.const 3600) (i32.const {klen})
                            (i32.load (i32.const {ret4})) (i32.load (i32.const {ret8})) (i32.const {ret16}))
                 (i32.const {OK}))
               (else (i32.const {FAILED})))",
            tlen = template.len(),
            dlen = data.len(),
            klen = key.len(),
            ret4 = RET + 4,
            ret8 = RET + 8,
            ret16 = RET + 16,
        ),
    ))
}

/// An agent whose `run` body is `body` (no imports).
pub fn plain(body: &str) -> Vec<u8> {
    core_agent(&agent_module("", "", body))
}

/// The min, median and max of benchmark samples (not empty).
pub fn min_median_max<T: PartialOrd + Copy>(mut samples: Vec<T>) -> (T, T, T) {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    (samples[0], samples[samples.len() / 2], samples[samples.len() - 1])
}

/// A throwaway project: a temporary directory holding components and a workflow.
#[derive(Debug)]
pub struct Project {
    dir: tempfile::TempDir,
}

impl Default for Project {
    fn default() -> Self {
        Self::new()
    }
}

impl Project {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temporary directory") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write `bytes` as `<name>.wasm`.
    pub fn component(&self, name: &str, bytes: &[u8]) -> &Self {
        std::fs::write(self.dir.path().join(format!("{name}.wasm")), bytes).expect("write component");
        self
    }

    /// Write `yaml` as `workflow.yaml` and return its path.
    pub fn workflow_file(&self, yaml: &str) -> PathBuf {
        let path = self.dir.path().join("workflow.yaml");
        std::fs::write(&path, yaml).expect("write workflow");
        path
    }

    /// Write and load `yaml` as the workflow.
    pub fn workflow(&self, yaml: &str) -> Workflow {
        Workflow::load(self.workflow_file(yaml)).expect("fixture workflow is valid")
    }
}

/// An engine for tests: pooled, fuel metered, no disk cache.
pub fn engine() -> Engine {
    Engine::new(RuntimeConfig::default()).expect("engine starts")
}
