//! The ready queue and admission to the resource pool.
//!
//! The queue serves the highest priority first, then the longest remaining
//! path (both from the plan), then file order; a sequential fallback's job
//! goes before all and waits for the pool to empty. The head waits until it
//! fits: later jobs do not overtake it (as the planner's makespan model
//! assumes).

use std::sync::Arc;

use super::{Action, AgentIx, Core, JobKind, Phase, Running};
use crate::runtime::AgentError;

#[derive(Debug, Clone, Copy)]
struct Queued {
    agent: AgentIx,
    kind: JobKind,
    /// Its agent's place in the ready order (`usize::MAX` until the order
    /// is worked out: a chain never needs it).
    rank: usize,
    /// Runs alone with the whole pool (a sequential fallback).
    exclusive: bool,
    seq: u64,
}

#[derive(Debug, Default)]
pub(super) struct Queue {
    jobs: Vec<Queued>,
    seq: u64,
    /// Each agent's place in the ready order, taken the first time two jobs
    /// wait at once or a sequential fallback orders its members (worked out
    /// once per workflow: see [`ready_order`]).
    order: Option<Arc<[usize]>>,
}

impl Queue {
    pub(super) fn push(&mut self, agent: AgentIx, kind: JobKind, exclusive: bool) {
        self.seq += 1;
        let rank = self.order.as_ref().map_or(usize::MAX, |order| order[agent]);
        self.jobs.push(Queued { agent, kind, rank, exclusive, seq: self.seq });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.jobs.clear();
    }

    /// Whether `agent`'s run job is in the queue.
    pub(super) fn holds_run(&self, agent: AgentIx) -> bool {
        self.jobs.iter().any(|q| q.agent == agent && q.kind == JobKind::Run)
    }

    /// Drop `agent`'s queued run job.
    pub(super) fn remove_run(&mut self, agent: AgentIx) {
        self.jobs.retain(|q| !(q.agent == agent && q.kind == JobKind::Run));
    }

    /// Each agent's place in the ready order, worked out at the first need.
    pub(super) fn order(&mut self, workflow: &crate::workflow::Workflow) -> &[usize] {
        let jobs = &mut self.jobs;
        self.order.get_or_insert_with(|| {
            let kept = workflow.ready_order.get_or_init(|| ready_order(workflow).into()).clone();
            // A copy changed after its first run keeps the order of before:
            // worked out again if it no longer fits.
            let order = if kept.len() == workflow.agents.len() { kept } else { ready_order(workflow).into() };
            for queued in jobs {
                queued.rank = order[queued.agent];
            }
            order
        })
    }
}

/// Each agent's place in the ready queue: priority (highest first), then
/// longest remaining path, then file order. A plan computation (it costs
/// more than scheduling a few hundred agents), so kept with the workflow.
fn ready_order(workflow: &crate::workflow::Workflow) -> Vec<usize> {
    let keys = crate::plan::ready_keys(workflow);
    let mut ranked: Vec<usize> = (0..workflow.agents.len()).collect();
    ranked.sort_by_key(|&i| {
        let (priority, remaining) = keys.get(i).copied().unwrap_or_default();
        (std::cmp::Reverse(priority), std::cmp::Reverse(remaining), i)
    });
    let mut order = vec![0; ranked.len()];
    for (rank, agent) in ranked.into_iter().enumerate() {
        order[agent] = rank;
    }
    order
}

impl Core<'_> {
    /// Admit queued jobs in order while they fit. True if a job could not
    /// start and was finished as failed (which can settle more).
    pub(super) fn admit(&mut self) -> bool {
        let mut failed = false;
        if self.queue.jobs.len() > 1 {
            self.queue.order(self.wf);
            self.queue.jobs.sort_by_key(|q| (!q.exclusive, q.rank, q.seq));
        }
        // Always look at the head: each pass admits it, fails it, or stops.
        while let Some(&head) = self.queue.jobs.first() {
            let agent = &self.wf.agents[head.agent];
            if let Some(error) = self.stats.unusable[head.agent].clone() {
                self.queue.jobs.remove(0);
                self.failed_to_start(head.agent, head.kind, error);
                failed = true;
                continue;
            }
            if head.exclusive {
                if self.pool.is_idle() {
                    self.queue.jobs.remove(0);
                    self.pool.acquire_all();
                    self.start(head);
                }
                // Nothing overtakes a sequential fallback.
                return failed;
            }
            if !self.pool.fits(agent) {
                if self.pool.is_idle() {
                    // Only a workflow built in code can get here: the file
                    // check refuses agents larger than the pool.
                    self.queue.jobs.remove(0);
                    let error = AgentError::Host {
                        agent: agent.id.clone(),
                        message: format!(
                            "it needs {} cpu and {} memory units, more than the whole pool has",
                            agent.cpu, agent.memory
                        ),
                    };
                    self.failed_to_start(head.agent, head.kind, error);
                    failed = true;
                    continue;
                }
                return failed;
            }
            self.queue.jobs.remove(0);
            self.pool.acquire(agent);
            self.start(head);
        }
        failed
    }

    fn start(&mut self, queued: Queued) {
        self.next_job += 1;
        let id = self.next_job;
        let agent = queued.agent;
        let attempt = match queued.kind {
            JobKind::Run => {
                self.stats.attempts[agent] += 1;
                self.phase[agent] = Phase::Running;
                self.stats.attempts[agent]
            }
            JobKind::Validate { .. } => self.stats.attempts[agent].max(1),
        };
        self.running.push(Running {
            id,
            agent,
            kind: queued.kind,
            exclusive: queued.exclusive,
            discard: false,
        });
        self.out.push_back(Action::Start {
            job: id,
            agent,
            kind: queued.kind,
            exclusive: queued.exclusive,
            attempt,
            pool: self.pool.usage(),
        });
    }

    fn failed_to_start(&mut self, agent: AgentIx, kind: JobKind, error: AgentError) {
        match kind {
            JobKind::Run => self.finish(agent, crate::exec::AgentStatus::Failed(error), false),
            JobKind::Validate { subject, group } => {
                self.validation_failed_to_start(agent, subject, group, error)
            }
        }
    }
}
