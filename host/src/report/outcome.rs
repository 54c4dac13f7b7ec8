//! How a run and its groups ended, as the run report names it (an agent's
//! outcome is [`AgentOutcome`](crate::events::AgentOutcome), shared with the
//! journal).

use serde::{Deserialize, Serialize};

/// How a run ended. Serialised as its [`name`](Self::name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// It did what the workflow asks ([`RunReport::succeeded`](crate::exec::RunReport::succeeded)).
    Succeeded,
    /// An agent or a group did not succeed.
    Failed,
    /// It was cancelled.
    Cancelled,
    /// It stopped on a failure of its own (its journal could not be written).
    Stopped,
}

impl RunOutcome {
    /// Its name in snake case, as serialised.
    pub fn name(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Stopped => "stopped",
        }
    }
}

/// How a group ended. Serialised as its [`name`](Self::name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupOutcome {
    /// Its criterion held and its validations with `on_failure: fail` passed.
    Succeeded,
    /// It did not: its members' dependents were skipped.
    Failed,
    /// The run was cancelled first.
    Cancelled,
}

impl GroupOutcome {
    /// Its name in snake case, as serialised.
    pub fn name(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for GroupOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
