//! What a run tells the outside world while it happens: events.
//!
//! Every event carries the time since its [`EventSink`] was created, so the
//! events of one run form a timeline. Events go out on a bounded broadcast
//! channel: a slow or absent subscriber never slows a run down or grows its
//! memory; it misses events instead (`recv` then says how many).

use std::time::{Duration, Instant};

use tokio::sync::broadcast;

/// How many events a subscriber may fall behind before it misses some.
pub const EVENT_BUFFER: usize = 4096;

/// Log levels of agents' `log` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Something that happened in a run, and when.
#[derive(Debug, Clone)]
pub struct Event {
    /// Time since the sink was created (for a sink made for one run: since
    /// just before the run started).
    pub at: Duration,
    pub kind: EventKind,
}

/// The units the resource pool has handed out, after an admission or release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolUsage {
    pub cpu: u32,
    pub memory: u32,
    pub running: u32,
}

/// What a group's smart barrier decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every member succeeded.
    AllCompleted,
    /// The stragglers reported progress recently: wait `by` longer
    /// (extension number `extension`).
    ExtendTimeout { by: Duration, extension: u32 },
    /// Go on with what completed: stragglers cancelled, defaults filled.
    ContinueWithPartial,
    /// Re-run the members that did not succeed one at a time, each alone with
    /// the whole pool. This is also the administrator notification.
    FallbackSequential,
    /// The success criterion holds without a strategy (failed members get
    /// their defaults).
    CriterionMet,
    /// The group failed: its members' dependents are skipped.
    GroupFailed,
}

impl Decision {
    pub fn name(&self) -> &'static str {
        match self {
            Self::AllCompleted => "all_completed",
            Self::ExtendTimeout { .. } => "extend_timeout",
            Self::ContinueWithPartial => "continue_with_partial",
            Self::FallbackSequential => "fallback_sequential",
            Self::CriterionMet => "criterion_met",
            Self::GroupFailed => "group_failed",
        }
    }
}

/// The kinds of events.
#[derive(Debug, Clone)]
pub enum EventKind {
    /// The run began; `agents` agents in all.
    RunStarted { run_id: String, workflow: String, agents: usize },
    /// An agent's needs are met: it waits in the ready queue for resources.
    Queued { agent: String },
    /// The pool admitted an agent (for `run`, or for `validate` when
    /// `validating` names the subject), taking `cpu` and `memory` units.
    Admitted { agent: String, validating: Option<String>, cpu: u32, memory: u32, pool: PoolUsage },
    /// An agent's units went back to the pool.
    Released { agent: String, pool: PoolUsage },
    /// An agent was instantiated and its `run` called.
    AgentStarted { agent: String, attempt: u32 },
    /// An agent's own `progress.report` call; `done` is in [0, 1].
    Progress { agent: String, done: f32, message: String },
    /// An agent's own `log` call.
    Log { agent: String, level: Level, message: String },
    /// An agent's writes (or, for a partial agent, its defaults) were
    /// committed as context `version`.
    Committed { agent: String, version: u64, keys: Vec<String> },
    /// A commit met a concurrent write of `key` by `other`, resolved as `resolution` says.
    Conflict { key: String, agent: String, other: String, resolution: String },
    /// An agent's inputs were unchanged: its cached output was committed
    /// instead of running it (which took `saved` when it ran).
    CacheHit { agent: String, saved: Duration },
    /// An agent's `templates.render` call got its turn and started rendering.
    RenderStarted { agent: String, template: String },
    /// A render ended (or was answered from the render cache).
    Rendered { agent: String, template: String, cached: bool, elapsed: Duration, error: Option<String> },
    /// An attempt ran out of time.
    TimedOut { agent: String, attempt: u32, after: Duration },
    /// An attempt failed with a retryable error; attempt `attempt` starts after `after`.
    AgentRetrying { agent: String, attempt: u32, after: Duration, error: String },
    /// An agent failed for good; nothing of it was committed.
    AgentFailed { agent: String, error: String },
    /// An agent did not run because an agent it needs did not succeed.
    AgentSkipped { agent: String, because: String },
    /// An agent finished successfully.
    AgentSucceeded { agent: String, elapsed: Duration },
    /// A barrier went on without an agent: its declared defaults stand in for it.
    AgentPartial { agent: String, defaults: Vec<String>, because: String },
    /// An agent was stopped by a cancellation; nothing of it was committed.
    AgentCancelled { agent: String },
    /// A group's members were queued together.
    GroupStarted { group: String, agents: Vec<String> },
    /// A group's barrier timeout passed with `running` still unfinished.
    GroupTimedOut { group: String, running: Vec<String> },
    /// A group's barrier decided.
    BarrierDecision { group: String, decision: Decision, reason: String },
    /// A `validate` call ended: `passed` is false for a failed validation or
    /// an error (then `error` says which).
    Validated {
        validator: String,
        subject: String,
        group: Option<String>,
        passed: bool,
        findings: usize,
        error: Option<String>,
    },
    /// A group finished, its cross-validation included.
    GroupDone { group: String, succeeded: bool },
    /// The run ended.
    RunDone { succeeded: bool, cancelled: bool, elapsed: Duration },
}

/// Where a run sends its events. Cloning shares the channel and the clock.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: broadcast::Sender<Event>,
    origin: Instant,
}

impl Default for EventSink {
    fn default() -> Self {
        Self { tx: broadcast::channel(EVENT_BUFFER).0, origin: Instant::now() }
    }
}

impl EventSink {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn send(&self, kind: EventKind) {
        // No subscriber is fine: nobody is listening.
        let _ = self.tx.send(Event { at: self.origin.elapsed(), kind });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
