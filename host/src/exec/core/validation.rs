//! Validations: a group's cross-validation (queued when its barrier
//! succeeds) and `validation` needs (queued once validator and subject have
//! both finished for good, their groups included).

use super::groups::GroupPhase;
use super::{Action, AgentIx, Core, JobKind};
use crate::runtime::AgentError;
use crate::workflow::OnFailure;

impl Core<'_> {
    /// Schedule `validation` needs whose validator and subject have both
    /// finished; true if any was scheduled or skipped.
    pub(super) fn schedule_validation_needs(&mut self) -> bool {
        if self.validation_needs.is_empty() {
            return false;
        }
        let (settled, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.validation_needs)
            .into_iter()
            .partition(|&(validator, subject)| self.settled(validator) && self.settled(subject));
        self.validation_needs = waiting;
        let changed = !settled.is_empty();
        for (validator, subject) in settled {
            if self.succeeded(validator) && self.succeeded(subject) {
                self.queue.push(validator, JobKind::Validate { subject, group: None }, false);
            } else {
                let failed = if self.succeeded(validator) { subject } else { validator };
                let because = format!("`{}` did not succeed", self.wf.agents[failed].id);
                self.out.push_back(Action::ValidationSkipped { validator, subject, group: None, because });
            }
        }
        changed
    }

    /// Whether `agent` has finished for good (its group's barrier included).
    fn settled(&self, agent: AgentIx) -> bool {
        self.stats.outcome[agent].is_some()
            && self.graph.group_of[agent]
                .is_none_or(|g| matches!(self.groups[g].phase, GroupPhase::Validating | GroupPhase::Done))
    }

    /// A validation job ended (released, not discarded): `passed` or not.
    /// A group whose cross-validation says `on_failure: fail` fails.
    pub fn validated(&mut self, validator: AgentIx, subject: AgentIx, group: Option<usize>, passed: bool) {
        let Some(g) = group else { return };
        let on_failure =
            self.wf.groups[g].cross_validation.as_ref().map_or(OnFailure::Warn, |cv| cv.on_failure);
        let run = &mut self.groups[g];
        run.validations_pending = run.validations_pending.saturating_sub(1);
        if !passed && on_failure == OnFailure::Fail && run.validation_failed.is_none() {
            let (v, s) = (&self.wf.agents[validator].id, &self.wf.agents[subject].id);
            run.validation_failed = Some(format!("`{v}` did not accept the outputs of `{s}`"));
        }
    }

    pub(super) fn validation_failed_to_start(
        &mut self,
        validator: AgentIx,
        subject: AgentIx,
        group: Option<usize>,
        error: AgentError,
    ) {
        self.validated(validator, subject, group, false);
        self.out.push_back(Action::ValidationError { validator, subject, group, error });
    }
}
