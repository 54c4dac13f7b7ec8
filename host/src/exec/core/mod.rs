//! The scheduling core: a state machine that does no I/O.
//!
//! The run loop feeds it what happened (a job ended, a timer fired, the
//! cache answered, the run was cancelled) and carries out what it decides
//! ([`Action`]: start or abort a job, ask the cache, finish an agent, a
//! barrier decision, ...). It knows nothing of wasm, tokio, the context
//! store or the journal, so it is tested on its own (`tests.rs`,
//! `proptests.rs`), with time passed in.
//!
//! State is kept in vectors indexed by agent number ([`AgentIx`]), grouped
//! by concern: readiness (`readiness.rs`), the ready queue and the resource
//! pool (`queue.rs`), groups and their barriers (`groups.rs`), validations
//! (`validation.rs`), and per-agent attempts and outcomes here.

mod graph;
mod groups;
mod queue;
mod readiness;
mod validation;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

pub use graph::{AgentIx, Graph, UNKNOWN};
use groups::GroupRun;
use queue::Queue;

use super::pool::ResourcePool;
use super::report::{AgentStatus, GroupReport};
use crate::events::{DecisionRecord, PoolUsage};
use crate::runtime::AgentError;
use crate::workflow::Workflow;

/// A job's number, unique within a run.
pub type JobId = u64;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Run the agent.
    Run,
    /// The agent validates `subject`'s outputs (for `group`'s
    /// cross-validation, or a `validation` need when `None`).
    Validate {
        /// The agent whose outputs it validates.
        subject: AgentIx,
        /// The group, for a group's cross-validation.
        group: Option<usize>,
    },
}

/// What the core decided; the run loop carries these out in order.
#[derive(Debug)]
pub enum Action {
    /// The agent joined the ready queue.
    Queued(AgentIx),
    /// Ask the output cache about the agent; answer with
    /// [`Core::cache_answered`] before anything else.
    Lookup(AgentIx),
    /// Start a job; its units are taken from the pool (`pool` after).
    Start {
        /// The job's id, for [`Core::release`].
        job: JobId,
        /// The agent.
        agent: AgentIx,
        /// What the job does.
        kind: JobKind,
        /// Whether it runs alone with the whole pool (a sequential re-run).
        exclusive: bool,
        /// The attempt's number, from 1.
        attempt: u32,
        /// The pool's usage after its units were taken.
        pool: PoolUsage,
    },
    /// Stop a running job: whatever it returns is discarded (report it
    /// back with [`Core::release`] all the same).
    Abort(JobId),
    /// An agent that was queued, running or backing off was stopped.
    Stopped(AgentIx),
    /// Retry the agent after `after` (its attempt failed with a retryable error).
    Retrying {
        /// The agent.
        agent: AgentIx,
        /// The attempt that starts next.
        attempt: u32,
        /// The wait before it.
        after: Duration,
        /// The error of the failed attempt.
        error: String,
    },
    /// The agent finished. `ran`: its last job's timing applies (it ran,
    /// or was stopped while running). A `Partial` status names no
    /// defaults yet: the run loop commits the agent's defaults.
    Finish {
        /// The agent.
        agent: AgentIx,
        /// How it ended.
        status: AgentStatus,
        /// Whether its last job's timing applies.
        ran: bool,
    },
    /// The group's members were queued together.
    GroupStarted(usize),
    /// The group's barrier timeout passed with members still running.
    GroupTimedOut {
        /// The group's index.
        group: usize,
        /// The members still unfinished.
        running: Vec<AgentIx>,
    },
    /// A barrier decision (also in the group's report).
    Barrier {
        /// The group's index.
        group: usize,
        /// The decision, its reason and time.
        record: DecisionRecord,
    },
    /// The group finished, its cross-validation included.
    GroupDone {
        /// The group's index.
        group: usize,
        /// Whether it succeeded.
        succeeded: bool,
    },
    /// A validation job could not start (its component cannot be used).
    ValidationError {
        /// The validating agent.
        validator: AgentIx,
        /// The agent it was to validate.
        subject: AgentIx,
        /// The group, for a group's cross-validation.
        group: Option<usize>,
        /// Why it could not start.
        error: AgentError,
    },
    /// A validation that cannot run because its validator or subject did not succeed.
    ValidationSkipped {
        /// The validating agent.
        validator: AgentIx,
        /// The agent it was to validate.
        subject: AgentIx,
        /// The group, for a group's cross-validation.
        group: Option<usize>,
        /// Which agent did not succeed.
        because: String,
    },
}

/// Where a not yet finished agent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Its needs are not met yet (or its group has not started).
    Waiting,
    Queued,
    BackingOff(Instant),
    Running,
    /// Waiting for its turn in its group's sequential fallback.
    Deferred,
    /// Finished: its outcome says how.
    Done,
}

/// How an agent finished, as far as scheduling cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    Partial,
    Failed { load_error: bool },
    Skipped,
    Cancelled,
}

impl Outcome {
    fn of(status: &AgentStatus) -> Self {
        match status {
            AgentStatus::Succeeded { .. } => Self::Succeeded,
            AgentStatus::Partial { .. } => Self::Partial,
            AgentStatus::Failed(e) => Self::Failed { load_error: e.is_load_error() },
            AgentStatus::Skipped { .. } => Self::Skipped,
            AgentStatus::Cancelled => Self::Cancelled,
        }
    }

    /// Whether dependents can use what it committed.
    fn usable(self) -> bool {
        matches!(self, Self::Succeeded | Self::Partial)
    }
}

/// A job holding units of the pool.
#[derive(Debug, Clone, Copy)]
struct Running {
    id: JobId,
    agent: AgentIx,
    kind: JobKind,
    exclusive: bool,
    /// Aborted: whatever it returns is dropped.
    discard: bool,
}

/// A job back from the dispatcher, its units returned to the pool.
#[derive(Debug, Clone, Copy)]
pub struct Released {
    /// The job's agent.
    pub agent: AgentIx,
    /// What the job did.
    pub kind: JobKind,
    /// It was aborted: drop its result, do not report it further.
    pub discard: bool,
    /// The pool's usage after its units came back.
    pub pool: PoolUsage,
}

/// Per agent: attempts, retry state and outcome.
#[derive(Debug, Default)]
struct Stats {
    attempts: Vec<u32>,
    /// Attempts that do not count against the retry policy (those before a
    /// sequential fallback, or a resume).
    retry_base: Vec<u32>,
    /// Re-running alone in a sequential fallback.
    exclusive: Vec<bool>,
    /// The error of the last failed attempt.
    last_error: Vec<Option<AgentError>>,
    outcome: Vec<Option<Outcome>>,
    /// Why the component cannot be used, if it cannot.
    unusable: Vec<Option<AgentError>>,
    /// Why a skipped agent was skipped.
    skipped: Vec<Option<String>>,
}

/// The scheduling state of one run.
#[derive(Debug)]
pub struct Core<'w> {
    wf: &'w Workflow,
    graph: Graph,
    run_id: String,
    started: Instant,
    phase: Vec<Phase>,
    stats: Stats,
    ready: readiness::Readiness,
    queue: Queue,
    pool: ResourcePool,
    running: Vec<Running>,
    next_job: JobId,
    groups: Vec<GroupRun>,
    /// `validation` needs not yet scheduled or skipped.
    validation_needs: Vec<(AgentIx, AgentIx)>,
    /// Retry backoffs: (when, agent). Entries whose agent moved on are stale.
    backoffs: BTreeSet<(Instant, AgentIx)>,
    /// Ask the cache before queuing an agent.
    lookups: bool,
    /// Cancelled or stopped: nothing new starts.
    halted: bool,
    out: VecDeque<Action>,
}

impl<'w> Core<'w> {
    /// The core of a run of `workflow` started at `started`; `lookups`:
    /// ask the output cache before running an agent.
    pub fn new(workflow: &'w Workflow, run_id: String, started: Instant, lookups: bool) -> Self {
        let graph = Graph::new(workflow);
        let n = workflow.agents.len();
        let groups = workflow.groups.iter().map(|g| GroupRun::new(&g.name)).collect();
        Self {
            wf: workflow,
            run_id,
            started,
            phase: vec![Phase::Waiting; n],
            stats: Stats {
                attempts: vec![0; n],
                retry_base: vec![0; n],
                exclusive: vec![false; n],
                last_error: vec![None; n],
                outcome: vec![None; n],
                unusable: vec![None; n],
                skipped: vec![None; n],
            },
            ready: readiness::Readiness::new(n),
            queue: Queue::default(),
            pool: ResourcePool::new(&workflow.resources),
            running: Vec::new(),
            next_job: 0,
            groups,
            validation_needs: graph.validations.clone(),
            graph,
            backoffs: BTreeSet::new(),
            lookups,
            halted: false,
            out: VecDeque::new(),
        }
    }

    /// The next decision to carry out, if any.
    pub fn next_action(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// The agent's component cannot be used: it fails when its turn comes.
    pub fn unusable(&mut self, agent: AgentIx, error: AgentError) {
        self.stats.unusable[agent] = Some(error);
    }

    /// A resumed run: `agent` had made `attempts` attempts; with `status`,
    /// it finished for good and keeps that status.
    pub fn restore(&mut self, agent: AgentIx, attempts: u32, status: Option<&AgentStatus>) {
        self.stats.attempts[agent] = attempts;
        match status {
            Some(status) => {
                self.phase[agent] = Phase::Done;
                self.stats.outcome[agent] = Some(Outcome::of(status));
            }
            // It runs again, its attempts counting on with a fresh retry budget.
            None => self.stats.retry_base[agent] = attempts,
        }
    }

    /// Attempts started so far by `agent`.
    pub fn attempts(&self, agent: AgentIx) -> u32 {
        self.stats.attempts[agent]
    }

    /// The memory units of the whole pool (an exclusive job's cap).
    pub fn memory_capacity(&self) -> u32 {
        self.pool.memory_capacity()
    }

    /// The pool's use now.
    pub fn pool_usage(&self) -> PoolUsage {
        self.pool.usage()
    }

    /// Settle what can be settled and admit what fits; the decisions queue up.
    pub fn step(&mut self, now: Instant) {
        if self.halted {
            return;
        }
        loop {
            self.settle(now);
            if !self.admit() {
                break;
            }
        }
    }

    /// Whether nothing runs, waits in the queue or backs off: the run is over.
    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.queue.is_empty() && self.next_backoff().is_none()
    }

    /// When the loop must wake without a job ending: a retry backoff ending
    /// or a group's barrier timeout.
    pub fn next_timer(&self) -> Option<Instant> {
        let deadlines = self.groups.iter().filter_map(GroupRun::running_deadline);
        self.next_backoff().into_iter().chain(deadlines).min()
    }

    fn next_backoff(&self) -> Option<Instant> {
        self.backoffs.iter().find(|(at, a)| self.phase[*a] == Phase::BackingOff(*at)).map(|(at, _)| *at)
    }

    /// Take the job back from the dispatcher: its units return to the pool.
    /// `None` for a job the core does not know.
    pub fn release(&mut self, job: JobId) -> Option<Released> {
        let i = self.running.iter().position(|r| r.id == job)?;
        let r = self.running.swap_remove(i);
        if r.exclusive {
            self.pool.release_all();
        } else {
            self.pool.release(&self.wf.agents[r.agent]);
        }
        Some(Released { agent: r.agent, kind: r.kind, discard: r.discard, pool: self.pool.usage() })
    }

    /// A (released, not discarded) run job ended: committed with `version`
    /// and `keys`, or failed with an error (the loop's commit may have
    /// failed it too).
    pub fn completed(
        &mut self,
        agent: AgentIx,
        result: Result<(u64, Vec<String>), AgentError>,
        now: Instant,
    ) {
        match result {
            Ok((version, keys)) => self.finish(agent, AgentStatus::Succeeded { version, keys }, true),
            Err(error) => {
                let error = self.checked_need_hint(agent, error);
                let spec = &self.wf.agents[agent];
                let attempt = self.stats.attempts[agent].max(1);
                let counted = attempt.saturating_sub(self.stats.retry_base[agent]);
                let retry = error.is_retryable() && counted < spec.retry.attempts;
                self.stats.last_error[agent] = Some(error.clone());
                if retry {
                    let after = backoff(&spec.retry, &self.run_id, &spec.id, counted);
                    let error = error.to_string();
                    self.out.push_back(Action::Retrying { agent, attempt: attempt + 1, after, error });
                    let at = now.checked_add(after).unwrap_or_else(|| now + Duration::from_secs(86_400));
                    self.phase[agent] = Phase::BackingOff(at);
                    self.backoffs.insert((at, agent));
                } else {
                    self.finish(agent, AgentStatus::Failed(error), true);
                }
            }
        }
    }

    /// The cache answered about `agent`: with a hit, its cached writes were
    /// committed (`version`, `keys`); without, it joins the queue.
    /// An answer for an agent that is no longer queued (a barrier stopped
    /// it since it was queued) is ignored.
    pub fn cache_answered(&mut self, agent: AgentIx, hit: Option<(u64, Vec<String>)>) {
        if !self.awaits_lookup(agent) {
            return;
        }
        match hit {
            Some((version, keys)) => self.finish(agent, AgentStatus::Succeeded { version, keys }, false),
            None => self.queue.push(agent, JobKind::Run, false),
        }
    }

    /// Whether `agent` is queued and waits for the cache's answer (ask the
    /// cache only then: a barrier may have stopped it since).
    pub fn awaits_lookup(&self, agent: AgentIx) -> bool {
        self.phase[agent] == Phase::Queued && !self.queue.holds_run(agent)
    }

    /// Fire what is due at `now`: backoffs ending, barrier timeouts.
    /// `progress(job)` is when the job last reported progress.
    pub fn timers(&mut self, now: Instant, progress: impl Fn(JobId) -> Option<Instant>) {
        if self.halted {
            return;
        }
        while let Some(&(at, agent)) = self.backoffs.first().filter(|(at, _)| *at <= now) {
            self.backoffs.pop_first();
            if self.phase[agent] == Phase::BackingOff(at) {
                let exclusive = self.stats.exclusive[agent];
                self.enqueue(agent, exclusive);
            }
        }
        self.group_timeouts(now, &progress);
    }

    /// Stop everything: running jobs are aborted, nothing new starts, every
    /// unfinished agent is cancelled. Committed results stay.
    pub fn halt(&mut self) {
        self.halted = true;
        for r in &mut self.running {
            if !r.discard {
                r.discard = true;
                self.out.push_back(Action::Abort(r.id));
            }
        }
        self.queue.clear();
        for agent in 0..self.phase.len() {
            if self.phase[agent] != Phase::Done {
                self.finish(agent, AgentStatus::Cancelled, false);
            }
        }
    }

    /// The run is over: whatever never finished is skipped (or cancelled,
    /// if `cancelled`); groups not done fail (or are cancelled). The groups'
    /// reports, with their elapsed time at `now`.
    pub fn wrap_up(&mut self, cancelled: bool, now: Instant) -> Vec<GroupReport> {
        for agent in 0..self.phase.len() {
            if self.phase[agent] != Phase::Done {
                // Validation rules out cycles, so only a cancelled run gets here; be safe anyway.
                let status = if cancelled {
                    AgentStatus::Cancelled
                } else {
                    AgentStatus::Skipped { because: "its needs never completed".into() }
                };
                self.finish(agent, status, false);
            }
        }
        std::mem::take(&mut self.groups).into_iter().map(|g| g.into_report(cancelled, now)).collect()
    }

    /// Finish `agent` with `status`: its dependents may be ready now.
    fn finish(&mut self, agent: AgentIx, status: AgentStatus, ran: bool) {
        self.phase[agent] = Phase::Done;
        self.stats.outcome[agent] = Some(Outcome::of(&status));
        match &status {
            AgentStatus::Failed(e) => self.stats.last_error[agent] = Some(e.clone()),
            AgentStatus::Skipped { because } => self.stats.skipped[agent] = Some(because.clone()),
            _ => {}
        }
        self.out.push_back(Action::Finish { agent, status, ran });
        self.notify(agent, None);
    }

    fn succeeded(&self, agent: AgentIx) -> bool {
        self.stats.outcome[agent] == Some(Outcome::Succeeded)
    }

    /// Stop `agent` wherever it is; true if it was running.
    fn stop(&mut self, agent: AgentIx) -> bool {
        let phase = std::mem::replace(&mut self.phase[agent], Phase::Done);
        self.queue.remove_run(agent);
        if matches!(phase, Phase::Queued | Phase::Running | Phase::BackingOff(_)) {
            self.out.push_back(Action::Stopped(agent));
        }
        if phase != Phase::Running {
            return false;
        }
        if let Some(r) = self.running.iter_mut().find(|r| r.agent == agent && r.kind == JobKind::Run) {
            r.discard = true;
            self.out.push_back(Action::Abort(r.id));
        }
        true
    }

    /// The running run job of `agent`.
    fn run_job(&self, agent: AgentIx) -> Option<JobId> {
        self.running.iter().find(|r| r.agent == agent && r.kind == JobKind::Run && !r.discard).map(|r| r.id)
    }

    /// `error` without its hint to add a need if `agent` already waits for
    /// the key's owner (a data need, directly or through other agents): the
    /// owner committed without the key, and a need would not help.
    fn checked_need_hint(&self, agent: AgentIx, error: AgentError) -> AgentError {
        let Some(owner) = error.missing_need().map(|m| m.owner.as_str()) else { return error };
        let mut seen = vec![false; self.phase.len()];
        let mut stack: Vec<AgentIx> = self.graph.needs[agent].clone();
        while let Some(a) = stack.pop() {
            if a == UNKNOWN || std::mem::replace(&mut seen[a], true) {
                continue;
            }
            if self.wf.agents[a].id == owner {
                return error.without_missing_need();
            }
            stack.extend(&self.graph.needs[a]);
        }
        error
    }

    /// When the run started (barrier decisions are timed from it).
    fn since_start(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }
}

/// The delay before retry number `retry` (1 for the first): the backoff
/// doubled each time, capped, then scaled by a jitter in [0.5, 1] derived
/// from the run, agent and attempt (so agents that failed together do not
/// retry in lockstep, and a run is reproducible).
fn backoff(policy: &crate::workflow::Retry, run_id: &str, agent: &str, retry: u32) -> Duration {
    let doubled = policy.backoff.saturating_mul(1u32 << retry.saturating_sub(1).min(16));
    let capped = doubled.min(policy.max_backoff);
    let mut hasher = blake3::Hasher::new();
    hasher.update(run_id.as_bytes());
    hasher.update(agent.as_bytes());
    hasher.update(&retry.to_le_bytes());
    let byte = hasher.finalize().as_bytes()[0];
    capped.mul_f64(0.5 + f64::from(byte) / 510.0)
}
