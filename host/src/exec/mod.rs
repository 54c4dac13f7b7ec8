//! Running a workflow: load the components, start agents as their needs
//! commit, run groups to their smart barriers, validate, commit what
//! succeeds, skip what cannot run.
//!
//! - An agent becomes ready once every agent it `data`-needs has committed
//!   (and, if that agent is in a group, once the group is done, its barrier
//!   and cross-validation included). The ready queue serves the highest
//!   priority first, then the longest remaining path (both from the plan);
//!   an agent starts only when its cpu and memory units and a slot fit the
//!   [`ResourcePool`]. The head of the queue waits until it fits.
//! - A declared group's members are queued together once all are ready; the
//!   group's barrier then waits for all of them or its timeout and decides
//!   (see [`barrier`] for the rules). Results that completed are never
//!   discarded: a member's writes are committed the moment it succeeds.
//! - Failed attempts are retried with jittered exponential backoff unless
//!   the error says another attempt cannot help.
//! - Cancelling ([`RunOptions::cancel`]) stops running agents when their time
//!   slice ends; nothing of them is committed, and the report says so.
//!   Dropping the run's future aborts the run's task instead: it stops at its
//!   next await (an agent that just finished may still be committed) and
//!   releases the journal once it has unwound, asynchronously; cancel and
//!   await the report to know the run has stopped and its journal is free.
//! - Agents share cores in time slices proportional to their cpu units:
//!   an agent yields to the others every `cpu / 10` epoch ticks (at least 1).
//! - Each job is a task of its own, except one that is all there is to run
//!   (a chain): the run's own task polls it, which saves a spawn and a
//!   worker wake-up per agent.
//!
//! Architecture invariant: an agent's writes are committed atomically, before
//! any agent that needs it starts; an agent never sees uncommitted writes.

pub mod barrier;
mod outputs;
mod pool;
mod report;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::task::{AbortHandle, JoinSet};
pub use tokio_util::sync::CancellationToken;

pub use outputs::{OutputError, write_outputs};
pub use pool::ResourcePool;
pub use report::{
    AgentReport, AgentStatus, DecisionRecord, GroupReport, GroupStatus, RunReport, ValidationOutcome,
    ValidationReport,
};

use crate::cache::{AgentCache, Family};
use crate::context::{CommitError, Conflict, ContextStore, Ownership, StagedWrites};
use crate::journal::{
    AgentRecord, CommitRecord, ConflictRecord, Journal, JournalError, RunRecord, RunStatus,
};
use crate::observe::{Decision, EventKind, EventSink, EventTap, TimelineRecorder};
use crate::runtime::{
    AgentCall, AgentComponent, AgentError, AgentOutput, Capabilities, Limits, Pulse, Runtime, RuntimeConfig,
    RuntimeError, Validation,
};
use crate::templates::{TemplateLimits, TemplateService};
use crate::workflow::{AgentSpec, DependencyKind, OnFailure, Workflow};
use barrier::{Facts, Verdict, criterion_holds};

/// The writer of the run's inputs (`input.<name>` keys).
pub const INPUT_WRITER: &str = "input";

/// Cpu units per epoch tick of an agent's time slice.
pub const CPU_UNITS_PER_TICK: u32 = 10;

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run's id; generated when `None`.
    pub run_id: Option<String>,
    /// Where events go; subscribe before the run starts to see them all.
    pub events: EventSink,
    /// Cancel this to stop the run: running agents are interrupted at their
    /// next epoch tick and nothing of them is committed; what was committed
    /// stays. (Dropping the run's future aborts it too, but asynchronously:
    /// see the module docs.)
    pub cancel: CancellationToken,
    /// Where the run is journaled (see [`Engine::create_journal`]); `None`
    /// keeps it in memory only, and it cannot be resumed.
    pub journal: Option<Arc<Journal>>,
    /// The agent output cache; `None` runs every agent.
    pub cache: Option<Arc<AgentCache>>,
    /// Values committed before any agent starts, as `input.<name>`
    /// (MessagePack), by the writer `input`. Agents read them like any key.
    pub inputs: BTreeMap<String, Vec<u8>>,
    /// The template service; `None` makes one over the workflow's
    /// `templates` directory (if it has one) with the default limits.
    pub templates: Option<Arc<TemplateService>>,
}

/// Why a run cannot be resumed.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("run `{run}` cannot be resumed: {}; resume with --force to run it anyway", changes.join("; "))]
    Changed { run: String, changes: Vec<String> },
    #[error(
        "run `{run}`: the journal's commits are not consecutive (version {version} follows {after}); it cannot be replayed"
    )]
    Gap { run: String, version: u64, after: u64 },
}

/// The engine of a process: one wasmtime runtime, shared by every run.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    runtime: Runtime,
}

impl Engine {
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        Ok(Self { runtime: Runtime::new(config)? })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Load (compile, or fetch from the cache) every component of `workflow`,
    /// reporting every one that cannot be used. Loaded components stay in
    /// memory, so a run that follows does not load them again (and counts
    /// the time they took: see [`Runtime::load_workflow`]).
    pub fn load_components(&self, workflow: &Workflow) -> Result<(), Vec<AgentError>> {
        self.load_components_with(workflow, &EventSink::new())
    }

    /// [`load_components`](Self::load_components), distinct components in
    /// parallel, with an event for each one compiled or read from the
    /// compiled-component cache sent through `events` (give the run's sink
    /// to show them with the run's).
    pub fn load_components_with(
        &self,
        workflow: &Workflow,
        events: &EventSink,
    ) -> Result<(), Vec<AgentError>> {
        let errors = self.runtime.preload_workflow(workflow, events).errors();
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Run `workflow` to the end. Agents that fail do not stop the others;
    /// agents that need a failed agent are skipped. The report says what
    /// happened to each agent, group and validation. Call it within a tokio
    /// runtime (the run is a task of its own, aborted if this future is
    /// dropped); a multi-thread runtime lets agents use several cores.
    ///
    /// The run's task gets a copy of `workflow`; [`run_shared`](Self::run_shared)
    /// saves that copy when the same workflow runs many times.
    pub async fn run(&self, workflow: &Workflow, options: RunOptions) -> RunReport {
        self.run_shared(Arc::new(workflow.clone()), options).await
    }

    /// [`run`](Self::run) a workflow the caller shares with the run's task.
    pub async fn run_shared(&self, workflow: Arc<Workflow>, options: RunOptions) -> RunReport {
        let run_id = options.run_id.clone().unwrap_or_else(|| new_run_id(&workflow));
        match self.execute(workflow, run_id, options, None).await {
            Ok(report) => report,
            Err(_) => unreachable!("nothing to restore, so no gap"),
        }
    }

    /// Run the execution loop as a task of its own, so it and the agents it
    /// spawns share the runtime's worker threads: a finished agent wakes
    /// the loop on the thread it ran on, not across threads. Dropping the
    /// returned future aborts the task (and so every agent).
    async fn execute(
        &self,
        workflow: Arc<Workflow>,
        run_id: String,
        options: RunOptions,
        restore: Option<(Vec<CommitRecord>, BTreeMap<String, AgentRecord>)>,
    ) -> Result<RunReport, (u64, u64)> {
        let runtime = self.runtime.clone();
        let task = tokio::spawn(async move {
            let mut execution = Execution::new(runtime, &workflow, run_id, options);
            if let Some((commits, agents)) = restore {
                execution.restore(commits, agents)?;
            }
            Ok(execution.run().await)
        });
        match tokio_util::task::AbortOnDropHandle::new(task).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only a runtime shutting down cancels it, and that drops us too.
            Err(e) => panic!("the run's task was cancelled: {e}"),
        }
    }

    /// A new run id for `workflow`.
    pub fn new_run_id(workflow: &Workflow) -> String {
        new_run_id(workflow)
    }

    /// Create the journal of a new run of `workflow` (`<state_dir>/runs/<run_id>.redb`),
    /// recording the workflow's and components' hashes so a resume can tell
    /// whether they changed.
    pub fn create_journal(
        &self,
        workflow: &Workflow,
        state_dir: &Path,
        run_id: &str,
    ) -> Result<Journal, JournalError> {
        let record = RunRecord {
            run_id: run_id.to_owned(),
            workflow: workflow.name.clone(),
            workflow_path: std::path::absolute(&workflow.path).unwrap_or_else(|_| workflow.path.clone()),
            workflow_hash: file_hash(&workflow.path),
            components: Self::component_hashes(workflow),
            started_unix_ms: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            status: RunStatus::Running,
            resumed: 0,
            inputs: BTreeMap::new(),
        };
        Journal::create_in(state_dir, &record)
    }

    /// Each agent's component hash: blake3 of its file, as a loaded
    /// component's `content_hash` (nothing is compiled for it).
    fn component_hashes(workflow: &Workflow) -> BTreeMap<String, String> {
        workflow.agents.iter().map(|a| (a.id.clone(), file_hash(&a.component))).collect()
    }

    /// What changed since the run of `journal` started (the workflow file,
    /// components, agents), one sentence each; empty if nothing did. Cheap:
    /// files are hashed, nothing is compiled, so callers check it before
    /// loading anything.
    pub fn resume_changes(workflow: &Workflow, journal: &Journal) -> Result<Vec<String>, JournalError> {
        let record = journal.run()?;
        let mut changes = Vec::new();
        if record.workflow_hash != file_hash(&workflow.path) {
            changes.push(format!("workflow file {} changed since the run started", workflow.path.display()));
        }
        for (agent, hash) in &Self::component_hashes(workflow) {
            let path = workflow.agent(agent).map(|a| a.component.display().to_string()).unwrap_or_default();
            match record.components.get(agent) {
                Some(then) if then == hash => {}
                Some(_) => changes.push(format!("the component of agent `{agent}` ({path}) changed")),
                None => changes.push(format!("agent `{agent}` was not in the run")),
            }
        }
        Ok(changes)
    }

    /// Finish a run that stopped (killed, cancelled, failed): rebuild its
    /// context from the journal, keep every agent that committed for good
    /// (succeeded, or partial by its barrier), and run the rest. Refused if
    /// the workflow file or a component changed since the run started
    /// ([`Engine::resume_changes`]), unless `force`.
    pub async fn resume(
        &self,
        workflow: &Workflow,
        journal: Arc<Journal>,
        mut options: RunOptions,
        force: bool,
    ) -> Result<RunReport, ResumeError> {
        let mut record = journal.run()?;
        let changes = Self::resume_changes(workflow, &journal)?;
        if !changes.is_empty() && !force {
            return Err(ResumeError::Changed { run: record.run_id, changes });
        }
        let commits = journal.commits()?;
        let agents = journal.agents()?;
        if commits.is_empty() {
            // Killed before the inputs were committed: they are in the run record.
            options.inputs = record.inputs.iter().map(|(k, v)| (k.clone(), v.to_vec())).collect();
        }
        record.status = RunStatus::Running;
        record.resumed += 1;
        record.components = Self::component_hashes(workflow);
        record.workflow_hash = file_hash(&workflow.path);
        journal.set_resumed(&record)?;
        options.journal = Some(journal);
        self.execute(Arc::new(workflow.clone()), record.run_id.clone(), options, Some((commits, agents)))
            .await
            .map_err(|(version, after)| ResumeError::Gap { run: record.run_id.clone(), version, after })
    }
}

/// The run loop's maps: keyed by agent ids and looked up several times per
/// agent, so hashed with a fast (per-process seeded) hasher, not SipHash.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// `agent`'s place in `order`; last if it has none.
fn rank_in(order: &Map<&str, usize>, agent: &str) -> usize {
    order.get(agent).copied().unwrap_or(usize::MAX)
}

/// Each agent's place in the ready queue: priority (highest first), then
/// longest remaining path, then file order.
fn ready_order(workflow: &Workflow) -> Map<&str, usize> {
    let keys = crate::plan::ready_keys(workflow);
    let mut ranked: Vec<(usize, &AgentSpec)> = workflow.agents.iter().enumerate().collect();
    ranked.sort_by_key(|(index, _)| {
        let (priority, remaining) = keys.get(*index).copied().unwrap_or_default();
        (std::cmp::Reverse(priority), std::cmp::Reverse(remaining), *index)
    });
    ranked.into_iter().enumerate().map(|(rank, (_, agent))| (agent.id.as_str(), rank)).collect()
}

/// The inline job's end; never, without one.
async fn poll_inline(inline: &mut Option<Inline<'_>>) -> Ended {
    match inline {
        Some(inline) => (&mut inline.future).await,
        None => std::future::pending().await,
    }
}

/// A job's future with its panics caught, as a task's are by tokio: a
/// panic in the inline job fails that job, not the whole run.
struct CatchPanic<'w> {
    agent: &'w str,
    future: JobFuture,
}

impl Future for CatchPanic<'_> {
    type Output = Ended;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Ended> {
        let this = &mut *self;
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| this.future.as_mut().poll(cx)));
        polled.unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let message = format!("agent task failed: it panicked: {why}");
            std::task::Poll::Ready((
                Err(AgentError::Host { agent: this.agent.to_owned(), message }),
                Instant::now(),
            ))
        })
    }
}

/// Sleep until `at`, or for ever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
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

/// An agent's time slice in epoch ticks.
fn slice(cpu: u32) -> u32 {
    cpu.div_ceil(CPU_UNITS_PER_TICK).max(1)
}

/// Read an input file (YAML or JSON) as the MessagePack value
/// [`RunOptions::inputs`] takes.
/// Errors are one line, naming the file (and the line of a syntax error).
pub fn load_input(path: &Path) -> Result<Vec<u8>, String> {
    let text = crate::files::read_text(path, MAX_INPUT_BYTES)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.trim().is_empty() {
        return Err(format!("{}: the file is empty: write a YAML or JSON value", path.display()));
    }
    let value: serde_json::Value = serde_saphyr::from_str(&text)
        .map_err(|e| format!("{} (not YAML or JSON)", crate::workflow::yaml_error_line(path, &e)))?;
    rmp_serde::to_vec_named(&value).map_err(|e| format!("{}: {e}", path.display()))
}

/// The largest input file read.
pub const MAX_INPUT_BYTES: u64 = 64 << 20;

/// blake3 (hex) of a file's bytes; of nothing if it cannot be read (or is
/// not a regular file: a FIFO or device is never opened).
fn file_hash(path: &Path) -> String {
    blake3::hash(&crate::files::read_file(path, u64::MAX).unwrap_or_default()).to_hex().to_string()
}

fn new_run_id(workflow: &Workflow) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let mut hasher = blake3::Hasher::new();
    hasher.update(workflow.path.as_os_str().as_encoded_bytes());
    hasher.update(&nanos.to_le_bytes());
    hasher.update(&std::process::id().to_le_bytes());
    // Runs started in the same nanosecond (an embedding app starting many)
    // still get distinct ids, and so distinct journals.
    static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    hasher.update(&STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_le_bytes());
    hasher.finalize().to_hex()[..12].to_owned()
}

/// Where a not yet finished agent is. Finished agents have a report instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Its needs are not met yet (or its group has not started).
    Waiting,
    Queued,
    BackingOff(Instant),
    Running,
    /// Waiting for its turn in its group's sequential fallback.
    Deferred,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job<'w> {
    Run(&'w str),
    Validate { validator: &'w str, subject: &'w str, group: Option<usize> },
}

impl<'w> Job<'w> {
    /// The agent whose component and units the job uses.
    fn agent(&self) -> &'w str {
        match *self {
            Self::Run(agent) | Self::Validate { validator: agent, .. } => agent,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Queued<'w> {
    job: Job<'w>,
    /// Its agent's place in the ready order; `usize::MAX` until the order
    /// is worked out (see [`Execution::order`]).
    rank: usize,
    /// Runs alone with the whole pool (a sequential fallback).
    exclusive: bool,
    seq: u64,
}

/// A running job: a task of its own, or the lone job the loop polls
/// itself (see [`Execution::start`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TaskKey {
    Spawned(tokio::task::Id),
    Inline(u64),
}

type JobFuture = Pin<Box<dyn Future<Output = Ended> + Send>>;

/// The job the loop runs on its own task.
struct Inline<'w> {
    key: u64,
    future: CatchPanic<'w>,
}

struct Task<'w> {
    job: Job<'w>,
    /// The context version the job's snapshot was taken at.
    base: u64,
    exclusive: bool,
    pulse: Arc<Pulse>,
    started: Instant,
    /// `None` for the inline job: the loop drops its future instead.
    abort: Option<AbortHandle>,
    /// Aborted on purpose: whatever it returns is dropped.
    discard: bool,
}

type Outcome = Result<(Option<Validation>, AgentOutput), AgentError>;
/// A task's outcome and when it ended (the commit wait starts there).
type Ended = (Outcome, Instant);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupPhase {
    /// Some member is not ready yet.
    Pending,
    /// Members run; the barrier waits.
    Running,
    /// The barrier fell back: members re-run one at a time.
    Sequential,
    /// Cross-validation runs.
    Validating,
    Done,
}

struct GroupRun<'w> {
    phase: GroupPhase,
    started: Option<Instant>,
    deadline: Option<Instant>,
    extensions: u32,
    fallback: VecDeque<&'w str>,
    validations_pending: usize,
    /// Why a validation with `on_failure: fail` failed the group.
    validation_failed: Option<String>,
    report: GroupReport,
}

struct Execution<'w> {
    runtime: Runtime,
    workflow: &'w Workflow,
    run_id: String,
    events: EventSink,
    cancel: CancellationToken,
    ownership: Ownership,
    store: ContextStore,
    components: Map<&'w str, Result<AgentComponent, AgentError>>,
    /// Each agent's place in the ready queue, worked out the first time two
    /// jobs are queued at once or a sequential fallback orders its members
    /// (a chain never needs it).
    order: Option<Map<&'w str, usize>>,
    /// Each agent's spec by id (`Workflow::agent` is a linear search).
    by_id: Map<&'w str, &'w AgentSpec>,
    /// The `reads` patterns of the agents that declare them, built once.
    reads: Map<&'w str, crate::context::ReadPatterns>,
    phases: Map<&'w str, Phase>,
    reports: Map<&'w str, AgentReport>,
    /// Attempts started so far, per agent.
    attempts: Map<&'w str, u32>,
    /// Attempts that do not count against the retry policy (those before a
    /// sequential fallback).
    retry_base: Map<&'w str, u32>,
    /// Agents re-running in a sequential fallback.
    exclusive: Set<&'w str>,
    /// The error of each agent's last failed attempt (for barrier reports).
    last_error: Map<&'w str, AgentError>,
    queue: Vec<Queued<'w>>,
    queued_seq: u64,
    pool: ResourcePool,
    /// HTTP requests in flight, shared by every agent of the run.
    http_slots: crate::runtime::HttpSlots,
    running: JoinSet<Ended>,
    /// Jobs admitted in this pass, started together by [`Self::start`].
    starting: Vec<(Task<'w>, JobFuture)>,
    inline: Option<Inline<'w>>,
    inline_seq: u64,
    tasks: Map<TaskKey, Task<'w>>,
    run_task: Map<&'w str, TaskKey>,
    groups: Vec<GroupRun<'w>>,
    group_of: Map<&'w str, usize>,
    validations: Vec<ValidationReport>,
    /// (validator, subject) pairs of `validation` needs not yet scheduled or skipped.
    validation_needs: Vec<(&'w str, &'w str)>,
    /// Each agent's blocking dependents (the agents whose `data` needs name it).
    dependents: Map<&'w str, Vec<&'w AgentSpec>>,
    /// Per waiting agent, how many of its blocking needs are not met yet;
    /// counted at the first `settle`, then kept up to date as agents and
    /// groups finish, so settling costs what changed, not the workflow's size.
    unmet: Map<&'w str, usize>,
    counted: bool,
    /// Waiting agents to look at again: their last need was met, or one failed.
    dirty: VecDeque<&'w AgentSpec>,
    /// Retry backoffs: (when, agent). Entries whose agent moved on are stale.
    backoffs: BTreeSet<(Instant, &'w str)>,
    cancelled: bool,
    /// A run-level failure (the journal could not be written): the run stops.
    error: Option<String>,
    journal: Option<Arc<Journal>>,
    conflicts: Vec<Conflict>,
    /// Per agent, the time its last successful result waited to be committed.
    commit_wait: Map<&'w str, Duration>,
    cache: Option<Arc<AgentCache>>,
    /// blake3 of the templates directory: part of every agent's cache family.
    templates_hash: Option<String>,
    /// Agents whose output came from the cache.
    cached: Set<&'w str>,
    /// Agents not cached in this run (each told once).
    uncached: Set<&'w str>,
    /// Per agent, its grants' part of its cache family when it was admitted.
    grant_hashes: Map<&'w str, Option<String>>,
    templates: Option<Arc<TemplateService>>,
    inputs: BTreeMap<String, Vec<u8>>,
    started: Instant,
    /// The run's timeline, from the events it sends.
    timeline: TimelineRecorder,
    /// The events of its agents that the timeline needs (HTTP requests).
    tap: EventTap,
    /// Per agent, template renders and render-cache hits (all its calls).
    renders: Map<&'w str, (u32, u32)>,
}

impl<'w> Execution<'w> {
    fn new(runtime: Runtime, workflow: &'w Workflow, run_id: String, options: RunOptions) -> Self {
        let RunOptions { events, cancel, journal, cache, templates, inputs, .. } = options;
        let templates = templates.or_else(|| {
            workflow
                .templates
                .as_deref()
                .map(|dir| Arc::new(TemplateService::new(dir, TemplateLimits::default())))
        });
        let templates_hash = workflow.templates.as_deref().map(crate::cache::dir_hash);
        let ownership = Ownership::new(
            workflow.agents.iter().flat_map(|a| a.owns.iter().map(|p| (p.as_str(), a.id.as_str()))),
        );
        let groups = workflow
            .groups
            .iter()
            .map(|g| GroupRun {
                phase: GroupPhase::Pending,
                started: None,
                deadline: None,
                extensions: 0,
                fallback: VecDeque::new(),
                validations_pending: 0,
                validation_failed: None,
                report: GroupReport {
                    group: g.name.clone(),
                    status: GroupStatus::Cancelled,
                    decisions: Vec::new(),
                    elapsed: None,
                },
            })
            .collect();
        let group_of = workflow
            .groups
            .iter()
            .enumerate()
            .flat_map(|(g, spec)| spec.agents.iter().map(move |a| (a.as_str(), g)))
            .collect();
        Self {
            runtime,
            workflow,
            run_id,
            events,
            cancel,
            ownership,
            store: ContextStore::with_policies(&workflow.shared),
            components: Map::default(),
            order: None,
            by_id: workflow.agents.iter().map(|a| (a.id.as_str(), a)).collect(),
            reads: workflow
                .agents
                .iter()
                .filter_map(|a| {
                    let patterns = a.reads.as_ref()?;
                    Some((a.id.as_str(), crate::context::ReadPatterns::new(patterns.iter().cloned())))
                })
                .collect(),
            phases: workflow.agents.iter().map(|a| (a.id.as_str(), Phase::Waiting)).collect(),
            reports: Map::default(),
            attempts: Map::default(),
            retry_base: Map::default(),
            exclusive: Set::default(),
            last_error: Map::default(),
            queue: Vec::new(),
            queued_seq: 0,
            pool: ResourcePool::new(&workflow.resources),
            http_slots: crate::runtime::HttpSlots::new(workflow.resources.http_concurrent),
            running: JoinSet::new(),
            starting: Vec::new(),
            inline: None,
            inline_seq: 0,
            tasks: Map::default(),
            run_task: Map::default(),
            groups,
            group_of,
            validations: Vec::new(),
            validation_needs: workflow
                .agents
                .iter()
                .flat_map(|v| {
                    v.needs
                        .iter()
                        .filter(|n| n.kind == DependencyKind::Validation)
                        .map(|n| (v.id.as_str(), n.agent.as_str()))
                })
                .fold(Vec::new(), |mut pairs, pair| {
                    // A workflow built in code may repeat one.
                    if !pairs.contains(&pair) {
                        pairs.push(pair);
                    }
                    pairs
                }),
            dependents: {
                let mut dependents: Map<&'w str, Vec<&'w AgentSpec>> = Map::default();
                for agent in &workflow.agents {
                    for need in agent.blocking_needs() {
                        dependents.entry(need).or_default().push(agent);
                    }
                }
                dependents
            },
            unmet: Map::default(),
            counted: false,
            dirty: VecDeque::new(),
            backoffs: BTreeSet::new(),
            cancelled: false,
            error: None,
            journal,
            conflicts: Vec::new(),
            commit_wait: Map::default(),
            cache,
            templates_hash,
            cached: Set::default(),
            uncached: Set::default(),
            grant_hashes: Map::default(),
            templates,
            inputs,
            started: Instant::now(),
            timeline: TimelineRecorder::new(),
            tap: EventTap::default(),
            renders: Map::default(),
        }
    }

    fn spec(&self, id: &str) -> Option<&'w AgentSpec> {
        self.by_id.get(id).copied()
    }

    /// Send an event, and record it in the run's timeline.
    fn emit(&mut self, kind: EventKind) {
        self.record_tapped();
        let event = self.events.stamp(kind);
        self.timeline.record(&event);
        self.events.publish(event);
    }

    /// Record in the timeline what agents sent that the report needs (their
    /// HTTP requests): sent earlier than anything the run sends now.
    fn record_tapped(&mut self) {
        for event in self.tap.take() {
            self.timeline.record(&event);
        }
    }

    /// Rebuild a stopped run's state from its journal: the context, version
    /// by version, and every agent that finished for good. On a gap in the
    /// versions, the offending (version, previous) pair.
    fn restore(
        &mut self,
        commits: Vec<CommitRecord>,
        agents: BTreeMap<String, AgentRecord>,
    ) -> Result<(), (u64, u64)> {
        let mut written: Map<u64, Vec<String>> = Map::default();
        for commit in commits {
            let keys = commit.writes.iter().map(|(k, _)| k.clone()).collect();
            if !self.store.replay(&commit.agent, commit.version, commit.writes) {
                return Err((commit.version, self.store.snapshot().version()));
            }
            written.insert(commit.version, keys);
        }
        for (id, record) in agents {
            let Some(agent) = self.spec(&id) else { continue };
            let key = agent.id.as_str();
            if !record.is_final() {
                // It runs again: its attempts go on counting, with a fresh retry budget.
                self.attempts.insert(key, record.attempts);
                self.retry_base.insert(key, record.attempts);
                continue;
            }
            let keys = record.version.and_then(|v| written.get(&v).cloned()).unwrap_or_default();
            let status = if record.outcome == "partial" {
                AgentStatus::Partial {
                    defaults: keys,
                    because: record.message.clone().unwrap_or_default(),
                    error: None,
                }
            } else {
                AgentStatus::Succeeded { version: record.version.unwrap_or_default(), keys }
            };
            self.attempts.insert(key, record.attempts);
            self.phases.remove(key);
            self.reports.insert(
                key,
                AgentReport {
                    agent: id,
                    status,
                    elapsed: None,
                    fuel_used: None,
                    peak_memory: 0,
                    attempts: record.attempts,
                    commit_wait: None,
                    resumed: true,
                    cached: false,
                    renders: 0,
                    renders_cached: 0,
                },
            );
        }
        Ok(())
    }

    async fn run(mut self) -> RunReport {
        self.emit(EventKind::RunStarted {
            run_id: self.run_id.clone(),
            workflow: self.workflow.name.clone(),
            agents: self.workflow.agents.len(),
        });
        let loads = self.runtime.load_workflow_async(self.workflow, &self.events).await;
        // In the workflow's order, one per agent.
        self.components = (self.workflow.agents.iter().zip(loads.components))
            .map(|(agent, (_, loaded))| (agent.id.as_str(), loaded))
            .collect();
        self.emit(EventKind::ComponentsLoaded { agents: self.components.len(), elapsed: loads.elapsed });
        // Inputs go in first, as one commit (a resumed run has them already).
        if !self.inputs.is_empty() && self.store.snapshot().version() == 0 {
            let writes: StagedWrites = std::mem::take(&mut self.inputs)
                .into_iter()
                .map(|(k, v)| (format!("input.{k}"), v))
                .collect();
            let record = AgentRecord { outcome: "input".into(), version: None, attempts: 0, message: None };
            if let Err(e) = self.commit(INPUT_WRITER, 0, writes, record) {
                self.error = Some(e.to_string());
            }
        }
        let cancel = self.cancel.clone();
        enum Woke {
            Cancelled,
            Joined(Result<(tokio::task::Id, Ended), tokio::task::JoinError>),
            Inline(Ended),
            Timer,
        }
        while !self.cancelled && self.error.is_none() {
            // Admitting can finish jobs (a component that cannot load, an
            // agent larger than the pool), which can settle more.
            loop {
                self.settle();
                if !self.admit() {
                    break;
                }
            }
            self.start();
            let backing_off = self.next_backoff().is_some();
            if self.running.is_empty() && self.inline.is_none() && self.queue.is_empty() && !backing_off {
                break;
            }
            let wake = self.next_timer();
            let woke = tokio::select! {
                biased;
                () = cancel.cancelled() => Woke::Cancelled,
                Some(joined) = self.running.join_next_with_id() => Woke::Joined(joined),
                ended = poll_inline(&mut self.inline) => Woke::Inline(ended),
                () = sleep_until(wake) => Woke::Timer,
            };
            match woke {
                Woke::Cancelled => {
                    self.cancelled = true;
                    self.cancel_all().await;
                }
                Woke::Joined(joined) => self.joined_task(joined),
                Woke::Inline(ended) => self.joined_inline(ended),
                Woke::Timer => self.timers(),
            }
        }
        if self.error.is_some() {
            self.cancel_all().await;
        }
        self.wrap_up()
    }

    // ---- deciding what can happen next ----

    /// Settle everything that can be settled without waiting: skip agents
    /// that cannot run, queue those that can, start and decide groups,
    /// schedule validations. Repeats until nothing changes.
    fn settle(&mut self) {
        if !self.counted {
            self.count_unmet();
        }
        loop {
            let mut changed = false;
            while let Some(agent) = self.dirty.pop_front() {
                if self.phases.get(agent.id.as_str()) != Some(&Phase::Waiting) {
                    continue;
                }
                match self.readiness(agent) {
                    Readiness::Blocked(because) => {
                        self.finish(agent, AgentStatus::Skipped { because }, None);
                        changed = true;
                    }
                    Readiness::Ready if !self.group_of.contains_key(agent.id.as_str()) => {
                        self.enqueue(Job::Run(&agent.id), false);
                        changed = true;
                    }
                    Readiness::Ready | Readiness::Pending => {}
                }
            }
            for g in 0..self.groups.len() {
                changed |= self.step_group(g);
            }
            changed |= self.schedule_validation_needs();
            if !changed {
                break;
            }
        }
    }

    /// Count every waiting agent's unmet needs (at the first `settle`: a
    /// resumed run has restored agents by then); those with none, or with
    /// a need that cannot be met, are looked at.
    fn count_unmet(&mut self) {
        self.counted = true;
        let wf = self.workflow;
        for agent in &wf.agents {
            if self.phases.get(agent.id.as_str()) != Some(&Phase::Waiting) {
                continue;
            }
            let mut unmet = 0;
            let mut blocked = false;
            for need in agent.blocking_needs() {
                match self.need_state(agent, need) {
                    NeedState::Met => {}
                    NeedState::Pending => unmet += 1,
                    NeedState::Blocked(_) => blocked = true,
                }
            }
            self.unmet.insert(&agent.id, unmet);
            if unmet == 0 || blocked {
                self.dirty.push_back(agent);
            }
        }
    }

    /// `need` of the dependents of `finished` (an agent, or with `group`, a
    /// member of that finished group) may be met now.
    fn notify(&mut self, finished: &str, group: Option<usize>) {
        if !self.counted {
            return;
        }
        // Taken out while its agents are updated, and put back.
        let Some((key, dependents)) = self.dependents.remove_entry(finished) else { return };
        let need_group = self.group_of.get(finished).copied();
        // The need's state depends on the dependent only through its group:
        // worked out once per group, not once per dependent.
        let mut states: Vec<(Option<usize>, NeedState)> = Vec::new();
        for &agent in &dependents {
            if self.phases.get(agent.id.as_str()) != Some(&Phase::Waiting) {
                continue;
            }
            let own_group = self.group_of.get(agent.id.as_str()).copied();
            // A need on a member of another group is met when the group is
            // done, not when the member is.
            if need_group.is_some() && need_group != own_group && group.is_none() {
                continue;
            }
            let state = match states.iter().find(|(g, _)| *g == own_group) {
                Some((_, state)) => state.clone(),
                None => {
                    let state = self.need_state(agent, finished);
                    states.push((own_group, state.clone()));
                    state
                }
            };
            match state {
                NeedState::Met => {
                    // (Counted for every waiting agent; without a count,
                    // `settle` checks all its needs anyway.)
                    let unmet = self.unmet.get_mut(agent.id.as_str()).map_or(0, |n| {
                        *n = n.saturating_sub(1);
                        *n
                    });
                    if unmet == 0 {
                        self.dirty.push_back(agent);
                    }
                }
                NeedState::Blocked(_) => self.dirty.push_back(agent),
                NeedState::Pending => {}
            }
        }
        self.dependents.insert(key, dependents);
    }

    fn readiness(&self, agent: &AgentSpec) -> Readiness {
        let mut pending = false;
        for need in agent.blocking_needs() {
            match self.need_state(agent, need) {
                NeedState::Met => {}
                NeedState::Pending => pending = true,
                NeedState::Blocked(because) => return Readiness::Blocked(because),
            }
        }
        if pending { Readiness::Pending } else { Readiness::Ready }
    }

    /// Whether `agent`'s blocking need on `need` is met.
    fn need_state(&self, agent: &AgentSpec, need: &str) -> NeedState {
        let own_group = self.group_of.get(agent.id.as_str());
        if let Some(g) = self.group_of.get(need).filter(|g| Some(*g) != own_group) {
            let group = &self.groups[*g];
            if group.phase != GroupPhase::Done {
                return NeedState::Pending;
            }
            if group.report.status != GroupStatus::Succeeded {
                return NeedState::Blocked(format!(
                    "it needs `{need}`, whose group `{}` did not succeed",
                    group.report.group
                ));
            }
        }
        match self.reports.get(need).map(|r| &r.status) {
            None => NeedState::Pending,
            Some(status) if status.is_usable() => NeedState::Met,
            Some(AgentStatus::Failed(_)) => NeedState::Blocked(format!("it needs `{need}`, which failed")),
            Some(AgentStatus::Cancelled) => {
                NeedState::Blocked(format!("it needs `{need}`, which was cancelled"))
            }
            Some(_) => NeedState::Blocked(format!("it needs `{need}`, which was skipped")),
        }
    }

    fn enqueue(&mut self, job: Job<'w>, exclusive: bool) {
        if let Job::Run(id) = job {
            self.phases.insert(id, Phase::Queued);
            self.emit(EventKind::Queued { agent: id.to_owned() });
        }
        self.queued_seq += 1;
        let rank = self.order.as_ref().map_or(usize::MAX, |order| rank_in(order, job.agent()));
        self.queue.push(Queued { job, rank, exclusive, seq: self.queued_seq });
    }

    /// Each agent's place in the ready queue, worked out at the first need
    /// (then the jobs already queued get theirs).
    fn order(&mut self) -> &Map<&'w str, usize> {
        let (workflow, queue) = (self.workflow, &mut self.queue);
        self.order.get_or_insert_with(|| {
            let order = ready_order(workflow);
            for queued in queue {
                queued.rank = rank_in(&order, queued.job.agent());
            }
            order
        })
    }

    /// Admit queued jobs in order while they fit. An exclusive job (a
    /// sequential fallback) goes first and waits for the pool to empty.
    /// True if a job could not start and was finished as failed.
    fn admit(&mut self) -> bool {
        let mut failed = false;
        if self.error.is_some() {
            return false;
        }
        if self.queue.len() > 1 {
            self.order();
            self.queue.sort_by_key(|q| (!q.exclusive, q.rank, q.seq));
        }
        // Always look at the head: each pass admits it, fails it, or stops.
        let i = 0;
        while !self.queue.is_empty() {
            let Some(agent) = self.spec(self.queue[i].job.agent()) else {
                self.queue.remove(i);
                continue;
            };
            if let Some(error) = self.unusable_component(agent) {
                let queued = self.queue.remove(i);
                self.job_failed_to_start(queued.job, error);
                failed = true;
                continue;
            }
            if matches!(self.queue[i].job, Job::Run(_)) && self.commit_cached(agent) {
                self.queue.remove(i);
                // Settled without running: its dependents may be ready.
                failed = true;
                continue;
            }
            if self.queue[i].exclusive {
                if self.pool.is_idle() {
                    let queued = self.queue.remove(i);
                    self.pool.acquire_all();
                    self.spawn(queued);
                }
                // Nothing overtakes a sequential fallback.
                return failed;
            }
            if !self.pool.fits(agent) {
                if self.pool.is_idle() {
                    // Only a workflow built in code can get here: the file
                    // check refuses agents larger than the pool.
                    let queued = self.queue.remove(i);
                    let error = AgentError::Host {
                        agent: agent.id.clone(),
                        message: format!(
                            "it needs {} cpu and {} memory units, more than the whole pool has",
                            agent.cpu, agent.memory
                        ),
                    };
                    self.job_failed_to_start(queued.job, error);
                    failed = true;
                    continue;
                }
                // The head waits until it fits; later jobs do not overtake it
                // (as the planner's makespan model assumes).
                return failed;
            }
            let queued = self.queue.remove(i);
            self.pool.acquire(agent);
            self.spawn(queued);
        }
        failed
    }

    fn family<'a>(&'a self, agent: &'a AgentSpec, grants: Option<&'a str>) -> Option<Family<'a>> {
        let Some(Ok(component)) = self.components.get(agent.id.as_str()) else { return None };
        Some(Family {
            agent: &agent.id,
            component: &component.content_hash,
            config: &agent.config,
            templates: self.templates_hash.as_deref(),
            reads: agent.reads.as_deref(),
            grants,
        })
    }

    /// What of `agent`'s grants its cache family holds; `None` (and, once
    /// per run, a `cache_skipped` event) if it is not cached in this run.
    fn cacheable(&mut self, agent: &'w AgentSpec) -> Option<Option<String>> {
        match self.cache.as_ref()?.grants_hash(agent) {
            Ok(grants) => Some(grants),
            Err(because) => {
                if self.uncached.insert(&agent.id) {
                    self.emit(EventKind::CacheSkipped { agent: agent.id.clone(), because });
                }
                None
            }
        }
    }

    /// Commit `agent`'s cached output if its inputs are unchanged; true if it did.
    fn commit_cached(&mut self, agent: &'w AgentSpec) -> bool {
        let Some(cache) = self.cache.clone() else { return false };
        let Some(grants) = self.cacheable(agent) else { return false };
        // Its output is stored only if its grants hash the same when it ends.
        self.grant_hashes.insert(&agent.id, grants);
        let grants = self.grant_hashes.get(agent.id.as_str()).and_then(Option::as_deref);
        let Some(family) = self.family(agent, grants) else { return false };
        let Some(hit) = cache.lookup(&family, &self.store.snapshot()) else { return false };
        // Ownership may have changed since the entry was made: the agent
        // runs rather than commit keys it no longer owns.
        if hit.writes.keys().any(|key| self.ownership.check(&agent.id, key).is_err()) {
            return false;
        }
        let attempts = self.attempts.get(agent.id.as_str()).copied().unwrap_or(0);
        let record = AgentRecord { outcome: "succeeded".into(), version: None, attempts, message: None };
        let base = self.store.snapshot().version();
        match self.commit(&agent.id, base, hit.writes, record) {
            Ok(Some((version, keys))) => {
                self.emit(EventKind::CacheHit { agent: agent.id.clone(), saved: hit.saved });
                self.cached.insert(&agent.id);
                self.finish(agent, AgentStatus::Succeeded { version, keys }, None);
                true
            }
            // The journal failed (the run stops) or a policy refused the
            // cached writes: run the agent instead.
            _ => false,
        }
    }

    fn unusable_component(&self, agent: &AgentSpec) -> Option<AgentError> {
        match self.components.get(agent.id.as_str()) {
            Some(Ok(_)) => None,
            Some(Err(e)) => Some(e.clone()),
            None => {
                Some(AgentError::Host { agent: agent.id.clone(), message: "component was not loaded".into() })
            }
        }
    }

    fn job_failed_to_start(&mut self, job: Job<'w>, error: AgentError) {
        match job {
            Job::Run(id) => {
                if let Some(agent) = self.spec(id) {
                    self.finish(agent, AgentStatus::Failed(error), None);
                }
            }
            Job::Validate { validator, subject, group } => {
                self.validated(validator, subject, group, None, Err(error));
            }
        }
    }

    fn spawn(&mut self, queued: Queued<'w>) {
        let wf = self.workflow;
        let Some(agent) = self.spec(queued.job.agent()) else { return };
        let Some(Ok(component)) = self.components.get(agent.id.as_str()).cloned() else { return };
        let pulse = Arc::new(Pulse::default());
        let memory_bytes = if queued.exclusive {
            u64::from(self.pool.memory_capacity()).saturating_mul(wf.resources.memory_unit)
        } else {
            agent.memory_bytes(&wf.resources)
        };
        let (attempt, timeout) = match queued.job {
            Job::Run(id) => {
                let n = self.attempts.entry(id).or_insert(0);
                *n += 1;
                self.phases.insert(id, Phase::Running);
                (*n, agent.timeout)
            }
            Job::Validate { group, .. } => {
                let timeout = group
                    .and_then(|g| wf.groups[g].cross_validation.as_ref())
                    .and_then(|cv| cv.timeout)
                    .or(agent.timeout);
                (self.attempts.get(agent.id.as_str()).copied().unwrap_or(1).max(1), timeout)
            }
        };
        let snapshot = self.store.snapshot();
        let base = snapshot.version();
        let call = AgentCall {
            agent: agent.id.clone(),
            run_id: self.run_id.clone(),
            attempt,
            config: agent.config.clone(),
            snapshot,
            ownership: self.ownership.clone(),
            limits: Limits { memory_bytes, fuel: agent.fuel, timeout, slice: slice(agent.cpu) },
            events: self.events.tapped(&self.tap),
            pulse: pulse.clone(),
            templates: self.templates.clone().map(|t| t as Arc<dyn crate::runtime::Templates>),
            reads: self.reads.get(agent.id.as_str()).cloned(),
            capabilities: Capabilities { http_slots: self.http_slots.clone(), ..Capabilities::of(agent) },
        };
        let validating = match queued.job {
            Job::Validate { subject, .. } => Some(subject),
            Job::Run(_) => None,
        };
        self.emit(EventKind::Admitted {
            agent: agent.id.clone(),
            validating: validating.map(str::to_owned),
            cpu: agent.cpu,
            memory: agent.memory,
            pool: self.pool.usage(),
        });
        let runtime = self.runtime.clone();
        let future: JobFuture = match validating {
            None => {
                self.emit(EventKind::AgentStarted { agent: agent.id.clone(), attempt });
                Box::pin(async move {
                    let outcome = runtime.run_agent(&component, call).await.map(|output| (None, output));
                    (outcome, Instant::now())
                })
            }
            Some(subject) => {
                let subject = subject.to_owned();
                Box::pin(async move {
                    let outcome = runtime
                        .validate_agent(&component, call, &subject)
                        .await
                        .map(|(v, output)| (Some(v), output));
                    (outcome, Instant::now())
                })
            }
        };
        let task = Task {
            job: queued.job,
            base,
            exclusive: queued.exclusive,
            pulse,
            started: Instant::now(),
            abort: None,
            discard: false,
        };
        self.starting.push((task, future));
    }

    /// Start the jobs admitted in this pass. When one job is all there is to
    /// run, the loop polls it on its own task: no task to spawn and no
    /// worker to wake for it (a chain runs this way). Otherwise each job is
    /// a task of its own, so jobs use every core.
    fn start(&mut self) {
        let lone = self.starting.len() == 1 && self.running.is_empty() && self.inline.is_none();
        for (mut task, future) in std::mem::take(&mut self.starting) {
            let key = if lone {
                self.inline_seq += 1;
                let future = CatchPanic { agent: task.job.agent(), future };
                self.inline = Some(Inline { key: self.inline_seq, future });
                TaskKey::Inline(self.inline_seq)
            } else {
                let abort = self.running.spawn(future);
                let key = TaskKey::Spawned(abort.id());
                task.abort = Some(abort);
                key
            };
            if let Job::Run(id) = task.job {
                self.run_task.insert(id, key);
            }
            self.tasks.insert(key, task);
        }
    }

    /// Stop a running job: its task is aborted, or the inline job's future
    /// is dropped; either way it comes back to [`Self::joined`] as stopped,
    /// and whatever it would have returned is discarded.
    fn abort(&mut self, key: TaskKey) {
        let Some(task) = self.tasks.get_mut(&key) else { return };
        task.discard = true;
        if let Some(abort) = &task.abort {
            abort.abort();
        }
        if let (TaskKey::Inline(k), Some(inline)) = (key, &mut self.inline)
            && inline.key == k
        {
            let agent = task.job.agent().to_owned();
            let stopped = AgentError::Host { agent, message: "stopped".into() };
            inline.future.future = Box::pin(std::future::ready((Err(stopped), Instant::now())));
        }
    }

    /// When the loop must wake up without a task finishing: a retry backoff
    /// ending, or a group's barrier timeout.
    fn next_timer(&self) -> Option<Instant> {
        let deadlines =
            self.groups.iter().filter(|g| g.phase == GroupPhase::Running).filter_map(|g| g.deadline);
        self.next_backoff().into_iter().chain(deadlines).min()
    }

    /// The earliest retry backoff still in force.
    fn next_backoff(&self) -> Option<Instant> {
        self.backoffs
            .iter()
            .find(|(at, id)| self.phases.get(id) == Some(&Phase::BackingOff(*at)))
            .map(|(at, _)| *at)
    }

    fn timers(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some((at, id)) = self.backoffs.first().cloned().filter(|(at, _)| *at <= now) {
            self.backoffs.pop_first();
            if self.phases.get(&id) == Some(&Phase::BackingOff(at)) {
                due.push(id);
            }
        }
        for id in due {
            let exclusive = self.exclusive.contains(&id);
            self.enqueue(Job::Run(id), exclusive);
        }
        for g in 0..self.groups.len() {
            let group = &self.groups[g];
            if group.phase != GroupPhase::Running || group.deadline.is_none_or(|d| d > now) {
                continue;
            }
            // Take in whatever finished meanwhile: it counts as completed.
            while let Some(joined) = self.running.try_join_next_with_id() {
                self.joined_task(joined);
            }
            self.settle();
            if self.groups[g].phase != GroupPhase::Running {
                continue;
            }
            let running = self.unfinished_members(g);
            self.emit(EventKind::GroupTimedOut {
                group: self.workflow.groups[g].name.clone(),
                running: running.iter().map(|m| (*m).to_owned()).collect(),
            });
            self.decide(g, true);
        }
    }

    // ---- finished tasks ----

    fn joined_task(&mut self, joined: Result<(tokio::task::Id, Ended), tokio::task::JoinError>) {
        match joined {
            Ok((id, ended)) => self.joined(TaskKey::Spawned(id), ended),
            Err(e) => {
                let key = TaskKey::Spawned(e.id());
                let agent = self.tasks.get(&key).map(|t| t.job.agent().to_owned()).unwrap_or_default();
                let message = format!("agent task failed: {e}");
                self.joined(key, (Err(AgentError::Host { agent, message }), Instant::now()));
            }
        }
    }

    fn joined_inline(&mut self, ended: Ended) {
        if let Some(inline) = self.inline.take() {
            self.joined(TaskKey::Inline(inline.key), ended);
        }
    }

    fn joined(&mut self, task_id: TaskKey, (outcome, ended): Ended) {
        let Some(task) = self.tasks.remove(&task_id) else { return };
        if task.exclusive {
            self.pool.release_all();
        } else if let Some(agent) = self.spec(task.job.agent()) {
            self.pool.release(agent);
        }
        if let Job::Run(id) = task.job {
            let renders = self.renders.entry(id).or_default();
            let pulse = task.pulse.read();
            renders.0 += pulse.renders;
            renders.1 += pulse.renders_cached;
        }
        let validating = match task.job {
            Job::Validate { subject, .. } => Some(subject.to_owned()),
            Job::Run(_) => None,
        };
        self.emit(EventKind::Released {
            agent: task.job.agent().to_owned(),
            validating,
            pool: self.pool.usage(),
        });
        if let Job::Run(id) = task.job
            && self.run_task.get(id) == Some(&task_id)
        {
            self.run_task.remove(id);
        }
        if task.discard {
            return;
        }
        match task.job {
            Job::Run(id) => {
                self.completed(id, task.started, task.base, ended, outcome.map(|(_, output)| output))
            }
            Job::Validate { validator, subject, group } => {
                self.validated(validator, subject, group, Some(task.started), outcome)
            }
        }
    }

    fn completed(
        &mut self,
        id: &'w str,
        started: Instant,
        base: u64,
        ended: Instant,
        result: Result<AgentOutput, AgentError>,
    ) {
        let Some(agent) = self.spec(id) else { return };
        let result = result.and_then(|output| {
            if let (Some(cache), Some(before)) = (&self.cache, self.grant_hashes.get(id)) {
                // What it was granted must not have changed while it ran.
                match cache.grants_hash(agent) {
                    Ok(after) if after == *before => {
                        if let Some(family) = self.family(agent, before.as_deref()) {
                            cache.store(&family, &output.reads, &output.writes, ended - started);
                        }
                    }
                    _ => tracing::info!(
                        "`{id}`: its granted files changed while it ran; its output is not cached"
                    ),
                }
            }
            let attempts = self.attempts.get(id).copied().unwrap_or(1);
            let record = AgentRecord { outcome: "succeeded".into(), version: None, attempts, message: None };
            match self.commit(id, base, output.writes, record) {
                Ok(Some(committed)) => Ok((output.fuel_used, output.peak_memory, committed)),
                Ok(None) => Err(AgentError::Host { agent: id.to_owned(), message: "the run stopped".into() }),
                Err(conflict) => Err(AgentError::Conflict(conflict)),
            }
        });
        match result {
            Ok((fuel_used, peak_memory, (version, keys))) => {
                self.commit_wait.insert(id, ended.elapsed());
                self.emit(EventKind::AgentSucceeded { agent: id.to_owned(), elapsed: ended - started });
                let status = AgentStatus::Succeeded { version, keys };
                self.finish(agent, status, Some((started, fuel_used, peak_memory)));
            }
            Err(error) => {
                let error = self.checked_need_hint(agent, error);
                let attempt = self.attempts.get(id).copied().unwrap_or(1);
                if let AgentError::Timeout { after, .. } = &error {
                    self.emit(EventKind::TimedOut { agent: id.to_owned(), attempt, after: *after });
                }
                self.last_error.insert(id, error.clone());
                let counted = attempt.saturating_sub(self.retry_base.get(id).copied().unwrap_or(0));
                if error.is_retryable() && counted < agent.retry.attempts {
                    let after = backoff(&agent.retry, &self.run_id, id, counted);
                    self.emit(EventKind::AgentRetrying {
                        agent: id.to_owned(),
                        attempt: attempt + 1,
                        after,
                        error: error.to_string(),
                    });
                    let at = Instant::now()
                        .checked_add(after)
                        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
                    self.phases.insert(id, Phase::BackingOff(at));
                    self.backoffs.insert((at, id));
                } else {
                    self.finish(agent, AgentStatus::Failed(error), Some((started, None, 0)));
                }
            }
        }
    }

    /// `error` without its hint to add a need if `agent` already waits for
    /// the key's owner (a data need, directly or through other agents): the
    /// owner committed without the key, and a need would not help.
    fn checked_need_hint(&self, agent: &AgentSpec, error: AgentError) -> AgentError {
        let Some(owner) = error.missing_need().map(|m| m.owner.as_str()) else { return error };
        let mut seen: Set<&str> = Set::default();
        let mut stack: Vec<&str> = agent.blocking_needs().collect();
        while let Some(id) = stack.pop() {
            if id == owner {
                return error.without_missing_need();
            }
            if seen.insert(id)
                && let Some(spec) = self.spec(id)
            {
                stack.extend(spec.blocking_needs());
            }
        }
        error
    }

    /// Commit `agent`'s writes (made against version `base`) and journal
    /// them with `record` (the agent's outcome) in one durable transaction,
    /// before anything that depends on them can start. `Ok(None)`: the
    /// journal failed and the run is stopping.
    fn commit(
        &mut self,
        agent: &str,
        base: u64,
        writes: StagedWrites,
        mut record: AgentRecord,
    ) -> Result<Option<(u64, Vec<String>)>, CommitError> {
        if self.error.is_some() {
            // The journal failed: nothing more is committed, in memory or on disk.
            return Ok(None);
        }
        let commit = self.store.commit(agent, base, writes)?;
        for conflict in &commit.conflicts {
            self.emit(EventKind::Conflict {
                key: conflict.key.clone(),
                agent: conflict.agent.clone(),
                other: conflict.other.clone(),
                resolution: conflict.resolution.to_string(),
            });
        }
        if let Some(journal) = &self.journal {
            record.version = Some(commit.version);
            let entry = CommitRecord {
                version: commit.version,
                agent: agent.to_owned(),
                at_ms: self.started.elapsed().as_millis() as u64,
                writes: commit.keys.iter().cloned().zip(commit.values.iter().map(|v| v.to_vec())).collect(),
                conflicts: commit.conflicts.iter().map(ConflictRecord::from).collect(),
            };
            if let Err(e) = journal.record_commit(&entry, Some(&record)) {
                self.error = Some(format!("cannot journal the commit of agent `{agent}`: {e}"));
                return Ok(None);
            }
        }
        self.emit(EventKind::Committed {
            agent: agent.to_owned(),
            version: commit.version,
            keys: commit.keys.clone(),
        });
        self.conflicts.extend(commit.conflicts);
        Ok(Some((commit.version, commit.keys)))
    }

    /// Journal how an agent finished, when no commit carried it.
    fn journal_agent(&mut self, agent: &str, record: &AgentRecord) {
        if let Some(journal) = &self.journal
            && let Err(e) = journal.record_agent(agent, record)
        {
            self.error.get_or_insert(format!("cannot journal the outcome of agent `{agent}`: {e}"));
        }
    }

    fn finish(
        &mut self,
        agent: &'w AgentSpec,
        status: AgentStatus,
        ran: Option<(Instant, Option<u64>, u64)>,
    ) {
        let id = agent.id.as_str();
        self.phases.remove(id);
        match &status {
            AgentStatus::Failed(error) => {
                self.emit(EventKind::AgentFailed { agent: id.to_owned(), error: error.to_string() });
            }
            AgentStatus::Skipped { because } => {
                self.emit(EventKind::AgentSkipped { agent: id.to_owned(), because: because.clone() });
            }
            AgentStatus::Partial { defaults, because, .. } => self.emit(EventKind::AgentPartial {
                agent: id.to_owned(),
                defaults: defaults.clone(),
                because: because.clone(),
            }),
            AgentStatus::Cancelled => self.emit(EventKind::AgentCancelled { agent: id.to_owned() }),
            AgentStatus::Succeeded { .. } => {}
        }
        let (elapsed, fuel_used, peak_memory) = match ran {
            Some((started, fuel, memory)) => (Some(started.elapsed()), fuel, memory),
            None => (None, None, 0),
        };
        let attempts = self.attempts.get(id).copied().unwrap_or(0);
        let journaled = match &status {
            AgentStatus::Succeeded { .. } => None,
            AgentStatus::Partial { defaults, .. } if !defaults.is_empty() => None,
            AgentStatus::Partial { because, .. } => Some(("partial", Some(because.clone()))),
            AgentStatus::Failed(e) => Some(("failed", Some(e.to_string()))),
            AgentStatus::Skipped { because } => Some(("skipped", Some(because.clone()))),
            AgentStatus::Cancelled => Some(("cancelled", None)),
        };
        if let Some((outcome, message)) = journaled {
            self.journal_agent(
                id,
                &AgentRecord { outcome: outcome.into(), version: None, attempts, message },
            );
        }
        let commit_wait = self.commit_wait.get(id).copied();
        let cached = self.cached.contains(id);
        let (renders, renders_cached) = self.renders.get(id).copied().unwrap_or_default();
        self.reports.insert(
            id,
            AgentReport {
                agent: id.to_owned(),
                status,
                elapsed,
                fuel_used,
                peak_memory,
                attempts,
                commit_wait,
                resumed: false,
                cached,
                renders,
                renders_cached,
            },
        );
        self.notify(id, None);
    }

    fn succeeded(&self, id: &str) -> bool {
        self.reports.get(id).is_some_and(|r| matches!(r.status, AgentStatus::Succeeded { .. }))
    }

    // ---- groups and their barriers ----

    fn members(&self, g: usize) -> &'w [String] {
        let wf: &'w Workflow = self.workflow;
        &wf.groups[g].agents
    }

    /// Members queued, running or waiting out a backoff.
    fn unfinished_members(&self, g: usize) -> Vec<&'w str> {
        self.members(g)
            .iter()
            .map(String::as_str)
            .filter(|m| {
                matches!(self.phases.get(m), Some(Phase::Queued | Phase::Running | Phase::BackingOff(_)))
            })
            .collect()
    }

    /// Advance group `g` if it can; true if anything changed.
    fn step_group(&mut self, g: usize) -> bool {
        let wf = self.workflow;
        let spec = &wf.groups[g];
        match self.groups[g].phase {
            GroupPhase::Pending => {
                // A waiting member with no unmet need is ready (one whose
                // need failed was skipped by now).
                let all_ready = spec.agents.iter().all(|m| match self.phases.get(m.as_str()) {
                    None => true,
                    Some(Phase::Waiting) => self.unmet.get(m.as_str()) == Some(&0),
                    Some(_) => false,
                });
                if !all_ready {
                    return false;
                }
                let now = Instant::now();
                let group = &mut self.groups[g];
                group.phase = GroupPhase::Running;
                group.started = Some(now);
                group.deadline = spec.barrier.timeout.and_then(|t| now.checked_add(t));
                self.emit(EventKind::GroupStarted { group: spec.name.clone(), agents: spec.agents.clone() });
                for member in &spec.agents {
                    if self.phases.get(member.as_str()) == Some(&Phase::Waiting) {
                        self.enqueue(Job::Run(member), false);
                    }
                }
                true
            }
            GroupPhase::Running => {
                if spec.agents.iter().any(|m| self.phases.contains_key(m.as_str())) {
                    return false;
                }
                self.decide(g, false);
                true
            }
            GroupPhase::Sequential => {
                if !self.unfinished_members(g).is_empty() {
                    return false;
                }
                if let Some(next) = self.groups[g].fallback.pop_front() {
                    let before = self.attempts.get(&next).copied().unwrap_or(0);
                    self.retry_base.insert(next, before);
                    self.exclusive.insert(next);
                    self.enqueue(Job::Run(next), true);
                } else {
                    let succeeded = spec.agents.iter().filter(|m| self.succeeded(m)).count();
                    let ok = criterion_holds(spec.barrier.success, succeeded, spec.agents.len());
                    let reason = format!(
                        "after the sequential fallback {succeeded} of {} members succeeded",
                        spec.agents.len()
                    );
                    self.finish_group(g, ok, reason);
                }
                true
            }
            GroupPhase::Validating => {
                if self.groups[g].validations_pending > 0 {
                    return false;
                }
                self.group_done(g);
                true
            }
            GroupPhase::Done => false,
        }
    }

    /// Apply group `g`'s barrier: every member finished, or (`timed_out`)
    /// its deadline passed.
    fn decide(&mut self, g: usize, timed_out: bool) {
        let wf = self.workflow;
        let spec = &wf.groups[g];
        let now = Instant::now();
        let unfinished = self.unfinished_members(g);
        let window = spec.barrier.progress_window;
        let progressed = unfinished.iter().all(|m| {
            self.run_task
                .get(m)
                .and_then(|t| self.tasks.get(t))
                .and_then(|t| t.pulse.read().last_report)
                .is_some_and(|at| now.duration_since(at) <= window)
        });
        let succeeded = spec.agents.iter().filter(|m| self.succeeded(m)).count();
        let failed = spec
            .agents
            .iter()
            .filter(|m| {
                matches!(self.reports.get(m.as_str()).map(|r| &r.status), Some(AgentStatus::Failed(_)))
            })
            .count();
        let facts = Facts {
            members: spec.agents.len(),
            succeeded,
            failed,
            running: unfinished.len(),
            running_progressed: progressed,
            rerunnable: unfinished.len()
                + spec
                    .agents
                    .iter()
                    .filter(|m| {
                        matches!(
                            self.reports.get(m.as_str()).map(|r| &r.status),
                            Some(AgentStatus::Failed(e)) if !e.is_load_error()
                        )
                    })
                    .count(),
            timed_out,
            extensions: self.groups[g].extensions,
        };
        let listed = |names: &[&str]| names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        match barrier::decide(&spec.barrier, facts) {
            Verdict::AllCompleted => {
                self.record(g, Decision::AllCompleted, "every member succeeded".into());
                self.finish_group(g, true, String::new());
            }
            Verdict::Extend(by) => {
                let group = &mut self.groups[g];
                group.extensions += 1;
                group.deadline = group.deadline.and_then(|d| d.checked_add(by));
                let extension = group.extensions;
                let reason = format!(
                    "{} reported progress within the last {}",
                    listed(&unfinished),
                    humantime::format_duration(window)
                );
                self.record(g, Decision::ExtendTimeout { by, extension }, reason);
            }
            Verdict::ContinueWithPartial => {
                let reason = format!(
                    "{succeeded} of {} members succeeded; going on without {}",
                    spec.agents.len(),
                    listed(&self.not_succeeded(g))
                );
                self.record(g, Decision::ContinueWithPartial, reason);
                self.finish_group(g, true, String::new());
            }
            Verdict::CriterionMet => {
                let reason = format!("{succeeded} of {} members succeeded", spec.agents.len());
                self.record(g, Decision::CriterionMet, reason);
                self.finish_group(g, true, String::new());
            }
            Verdict::FallbackSequential => {
                let rerun: Vec<&'w str> = {
                    let mut rerun: Vec<&'w str> = spec
                        .agents
                        .iter()
                        .map(String::as_str)
                        .filter(|m| {
                            unfinished.contains(m)
                                || matches!(
                                    self.reports.get(m).map(|r| &r.status),
                                    Some(AgentStatus::Failed(e)) if !e.is_load_error()
                                )
                        })
                        .collect();
                    let order = self.order();
                    rerun.sort_by_key(|m| rank_in(order, m));
                    rerun
                };
                let reason = if succeeded == 0 {
                    format!("no member completed; re-running {} one at a time", listed(&rerun))
                } else {
                    format!("a member failed; re-running {} one at a time", listed(&rerun))
                };
                tracing::warn!(group = %spec.name, "barrier falls back to sequential execution: {reason}");
                self.record(g, Decision::FallbackSequential, reason);
                for &member in &rerun {
                    self.stop(member);
                    self.reports.remove(member);
                    self.phases.insert(member, Phase::Deferred);
                }
                let group = &mut self.groups[g];
                group.fallback = rerun.into();
                group.phase = GroupPhase::Sequential;
            }
            Verdict::Failed => {
                let reason = if timed_out {
                    format!(
                        "timed out with {} unfinished and {succeeded} of {} members succeeded",
                        listed(&unfinished),
                        spec.agents.len()
                    )
                } else {
                    format!("only {succeeded} of {} members succeeded", spec.agents.len())
                };
                self.record(g, Decision::GroupFailed, reason.clone());
                for &member in &unfinished {
                    let backing_off = matches!(self.phases.get(member), Some(Phase::BackingOff(_)));
                    let pulse = self.stop(member);
                    if let Some(agent) = self.spec(member) {
                        let error = match self.last_error.get(member).filter(|_| backing_off) {
                            Some(e) => e.clone(),
                            None => AgentError::Stopped {
                                agent: member.to_owned(),
                                reason: format!("group `{}` gave up on it at its barrier", spec.name),
                            },
                        };
                        self.finish(agent, AgentStatus::Failed(error), pulse);
                    }
                }
                self.finish_group(g, false, reason);
            }
        }
    }

    fn not_succeeded(&self, g: usize) -> Vec<&'w str> {
        self.members(g).iter().map(String::as_str).filter(|m| !self.succeeded(m)).collect()
    }

    fn record(&mut self, g: usize, decision: Decision, reason: String) {
        let group = self.workflow.groups[g].name.clone();
        self.emit(EventKind::BarrierDecision { group, decision: decision.clone(), reason: reason.clone() });
        if let Some(journal) = &self.journal {
            let record = crate::journal::DecisionRecord {
                group: self.workflow.groups[g].name.clone(),
                decision: decision.name().to_owned(),
                reason: reason.clone(),
                at_ms: self.started.elapsed().as_millis() as u64,
            };
            if let Err(e) = journal.record_decision(&record) {
                self.error.get_or_insert(format!("cannot journal a barrier decision: {e}"));
            }
        }
        self.groups[g].report.decisions.push(DecisionRecord { at: self.started.elapsed(), decision, reason });
    }

    /// Stop agent `id` wherever it is; its pulse and start time if it was running.
    fn stop(&mut self, id: &str) -> Option<(Instant, Option<u64>, u64)> {
        let phase = self.phases.remove(id);
        self.queue.retain(|q| q.job != Job::Run(id));
        if matches!(phase, Some(Phase::Queued | Phase::Running | Phase::BackingOff(_))) {
            self.emit(EventKind::AgentStopped { agent: id.to_owned() });
        }
        if phase != Some(Phase::Running) {
            return None;
        }
        let key = self.run_task.remove(id)?;
        self.abort(key);
        let task = self.tasks.get(&key)?;
        Some((task.started, task.pulse.read().fuel_used, 0))
    }

    /// The barrier of group `g` is through. If `ok`, members that did not
    /// succeed are stopped and stand in with their defaults, and the
    /// cross-validation starts; otherwise the group failed.
    fn finish_group(&mut self, g: usize, ok: bool, because: String) {
        let wf = self.workflow;
        let spec = &wf.groups[g];
        if !ok {
            self.groups[g].report.status = GroupStatus::Failed { because };
            self.group_done(g);
            return;
        }
        for member in self.not_succeeded(g) {
            if matches!(self.reports.get(member).map(|r| &r.status), Some(AgentStatus::Partial { .. })) {
                continue; // restored from the journal: its defaults are in already
            }
            let backing_off = matches!(self.phases.get(member), Some(Phase::BackingOff(_)));
            let ran = self.stop(member);
            let Some(agent) = self.spec(member) else { continue };
            let (because, error) = match self.reports.remove(member).map(|r| r.status) {
                Some(AgentStatus::Failed(e)) => {
                    (format!("group `{}` went on without it after it failed", spec.name), Some(e))
                }
                Some(AgentStatus::Skipped { because }) => {
                    (format!("group `{}` went on without it ({because})", spec.name), None)
                }
                _ => match self.last_error.get(member).filter(|_| backing_off) {
                    Some(e) => (
                        format!("group `{}` went on without it while it waited to retry", spec.name),
                        Some(e.clone()),
                    ),
                    None => (format!("group `{}` went on without it: it had not finished", spec.name), None),
                },
            };
            let defaults: StagedWrites = agent.defaults.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let defaults = if defaults.is_empty() {
                Vec::new()
            } else {
                let attempts = self.attempts.get(member).copied().unwrap_or(0);
                let record = AgentRecord {
                    outcome: "partial".into(),
                    version: None,
                    attempts,
                    message: Some(because.clone()),
                };
                // Defaults are written against the current version: no conflict is possible.
                let base = self.store.snapshot().version();
                match self.commit(member, base, defaults, record) {
                    Ok(Some((_, keys))) => keys,
                    _ => Vec::new(),
                }
            };
            self.finish(agent, AgentStatus::Partial { defaults, because, error }, ran);
        }
        self.groups[g].report.status = GroupStatus::Succeeded;
        if let Some(cv) = &spec.cross_validation {
            for validator in &cv.validators {
                for subject in spec.agents.iter().filter(|s| *s != validator) {
                    if self.succeeded(validator) && self.succeeded(subject) {
                        self.groups[g].validations_pending += 1;
                        let job = Job::Validate { validator, subject, group: Some(g) };
                        self.enqueue(job, false);
                    } else {
                        let because = if self.succeeded(validator) {
                            format!("`{subject}` did not succeed")
                        } else {
                            format!("`{validator}` did not succeed")
                        };
                        self.validations.push(ValidationReport {
                            validator: validator.clone(),
                            subject: subject.clone(),
                            group: Some(spec.name.clone()),
                            on_failure: cv.on_failure,
                            outcome: ValidationOutcome::Skipped { because },
                            elapsed: None,
                        });
                    }
                }
            }
        }
        self.groups[g].phase = GroupPhase::Validating;
    }

    fn group_done(&mut self, g: usize) {
        let group = &mut self.groups[g];
        if let Some(because) = group.validation_failed.take() {
            group.report.status = GroupStatus::Failed { because };
        }
        group.phase = GroupPhase::Done;
        group.report.elapsed = group.started.map(|s| s.elapsed());
        let done = EventKind::GroupDone {
            group: group.report.group.clone(),
            succeeded: group.report.status == GroupStatus::Succeeded,
        };
        self.emit(done);
        for member in self.members(g) {
            self.notify(member, Some(g));
        }
    }

    // ---- validation ----

    /// Schedule `validation` needs whose validator and subject have both
    /// finished (groups included); true if any was scheduled or skipped.
    fn schedule_validation_needs(&mut self) -> bool {
        if self.validation_needs.is_empty() {
            return false;
        }
        let (settled, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.validation_needs)
            .into_iter()
            .partition(|(validator, subject)| self.settled(validator) && self.settled(subject));
        self.validation_needs = waiting;
        let changed = !settled.is_empty();
        for (validator, subject) in settled {
            if self.succeeded(validator) && self.succeeded(subject) {
                self.enqueue(Job::Validate { validator, subject, group: None }, false);
            } else {
                let because = if self.succeeded(validator) {
                    format!("`{subject}` did not succeed")
                } else {
                    format!("`{validator}` did not succeed")
                };
                self.validations.push(ValidationReport {
                    validator: validator.to_owned(),
                    subject: subject.to_owned(),
                    group: None,
                    on_failure: OnFailure::Warn,
                    outcome: ValidationOutcome::Skipped { because },
                    elapsed: None,
                });
            }
        }
        changed
    }

    /// Whether agent `id` has finished for good (its group's barrier included).
    fn settled(&self, id: &str) -> bool {
        self.reports.contains_key(id)
            && self
                .group_of
                .get(id)
                .is_none_or(|g| matches!(self.groups[*g].phase, GroupPhase::Validating | GroupPhase::Done))
    }

    fn validated(
        &mut self,
        validator: &str,
        subject: &str,
        group: Option<usize>,
        started: Option<Instant>,
        outcome: Outcome,
    ) {
        let wf = self.workflow;
        let cross_validation = group.and_then(|g| wf.groups[g].cross_validation.as_ref());
        let on_failure = cross_validation.map_or(OnFailure::Warn, |cv| cv.on_failure);
        let outcome = match outcome {
            Ok((validation, _)) => {
                let validation = validation.unwrap_or(Validation { passed: true, findings: Vec::new() });
                if validation.passed {
                    ValidationOutcome::Passed { findings: validation.findings }
                } else {
                    ValidationOutcome::Rejected { findings: validation.findings }
                }
            }
            Err(error) => ValidationOutcome::Error(error),
        };
        let (passed, findings, error) = match &outcome {
            ValidationOutcome::Passed { findings } => (true, findings.len(), None),
            ValidationOutcome::Rejected { findings } => (false, findings.len(), None),
            ValidationOutcome::Error(e) => (false, 0, Some(e.to_string())),
            ValidationOutcome::Skipped { .. } => (true, 0, None),
        };
        let group_name = group.map(|g| wf.groups[g].name.clone());
        self.emit(EventKind::Validated {
            validator: validator.to_owned(),
            subject: subject.to_owned(),
            group: group_name.clone(),
            passed,
            findings,
            error,
        });
        if let Some(g) = group {
            let run = &mut self.groups[g];
            run.validations_pending = run.validations_pending.saturating_sub(1);
            if !passed && on_failure == OnFailure::Fail && run.validation_failed.is_none() {
                run.validation_failed =
                    Some(format!("`{validator}` did not accept the outputs of `{subject}`"));
            }
        }
        self.validations.push(ValidationReport {
            validator: validator.to_owned(),
            subject: subject.to_owned(),
            group: group_name,
            on_failure,
            outcome,
            elapsed: started.map(|s| s.elapsed()),
        });
    }

    // ---- the end ----

    /// Stop everything: running agents are interrupted (their writes are
    /// dropped), nothing new starts, committed results stay.
    async fn cancel_all(&mut self) {
        let keys: Vec<TaskKey> = self.tasks.keys().copied().collect();
        for key in keys {
            self.abort(key);
        }
        self.queue.clear();
        let wf = self.workflow;
        let unfinished: Vec<&AgentSpec> =
            wf.agents.iter().filter(|a| self.phases.contains_key(a.id.as_str())).collect();
        for agent in unfinished {
            self.finish(agent, AgentStatus::Cancelled, None);
        }
        // Wait for the aborted tasks, so their stores are gone when the run returns.
        if let Some(inline) = self.inline.take() {
            let ended = inline.future.await;
            self.joined(TaskKey::Inline(inline.key), ended);
        }
        while let Some(joined) = self.running.join_next_with_id().await {
            self.joined_task(joined);
        }
    }

    fn wrap_up(mut self) -> RunReport {
        let wf = self.workflow;
        // Validation rules out cycles, so nothing is left unless cancelled; be safe anyway.
        let left: Vec<&AgentSpec> =
            wf.agents.iter().filter(|a| self.phases.contains_key(a.id.as_str())).collect();
        for agent in left {
            let status = if self.cancelled {
                AgentStatus::Cancelled
            } else {
                AgentStatus::Skipped { because: "its needs never completed".into() }
            };
            self.finish(agent, status, None);
        }
        for g in 0..self.groups.len() {
            if self.groups[g].phase != GroupPhase::Done {
                self.groups[g].report.status = if self.cancelled {
                    GroupStatus::Cancelled
                } else {
                    GroupStatus::Failed { because: "it never finished".into() }
                };
                self.groups[g].report.elapsed = self.groups[g].started.map(|s| s.elapsed());
            }
        }
        let agents: Vec<AgentReport> =
            wf.agents.iter().filter_map(|a| self.reports.remove(a.id.as_str())).collect();
        let groups: Vec<GroupReport> = self.groups.into_iter().map(|g| g.report).collect();
        let mut report = RunReport {
            run_id: self.run_id,
            workflow: wf.name.clone(),
            elapsed: self.started.elapsed(),
            agents,
            groups,
            validations: self.validations,
            conflicts: self.conflicts,
            cancelled: self.cancelled,
            error: self.error,
            context: self.store.snapshot(),
            agent_cache: self.cache.is_some(),
            timeline: Default::default(),
        };
        if let Some(cache) = &self.cache {
            cache.flush();
        }
        for event in self.tap.take() {
            self.timeline.record(&event);
        }
        let done = self.events.stamp(EventKind::RunDone {
            succeeded: report.succeeded(),
            cancelled: report.cancelled,
            elapsed: report.elapsed,
        });
        self.timeline.record(&done);
        report.timeline = self.timeline.finish(report.elapsed);
        if let Some(journal) = &self.journal {
            let status = if report.cancelled {
                RunStatus::Cancelled
            } else if report.succeeded() {
                RunStatus::Succeeded
            } else {
                RunStatus::Failed
            };
            // A run whose journal failed stays `running`: it can be resumed.
            if report.error.is_none()
                && let Err(e) = journal.finish(status, &crate::observe::RunMetrics::new(wf, &report))
            {
                tracing::error!("{e}");
            }
        }
        self.events.publish(done);
        report
    }
}

enum Readiness {
    Ready,
    Pending,
    Blocked(String),
}

#[derive(Clone)]
enum NeedState {
    Met,
    Pending,
    Blocked(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_the_inline_job_fails_the_job_not_the_run() {
        let future: JobFuture = Box::pin(async { panic!("host bug") });
        let (outcome, _) = CatchPanic { agent: "a", future }.await;
        match outcome {
            Err(AgentError::Host { agent, message }) => {
                assert_eq!(agent, "a");
                assert!(message.contains("panicked: host bug"), "{message}");
            }
            other => panic!("expected a host error, got {other:?}"),
        }
    }
}
