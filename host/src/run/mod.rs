//! Running a workflow as `ensemble run` does, from an application: one
//! [`RunBuilder`] does every step (the CLI is a thin shell over it).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ensemble::{Workflow, run::RunBuilder};
//!
//! let workflow = Workflow::load("examples/hello/workflow.yaml")?;
//! let mut run = RunBuilder::new(workflow).start().await?;
//! let mut events = run.events();
//! while let Some(event) = events.next().await {
//!     println!("{:?}", event.kind); // ends after the run's `RunDone`
//! }
//! let finished = run.finish().await?;
//! println!("{}", finished.json()); // the run report, as `--report` writes it
//! # Ok(()) }
//! ```
//!
//! What the builder does, so an application cannot get it wrong:
//! - **one run id** (given or generated) names the run, its journal, its
//!   events and its report;
//! - **the journal** is created with that id and the run's inputs recorded
//!   in it before anything runs, so a resumed run finds them
//!   ([`RunBuilder::resume`]); `journal(false)` keeps the run in memory;
//! - **the caches**: the agent output cache (unless the workflow or
//!   [`RunBuilder::cache`] disables it) and the compiled-component cache;
//! - **where state goes**: the state directory (the journal, compiled
//!   components) and the output cache default as [`places`] says: next to
//!   the workflow, or, when its folder is read-only, per user;
//! - **the engine is sized from the workflow** ([`RuntimeConfig::for_workflow`]):
//!   its `max_concurrent` agents at once, its largest agent's memory
//!   ([`RuntimeConfig::default`] would hold any workflow to 3 agents and 1 GiB);
//! - **outputs** are written after a successful run, confined to the
//!   workflow's folder unless [`RunBuilder::allow_outputs_outside`];
//! - **events** ([`RunEvents`]) are subscribed before the components load
//!   (their loading is the stream's first events, and counted by the run) and the
//!   stream ends after the run's last event (`RunDone`), so none is lost at
//!   either end;
//! - **cancellation** through [`RunHandle::cancel`];
//! - **the report** ([`Finished`]): the [`RunReport`](crate::RunReport), its [`RunMetrics`](crate::RunMetrics)
//!   (computed once) and their JSON ([`Finished::json`]).
//!
//! # Tokio
//!
//! [`RunBuilder::start`] and [`PreparedRun::start`] must be called on a
//! **multi-thread** tokio runtime (they return an error otherwise) with its
//! **time and I/O drivers enabled** (`enable_all`, as `#[tokio::main]` does):
//! agents run on worker tasks, one per runtime thread, so a current-thread
//! runtime would run them on one core; timeouts, retries' backoff and barrier
//! timers use tokio's time driver; agents' HTTP grants use its I/O driver.
//! (Tokio offers no way to ask whether the drivers are on: without them the
//! first timer or connection panics.) Setting `global_queue_interval(1)`
//! lets the run loop and the workers take turns promptly;
//! [`tokio_runtime`] builds a runtime with exactly these settings.
//! [`RunBuilder::prepare`] blocks while components compile (seconds, the
//! first time a large component is seen), so async code calls
//! [`RunBuilder::start`], which prepares on a blocking thread.

mod handle;
pub mod places;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use handle::{Finished, Outputs, PreparedRun, RunEvents, RunHandle};

use crate::cache::AgentCache;
use crate::exec::{CancellationToken, ResumeError};
use crate::exec::{Engine, RunOptions};
use crate::journal::Journal;
use crate::runtime::RuntimeConfig;
use crate::workflow::Workflow;

/// Why a run could not start, or (for a resume) could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The input cannot be used (the workflow, its components, an input,
    /// a directory, an output location, the journal to resume); nothing was
    /// run. One line per problem.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// The run could not start: the async runtime, or its journal could
    /// not be created.
    #[error("{0}")]
    Failed(String),
}

impl From<ResumeError> for RunError {
    fn from(e: ResumeError) -> Self {
        Self::Invalid(vec![e.to_string()])
    }
}

impl RuntimeConfig {
    /// A configuration sized for `workflow`: as many instances as its
    /// `resources.max_concurrent`, memory for its largest agent, fuel metered.
    pub fn for_workflow(workflow: &Workflow) -> Self {
        let max_memory =
            workflow.agents.iter().map(|a| a.memory_bytes(&workflow.resources)).max().unwrap_or(0);
        Self {
            max_instances: workflow.resources.max_concurrent,
            max_memory_bytes: max_memory.max(1 << 20),
            ..Self::default()
        }
    }
}

/// A tokio runtime with the settings a run needs (see the module docs):
/// multi-thread, every driver, the global queue checked at every tick.
pub fn tokio_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .global_queue_interval(1)
        .enable_all()
        .build()
        .map_err(|e| std::io::Error::other(format!("cannot start the async runtime: {e}")))
}

/// A new run, or the resumption of a stopped one: every setting has the
/// default `ensemble run` has; [`start`](Self::start) (or
/// [`prepare`](Self::prepare)) checks them all before anything is written.
#[derive(Debug)]
pub struct RunBuilder {
    workflow: Arc<Workflow>,
    run_id: Option<String>,
    state_dir: Option<PathBuf>,
    compiled_dir: Option<PathBuf>,
    journal: bool,
    cache: bool,
    fuel: bool,
    allow_outputs_outside: bool,
    write_outputs: bool,
    inputs: BTreeMap<String, Vec<u8>>,
    input_files: Vec<(String, PathBuf)>,
    cancel: CancellationToken,
    resume: Option<Resume>,
    /// The run's events, from its components' loading on.
    events: crate::events::EventSink,
}

/// Which run to resume, and whether changes are accepted.
#[derive(Debug)]
struct Resume {
    run_id: String,
    force: bool,
    /// Opened already (by [`RunBuilder::resume_in`]).
    journal: Option<Journal>,
}

impl RunBuilder {
    /// A new run of `workflow` with the defaults: a generated run id, the
    /// default state directory, journaled, cached, fuel metered, outputs
    /// written inside the workflow's folder.
    pub fn new(workflow: Workflow) -> Self {
        Self {
            workflow: Arc::new(workflow),
            run_id: None,
            state_dir: None,
            compiled_dir: None,
            journal: true,
            cache: true,
            fuel: true,
            allow_outputs_outside: false,
            write_outputs: true,
            inputs: BTreeMap::new(),
            input_files: Vec::new(),
            cancel: CancellationToken::new(),
            resume: None,
            events: crate::events::EventSink::new(),
        }
    }

    /// Resume the run `run_id` journaled in `state_dir`, with the workflow
    /// its journal names (loaded again from its file).
    pub fn resume_in(state_dir: &Path, run_id: &str) -> Result<Self, RunError> {
        let invalid = |e: &dyn std::fmt::Display| RunError::Invalid(vec![e.to_string()]);
        let journal = Journal::open_in(state_dir, run_id).map_err(|e| invalid(&e))?;
        let record = journal.run().map_err(|e| invalid(&e))?;
        let workflow = Workflow::load(&record.workflow_path)
            .map_err(|e| invalid(&format!("run `{}`: {e}", record.run_id)))?;
        let mut builder = Self::new(workflow).state_dir(state_dir);
        builder.resume = Some(Resume { run_id: record.run_id, force: false, journal: Some(journal) });
        Ok(builder)
    }

    /// Resume the run `run_id` of this workflow from its journal in the
    /// state directory, instead of starting a new one: agents that committed
    /// are kept, the rest run, the inputs are the journaled ones. Refused if
    /// the workflow file or a component changed since, unless
    /// [`force`](Self::force).
    pub fn resume(mut self, run_id: impl Into<String>) -> Self {
        self.resume = Some(Resume { run_id: run_id.into(), force: false, journal: None });
        self
    }

    /// Resume even if the workflow file or a component changed.
    pub fn force(mut self, force: bool) -> Self {
        if let Some(resume) = &mut self.resume {
            resume.force = force;
        }
        self
    }

    /// The run's id [default: generated]. Ignored when resuming.
    pub fn run_id(mut self, id: impl Into<String>) -> Self {
        self.run_id = Some(id.into());
        self
    }

    /// Where the journal and the compiled components live (and the output
    /// cache, if the workflow's folder is read-only and the workflow does
    /// not place it) [default: see [`places`]].
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Where compiled components are cached [default: `compiled/` in the state directory].
    pub fn compiled_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.compiled_dir = Some(dir.into());
        self
    }

    /// Journal the run (the default); without a journal it cannot be resumed.
    pub fn journal(mut self, on: bool) -> Self {
        self.journal = on;
        self
    }

    /// Use the agent output cache (the default, unless the workflow disables it).
    pub fn cache(mut self, on: bool) -> Self {
        self.cache = on;
        self
    }

    /// Meter fuel (the default); without it, fuel budgets become errors.
    pub fn fuel(mut self, on: bool) -> Self {
        self.fuel = on;
        self
    }

    /// Confirm writing the workflow's `outputs` outside its folder; without
    /// it such a run is refused before it starts.
    pub fn allow_outputs_outside(mut self, allow: bool) -> Self {
        self.allow_outputs_outside = allow;
        self
    }

    /// Write the workflow's `outputs` after a successful run (the default).
    pub fn write_outputs(mut self, on: bool) -> Self {
        self.write_outputs = on;
        self
    }

    /// An input value (MessagePack), committed as `input.<name>` before any
    /// agent starts and recorded in the journal. Ignored when resuming.
    pub fn input(mut self, name: impl Into<String>, value: Vec<u8>) -> Self {
        self.inputs.insert(name.into(), value);
        self
    }

    /// An input read from a YAML or JSON file when the run is prepared.
    pub fn input_file(mut self, name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        self.input_files.push((name.into(), path.into()));
        self
    }

    /// Cancel the run with this token (as well as with [`RunHandle::cancel`]).
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// The workflow this builder runs.
    pub fn workflow(&self) -> &Workflow {
        &self.workflow
    }

    /// The state directory the run will use.
    pub fn resolved_state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| places::default_state_dir(&self.workflow.path))
    }

    /// Every reason the settings cannot be used, one line each, found
    /// without writing anything: unusable directories, outputs outside the
    /// workflow's folder, grants reaching the host's own directories,
    /// inputs with unusable names.
    pub fn problems(&self) -> Vec<String> {
        let workflow = &*self.workflow;
        let state_dir = self.resolved_state_dir();
        let mut problems = Vec::new();
        for (what, dir) in
            [("state directory", Some(&state_dir)), ("compiled-component cache", self.compiled_dir.as_ref())]
        {
            if let Some(why) = dir.and_then(|d| crate::files::dir_unusable(d)) {
                problems.push(format!(
                    "{what} {}: {why}",
                    dir.map(|d| d.display().to_string()).unwrap_or_default()
                ));
            }
        }
        if self.write_outputs
            && !self.allow_outputs_outside
            && let Some(outside) = workflow.outputs_outside()
        {
            problems.push(outside.to_string());
        }
        problems.extend(places::host_dirs_granted(workflow, &state_dir, self.compiled_dir.as_deref()));
        if self.resume.is_none() {
            let names = self.inputs.keys().chain(self.input_files.iter().map(|(name, _)| name));
            problems.extend(names.filter_map(|name| input_name_problem(name).err()));
        }
        problems
    }

    /// The run's events from now on, starting with its components' loading
    /// in [`prepare`](Self::prepare): a view can show the compilation of
    /// large components while `prepare` blocks (drain it from another task
    /// or thread). The run's own stream ([`RunHandle::events`]) has the same
    /// events from the start of `prepare`, the loading ones first.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::events::Event> {
        self.events.subscribe()
    }

    /// Check everything, size an engine and load every component, create
    /// the journal (recording the inputs): all a run needs before it starts.
    /// Blocks while components compile.
    pub fn prepare(self) -> Result<PreparedRun, RunError> {
        let problems = self.problems();
        if !problems.is_empty() {
            return Err(RunError::Invalid(problems));
        }
        let state_dir = self.resolved_state_dir();
        let mut inputs = self.inputs;
        for (name, path) in &self.input_files {
            let value = crate::inputs::load_input(path)
                .map_err(|e| RunError::Invalid(vec![format!("input {name}: {e}")]))?;
            inputs.insert(name.clone(), value);
        }
        let workflow = self.workflow;
        // A resume refuses a changed workflow before compiling anything for it.
        let resume = match self.resume {
            Some(resume) => {
                let journal = match resume.journal {
                    Some(journal) => journal,
                    None => Journal::open_in(&state_dir, &resume.run_id)
                        .map_err(|e| RunError::Invalid(vec![e.to_string()]))?,
                };
                let changes = Engine::resume_changes(&workflow, &journal).map_err(ResumeError::from)?;
                if !changes.is_empty() && !resume.force {
                    return Err(ResumeError::Changed { run: resume.run_id, changes }.into());
                }
                Some((resume.run_id, Arc::new(journal), resume.force))
            }
            None => None,
        };
        // The run's events start with its components' loading: subscribed
        // before it, so the run's stream has them (and the run counts them).
        let events = self.events;
        let events_rx = events.subscribe();
        let engine = engine_for(&workflow, self.compiled_dir, &state_dir, self.fuel, &events)?;
        let run_id = match &resume {
            Some((run_id, ..)) => run_id.clone(),
            None => self.run_id.unwrap_or_else(|| Engine::new_run_id(&workflow)),
        };
        let mut options =
            RunOptions { run_id: Some(run_id.clone()), cancel: self.cancel, events, ..RunOptions::default() };
        let spec = &workflow.cache;
        options.cache = (spec.enabled && self.cache).then(|| {
            let dir = places::output_cache_dir(&workflow, &state_dir);
            Arc::new(AgentCache::open(&dir, spec.max_size, spec.compress_above))
        });
        let journal = match resume {
            Some((_, journal, force)) => handle::Journaling::Resume { journal, force },
            None if self.journal => {
                let journal = engine
                    .create_journal(&workflow, &state_dir, &run_id)
                    .and_then(|journal| journal.set_inputs(&inputs).map(|()| journal))
                    .map_err(|e| RunError::Failed(e.to_string()))?;
                options.journal = Some(Arc::new(journal));
                options.inputs = inputs;
                handle::Journaling::New
            }
            None => {
                options.inputs = inputs;
                handle::Journaling::None
            }
        };
        Ok(PreparedRun::new(handle::Prepared {
            events_rx,
            engine,
            workflow,
            options,
            journal,
            state_dir,
            write_outputs: self.write_outputs,
            allow_outputs_outside: self.allow_outputs_outside,
        }))
    }

    /// [`prepare`](Self::prepare) on a blocking thread, then
    /// [`PreparedRun::start`]. Call it on a multi-thread tokio runtime with
    /// every driver (see the module docs).
    pub async fn start(self) -> Result<RunHandle, RunError> {
        handle::check_runtime()?;
        let prepared = tokio::task::spawn_blocking(move || self.prepare())
            .await
            .map_err(|e| RunError::Failed(format!("preparing the run failed: {e}")))??;
        prepared.start()
    }
}

/// Whether `name` makes a usable input key (`input.<name>`).
pub fn input_name_problem(name: &str) -> Result<(), String> {
    crate::context::validate_key(name)
        .and_then(|()| crate::context::validate_key(&format!("{}.{name}", crate::exec::INPUT_WRITER)))
        .map_err(|e| format!("input `{name}`: {e}"))
}

/// Compile every component of `workflow` into the compiled-component cache
/// its runs use (`ensemble cache warm`), so that its first run compiles
/// nothing: what was compiled, and what was there already.
pub fn warm(
    workflow: &Workflow,
    state_dir: &Path,
    compiled_dir: Option<PathBuf>,
    fuel: bool,
) -> Result<crate::runtime::LoadStats, RunError> {
    let engine = engine_for(workflow, compiled_dir, state_dir, fuel, &crate::events::EventSink::new())?;
    Ok(engine.runtime().load_stats())
}

/// An engine sized for `workflow` with every component loaded (each load
/// an event through `events`).
fn engine_for(
    workflow: &Workflow,
    compiled_dir: Option<PathBuf>,
    state_dir: &Path,
    fuel: bool,
    events: &crate::events::EventSink,
) -> Result<Engine, RunError> {
    let compiled_dir = match compiled_dir {
        Some(dir) => dir,
        None => {
            // `compiled/` is inside the state directory: a link there must
            // not lead out of it. (Checked without making anything.)
            let compiled = Path::new(places::COMPILED);
            if let Ok(state) = crate::confined::Root::open(state_dir)
                && let Err(e) = state.subdir(compiled, false)
                && crate::confined::is_escape(&e)
            {
                return Err(RunError::Invalid(vec![format!("state directory {}: {e}", state_dir.display())]));
            }
            state_dir.join(compiled)
        }
    };
    let config =
        RuntimeConfig { fuel, cache_dir: Some(compiled_dir), ..RuntimeConfig::for_workflow(workflow) };
    let engine = Engine::new(config).map_err(|e| RunError::Invalid(vec![e.to_string()]))?;
    engine
        .load_components_with(workflow, events)
        .map_err(|errors| RunError::Invalid(errors.iter().map(ToString::to_string).collect()))?;
    Ok(engine)
}
