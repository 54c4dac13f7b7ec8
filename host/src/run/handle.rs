//! A prepared run, a started one, its event stream and what it leaves.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

use super::RunError;
use crate::events::{Event, EventKind};
use crate::exec::CancellationToken;
use crate::exec::{Engine, RunOptions, RunReport};
use crate::journal::Journal;
use crate::outputs::OutputError;
use crate::report::RunMetrics;
use crate::workflow::Workflow;

/// How the run is journaled.
#[derive(Debug)]
pub(super) enum Journaling {
    /// Not at all (it cannot be resumed).
    None,
    /// In the new journal of [`RunOptions::journal`].
    New,
    /// Resuming the run of this journal.
    Resume { journal: Arc<Journal>, force: bool },
}

/// Everything [`PreparedRun::start`] needs.
#[derive(Debug)]
pub(super) struct Prepared {
    pub engine: Engine,
    pub workflow: Arc<Workflow>,
    pub options: RunOptions,
    pub journal: Journaling,
    /// The run's events, subscribed before its components loaded.
    pub events_rx: broadcast::Receiver<Event>,
    pub state_dir: PathBuf,
    pub write_outputs: bool,
    pub allow_outputs_outside: bool,
}

/// A run ready to start: checked, its engine sized and components loaded,
/// its journal created. Made by [`RunBuilder::prepare`](super::RunBuilder::prepare).
#[derive(Debug)]
pub struct PreparedRun(Prepared);

impl PreparedRun {
    pub(super) fn new(prepared: Prepared) -> Self {
        Self(prepared)
    }

    /// The run's id: its journal's, its events' and its report's.
    pub fn run_id(&self) -> &str {
        self.0.options.run_id.as_deref().unwrap_or_default()
    }

    /// The workflow it runs.
    pub fn workflow(&self) -> &Workflow {
        &self.0.workflow
    }

    /// The run's journal file, if it is journaled.
    pub fn journal(&self) -> Option<PathBuf> {
        match self.0.journal {
            Journaling::None => None,
            _ => Some(crate::journal::path_of(&self.0.state_dir, self.run_id())),
        }
    }

    /// Start the run as a task of the current tokio runtime (multi-thread,
    /// every driver: see [`crate::run`]); its events are subscribed first,
    /// so [`RunHandle::events`] sees them all.
    pub fn start(self) -> Result<RunHandle, RunError> {
        check_runtime()?;
        let journal = self.journal();
        let prepared = self.0;
        let run_id = prepared.options.run_id.clone().unwrap_or_default();
        let cancel = prepared.options.cancel.clone();
        let (events, prepared) = prepared.split_events();
        let (ended, ended_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let finished = prepared.run().await;
            let _ = ended.send(true);
            finished
        });
        Ok(RunHandle {
            run_id,
            journal,
            events: Some(RunEvents { rx: Some(events), ended: ended_rx, missed: 0 }),
            cancel,
            task: AbortOnDropHandle::new(task),
        })
    }
}

/// A prepared run without its event subscription (which goes to the handle).
#[derive(Debug)]
struct Ready {
    engine: Engine,
    workflow: Arc<Workflow>,
    options: RunOptions,
    journal: Journaling,
    state_dir: PathBuf,
    write_outputs: bool,
    allow_outputs_outside: bool,
}

impl Prepared {
    fn split_events(self) -> (broadcast::Receiver<Event>, Ready) {
        let Self {
            engine,
            workflow,
            options,
            journal,
            events_rx,
            state_dir,
            write_outputs,
            allow_outputs_outside,
        } = self;
        (
            events_rx,
            Ready { engine, workflow, options, journal, state_dir, write_outputs, allow_outputs_outside },
        )
    }
}

impl Ready {
    async fn run(self) -> Result<Finished, RunError> {
        let Self { engine, workflow, options, journal, state_dir, write_outputs, allow_outputs_outside } =
            self;
        let journaled = !matches!(journal, Journaling::None);
        let (report, kept) = match journal {
            Journaling::Resume { journal, force } => {
                let kept = journal.clone();
                (engine.resume(&workflow, journal, options, force).await?, Some(kept))
            }
            Journaling::New | Journaling::None => {
                let kept = options.journal.clone();
                (engine.run_shared(workflow.clone(), options).await, kept)
            }
        };
        let outputs = if !write_outputs || workflow.outputs.is_none() {
            Outputs::None
        } else if !report.succeeded() {
            Outputs::NotWritten
        } else {
            let (written, errors) =
                crate::outputs::write_outputs(&workflow, &report.context, allow_outputs_outside);
            Outputs::Written { written, errors }
        };
        let metrics = report.metrics(&workflow);
        // The journal keeps the metrics as its run report (`ensemble report`).
        if let Some(journal) = &kept
            && let Err(e) = crate::report::finish_journal(journal, &report, &metrics)
        {
            tracing::error!("{e}");
        }
        let journal = journaled.then(|| crate::journal::path_of(&state_dir, &report.run_id));
        Ok(Finished { report, metrics, outputs, journal, state_dir })
    }
}

/// Whether the current thread is in a runtime a run can use.
pub(super) fn check_runtime() -> Result<(), RunError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::CurrentThread) => Err(RunError::Failed(
            "a run needs a multi-thread tokio runtime, not a current-thread one (see ensemble::run)".into(),
        )),
        Ok(_) => Ok(()),
        Err(_) => Err(RunError::Failed(
            "a run starts within a tokio runtime (multi-thread, every driver enabled: see ensemble::run)"
                .into(),
        )),
    }
}

/// A started run. Dropping it aborts the run (as dropping
/// [`Engine::run`]'s future does); [`cancel`](Self::cancel) it and
/// [`finish`](Self::finish) it to stop it cleanly.
#[derive(Debug)]
pub struct RunHandle {
    run_id: String,
    journal: Option<PathBuf>,
    events: Option<RunEvents>,
    cancel: CancellationToken,
    task: AbortOnDropHandle<Result<Finished, RunError>>,
}

impl RunHandle {
    /// The run's id: its journal's, its events' and its report's.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The run's journal file, if it is journaled.
    pub fn journal(&self) -> Option<&Path> {
        self.journal.as_deref()
    }

    /// The run's events, from its first. There is one stream: a second call
    /// gets one that has ended.
    pub fn events(&mut self) -> RunEvents {
        self.events.take().unwrap_or_else(|| RunEvents { rx: None, ended: watch::channel(true).1, missed: 0 })
    }

    /// Stop the run: running agents are interrupted at their next epoch
    /// tick and nothing of them is committed; what was committed stays.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The token [`cancel`](Self::cancel) uses.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Wait for the run to end; its outputs are written by then.
    pub async fn finish(self) -> Result<Finished, RunError> {
        match self.task.await {
            Ok(finished) => finished,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(RunError::Failed(format!("the run's task was cancelled: {e}"))),
        }
    }
}

/// A run's events, in order. The stream ends after the run's last event
/// (`RunDone`), or when the run ended without one (a resume that was
/// refused). It never slows the run: a reader that falls more than
/// [`EVENT_BUFFER`](crate::events::EVENT_BUFFER) events behind misses some
/// ([`missed`](Self::missed) counts them), but never the last ones.
#[derive(Debug)]
pub struct RunEvents {
    rx: Option<broadcast::Receiver<Event>>,
    ended: watch::Receiver<bool>,
    missed: u64,
}

impl RunEvents {
    /// The next event; `None` once the run's events are over.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            let rx = self.rx.as_mut()?;
            let received = tokio::select! {
                biased;
                received = rx.recv() => Some(received),
                _ = self.ended.wait_for(|ended| *ended) => None,
            };
            let received = match received {
                Some(Ok(event)) => Ok(event),
                Some(Err(RecvError::Lagged(n))) => Err(Some(n)),
                Some(Err(RecvError::Closed)) => Err(None),
                // The run is over: what it sent is buffered already.
                None => match rx.try_recv() {
                    Ok(event) => Ok(event),
                    Err(TryRecvError::Lagged(n)) => Err(Some(n)),
                    Err(_) => Err(None),
                },
            };
            match received {
                Ok(event) => {
                    if matches!(event.kind, EventKind::RunDone { .. }) {
                        self.rx = None;
                    }
                    return Some(event);
                }
                Err(Some(missed)) => self.missed += missed,
                Err(None) => self.rx = None,
            }
        }
    }

    /// How many events this reader missed by falling behind, so far.
    pub fn missed(&self) -> u64 {
        self.missed
    }
}

/// What a run leaves, once it has ended.
#[derive(Debug)]
pub struct Finished {
    /// What happened to each agent, group and validation; the final context.
    pub report: RunReport,
    /// The run's metrics and timeline, computed once from the report.
    pub metrics: RunMetrics,
    /// What became of the workflow's `outputs`.
    pub outputs: Outputs,
    /// The run's journal file, if it was journaled.
    pub journal: Option<PathBuf>,
    /// The state directory the run used.
    pub state_dir: PathBuf,
}

impl Finished {
    /// The run report as JSON (every metric, the timeline), as
    /// `ensemble run --report` and `ensemble report --json` write it.
    pub fn json(&self) -> String {
        self.metrics.to_json()
    }

    /// The run succeeded and its outputs were written.
    pub fn succeeded(&self) -> bool {
        self.report.succeeded()
            && !matches!(&self.outputs, Outputs::Written { errors, .. } if !errors.is_empty())
    }
}

/// What became of a workflow's `outputs` after a run.
#[derive(Debug)]
pub enum Outputs {
    /// The workflow declares none, or the run was told not to write them.
    None,
    /// The run did not succeed, so none was written (those of an earlier,
    /// successful run stay).
    NotWritten,
    /// The files written, and why the others were not.
    Written {
        /// The files written.
        written: Vec<PathBuf>,
        /// Why the others were not.
        errors: Vec<OutputError>,
    },
}
