//! Host bindings generated from the WIT package in `wit/`: the one contract.
//!
//! Imports are `trappable` (a host call can end the agent when it breaks a
//! rule the host enforces) and synchronous, except `templates.render`, which
//! may wait for its turn (the agent then suspends on its fiber); exports are
//! called asynchronously, so agents yield to tokio at every epoch tick.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "agent",
    imports: {
        "ensemble:agent/templates.render": async | trappable,
        default: trappable,
    },
    exports: { default: async },
});

pub use ensemble::agent::types::{ContextError, Finding, Severity};
