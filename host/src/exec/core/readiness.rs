//! Readiness: which waiting agents can be queued, and which can never run.
//!
//! Each waiting agent counts its unmet blocking needs (counted at the first
//! settle: a resumed run has restored its agents by then); a finishing agent
//! (or group) decrements its dependents' counts, so settling costs what
//! changed, not the workflow's size.

use std::collections::VecDeque;
use std::time::Instant;

use super::groups::GroupPhase;
use super::{AgentIx, Core, JobKind, Phase, UNKNOWN};
use crate::exec::report::GroupStatus;

#[derive(Debug)]
pub(super) struct Readiness {
    /// Per waiting agent, how many blocking needs are not met yet.
    unmet: Vec<u32>,
    counted: bool,
    /// Waiting agents to look at again: their last need was met, or one failed.
    dirty: VecDeque<AgentIx>,
}

impl Readiness {
    pub(super) fn new(agents: usize) -> Self {
        Self { unmet: vec![0; agents], counted: false, dirty: VecDeque::new() }
    }

    /// Whether `agent` has no unmet need (once counted).
    pub(super) fn unblocked(&self, agent: AgentIx) -> bool {
        self.counted && self.unmet[agent] == 0
    }
}

/// Whether one blocking need is met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NeedState {
    Met,
    Pending,
    Blocked(String),
}

impl Core<'_> {
    /// Settle everything that can be settled without waiting: skip agents
    /// that cannot run, queue those that can, start and decide groups,
    /// schedule validations. Repeats until nothing changes.
    pub(super) fn settle(&mut self, now: Instant) {
        if !self.ready.counted {
            self.count_unmet();
        }
        loop {
            let mut changed = false;
            while let Some(agent) = self.ready.dirty.pop_front() {
                if self.phase[agent] != Phase::Waiting {
                    continue;
                }
                match self.readiness(agent) {
                    NeedState::Blocked(because) => {
                        self.finish(agent, crate::exec::AgentStatus::Skipped { because }, false);
                        changed = true;
                    }
                    NeedState::Met if self.graph.group_of[agent].is_none() => {
                        self.enqueue(agent, false);
                        changed = true;
                    }
                    NeedState::Met | NeedState::Pending => {}
                }
            }
            for g in 0..self.groups.len() {
                changed |= self.step_group(g, now);
            }
            changed |= self.schedule_validation_needs();
            if !changed {
                break;
            }
        }
    }

    fn count_unmet(&mut self) {
        self.ready.counted = true;
        for agent in 0..self.phase.len() {
            if self.phase[agent] != Phase::Waiting {
                continue;
            }
            let mut unmet = 0;
            let mut blocked = false;
            for i in 0..self.graph.needs[agent].len() {
                match self.need_state(agent, self.graph.needs[agent][i]) {
                    NeedState::Met => {}
                    NeedState::Pending => unmet += 1,
                    NeedState::Blocked(_) => blocked = true,
                }
            }
            self.ready.unmet[agent] = unmet;
            if unmet == 0 || blocked {
                self.ready.dirty.push_back(agent);
            }
        }
    }

    /// The need of `finished`'s dependents on it may be met now (`group`:
    /// `finished` is a member of that group, which is done).
    pub(super) fn notify(&mut self, finished: AgentIx, group: Option<usize>) {
        if !self.ready.counted {
            return;
        }
        let need_group = self.graph.group_of[finished];
        // The need's state depends on the dependent only through its group:
        // worked out once per group, not once per dependent.
        let mut states: Vec<(Option<usize>, NeedState)> = Vec::new();
        let dependents = std::mem::take(&mut self.graph.dependents[finished]);
        for &agent in &dependents {
            if self.phase[agent] != Phase::Waiting {
                continue;
            }
            let own_group = self.graph.group_of[agent];
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
                    let unmet = &mut self.ready.unmet[agent];
                    *unmet = unmet.saturating_sub(1);
                    if *unmet == 0 {
                        self.ready.dirty.push_back(agent);
                    }
                }
                NeedState::Blocked(_) => self.ready.dirty.push_back(agent),
                NeedState::Pending => {}
            }
        }
        self.graph.dependents[finished] = dependents;
    }

    /// Whether all of `agent`'s blocking needs are met (`Met`), some are
    /// not yet (`Pending`), or one never will be (`Blocked`).
    fn readiness(&self, agent: AgentIx) -> NeedState {
        let mut pending = false;
        for &need in &self.graph.needs[agent] {
            match self.need_state(agent, need) {
                NeedState::Met => {}
                NeedState::Pending => pending = true,
                blocked @ NeedState::Blocked(_) => return blocked,
            }
        }
        if pending { NeedState::Pending } else { NeedState::Met }
    }

    /// Whether `agent`'s blocking need on `need` is met.
    fn need_state(&self, agent: AgentIx, need: AgentIx) -> NeedState {
        if need == UNKNOWN {
            return NeedState::Pending;
        }
        let own_group = self.graph.group_of[agent];
        let name = &self.wf.agents[need].id;
        if let Some(g) = self.graph.group_of[need].filter(|g| Some(*g) != own_group) {
            let group = &self.groups[g];
            if group.phase != GroupPhase::Done {
                return NeedState::Pending;
            }
            if group.report.status != GroupStatus::Succeeded {
                return NeedState::Blocked(format!(
                    "it needs `{name}`, whose group `{}` did not succeed",
                    group.report.group
                ));
            }
        }
        use super::Outcome;
        match self.stats.outcome[need] {
            None => NeedState::Pending,
            Some(outcome) if outcome.usable() => NeedState::Met,
            Some(Outcome::Failed { .. }) => NeedState::Blocked(format!("it needs `{name}`, which failed")),
            Some(Outcome::Cancelled) => NeedState::Blocked(format!("it needs `{name}`, which was cancelled")),
            Some(_) => NeedState::Blocked(format!("it needs `{name}`, which was skipped")),
        }
    }

    /// Put a run job of `agent` in the ready queue (`exclusive`: alone with
    /// the whole pool), asking the cache first when there is one.
    pub(super) fn enqueue(&mut self, agent: AgentIx, exclusive: bool) {
        self.phase[agent] = Phase::Queued;
        self.out.push_back(super::Action::Queued(agent));
        if self.lookups && !exclusive {
            self.out.push_back(super::Action::Lookup(agent));
        } else {
            self.queue.push(agent, JobKind::Run, exclusive);
        }
    }
}
