//! The wasmtime engine's configuration, its epoch ticker, and what a
//! component file must look like before it is compiled.

use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::RuntimeConfig;

/// Bytes of each pooled memory and table kept resident between instances
/// (zeroed with memset); the rest is released with madvise.
const KEEP_RESIDENT: usize = 128 << 10;

pub(super) fn engine_config(config: &RuntimeConfig, pooled: bool) -> Config {
    let mut cfg = Config::new();
    cfg.wasm_component_model(true);
    cfg.epoch_interruption(true);
    cfg.consume_fuel(config.fuel);
    if pooled {
        let n = config.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::new();
        // Interpreted guests (Python, JavaScript) have several core instances,
        // memories and tables per component; Rust agents have one of each.
        pool.total_component_instances(n)
            .max_core_instances_per_component(64)
            .total_core_instances(n * 64)
            .max_memories_per_component(8)
            .total_memories(n * 8)
            .max_tables_per_component(8)
            .total_tables(n * 8)
            .total_stacks(n)
            .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX))
            .table_elements(100_000)
            // Reset small instances with memset rather than madvise: most
            // agents touch little, and a syscall per instance costs more.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    cfg
}

/// Say plainly what a file is when it is not a component.
pub(super) fn check_header(bytes: &[u8]) -> Result<(), &'static str> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', _, _, 0x01, 0x00]) => Ok(()),
        Some([0, b'a', b's', b'm', 0x01, 0x00, 0x00, 0x00]) => Err(
            "this is a core wasm module, not a component: turn it into one (cargo xtask build-agents does this for Rust agents)",
        ),
        Some([0, b'a', b's', b'm', ..]) => Err("unknown WebAssembly binary version"),
        _ if bytes.starts_with(b"(component") || bytes.starts_with(b"(module") => {
            Err("this is WebAssembly text; give the binary (.wasm)")
        }
        _ => Err("not a WebAssembly component (the file does not start with the wasm magic bytes)"),
    }
}

/// Load a compiled artifact this engine wrote.
#[allow(unsafe_code)]
pub(super) fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime runs deserialized artifacts as native code without
    // validating them. The bytes come from our own cache directory, were
    // written by this engine configuration (the file name carries the
    // engine's compatibility hash) and passed the checksum in the file
    // header, so they are exactly what `Component::serialize` produced.
    unsafe { Component::deserialize(engine, artifact) }
}

/// Tick the engine's epoch until the engine is dropped.
pub(super) fn spawn_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new().name("ensemble-epoch".into()).spawn(move || {
        while let Some(engine) = weak.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(tick);
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the epoch ticker ({e}); agent deadlines will not be enforced");
    }
}
