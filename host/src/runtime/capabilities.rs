//! What an agent may touch outside the context: the WASI imports its
//! component may have ([`Imports`], checked at load) and the grants an
//! invocation runs with ([`Capabilities`], enforced by the host calls).

use std::sync::Arc;

use crate::workflow::{AgentSpec, Grants};

/// The WASI imports a component may have; anything else fails to load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Imports {
    /// WASI 0.2 (`wasi:*` except `wasi:http`): granted by `wasi: true` or any grant.
    pub wasi: bool,
    /// `wasi:http/*`: granted by an `http` grant.
    pub http: bool,
    /// `ensemble:agent/llm`: granted by an `llm` grant.
    pub llm: bool,
}

impl Imports {
    /// What `agent`'s grants let its component import.
    pub fn of(agent: &AgentSpec) -> Self {
        Self { wasi: agent.wasi || !agent.grants.is_empty(), http: agent.grants.http.is_some(), llm: false }
    }
}

impl From<bool> for Imports {
    /// WASI 0.2 without HTTP (`wasi: true`), or nothing.
    fn from(wasi: bool) -> Self {
        Self { wasi, http: false, llm: false }
    }
}

/// What one invocation may use outside the context.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// Its directories, HTTP allow-list and variables.
    pub grants: Arc<Grants>,
    /// Real clocks and randomness (`wasi: true`). Without it, an agent with
    /// grants sees a fixed wall clock and seeded randomness, so its output
    /// depends only on what it was granted.
    pub real_clocks: bool,
    /// The HTTP requests in flight shared by every agent of the run
    /// (`resources.http_concurrent`); each invocation gets its own by default.
    pub http_slots: super::HttpSlots,
}

impl Capabilities {
    /// The capabilities `agent` runs with.
    pub fn of(agent: &AgentSpec) -> Self {
        Self {
            grants: agent.grants.clone(),
            real_clocks: agent.wasi,
            http_slots: super::HttpSlots::default(),
        }
    }
}
