//! What a run did, agent by agent.

use std::time::Duration;

use crate::context::Snapshot;
use crate::runtime::AgentError;

/// How one agent ended.
#[derive(Debug, Clone)]
pub enum AgentStatus {
    /// Ran and committed `keys` as context `version`.
    Succeeded { version: u64, keys: Vec<String> },
    /// Did not succeed; nothing of it was committed.
    Failed(AgentError),
    /// Never started, because an agent it needs did not succeed.
    Skipped { because: String },
}

#[derive(Debug, Clone)]
pub struct AgentReport {
    pub agent: String,
    pub status: AgentStatus,
    /// Time from start to end, if it started.
    pub elapsed: Option<Duration>,
    pub fuel_used: Option<u64>,
    /// Peak linear memory in bytes.
    pub peak_memory: u64,
    /// Attempts started (0 if it never started).
    pub attempts: u32,
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: String,
    pub workflow: String,
    pub elapsed: Duration,
    /// One report per agent, in the workflow's order.
    pub agents: Vec<AgentReport>,
    /// The context as the run left it.
    pub context: Snapshot,
}

impl RunReport {
    /// Whether every agent succeeded.
    pub fn succeeded(&self) -> bool {
        self.agents.iter().all(|a| matches!(a.status, AgentStatus::Succeeded { .. }))
    }

    pub fn agent(&self, id: &str) -> Option<&AgentReport> {
        self.agents.iter().find(|a| a.agent == id)
    }

    /// The error of agent `id`, if it failed.
    pub fn error(&self, id: &str) -> Option<&AgentError> {
        match &self.agent(id)?.status {
            AgentStatus::Failed(e) => Some(e),
            _ => None,
        }
    }
}
