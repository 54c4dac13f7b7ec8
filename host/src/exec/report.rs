//! What a run did: agent by agent, group by group, validation by validation.

use std::time::Duration;

pub use crate::events::DecisionRecord;

use crate::context::{Conflict, Snapshot};
use crate::events::{AgentOutcome, Timeline};
use crate::journal::RunStatus;
use crate::runtime::{AgentError, Finding};
use crate::workflow::OnFailure;

/// How one agent ended.
#[derive(Debug, Clone)]
pub enum AgentStatus {
    /// Ran and committed `keys` as context `version`.
    Succeeded {
        /// The context version of its commit.
        version: u64,
        /// The keys it committed.
        keys: Vec<String>,
    },
    /// Its group's barrier went on without it: its declared `defaults` were
    /// committed in its place (none if it declares none). Its dependents run.
    Partial {
        /// The keys filled from its defaults.
        defaults: Vec<String>,
        /// Why the barrier went on without it.
        because: String,
        /// Its last error, if it failed rather than being cut short.
        error: Option<AgentError>,
    },
    /// Did not succeed; nothing of it was committed.
    Failed(AgentError),
    /// Never started, because an agent it needs did not succeed.
    Skipped {
        /// Which need did not succeed.
        because: String,
    },
    /// The run was cancelled before it finished; nothing of it was committed.
    Cancelled,
}

impl AgentStatus {
    /// Whether the agent's dependents may use what it left: its own outputs
    /// or, for a partial agent, its defaults.
    pub fn is_usable(&self) -> bool {
        self.outcome().is_final()
    }

    /// Its outcome, as the journal and the run report name it.
    pub fn outcome(&self) -> AgentOutcome {
        match self {
            Self::Succeeded { .. } => AgentOutcome::Succeeded,
            Self::Partial { .. } => AgentOutcome::Partial,
            Self::Failed(_) => AgentOutcome::Failed,
            Self::Skipped { .. } => AgentOutcome::Skipped,
            Self::Cancelled => AgentOutcome::Cancelled,
        }
    }
}

/// How one agent of a run ended, and what it cost.
#[derive(Debug, Clone)]
pub struct AgentReport {
    /// The agent's name.
    pub agent: String,
    /// How it ended.
    pub status: AgentStatus,
    /// Time from start to end of its last attempt, if it started.
    pub elapsed: Option<Duration>,
    /// Fuel its last attempt used, when metered.
    pub fuel_used: Option<u64>,
    /// Peak linear memory in bytes.
    pub peak_memory: u64,
    /// Attempts started (0 if it never started), sequential re-runs included.
    pub attempts: u32,
    /// How long its result waited for the context commit (the design's
    /// "context lock wait time"), if it committed.
    pub commit_wait: Option<Duration>,
    /// Restored from the journal of a resumed run rather than run again.
    pub resumed: bool,
    /// Its output came from the agent output cache: it did not run.
    pub cached: bool,
    /// Template renders of its `run` calls, and how many the render cache answered.
    pub renders: u32,
    /// Renders the render cache answered.
    pub renders_cached: u32,
}

/// How a group ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupStatus {
    /// Every member succeeded, or the success criterion held.
    Succeeded,
    /// Its dependents were skipped.
    Failed {
        /// Why it failed.
        because: String,
    },
    /// The run was cancelled first.
    Cancelled,
}

/// How one group of a run ended.
#[derive(Debug, Clone)]
pub struct GroupReport {
    /// The group's name.
    pub group: String,
    /// How it ended.
    pub status: GroupStatus,
    /// Decisions in the order they were taken (`at`: time since the run started).
    pub decisions: Vec<DecisionRecord>,
    /// From the members' start to the end of cross-validation.
    pub elapsed: Option<Duration>,
}

/// How one `validate` call ended.
#[derive(Debug, Clone)]
pub enum ValidationOutcome {
    /// The validator accepted the subject's outputs.
    Passed {
        /// What the validator found.
        findings: Vec<Finding>,
    },
    /// The validator rejected them.
    Rejected {
        /// What the validator found.
        findings: Vec<Finding>,
    },
    /// `validate` itself failed (trap, timeout, error result).
    Error(AgentError),
    /// It did not run: the validator or the subject did not succeed.
    Skipped {
        /// Which agent did not succeed.
        because: String,
    },
}

/// One validation of a run.
#[derive(Debug, Clone)]
pub struct ValidationReport {
    /// The validating agent.
    pub validator: String,
    /// The agent validated.
    pub subject: String,
    /// The group whose cross-validation this was; `None` for a `validation` need.
    pub group: Option<String>,
    /// What a failure does: `warn` only reports it, `fail` fails the group.
    pub on_failure: OnFailure,
    /// How it ended.
    pub outcome: ValidationOutcome,
    /// How long the `validate` call took, if it ran.
    pub elapsed: Option<Duration>,
}

impl ValidationReport {
    /// Whether the validation ran and did not pass.
    pub fn failed(&self) -> bool {
        matches!(self.outcome, ValidationOutcome::Rejected { .. } | ValidationOutcome::Error(_))
    }
}

/// What a run did: its agents, groups and validations, and how it ended.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The run's id.
    pub run_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The run's wall time.
    pub elapsed: Duration,
    /// One report per agent, in the workflow's order.
    pub agents: Vec<AgentReport>,
    /// One report per declared group, in the workflow's order.
    pub groups: Vec<GroupReport>,
    /// Every `validate` call, in the order they ended (skipped ones included).
    pub validations: Vec<ValidationReport>,
    /// Every write-write conflict on the context and how it was resolved.
    pub conflicts: Vec<Conflict>,
    /// Whether the run was cancelled.
    pub cancelled: bool,
    /// A failure of the run itself (its journal could not be written); the
    /// run stopped there and can be resumed.
    pub error: Option<String>,
    /// The context as the run left it.
    pub context: Snapshot,
    /// Whether the run used the agent output cache.
    pub agent_cache: bool,
    /// What happened when: spans, marks and pool samples (see
    /// [`RunMetrics`](crate::report::RunMetrics) for what is made of it).
    pub timeline: Timeline,
}

impl RunReport {
    /// Whether the run did what the workflow asks: not cancelled, every
    /// agent succeeded or was let off by its group's barrier, and every group
    /// succeeded (a group fails when its criterion does not hold, or when a
    /// validation with `on_failure: fail` does not pass). Validations with
    /// `on_failure: warn` are reported, never fatal.
    pub fn succeeded(&self) -> bool {
        !self.cancelled
            && self.error.is_none()
            && self.agents.iter().all(|a| a.status.is_usable())
            && self.groups.iter().all(|g| g.status == GroupStatus::Succeeded)
    }

    /// The report of agent `id`.
    pub fn agent(&self, id: &str) -> Option<&AgentReport> {
        self.agents.iter().find(|a| a.agent == id)
    }

    /// The report of group `name`.
    pub fn group(&self, name: &str) -> Option<&GroupReport> {
        self.groups.iter().find(|g| g.group == name)
    }

    /// The error of agent `id`, if it failed.
    pub fn error(&self, id: &str) -> Option<&AgentError> {
        match &self.agent(id)?.status {
            AgentStatus::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// How the journal records the end of this run: `None` for a run
    /// whose journal failed (it stays `running`, so it can be resumed).
    pub fn journal_status(&self) -> Option<RunStatus> {
        if self.error.is_some() {
            None
        } else if self.cancelled {
            Some(RunStatus::Cancelled)
        } else if self.succeeded() {
            Some(RunStatus::Succeeded)
        } else {
            Some(RunStatus::Failed)
        }
    }

    /// Validations that ran and did not pass.
    pub fn failed_validations(&self) -> impl Iterator<Item = &ValidationReport> {
        self.validations.iter().filter(|v| v.failed())
    }
}
