//! Groups and their smart barriers: a group's members are queued together
//! once all are ready; its barrier then waits for all of them or its
//! timeout and decides (the rules are in [`crate::exec::barrier`]); then
//! cross-validation runs. Results that completed are never discarded: a
//! member's writes were committed the moment it succeeded.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Action, AgentIx, Core, JobId, JobKind, Outcome, Phase};
use crate::events::{Decision, DecisionRecord};
use crate::exec::barrier::{self, Facts, Verdict, criterion_holds};
use crate::exec::report::{AgentStatus, GroupReport, GroupStatus};
use crate::runtime::AgentError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GroupPhase {
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

#[derive(Debug)]
pub(super) struct GroupRun {
    pub(super) phase: GroupPhase,
    started: Option<Instant>,
    deadline: Option<Instant>,
    extensions: u32,
    fallback: VecDeque<AgentIx>,
    pub(super) validations_pending: usize,
    /// Why a validation with `on_failure: fail` failed the group.
    pub(super) validation_failed: Option<String>,
    pub(super) report: GroupReport,
}

impl GroupRun {
    pub(super) fn new(name: &str) -> Self {
        Self {
            phase: GroupPhase::Pending,
            started: None,
            deadline: None,
            extensions: 0,
            fallback: VecDeque::new(),
            validations_pending: 0,
            validation_failed: None,
            report: GroupReport {
                group: name.to_owned(),
                status: GroupStatus::Cancelled,
                decisions: Vec::new(),
                elapsed: None,
            },
        }
    }

    /// Its barrier's deadline, while its members run.
    pub(super) fn running_deadline(&self) -> Option<Instant> {
        self.deadline.filter(|_| self.phase == GroupPhase::Running)
    }

    /// Its report at the end of the run.
    pub(super) fn into_report(mut self, cancelled: bool, now: Instant) -> GroupReport {
        if self.phase != GroupPhase::Done {
            self.report.status = if cancelled {
                GroupStatus::Cancelled
            } else {
                GroupStatus::Failed { because: "it never finished".into() }
            };
            self.report.elapsed = self.started.map(|s| now.saturating_duration_since(s));
        }
        self.report
    }
}

fn listed(core: &Core<'_>, members: &[AgentIx]) -> String {
    members.iter().map(|&m| format!("`{}`", core.wf.agents[m].id)).collect::<Vec<_>>().join(", ")
}

impl Core<'_> {
    /// Members queued, running or waiting out a backoff.
    fn unfinished_members(&self, g: usize) -> Vec<AgentIx> {
        let members = self.graph.members[g].iter().copied();
        members
            .filter(|&m| matches!(self.phase[m], Phase::Queued | Phase::Running | Phase::BackingOff(_)))
            .collect()
    }

    fn not_succeeded(&self, g: usize) -> Vec<AgentIx> {
        self.graph.members[g].iter().copied().filter(|&m| !self.succeeded(m)).collect()
    }

    /// Advance group `g` if it can; true if anything changed.
    pub(super) fn step_group(&mut self, g: usize, now: Instant) -> bool {
        let spec = &self.wf.groups[g];
        match self.groups[g].phase {
            GroupPhase::Pending => {
                // A waiting member with no unmet need is ready (one whose
                // need failed was skipped by now).
                let all_ready = self.graph.members[g].iter().all(|&m| match self.phase[m] {
                    Phase::Done => true,
                    Phase::Waiting => self.ready.unblocked(m),
                    _ => false,
                });
                if !all_ready {
                    return false;
                }
                let group = &mut self.groups[g];
                group.phase = GroupPhase::Running;
                group.started = Some(now);
                group.deadline = spec.barrier.timeout.and_then(|t| now.checked_add(t));
                self.out.push_back(Action::GroupStarted(g));
                for i in 0..self.graph.members[g].len() {
                    let member = self.graph.members[g][i];
                    if self.phase[member] == Phase::Waiting {
                        self.enqueue(member, false);
                    }
                }
                true
            }
            GroupPhase::Running => {
                if self.graph.members[g].iter().any(|&m| self.phase[m] != Phase::Done) {
                    return false;
                }
                self.decide(g, false, now, &|_| None);
                true
            }
            GroupPhase::Sequential => {
                if !self.unfinished_members(g).is_empty() {
                    return false;
                }
                if let Some(next) = self.groups[g].fallback.pop_front() {
                    self.stats.retry_base[next] = self.stats.attempts[next];
                    self.stats.exclusive[next] = true;
                    self.enqueue(next, true);
                } else {
                    let members = self.graph.members[g].len();
                    let succeeded = self.graph.members[g].iter().filter(|&&m| self.succeeded(m)).count();
                    let ok = criterion_holds(spec.barrier.success, succeeded, members);
                    let reason =
                        format!("after the sequential fallback {succeeded} of {members} members succeeded");
                    self.finish_group(g, ok, reason, now);
                }
                true
            }
            GroupPhase::Validating => {
                if self.groups[g].validations_pending > 0 {
                    return false;
                }
                self.group_done(g, now);
                true
            }
            GroupPhase::Done => false,
        }
    }

    /// Groups whose barrier timeout passed at `now` decide.
    pub(super) fn group_timeouts(&mut self, now: Instant, progress: &dyn Fn(JobId) -> Option<Instant>) {
        for g in 0..self.groups.len() {
            if self.groups[g].running_deadline().is_none_or(|d| d > now) {
                continue;
            }
            self.settle(now);
            if self.groups[g].phase != GroupPhase::Running {
                continue;
            }
            let running = self.unfinished_members(g);
            self.out.push_back(Action::GroupTimedOut { group: g, running });
            self.decide(g, true, now, progress);
        }
    }

    /// Apply group `g`'s barrier: every member finished, or (`timed_out`)
    /// its deadline passed.
    fn decide(
        &mut self,
        g: usize,
        timed_out: bool,
        now: Instant,
        progress: &dyn Fn(JobId) -> Option<Instant>,
    ) {
        let spec = &self.wf.groups[g];
        let members = &self.graph.members[g];
        let unfinished = self.unfinished_members(g);
        let window = spec.barrier.progress_window;
        let progressed = unfinished.iter().all(|&m| {
            self.run_job(m).and_then(progress).is_some_and(|at| now.saturating_duration_since(at) <= window)
        });
        let succeeded = members.iter().filter(|&&m| self.succeeded(m)).count();
        let failed_with = |load: Option<bool>| {
            members
                .iter()
                .filter(|&&m| match self.stats.outcome[m] {
                    Some(Outcome::Failed { load_error }) => load.is_none_or(|l| l == load_error),
                    _ => false,
                })
                .count()
        };
        let facts = Facts {
            members: members.len(),
            succeeded,
            failed: failed_with(None),
            running: unfinished.len(),
            running_progressed: progressed,
            rerunnable: unfinished.len() + failed_with(Some(false)),
            timed_out,
            extensions: self.groups[g].extensions,
        };
        let total = members.len();
        match barrier::decide(&spec.barrier, facts) {
            Verdict::AllCompleted => {
                self.record(g, Decision::AllCompleted, "every member succeeded".into(), now);
                self.finish_group(g, true, String::new(), now);
            }
            Verdict::Extend(by) => {
                let group = &mut self.groups[g];
                group.extensions += 1;
                group.deadline = group.deadline.and_then(|d| d.checked_add(by));
                let extension = group.extensions;
                let reason = format!(
                    "{} reported progress within the last {}",
                    listed(self, &unfinished),
                    humantime::format_duration(window)
                );
                self.record(g, Decision::ExtendTimeout { by, extension }, reason, now);
            }
            Verdict::ContinueWithPartial => {
                let reason = format!(
                    "{succeeded} of {total} members succeeded; going on without {}",
                    listed(self, &self.not_succeeded(g))
                );
                self.record(g, Decision::ContinueWithPartial, reason, now);
                self.finish_group(g, true, String::new(), now);
            }
            Verdict::CriterionMet => {
                let reason = format!("{succeeded} of {total} members succeeded");
                self.record(g, Decision::CriterionMet, reason, now);
                self.finish_group(g, true, String::new(), now);
            }
            Verdict::FallbackSequential => self.fall_back(g, &unfinished, succeeded, now),
            Verdict::Failed => {
                let reason = if timed_out {
                    format!(
                        "timed out with {} unfinished and {succeeded} of {total} members succeeded",
                        listed(self, &unfinished)
                    )
                } else {
                    format!("only {succeeded} of {total} members succeeded")
                };
                self.record(g, Decision::GroupFailed, reason.clone(), now);
                for &member in &unfinished {
                    let backing_off = matches!(self.phase[member], Phase::BackingOff(_));
                    let ran = self.stop(member);
                    let error = match self.stats.last_error[member].clone().filter(|_| backing_off) {
                        Some(e) => e,
                        None => AgentError::Stopped {
                            agent: self.wf.agents[member].id.clone(),
                            reason: format!("group `{}` gave up on it at its barrier", spec.name),
                        },
                    };
                    self.finish(member, AgentStatus::Failed(error), ran);
                }
                self.finish_group(g, false, reason, now);
            }
        }
    }

    /// Re-run the group's unfinished and failed (not unloadable) members
    /// one at a time, in ready order.
    fn fall_back(&mut self, g: usize, unfinished: &[AgentIx], succeeded: usize, now: Instant) {
        let mut rerun: Vec<AgentIx> = self.graph.members[g]
            .iter()
            .copied()
            .filter(|m| {
                unfinished.contains(m)
                    || self.stats.outcome[*m] == Some(Outcome::Failed { load_error: false })
            })
            .collect();
        let order = self.queue.order(self.wf);
        rerun.sort_by_key(|&m| order[m]);
        let listed = listed(self, &rerun);
        let reason = if succeeded == 0 {
            format!("no member completed; re-running {listed} one at a time")
        } else {
            format!("a member failed; re-running {listed} one at a time")
        };
        tracing::warn!(group = %self.wf.groups[g].name, "barrier falls back to sequential execution: {reason}");
        self.record(g, Decision::FallbackSequential, reason, now);
        for &member in &rerun {
            self.stop(member);
            self.stats.outcome[member] = None;
            self.phase[member] = Phase::Deferred;
        }
        let group = &mut self.groups[g];
        group.fallback = rerun.into();
        group.phase = GroupPhase::Sequential;
    }

    fn record(&mut self, g: usize, decision: Decision, reason: String, now: Instant) {
        let at: Duration = self.since_start(now);
        let record = DecisionRecord { group: self.wf.groups[g].name.clone(), decision, reason, at };
        self.groups[g].report.decisions.push(record.clone());
        self.out.push_back(Action::Barrier { group: g, record });
    }

    /// The barrier of group `g` is through. If `ok`, members that did not
    /// succeed are stopped and stand in with their defaults, and the
    /// cross-validation starts; otherwise the group failed.
    fn finish_group(&mut self, g: usize, ok: bool, because: String, now: Instant) {
        let name = &self.wf.groups[g].name;
        if !ok {
            self.groups[g].report.status = GroupStatus::Failed { because };
            self.group_done(g, now);
            return;
        }
        for member in self.not_succeeded(g) {
            if self.stats.outcome[member] == Some(Outcome::Partial) {
                continue; // restored from the journal: its defaults are in already
            }
            let backing_off = matches!(self.phase[member], Phase::BackingOff(_));
            let outcome = self.stats.outcome[member];
            let ran = self.stop(member);
            let (because, error) = match outcome {
                Some(Outcome::Failed { .. }) => (
                    format!("group `{name}` went on without it after it failed"),
                    self.stats.last_error[member].clone(),
                ),
                Some(Outcome::Skipped) => {
                    let why = self.stats.skipped[member].clone().unwrap_or_default();
                    (format!("group `{name}` went on without it ({why})"), None)
                }
                _ => match self.stats.last_error[member].clone().filter(|_| backing_off) {
                    Some(e) => {
                        (format!("group `{name}` went on without it while it waited to retry"), Some(e))
                    }
                    None => (format!("group `{name}` went on without it: it had not finished"), None),
                },
            };
            self.finish(member, AgentStatus::Partial { defaults: Vec::new(), because, error }, ran);
        }
        self.groups[g].report.status = GroupStatus::Succeeded;
        for vi in 0..self.graph.validators[g].len() {
            let validator = self.graph.validators[g][vi];
            for si in 0..self.graph.members[g].len() {
                let subject = self.graph.members[g][si];
                if subject == validator {
                    continue;
                }
                if self.succeeded(validator) && self.succeeded(subject) {
                    self.groups[g].validations_pending += 1;
                    self.queue.push(validator, JobKind::Validate { subject, group: Some(g) }, false);
                } else {
                    let failed = if self.succeeded(validator) { subject } else { validator };
                    let because = format!("`{}` did not succeed", self.wf.agents[failed].id);
                    self.out.push_back(Action::ValidationSkipped {
                        validator,
                        subject,
                        group: Some(g),
                        because,
                    });
                }
            }
        }
        self.groups[g].phase = GroupPhase::Validating;
    }

    fn group_done(&mut self, g: usize, now: Instant) {
        let group = &mut self.groups[g];
        if let Some(because) = group.validation_failed.take() {
            group.report.status = GroupStatus::Failed { because };
        }
        group.phase = GroupPhase::Done;
        group.report.elapsed = group.started.map(|s| now.saturating_duration_since(s));
        let succeeded = group.report.status == GroupStatus::Succeeded;
        self.out.push_back(Action::GroupDone { group: g, succeeded });
        for i in 0..self.graph.members[g].len() {
            self.notify(self.graph.members[g][i], Some(g));
        }
    }
}
