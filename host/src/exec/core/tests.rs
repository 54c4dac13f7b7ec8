//! The scheduling core on its own: workflows from YAML, jobs completed by
//! hand, time passed in. No wasm, no tokio.

use std::time::{Duration, Instant};

use super::*;
use crate::runtime::ReturnedKind;
use crate::workflow::AgentSpec;

pub(super) fn workflow(yaml: &str) -> Workflow {
    Workflow::parse_for_planning(yaml, "workflow.yaml").expect("the test workflow parses")
}

/// Drives a core: records what it decided, completes jobs on request.
pub(super) struct Sim<'w> {
    pub core: Core<'w>,
    pub wf: &'w Workflow,
    pub now: Instant,
    /// Running jobs: (job, agent, kind, aborted).
    pub running: Vec<(JobId, AgentIx, JobKind, bool)>,
    /// Every decision, as text.
    pub log: Vec<String>,
    /// Each agent's last finish.
    pub status: Vec<Option<AgentStatus>>,
    pub finishes: Vec<u32>,
    pub version: u64,
    pub groups_done: Vec<bool>,
    /// Broken invariants seen (must stay empty).
    pub violations: Vec<String>,
    /// Starts after the agent's last finish.
    pub started_after_finish: Vec<bool>,
}

impl<'w> Sim<'w> {
    pub fn new(wf: &'w Workflow) -> Self {
        Self::with_cache(wf, false)
    }

    /// With `lookups`, every agent queued asks the cache first (which misses).
    pub fn with_cache(wf: &'w Workflow, lookups: bool) -> Self {
        let now = Instant::now();
        let n = wf.agents.len();
        let mut sim = Self {
            core: Core::new(wf, "run".into(), now, lookups),
            wf,
            now,
            running: Vec::new(),
            log: Vec::new(),
            status: vec![None; n],
            finishes: vec![0; n],
            version: 0,
            groups_done: vec![false; wf.groups.len()],
            violations: Vec::new(),
            started_after_finish: vec![false; n],
        };
        sim.drive();
        sim
    }

    pub fn ix(&self, id: &str) -> AgentIx {
        self.wf.agents.iter().position(|a| a.id == id).expect("the agent exists")
    }

    fn id(&self, agent: AgentIx) -> &str {
        &self.wf.agents[agent].id
    }

    pub fn drive(&mut self) {
        loop {
            self.core.step(self.now);
            let mut acted = false;
            while let Some(action) = self.core.next_action() {
                acted = true;
                self.apply(action);
            }
            if !acted {
                break;
            }
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Start { job, agent, kind, exclusive, .. } => {
                let x = if exclusive { " alone" } else { "" };
                match kind {
                    JobKind::Run => self.log.push(format!("start {}{x}", self.id(agent))),
                    JobKind::Validate { subject, .. } => {
                        self.log.push(format!("validate {} by {}", self.id(subject), self.id(agent)));
                    }
                }
                self.check_start(agent, kind, exclusive);
                self.running.push((job, agent, kind, false));
            }
            Action::Abort(job) => {
                if let Some(r) = self.running.iter_mut().find(|r| r.0 == job) {
                    r.3 = true;
                }
            }
            Action::Lookup(agent) => self.core.cache_answered(agent, None),
            Action::Finish { agent, status, .. } => {
                let word = match &status {
                    AgentStatus::Succeeded { .. } => "succeeded".to_owned(),
                    AgentStatus::Partial { .. } => "partial".to_owned(),
                    AgentStatus::Failed(_) => "failed".to_owned(),
                    AgentStatus::Skipped { because } => format!("skipped ({because})"),
                    AgentStatus::Cancelled => "cancelled".to_owned(),
                };
                self.log.push(format!("{} {word}", self.id(agent)));
                self.finishes[agent] += 1;
                self.status[agent] = Some(status);
            }
            Action::Barrier { group, record } => {
                self.log.push(format!("barrier {} {}", self.wf.groups[group].name, record.decision.name()));
            }
            Action::Retrying { agent, attempt, .. } => {
                self.log.push(format!("retry {} #{attempt}", self.id(agent)))
            }
            Action::ValidationSkipped { validator, subject, .. } => {
                self.log.push(format!(
                    "validation of {} by {} skipped",
                    self.id(subject),
                    self.id(validator)
                ));
            }
            Action::GroupDone { group, .. } => self.groups_done[group] = true,
            Action::Queued(_)
            | Action::Stopped(_)
            | Action::GroupStarted(_)
            | Action::GroupTimedOut { .. }
            | Action::ValidationError { .. } => {}
        }
    }

    /// The invariants of ARCHITECTURE.md at a job's start: a dependent
    /// never starts before its data needs committed (a need in another
    /// group: before that group is done); the pool's limits hold.
    fn check_start(&mut self, agent: AgentIx, kind: JobKind, exclusive: bool) {
        let spec = &self.wf.agents[agent];
        if kind == JobKind::Run {
            if self.status[agent].is_some() {
                self.started_after_finish[agent] = true;
            }
            for need in spec.blocking_needs() {
                let n = self.ix(need);
                let usable = self.status[n].as_ref().is_some_and(AgentStatus::is_usable);
                let other_group =
                    self.core.graph.group_of[n].filter(|g| Some(*g) != self.core.graph.group_of[agent]);
                if !usable || other_group.is_some_and(|g| !self.groups_done[g]) {
                    self.violations.push(format!("{} started before its need {need} committed", spec.id));
                }
            }
        }
        let r = &self.wf.resources;
        let running: Vec<&AgentSpec> = self.running.iter().map(|j| &self.wf.agents[j.1]).collect();
        if exclusive && !running.is_empty() {
            self.violations.push(format!("{} started alone beside {} jobs", spec.id, running.len()));
        }
        let cpu: u32 = running.iter().map(|a| a.cpu).sum::<u32>() + spec.cpu;
        let memory: u32 = running.iter().map(|a| a.memory).sum::<u32>() + spec.memory;
        let cpu_capacity = ((f64::from(r.cpu) * r.cpu_oversubscription).floor() as u32).max(r.cpu);
        if !exclusive
            && (running.len() as u32 >= r.max_concurrent.max(1) || cpu > cpu_capacity || memory > r.memory)
        {
            self.violations.push(format!("{} started over the pool's limits", spec.id));
        }
    }

    /// The running job of `agent` ends: `Ok` commits, `Err` fails the attempt.
    pub fn end(&mut self, agent: &str, result: Result<(), AgentError>) {
        let agent = self.ix(agent);
        let i = self.running.iter().position(|r| r.1 == agent).expect("the agent runs");
        self.end_job(i, result);
    }

    pub fn end_job(&mut self, i: usize, result: Result<(), AgentError>) {
        let (job, agent, kind, _) = self.running.remove(i);
        let released = self.core.release(job).expect("the core knows the job");
        if !released.discard {
            match kind {
                JobKind::Run => {
                    let result = result.map(|()| {
                        self.version += 1;
                        (self.version, Vec::new())
                    });
                    self.core.completed(agent, result, self.now);
                }
                JobKind::Validate { subject, group } => {
                    self.core.validated(agent, subject, group, result.is_ok())
                }
            }
        }
        self.drive();
    }

    pub fn running_ids(&self) -> Vec<&str> {
        self.running.iter().filter(|r| r.2 == JobKind::Run).map(|r| self.id(r.1)).collect()
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        self.core.timers(now, |_| Some(now));
        self.drive();
    }
}

pub(super) fn failure(agent: &str) -> AgentError {
    AgentError::Returned {
        agent: agent.into(),
        kind: ReturnedKind::Failed,
        message: "no".into(),
        missing_need: None,
    }
}

const POOL: &str = "resources: {cpu: 100, memory: 100, max_concurrent: 1}\n";

#[test]
fn a_dependent_starts_only_after_its_need_commits() {
    let wf = workflow("agents:\n  a: {component: a.wasm}\n  b: {component: b.wasm, needs: [a]}\n");
    let mut sim = Sim::new(&wf);
    assert_eq!(sim.running_ids(), ["a"]);
    sim.end("a", Ok(()));
    assert_eq!(sim.running_ids(), ["b"]);
    sim.end("b", Ok(()));
    assert!(sim.core.is_idle());
    assert_eq!(sim.log, ["start a", "a succeeded", "start b", "b succeeded"]);
}

#[test]
fn the_queue_serves_priority_then_file_order_and_the_head_waits_until_it_fits() {
    let wf = workflow(&format!(
        "{POOL}agents:\n  low: {{component: x.wasm, priority: 1}}\n  high: {{component: x.wasm, priority: 9}}\n  mid: {{component: x.wasm, priority: 5}}\n"
    ));
    let mut sim = Sim::new(&wf);
    assert_eq!(sim.running_ids(), ["high"]);
    sim.end("high", Ok(()));
    assert_eq!(sim.running_ids(), ["mid"]);
    sim.end("mid", Ok(()));
    assert_eq!(sim.running_ids(), ["low"]);
}

#[test]
fn a_large_head_is_not_overtaken() {
    let wf = workflow(
        "resources: {cpu: 100, memory: 100, max_concurrent: 4}\nagents:\n  small: {component: x.wasm, priority: 9, resources: {cpu: 10, memory: 60}}\n  big: {component: x.wasm, priority: 5, resources: {cpu: 10, memory: 60}}\n  tiny: {component: x.wasm, priority: 1, resources: {cpu: 10, memory: 10}}\n",
    );
    let mut sim = Sim::new(&wf);
    // `tiny` would fit beside `small`, but `big` is ahead of it and does not.
    assert_eq!(sim.running_ids(), ["small"]);
    sim.end("small", Ok(()));
    assert_eq!(sim.running_ids(), ["big", "tiny"]);
}

#[test]
fn a_failure_skips_its_dependents_and_names_the_cause() {
    let wf = workflow(
        "agents:\n  a: {component: a.wasm}\n  b: {component: b.wasm, needs: [a]}\n  c: {component: c.wasm, needs: [b]}\n",
    );
    let mut sim = Sim::new(&wf);
    sim.end("a", Err(failure("a")));
    assert_eq!(
        sim.log,
        [
            "start a",
            "a failed",
            "b skipped (it needs `a`, which failed)",
            "c skipped (it needs `b`, which was skipped)"
        ]
    );
    assert!(sim.core.is_idle());
}

#[test]
fn a_retryable_failure_backs_off_then_runs_again() {
    let wf =
        workflow("agents:\n  a: {component: a.wasm, retry: {attempts: 3, backoff: 1s, max_backoff: 1s}}\n");
    let mut sim = Sim::new(&wf);
    sim.end("a", Err(failure("a")));
    assert!(sim.running.is_empty());
    let wake = sim.core.next_timer().expect("a backoff is pending");
    assert!(wake > sim.now && wake <= sim.now + Duration::from_secs(1));
    assert!(!sim.core.is_idle());
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.running_ids(), ["a"]);
    sim.end("a", Err(failure("a")));
    sim.advance(Duration::from_secs(2));
    sim.end("a", Err(failure("a")));
    assert_eq!(sim.log, ["start a", "retry a #2", "start a", "retry a #3", "start a", "a failed"]);
    assert_eq!(sim.core.attempts(sim.ix("a")), 3);
}

#[test]
fn an_error_that_cannot_be_cured_is_not_retried() {
    let wf = workflow("agents:\n  a: {component: a.wasm, retry: {attempts: 3, backoff: 1s}}\n");
    let mut sim = Sim::new(&wf);
    sim.end("a", Err(AgentError::Stopped { agent: "a".into(), reason: "test".into() }));
    assert_eq!(sim.log, ["start a", "a failed"]);
}

const GROUP: &str = "agents:
  a: {component: a.wasm}
  x: {component: x.wasm, needs: [a]}
  y: {component: y.wasm, needs: [a], defaults: {y.v: 1}}
  after: {component: z.wasm, needs: [x]}
groups:
  pair:
    agents: [x, y]
";

#[test]
fn a_group_starts_together_and_its_dependents_wait_for_the_barrier() {
    let wf = workflow(GROUP);
    let mut sim = Sim::new(&wf);
    sim.end("a", Ok(()));
    assert_eq!(sim.running_ids(), ["x", "y"]);
    sim.end("x", Ok(()));
    // `after` needs only `x`, but `x` is in a group that is not done.
    assert_eq!(sim.running_ids(), ["y"]);
    sim.end("y", Ok(()));
    assert_eq!(sim.running_ids(), ["after"]);
    assert!(sim.log.contains(&"barrier pair all_completed".to_owned()), "{:?}", sim.log);
}

#[test]
fn a_barrier_continues_with_partial_and_the_member_stands_in_with_defaults() {
    let wf = workflow(&GROUP.replace(
        "    agents: [x, y]\n",
        "    agents: [x, y]\n    barrier: {success: at_least_one, on_timeout: [continue_with_partial]}\n",
    ));
    let mut sim = Sim::new(&wf);
    sim.end("a", Ok(()));
    sim.end("y", Err(failure("y")));
    sim.end("x", Ok(()));
    let y = sim.ix("y");
    assert!(matches!(sim.status[y], Some(AgentStatus::Partial { .. })), "{:?}", sim.status[y]);
    assert_eq!(sim.finishes[y], 2, "failed, then partial");
    assert_eq!(sim.running_ids(), ["after"]);
}

#[test]
fn a_barrier_timeout_falls_back_to_running_members_one_at_a_time() {
    let wf = workflow(&GROUP.replace(
        "    agents: [x, y]\n",
        "    agents: [x, y]\n    barrier: {timeout: 10s, on_timeout: [fallback_sequential]}\n",
    ));
    let mut sim = Sim::new(&wf);
    sim.end("a", Ok(()));
    assert_eq!(sim.running_ids(), ["x", "y"]);
    sim.advance(Duration::from_secs(11));
    // Both were stopped; their jobs come back discarded, then each runs alone.
    assert!(sim.running.iter().all(|r| r.3), "both aborted: {:?}", sim.running);
    sim.end_job(0, Ok(()));
    assert!(sim.running_ids().len() == 1, "the fallback waits for the pool to empty");
    sim.end_job(0, Ok(()));
    assert_eq!(sim.running_ids(), ["x"], "{:?}", sim.log);
    assert!(sim.log.last().is_some_and(|l| l == "start x alone"), "{:?}", sim.log);
    sim.end("x", Ok(()));
    assert_eq!(sim.running_ids(), ["y"]);
    sim.end("y", Ok(()));
    assert_eq!(sim.running_ids(), ["after"]);
}

#[test]
fn a_group_that_fails_skips_the_dependents_of_its_members() {
    let wf = workflow(
        &GROUP.replace("    agents: [x, y]\n", "    agents: [x, y]\n    barrier: {on_timeout: []}\n"),
    );
    let mut sim = Sim::new(&wf);
    sim.end("a", Ok(()));
    sim.end("x", Ok(()));
    sim.end("y", Err(failure("y")));
    let after = sim.ix("after");
    assert!(
        matches!(&sim.status[after], Some(AgentStatus::Skipped { because }) if because.contains("group `pair` did not succeed")),
        "{:?}",
        sim.status[after]
    );
}

#[test]
fn cross_validation_runs_after_the_barrier_and_can_fail_the_group() {
    let wf = workflow(&GROUP.replace(
        "    agents: [x, y]\n",
        "    agents: [x, y]\n    cross_validation: {validators: [x], on_failure: fail}\n",
    ));
    let mut sim = Sim::new(&wf);
    sim.end("a", Ok(()));
    sim.end("x", Ok(()));
    sim.end("y", Ok(()));
    assert!(sim.log.last().is_some_and(|l| l == "validate y by x"), "{:?}", sim.log);
    let i =
        sim.running.iter().position(|r| matches!(r.2, JobKind::Validate { .. })).expect("validation runs");
    sim.end_job(i, Err(failure("x")));
    let after = sim.ix("after");
    assert!(matches!(sim.status[after], Some(AgentStatus::Skipped { .. })), "{:?}", sim.log);
}

#[test]
fn a_validation_need_runs_once_both_agents_finished() {
    let wf = workflow(
        "agents:\n  a: {component: a.wasm}\n  b: {component: b.wasm, needs: [a]}\n  v: {component: v.wasm, needs: [{agent: b, kind: validation}]}\n",
    );
    let mut sim = Sim::new(&wf);
    assert_eq!(sim.running_ids(), ["a", "v"]);
    sim.end("v", Ok(()));
    sim.end("a", Ok(()));
    sim.end("b", Ok(()));
    assert!(sim.log.contains(&"validate b by v".to_owned()), "{:?}", sim.log);
}

#[test]
fn halting_aborts_running_jobs_and_cancels_the_rest() {
    let wf = workflow("agents:\n  a: {component: a.wasm}\n  b: {component: b.wasm, needs: [a]}\n");
    let mut sim = Sim::new(&wf);
    sim.core.halt();
    sim.drive();
    assert!(sim.running.iter().all(|r| r.3));
    sim.end_job(0, Ok(()));
    assert_eq!(sim.log, ["start a", "a cancelled", "b cancelled"]);
    assert!(sim.core.is_idle());
}

#[test]
fn a_cache_hit_finishes_the_agent_without_a_job() {
    let wf = workflow("agents:\n  a: {component: a.wasm}\n  b: {component: b.wasm, needs: [a]}\n");
    let mut core = Core::new(&wf, "run".into(), Instant::now(), true);
    core.step(Instant::now());
    let mut finished = Vec::new();
    for _ in 0..4 {
        while let Some(action) = core.next_action() {
            match action {
                Action::Lookup(agent) => core.cache_answered(agent, Some((1, Vec::new()))),
                Action::Finish { agent, .. } => finished.push(agent),
                Action::Start { .. } => panic!("nothing should run"),
                _ => {}
            }
        }
        core.step(Instant::now());
    }
    assert_eq!(finished, [0, 1]);
    assert!(core.is_idle());
}

#[test]
fn a_lookup_answered_after_the_barrier_stopped_the_agent_is_ignored() {
    // `x`'s retry backoff (5 to 10 s) and its group's deadline (10 s) end
    // in the same timer firing: `x` is queued (asking the cache), then the
    // barrier gives up on it before the cache answers.
    let wf = workflow(
        "agents:\n  x: {component: x.wasm, retry: {attempts: 3, backoff: 10s, max_backoff: 10s}}\n  y: {component: y.wasm}\ngroups:\n  g: {agents: [x, y], barrier: {timeout: 10s, on_timeout: []}}\n",
    );
    let mut sim = Sim::with_cache(&wf, true);
    assert_eq!(sim.running_ids(), ["x", "y"]);
    sim.end("x", Err(failure("x")));
    sim.advance(Duration::from_secs(11));
    let x = sim.ix("x");
    assert!(matches!(sim.status[x], Some(AgentStatus::Failed(_))), "{:?}", sim.log);
    assert!(!sim.started_after_finish[x], "x ran again after the barrier gave up on it: {:?}", sim.log);
    assert!(sim.running.iter().all(|r| r.3), "only aborted jobs are left: {:?}", sim.log);
}
