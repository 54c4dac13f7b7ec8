//! The run loop: drives the scheduling [`Core`], carries out its
//! [`Action`]s against the context store, the journal, the cache and the
//! [`Dispatcher`], and feeds back what happened.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::{AgentIx, Core};
use super::dispatch::{Dispatcher, Done, JobId, LocalDispatcher};
use super::report::{AgentReport, AgentStatus, RunReport, ValidationReport};
use super::{CancellationToken, INPUT_WRITER, RunOptions};
use crate::cache::AgentCache;
use crate::context::{Conflict, ContextStore, Ownership, ReadPatterns, StagedWrites};
use crate::events::{AgentOutcome, EventKind, EventSink, EventTap, TimelineRecorder};
use crate::journal::{AgentRecord, CommitRecord, Journal};
use crate::runtime::{AgentComponent, AgentError, Pulse, Runtime};
use crate::templates::{TemplateLimits, TemplateService};
use crate::workflow::Workflow;

/// A job the loop started and has not taken back.
#[derive(Debug)]
pub(super) struct Started {
    pub(super) id: JobId,
    pub(super) agent: AgentIx,
    /// The context version its snapshot was taken at.
    pub(super) base: u64,
    pub(super) pulse: Arc<Pulse>,
    pub(super) started: Instant,
}

/// What the loop keeps per agent for its report.
#[derive(Debug, Default)]
pub(super) struct AgentRun {
    pub(super) report: Option<AgentReport>,
    /// Its last job's start, fuel and peak memory, once it ran.
    pub(super) ran: Option<(Instant, Option<u64>, u64)>,
    /// How long its last successful result waited to be committed.
    pub(super) commit_wait: Option<Duration>,
    /// Its output came from the cache.
    pub(super) cached: bool,
    /// Template renders and render-cache hits (all its calls).
    pub(super) renders: (u32, u32),
    /// Its grants' part of its cache family when it was looked up.
    pub(super) grants_hash: Option<Option<String>>,
    /// Told (once) that it is not cached in this run.
    pub(super) uncached: bool,
}

pub(super) struct Execution<'w> {
    pub(super) runtime: Runtime,
    pub(super) wf: &'w Workflow,
    pub(super) run_id: String,
    pub(super) core: Core<'w>,
    pub(super) events: EventSink,
    cancel: CancellationToken,
    pub(super) ownership: Ownership,
    pub(super) store: ContextStore,
    /// Per agent, its loaded component (or why it cannot be used).
    pub(super) components: Vec<Option<Result<AgentComponent, AgentError>>>,
    /// The `reads` patterns of the agents that declare them, built once.
    pub(super) reads: Vec<Option<ReadPatterns>>,
    pub(super) dispatcher: Box<dyn Dispatcher>,
    pub(super) jobs: Vec<Started>,
    pub(super) agents: Vec<AgentRun>,
    pub(super) validations: Vec<ValidationReport>,
    pub(super) conflicts: Vec<Conflict>,
    /// HTTP requests in flight, shared by every agent of the run.
    pub(super) http_slots: crate::runtime::HttpSlots,
    pub(super) cache: Option<Arc<AgentCache>>,
    /// blake3 of the templates directory: part of every agent's cache family.
    pub(super) templates_hash: Option<String>,
    pub(super) templates: Option<Arc<TemplateService>>,
    inputs: BTreeMap<String, Vec<u8>>,
    pub(super) journal: Option<Arc<Journal>>,
    /// A run-level failure (the journal could not be written): the run stops.
    pub(super) error: Option<String>,
    cancelled: bool,
    pub(super) started: Instant,
    /// The run's timeline, from the events it sends.
    timeline: TimelineRecorder,
    /// The events of its agents that the timeline needs (HTTP requests).
    pub(super) tap: EventTap,
}

impl<'w> Execution<'w> {
    pub(super) fn new(runtime: Runtime, workflow: &'w Workflow, run_id: String, options: RunOptions) -> Self {
        let RunOptions { events, cancel, journal, cache, templates, inputs, .. } = options;
        let templates = templates.or_else(|| {
            workflow
                .templates
                .as_deref()
                .map(|dir| Arc::new(TemplateService::new(dir, TemplateLimits::default())))
        });
        let started = Instant::now();
        let n = workflow.agents.len();
        Self {
            dispatcher: Box::new(LocalDispatcher::new(runtime.clone())),
            runtime,
            wf: workflow,
            core: Core::new(workflow, run_id.clone(), started, cache.is_some()),
            run_id,
            events,
            cancel,
            ownership: Ownership::new(
                workflow.agents.iter().flat_map(|a| a.owns.iter().map(|p| (p.as_str(), a.id.as_str()))),
            ),
            store: ContextStore::with_policies(&workflow.shared),
            components: Vec::new(),
            reads: workflow
                .agents
                .iter()
                .map(|a| a.reads.as_ref().map(|p| ReadPatterns::new(p.iter().cloned())))
                .collect(),
            jobs: Vec::new(),
            agents: (0..n).map(|_| AgentRun::default()).collect(),
            validations: Vec::new(),
            conflicts: Vec::new(),
            http_slots: crate::runtime::HttpSlots::new(workflow.resources.http_concurrent),
            cache,
            templates_hash: workflow.templates.as_deref().map(crate::cache::dir_hash),
            templates,
            inputs,
            journal,
            error: None,
            cancelled: false,
            started,
            timeline: TimelineRecorder::new(),
            tap: EventTap::default(),
        }
    }

    /// Send an event, and record it in the run's timeline.
    pub(super) fn emit(&mut self, kind: EventKind) {
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
    pub(super) fn restore(
        &mut self,
        commits: Vec<CommitRecord>,
        agents: BTreeMap<String, AgentRecord>,
    ) -> Result<(), (u64, u64)> {
        let mut written: foldhash::HashMap<u64, Vec<String>> = foldhash::HashMap::default();
        for commit in commits {
            let keys = commit.writes.iter().map(|(k, _)| k.clone()).collect();
            if !self.store.replay(&commit.agent, commit.version, commit.writes) {
                return Err((commit.version, self.store.snapshot().version()));
            }
            written.insert(commit.version, keys);
        }
        for (id, record) in agents {
            let Some(agent) = self.wf.agents.iter().position(|a| a.id == id) else { continue };
            if !record.is_final() {
                self.core.restore(agent, record.attempts, None);
                continue;
            }
            let keys = record.version.and_then(|v| written.get(&v).cloned()).unwrap_or_default();
            let status = if record.outcome == AgentOutcome::Partial {
                AgentStatus::Partial {
                    defaults: keys,
                    because: record.message.clone().unwrap_or_default(),
                    error: None,
                }
            } else {
                AgentStatus::Succeeded { version: record.version.unwrap_or_default(), keys }
            };
            self.core.restore(agent, record.attempts, Some(&status));
            self.agents[agent].report = Some(AgentReport {
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
            });
        }
        Ok(())
    }

    pub(super) async fn run(mut self) -> RunReport {
        self.emit(EventKind::RunStarted {
            run_id: self.run_id.clone(),
            workflow: self.wf.name.clone(),
            agents: self.wf.agents.len(),
        });
        let loads = self.runtime.load_workflow_async(self.wf, &self.events).await;
        // In the workflow's order, one per agent.
        self.components = loads.components.into_iter().map(|(_, loaded)| Some(loaded)).collect();
        for (agent, component) in self.components.iter().enumerate() {
            match component {
                Some(Ok(_)) => {}
                Some(Err(e)) => self.core.unusable(agent, e.clone()),
                None => self.core.unusable(
                    agent,
                    AgentError::Host {
                        agent: self.wf.agents[agent].id.clone(),
                        message: "component was not loaded".into(),
                    },
                ),
            }
        }
        let loaded = self.components.iter().filter(|c| c.is_some()).count();
        self.emit(EventKind::ComponentsLoaded { agents: loaded, elapsed: loads.elapsed });
        // Inputs go in first, as one commit (a resumed run has them already).
        if !self.inputs.is_empty() && self.store.snapshot().version() == 0 {
            let writes: StagedWrites = std::mem::take(&mut self.inputs)
                .into_iter()
                .map(|(k, v)| (format!("input.{k}"), v))
                .collect();
            let record =
                AgentRecord { outcome: AgentOutcome::Input, version: None, attempts: 0, message: None };
            if let Err(e) = self.commit(INPUT_WRITER, 0, writes, record) {
                self.error = Some(e.to_string());
            }
        }
        let cancel = self.cancel.clone();
        let mut done: Vec<Done> = Vec::new();
        enum Woke {
            Cancelled,
            Ended,
            Timer,
        }
        while !self.cancelled && self.error.is_none() {
            self.drive();
            if self.error.is_some() || (self.core.is_idle() && self.dispatcher.in_flight() == 0) {
                break;
            }
            let wake = self.core.next_timer();
            let woke = tokio::select! {
                biased;
                () = cancel.cancelled() => Woke::Cancelled,
                () = self.dispatcher.next(&mut done) => Woke::Ended,
                () = sleep_until(wake) => Woke::Timer,
            };
            match woke {
                Woke::Cancelled => self.cancelled = true,
                Woke::Ended => self.ended(&mut done),
                Woke::Timer => {
                    // Take in whatever ended meanwhile: it counts as completed.
                    self.dispatcher.ready(&mut done);
                    self.ended(&mut done);
                    let jobs = &self.jobs;
                    let progress =
                        |id: JobId| jobs.iter().find(|j| j.id == id).and_then(|j| j.pulse.read().last_report);
                    self.core.timers(Instant::now(), progress);
                }
            }
        }
        if self.cancelled || self.error.is_some() {
            self.halt(&mut done).await;
        }
        self.wrap_up()
    }

    /// Let the core settle and admit, and carry out what it decides, until
    /// it has nothing more to say.
    fn drive(&mut self) {
        loop {
            self.core.step(Instant::now());
            let mut acted = false;
            while let Some(action) = self.core.next_action() {
                acted = true;
                self.apply(action);
            }
            if !acted || self.error.is_some() {
                break;
            }
        }
    }

    fn ended(&mut self, done: &mut Vec<Done>) {
        for ended in done.drain(..) {
            self.job_ended(ended);
        }
        // What the ends decided (finishes, retries) is carried out by the
        // next `drive`; carry out aborts and finishes now too, in order.
        while let Some(action) = self.core.next_action() {
            self.apply(action);
        }
    }

    /// Stop everything: running agents are interrupted (their writes are
    /// dropped), nothing new starts, committed results stay; wait for the
    /// stopped jobs, so their stores are gone when the run returns.
    async fn halt(&mut self, done: &mut Vec<Done>) {
        self.core.halt();
        while let Some(action) = self.core.next_action() {
            self.apply(action);
        }
        while self.dispatcher.in_flight() > 0 {
            self.dispatcher.next(done).await;
            self.ended(done);
        }
    }

    fn wrap_up(mut self) -> RunReport {
        let groups = self.core.wrap_up(self.cancelled, Instant::now());
        while let Some(action) = self.core.next_action() {
            self.apply(action);
        }
        let agents: Vec<AgentReport> = self.agents.iter_mut().filter_map(|a| a.report.take()).collect();
        let mut report = RunReport {
            run_id: self.run_id,
            workflow: self.wf.name.clone(),
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
        // The run report is for whoever finishes the run to keep
        // (`report::finish_journal`), with the metrics it computes once.
        if let (Some(journal), Some(status)) = (&self.journal, report.journal_status())
            && let Err(e) = journal.set_status(status)
        {
            tracing::error!("{e}");
        }
        self.events.publish(done);
        report
    }
}

/// Sleep until `at`, or for ever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
