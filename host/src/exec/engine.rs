//! The engine of a process and its entry points: run, resume, journal.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::run::Execution;
use super::{ResumeError, RunOptions, RunReport};
use crate::events::EventSink;
use crate::journal::{AgentRecord, CommitRecord, Journal, JournalError, RunRecord, RunStatus};
use crate::runtime::{AgentError, Runtime, RuntimeConfig, RuntimeError};
use crate::workflow::Workflow;

/// The engine of a process: one wasmtime runtime, shared by every run.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    runtime: Runtime,
}

impl Engine {
    /// An engine with a new runtime configured by `config`.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        Ok(Self { runtime: Runtime::new(config)? })
    }

    /// The runtime the engine runs agents on.
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
    /// saves that copy when the same workflow runs many times (and keeps
    /// what is worked out once per workflow, such as the ready order).
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
