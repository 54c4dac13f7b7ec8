//! How an agent ended, as the run, its journal and its report name it.

use serde::{Deserialize, Serialize};

/// The writer of the run's inputs (`input.<name>` keys): its commit is
/// journaled like an agent's, with outcome [`AgentOutcome::Input`].
pub const INPUT_WRITER: &str = "input";

/// How an agent ended. Serialised as its [`name`](Self::name) (`"partial"`),
/// the names journals and JSON reports have always used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentOutcome {
    /// It ran and committed its writes.
    Succeeded,
    /// Its group's barrier went on without it; its defaults stand in for it.
    Partial,
    /// It did not succeed; nothing of it was committed.
    Failed,
    /// It never started: an agent it needs did not succeed.
    Skipped,
    /// The run was cancelled before it finished.
    Cancelled,
    /// Not an agent: the commit of the run's inputs by [`INPUT_WRITER`].
    Input,
}

impl AgentOutcome {
    /// Its name in snake case, as serialised.
    pub fn name(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Partial => "partial",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
            Self::Input => "input",
        }
    }

    /// Whether what it left stands: its own commit, or its defaults. A
    /// resumed run keeps such an agent instead of running it again.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Partial)
    }
}

impl std::fmt::Display for AgentOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_serialise_as_their_names() {
        use AgentOutcome::*;
        for outcome in [Succeeded, Partial, Failed, Skipped, Cancelled, Input] {
            let json = serde_json::to_string(&outcome).expect("encodes");
            assert_eq!(json, format!("\"{}\"", outcome.name()));
            assert_eq!(serde_json::from_str::<AgentOutcome>(&json).expect("decodes"), outcome);
        }
    }
}
