//! Carrying out the core's decisions: starting jobs, finishing agents with
//! their reports and events, barrier decisions, validations; and taking
//! ended jobs back to the core.

use std::sync::Arc;
use std::time::Instant;

use super::CPU_UNITS_PER_TICK;
use super::core::{Action, AgentIx, JobKind};
use super::dispatch::{Done, Job, JobEnv, JobOutcome};
use super::report::{AgentReport, AgentStatus, ValidationOutcome, ValidationReport};
use super::run::{Execution, Started};
use crate::events::{AgentOutcome, EventKind, PoolUsage};
use crate::journal::AgentRecord;
use crate::runtime::{AgentCall, AgentError, AgentOutput, Capabilities, Limits, Pulse, Validation};
use crate::workflow::OnFailure;

/// An agent's time slice in epoch ticks.
fn slice(cpu: u32) -> u32 {
    cpu.div_ceil(CPU_UNITS_PER_TICK).max(1)
}

impl Execution<'_> {
    pub(super) fn apply(&mut self, action: Action) {
        let wf = self.wf;
        match action {
            Action::Queued(agent) => self.emit(EventKind::Queued { agent: wf.agents[agent].id.clone() }),
            Action::Lookup(agent) => {
                if self.core.awaits_lookup(agent) {
                    let hit = self.commit_cached(agent);
                    self.core.cache_answered(agent, hit);
                }
            }
            Action::Start { job, agent, kind, exclusive, attempt, pool } => {
                self.start(job, agent, kind, exclusive, attempt, pool);
            }
            Action::Abort(id) => {
                if let Some(job) = self.jobs.iter().find(|j| j.id == id) {
                    self.agents[job.agent].ran = Some((job.started, job.pulse.read().fuel_used, 0));
                }
                self.dispatcher.abort(id);
            }
            Action::Stopped(agent) => {
                self.emit(EventKind::AgentStopped { agent: wf.agents[agent].id.clone() })
            }
            Action::Retrying { agent, attempt, after, error } => {
                self.emit(EventKind::AgentRetrying {
                    agent: wf.agents[agent].id.clone(),
                    attempt,
                    after,
                    error,
                });
            }
            Action::Finish { agent, status, ran } => self.finish(agent, status, ran),
            Action::GroupStarted(g) => {
                let spec = &wf.groups[g];
                self.emit(EventKind::GroupStarted { group: spec.name.clone(), agents: spec.agents.clone() });
            }
            Action::GroupTimedOut { group, running } => {
                let running = running.iter().map(|&m| wf.agents[m].id.clone()).collect();
                self.emit(EventKind::GroupTimedOut { group: wf.groups[group].name.clone(), running });
            }
            Action::Barrier { group, record } => {
                self.emit(EventKind::BarrierDecision {
                    group: wf.groups[group].name.clone(),
                    decision: record.decision.clone(),
                    reason: record.reason.clone(),
                });
                if let Some(journal) = &self.journal
                    && let Err(e) = journal.record_decision(&record)
                {
                    self.error.get_or_insert(format!("cannot journal a barrier decision: {e}"));
                }
            }
            Action::GroupDone { group, succeeded } => {
                self.emit(EventKind::GroupDone { group: wf.groups[group].name.clone(), succeeded });
            }
            Action::ValidationError { validator, subject, group, error } => {
                self.validation_report(validator, subject, group, None, Err(error));
            }
            Action::ValidationSkipped { validator, subject, group, because } => {
                let on_failure = group
                    .and_then(|g| wf.groups[g].cross_validation.as_ref())
                    .map_or(OnFailure::Warn, |cv| cv.on_failure);
                self.validations.push(ValidationReport {
                    validator: wf.agents[validator].id.clone(),
                    subject: wf.agents[subject].id.clone(),
                    group: group.map(|g| wf.groups[g].name.clone()),
                    on_failure,
                    outcome: ValidationOutcome::Skipped { because },
                    elapsed: None,
                });
            }
        }
    }

    fn start(
        &mut self,
        id: u64,
        agent: AgentIx,
        kind: JobKind,
        exclusive: bool,
        attempt: u32,
        pool: PoolUsage,
    ) {
        let wf = self.wf;
        let spec = &wf.agents[agent];
        let Some(Some(Ok(component))) = self.components.get(agent).cloned() else {
            // The core fails agents whose component cannot be used before
            // starting them; should one get here, its job ends at once.
            let error =
                AgentError::Host { agent: spec.id.clone(), message: "component was not loaded".into() };
            let pulse = Arc::new(Pulse::default());
            self.jobs.push(Started {
                id,
                agent,
                base: self.store.snapshot().version(),
                pulse,
                started: Instant::now(),
            });
            self.job_ended(Done { id, outcome: Err(error), ended: Instant::now() });
            return;
        };
        let memory_bytes = if exclusive {
            u64::from(self.core.memory_capacity()).saturating_mul(wf.resources.memory_unit)
        } else {
            spec.memory_bytes(&wf.resources)
        };
        let (timeout, validating) = match kind {
            JobKind::Run => (spec.timeout, None),
            JobKind::Validate { subject, group } => {
                let cv = group.and_then(|g| wf.groups[g].cross_validation.as_ref());
                (cv.and_then(|cv| cv.timeout).or(spec.timeout), Some(wf.agents[subject].id.clone()))
            }
        };
        let snapshot = self.store.snapshot();
        let base = snapshot.version();
        let pulse = Arc::new(Pulse::default());
        let call = AgentCall {
            agent: spec.id.clone(),
            run_id: self.run_id.clone(),
            attempt,
            config: spec.config.clone(),
            snapshot,
            ownership: self.ownership.clone(),
            limits: Limits { memory_bytes, fuel: spec.fuel, timeout, slice: slice(spec.cpu) },
            events: self.events.tapped(&self.tap),
            pulse: pulse.clone(),
            templates: self.templates.clone().map(|t| t as Arc<dyn crate::runtime::Templates>),
            reads: self.reads[agent].clone(),
            capabilities: Capabilities { http_slots: self.http_slots.clone(), ..Capabilities::of(spec) },
        };
        self.emit(EventKind::Admitted {
            agent: spec.id.clone(),
            validating: validating.clone(),
            cpu: spec.cpu,
            memory: spec.memory,
            pool,
        });
        if kind == JobKind::Run {
            self.emit(EventKind::AgentStarted { agent: spec.id.clone(), attempt });
        }
        let job = Job {
            id,
            agent: spec.id.clone(),
            attempt,
            validating,
            base,
            memory_bytes,
            fuel: spec.fuel,
            timeout,
        };
        self.dispatcher.dispatch(job, JobEnv { component, call });
        self.jobs.push(Started { id, agent, base, pulse, started: Instant::now() });
    }

    /// A job came back from the dispatcher.
    pub(super) fn job_ended(&mut self, Done { id, outcome, ended }: Done) {
        let Some(i) = self.jobs.iter().position(|j| j.id == id) else { return };
        let job = self.jobs.swap_remove(i);
        let Some(released) = self.core.release(id) else { return };
        let agent = job.agent;
        let id_of = |a: AgentIx| self.wf.agents[a].id.clone();
        if released.kind == JobKind::Run {
            let pulse = job.pulse.read();
            let renders = &mut self.agents[agent].renders;
            renders.0 += pulse.renders;
            renders.1 += pulse.renders_cached;
        }
        let validating = match released.kind {
            JobKind::Validate { subject, .. } => Some(id_of(subject)),
            JobKind::Run => None,
        };
        self.emit(EventKind::Released { agent: id_of(agent), validating, pool: released.pool });
        if released.discard {
            return;
        }
        // A panic or an abort is reported without the agent's name.
        let outcome = outcome.map_err(|e| match e {
            AgentError::Host { agent: name, message } if name.is_empty() => {
                AgentError::Host { agent: self.wf.agents[agent].id.clone(), message }
            }
            e => e,
        });
        match released.kind {
            JobKind::Run => self.completed(agent, &job, ended, outcome.map(|(_, output)| output)),
            JobKind::Validate { subject, group } => {
                let passed = matches!(&outcome, Ok((v, _)) if v.as_ref().is_none_or(|v| v.passed));
                self.core.validated(agent, subject, group, passed);
                self.validation_report(agent, subject, group, Some(job.started), outcome);
            }
        }
    }

    fn completed(
        &mut self,
        agent: AgentIx,
        job: &Started,
        ended: Instant,
        result: Result<AgentOutput, AgentError>,
    ) {
        let wf = self.wf;
        let id = wf.agents[agent].id.as_str();
        let result = result.and_then(|output| {
            self.store_cached(agent, &output, ended - job.started);
            let attempts = self.core.attempts(agent);
            let record =
                AgentRecord { outcome: AgentOutcome::Succeeded, version: None, attempts, message: None };
            match self.commit(id, job.base, output.writes, record) {
                Ok(Some(committed)) => Ok((output.fuel_used, output.peak_memory, committed)),
                Ok(None) => Err(AgentError::Host { agent: id.to_owned(), message: "the run stopped".into() }),
                Err(conflict) => Err(AgentError::Conflict(conflict)),
            }
        });
        let now = Instant::now();
        match result {
            Ok((fuel_used, peak_memory, committed)) => {
                let run = &mut self.agents[agent];
                run.commit_wait = Some(ended.elapsed());
                run.ran = Some((job.started, fuel_used, peak_memory));
                self.emit(EventKind::AgentSucceeded { agent: id.to_owned(), elapsed: ended - job.started });
                self.core.completed(agent, Ok(committed), now);
            }
            Err(error) => {
                if let AgentError::Timeout { after, .. } = &error {
                    let attempt = self.core.attempts(agent);
                    self.emit(EventKind::TimedOut { agent: id.to_owned(), attempt, after: *after });
                }
                self.agents[agent].ran = Some((job.started, None, 0));
                self.core.completed(agent, Err(error), now);
            }
        }
    }

    /// Report a validation that ran (`started`) or could not start.
    pub(super) fn validation_report(
        &mut self,
        validator: AgentIx,
        subject: AgentIx,
        group: Option<usize>,
        started: Option<Instant>,
        outcome: JobOutcome,
    ) {
        let wf = self.wf;
        let on_failure = group
            .and_then(|g| wf.groups[g].cross_validation.as_ref())
            .map_or(OnFailure::Warn, |cv| cv.on_failure);
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
        let (validator, subject) = (wf.agents[validator].id.clone(), wf.agents[subject].id.clone());
        let group = group.map(|g| wf.groups[g].name.clone());
        self.emit(EventKind::Validated {
            validator: validator.clone(),
            subject: subject.clone(),
            group: group.clone(),
            passed,
            findings,
            error,
        });
        self.validations.push(ValidationReport {
            validator,
            subject,
            group,
            on_failure,
            outcome,
            elapsed: started.map(|s| s.elapsed()),
        });
    }

    /// `agent` finished: commit a partial agent's defaults, send the event,
    /// journal the outcome (when no commit carried it), keep the report.
    fn finish(&mut self, agent: AgentIx, mut status: AgentStatus, ran: bool) {
        let wf = self.wf;
        let spec = &wf.agents[agent];
        let id = spec.id.as_str();
        let attempts = self.core.attempts(agent);
        if let AgentStatus::Partial { defaults, because, .. } = &mut status
            && !spec.defaults.is_empty()
        {
            let writes = spec.defaults.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let record = AgentRecord {
                outcome: AgentOutcome::Partial,
                version: None,
                attempts,
                message: Some(because.clone()),
            };
            // Defaults are written against the current version: no conflict is possible.
            let base = self.store.snapshot().version();
            if let Ok(Some((_, keys))) = self.commit(id, base, writes, record) {
                *defaults = keys;
            }
        }
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
        let journaled = match &status {
            AgentStatus::Succeeded { .. } => None,
            AgentStatus::Partial { defaults, .. } if !defaults.is_empty() => None,
            AgentStatus::Partial { because, .. } => Some((AgentOutcome::Partial, Some(because.clone()))),
            AgentStatus::Failed(e) => Some((AgentOutcome::Failed, Some(e.to_string()))),
            AgentStatus::Skipped { because } => Some((AgentOutcome::Skipped, Some(because.clone()))),
            AgentStatus::Cancelled => Some((AgentOutcome::Cancelled, None)),
        };
        if let Some((outcome, message)) = journaled {
            self.journal_agent(id, &AgentRecord { outcome, version: None, attempts, message });
        }
        let run = &mut self.agents[agent];
        let (elapsed, fuel_used, peak_memory) = match run.ran.take().filter(|_| ran) {
            Some((started, fuel, memory)) => (Some(started.elapsed()), fuel, memory),
            None => (None, None, 0),
        };
        run.report = Some(AgentReport {
            agent: id.to_owned(),
            status,
            elapsed,
            fuel_used,
            peak_memory,
            attempts,
            commit_wait: run.commit_wait,
            resumed: false,
            cached: run.cached,
            renders: run.renders.0,
            renders_cached: run.renders.1,
        });
    }
}
