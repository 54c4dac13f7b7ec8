//! The smart barrier's decision, as a pure function of what the group's
//! members did: the executor gathers the facts, this decides.
//!
//! The barrier decides when every member has finished, or when the group's
//! timeout passes. If every member succeeded, there is nothing to decide.
//! Otherwise the strategies of `on_timeout` are tried in order and the first
//! that applies decides:
//!
//! - `extend_timeout { by, count }` applies on a timeout when fewer than
//!   `count` extensions were granted and every member still running reported
//!   progress within the barrier's `progress_window`;
//! - `continue_with_partial` applies when the success criterion holds for the
//!   members that succeeded (`all` cannot hold while one did not);
//! - `fallback_sequential` applies when no member succeeded, or when a member
//!   failed (a critical error, as opposed to being slow), and a member can be
//!   run again (a member whose component cannot load cannot).
//!
//! If none applies, a group whose members all finished succeeds by its
//! criterion alone, and a group that timed out fails.

use std::time::Duration;

use crate::workflow::{Barrier, Success, TimeoutStrategy};

/// What the members of a group did, when the barrier decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// Members of the group.
    pub members: usize,
    /// Members that succeeded.
    pub succeeded: usize,
    /// Members that failed for good (retries spent). Skipped members are neither.
    pub failed: usize,
    /// Members still queued, running or waiting out a retry backoff.
    pub running: usize,
    /// Whether every running member reported progress within the window.
    pub running_progressed: bool,
    /// Members a sequential fallback could run again: running, or failed
    /// with an error another attempt could cure (not an unusable component).
    pub rerunnable: usize,
    /// Whether the barrier's timeout has passed.
    pub timed_out: bool,
    /// How often the timeout was extended so far.
    pub extensions: u32,
}

/// What the barrier does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every member succeeded.
    AllCompleted,
    /// Wait this much longer.
    Extend(Duration),
    /// Go on with what completed: stragglers stopped, defaults filled.
    ContinueWithPartial,
    /// Re-run the members that did not succeed one at a time.
    FallbackSequential,
    /// The success criterion holds; failed members get their defaults.
    CriterionMet,
    /// The group failed.
    Failed,
}

/// Whether `succeeded` of `members` meet the group's success criterion.
pub fn criterion_holds(success: Success, succeeded: usize, members: usize) -> bool {
    match success {
        Success::All => succeeded == members,
        Success::AtLeastOne => succeeded >= 1,
    }
}

/// What the barrier does, given the facts: the first strategy that applies, in the order the workflow lists them.
pub fn decide(barrier: &Barrier, f: Facts) -> Verdict {
    if f.succeeded == f.members {
        return Verdict::AllCompleted;
    }
    for strategy in &barrier.on_timeout {
        match *strategy {
            TimeoutStrategy::ExtendTimeout { by, count } => {
                if f.timed_out && f.running > 0 && f.running_progressed && f.extensions < count {
                    return Verdict::Extend(by);
                }
            }
            TimeoutStrategy::ContinueWithPartial => {
                if criterion_holds(barrier.success, f.succeeded, f.members) {
                    return Verdict::ContinueWithPartial;
                }
            }
            TimeoutStrategy::FallbackSequential => {
                if (f.succeeded == 0 || f.failed > 0) && f.rerunnable > 0 {
                    return Verdict::FallbackSequential;
                }
            }
        }
    }
    if !f.timed_out && criterion_holds(barrier.success, f.succeeded, f.members) {
        Verdict::CriterionMet
    } else {
        Verdict::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn barrier(success: Success, on_timeout: Vec<TimeoutStrategy>) -> Barrier {
        Barrier { timeout: Some(Duration::from_secs(1)), success, on_timeout, ..Barrier::default() }
    }

    const EXTEND: TimeoutStrategy = TimeoutStrategy::ExtendTimeout { by: Duration::from_secs(5), count: 1 };

    fn seed() -> Barrier {
        barrier(
            Success::AtLeastOne,
            vec![EXTEND, TimeoutStrategy::ContinueWithPartial, TimeoutStrategy::FallbackSequential],
        )
    }

    fn timed_out(succeeded: usize, running: usize, progressed: bool) -> Facts {
        Facts {
            members: 2,
            succeeded,
            failed: 2 - succeeded - running,
            running,
            running_progressed: progressed,
            rerunnable: 2 - succeeded,
            timed_out: true,
            extensions: 0,
        }
    }

    #[test]
    fn the_seed_barrier_in_each_situation() {
        let b = seed();
        assert_eq!(decide(&b, timed_out(1, 1, true)), Verdict::Extend(Duration::from_secs(5)));
        assert_eq!(
            decide(&b, Facts { extensions: 1, ..timed_out(1, 1, true) }),
            Verdict::ContinueWithPartial
        );
        assert_eq!(decide(&b, timed_out(1, 1, false)), Verdict::ContinueWithPartial);
        assert_eq!(decide(&b, timed_out(0, 2, false)), Verdict::FallbackSequential);
        let all_done = Facts { timed_out: false, running: 0, ..timed_out(2, 0, false) };
        assert_eq!(decide(&b, all_done), Verdict::AllCompleted);
    }

    #[test]
    fn criterion_all_never_continues_with_partial() {
        let b = barrier(Success::All, vec![TimeoutStrategy::ContinueWithPartial]);
        assert_eq!(decide(&b, timed_out(1, 1, true)), Verdict::Failed);
    }

    #[test]
    fn a_failure_is_a_critical_error_but_slowness_is_not() {
        let b = barrier(Success::All, vec![TimeoutStrategy::FallbackSequential]);
        let one_failed = Facts { timed_out: false, running: 0, failed: 1, ..timed_out(1, 0, false) };
        assert_eq!(decide(&b, one_failed), Verdict::FallbackSequential);
        assert_eq!(decide(&b, timed_out(1, 1, true)), Verdict::Failed);
    }

    #[test]
    fn without_strategies_finished_groups_go_by_their_criterion() {
        let b = barrier(Success::AtLeastOne, Vec::new());
        let one_failed = Facts { timed_out: false, running: 0, failed: 1, ..timed_out(1, 0, false) };
        assert_eq!(decide(&b, one_failed), Verdict::CriterionMet);
        assert_eq!(decide(&b, Facts { succeeded: 0, failed: 2, ..one_failed }), Verdict::Failed);
    }

    #[test]
    fn nothing_to_rerun_means_no_fallback() {
        let b = barrier(Success::All, vec![TimeoutStrategy::FallbackSequential]);
        let skipped =
            Facts { rerunnable: 0, timed_out: false, running: 0, failed: 0, ..timed_out(1, 0, false) };
        assert_eq!(decide(&b, skipped), Verdict::Failed);
    }
}
