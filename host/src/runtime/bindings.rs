//! Host bindings generated from the WIT package in `wit/`: the one contract.
//!
//! Imports are synchronous and `trappable` (a host call can end the agent when
//! it breaks a rule the host enforces); exports are called asynchronously, so
//! agents yield to tokio at every epoch tick.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "agent",
    imports: { default: trappable },
    exports: { default: async },
});

pub use ensemble::agent::types::{ContextError, Finding, Severity};
