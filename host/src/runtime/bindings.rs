//! Host bindings generated from the WIT package in `wit/`: the one contract.
//!
//! Imports are `trappable` (a host call can end the agent when it breaks a
//! rule the host enforces) and synchronous, except `templates.render`, which
//! may wait for its turn (the agent then suspends on its fiber); exports are
//! called asynchronously, so agents yield to tokio at every epoch tick.
//!
//! The generated code lives in the private module `wit`, and this module
//! re-exports what the host uses under short names. `bindgen!` names its
//! top module after the WIT package namespace, `ensemble`, which is also the
//! crate's name: left at this level it made `ensemble::...` ambiguous when
//! rustdoc builds the doctests.

// The generated items carry the docs of `wit/agent.wit`; the few it leaves
// undocumented (`severity`, `finding`) wait for a change of the WIT file
// itself, which the guests are built from too.
#[allow(missing_docs)]
mod wit {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "agent-llm",
        imports: {
            "ensemble:agent/templates.render": async | trappable,
            "ensemble:agent/llm.chat": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        // Validations travel in job results, which are plain values.
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

pub use wit::ensemble::agent::{context, llm, log, progress, templates, types};
pub use wit::{AgentError, AgentLlm as Agent, AgentLlmPre as AgentPre, Invocation, Validation};

pub use types::{ContextError, Finding, Severity};
