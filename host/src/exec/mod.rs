//! Running a workflow: load the components, start agents as their needs
//! commit, commit what succeeds, skip what cannot run.
//!
//! An agent becomes ready once every agent it `data`-needs has committed; the
//! ready queue serves the highest priority first, then the longest remaining
//! path (both from the plan), and an agent starts only when its cpu and memory
//! units and a slot fit the [`ResourcePool`]. Barriers and retries grow here.
//!
//! Architecture invariant: an agent's writes are committed atomically, before
//! any agent that needs it starts; an agent never sees uncommitted writes.

mod pool;
mod report;

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::task::JoinSet;

pub use pool::ResourcePool;
pub use report::{AgentReport, AgentStatus, RunReport};

use crate::context::{ContextStore, Ownership};
use crate::observe::{Event, EventSink};
use crate::runtime::{
    AgentCall, AgentComponent, AgentError, AgentOutput, Limits, Runtime, RuntimeConfig, RuntimeError,
};
use crate::workflow::{AgentSpec, Workflow};

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run's id; generated when `None`.
    pub run_id: Option<String>,
    /// Where events go; subscribe before the run starts to see them all.
    pub events: EventSink,
}

/// The engine of a process: one wasmtime runtime, shared by every run.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    runtime: Runtime,
}

impl Engine {
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        Ok(Self { runtime: Runtime::new(config)? })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Load (compile, or fetch from the cache) every component of `workflow`,
    /// reporting every one that cannot be used. Loaded components stay in
    /// memory, so a run that follows does not load them again.
    pub fn load_components(&self, workflow: &Workflow) -> Result<(), Vec<AgentError>> {
        let errors: Vec<AgentError> = workflow
            .agents
            .iter()
            .filter_map(|a| self.runtime.load_file(&a.id, &a.component).err())
            .collect();
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Run `workflow` to the end. Agents that fail do not stop the others;
    /// agents that need a failed agent are skipped. The report says what
    /// happened to each.
    pub async fn run(&self, workflow: &Workflow, options: RunOptions) -> RunReport {
        let run_id = options.run_id.unwrap_or_else(|| new_run_id(workflow));
        Execution::new(self.runtime.clone(), workflow, run_id, options.events).run().await
    }
}

/// Each agent's place in the ready queue: priority (highest first), then
/// longest remaining path, then file order.
fn ready_order(workflow: &Workflow) -> HashMap<&str, usize> {
    let plan = crate::plan::plan(workflow);
    let planned: HashMap<&str, (u8, std::time::Duration)> =
        plan.agents.iter().map(|p| (p.id.as_str(), (p.priority, p.remaining))).collect();
    let mut ranked: Vec<(usize, &AgentSpec)> = workflow.agents.iter().enumerate().collect();
    ranked.sort_by_key(|(index, agent)| {
        let (priority, remaining) = planned.get(agent.id.as_str()).copied().unwrap_or_default();
        (std::cmp::Reverse(priority), std::cmp::Reverse(remaining), *index)
    });
    ranked.into_iter().enumerate().map(|(rank, (_, agent))| (agent.id.as_str(), rank)).collect()
}

/// Sleep until `at`, or for ever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The delay before retry number `retry` (1 for the first): the backoff
/// doubled each time, capped, then scaled by a jitter in [0.5, 1] derived
/// from the run, agent and attempt (so agents that failed together do not
/// retry in lockstep, and a run is reproducible).
fn backoff(policy: &crate::workflow::Retry, run_id: &str, agent: &str, retry: u32) -> std::time::Duration {
    let doubled = policy.backoff.saturating_mul(1u32 << retry.saturating_sub(1).min(16));
    let capped = doubled.min(policy.max_backoff);
    let mut hasher = blake3::Hasher::new();
    hasher.update(run_id.as_bytes());
    hasher.update(agent.as_bytes());
    hasher.update(&retry.to_le_bytes());
    let byte = hasher.finalize().as_bytes()[0];
    capped.mul_f64(0.5 + f64::from(byte) / 510.0)
}

fn new_run_id(workflow: &Workflow) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let mut hasher = blake3::Hasher::new();
    hasher.update(workflow.path.as_os_str().as_encoded_bytes());
    hasher.update(&nanos.to_le_bytes());
    hasher.update(&std::process::id().to_le_bytes());
    hasher.finalize().to_hex()[..12].to_owned()
}

struct Execution<'w> {
    runtime: Runtime,
    workflow: &'w Workflow,
    run_id: String,
    events: EventSink,
    ownership: Ownership,
    store: ContextStore,
    reports: HashMap<String, AgentReport>,
    /// Attempts started so far, per agent.
    attempts: HashMap<String, u32>,
    /// Agents waiting out a retry backoff, with when they may start again.
    backing_off: Vec<(String, Instant)>,
    started: Instant,
}

type Finished = (String, Instant, Result<AgentOutput, AgentError>);

impl<'w> Execution<'w> {
    fn new(runtime: Runtime, workflow: &'w Workflow, run_id: String, events: EventSink) -> Self {
        let ownership = Ownership::new(
            workflow.agents.iter().flat_map(|a| a.owns.iter().map(|p| (p.as_str(), a.id.as_str()))),
        );
        Self {
            runtime,
            workflow,
            run_id,
            events,
            ownership,
            store: ContextStore::new(),
            reports: HashMap::new(),
            attempts: HashMap::new(),
            backing_off: Vec::new(),
            started: Instant::now(),
        }
    }

    async fn run(mut self) -> RunReport {
        let components = self.load_all().await;
        let order = ready_order(self.workflow);
        let mut waiting: Vec<&AgentSpec> = self.workflow.agents.iter().collect();
        let mut running: JoinSet<Finished> = JoinSet::new();
        let mut running_ids: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut pool = ResourcePool::new(&self.workflow.resources);

        loop {
            // Settle what can be settled, start what can start.
            loop {
                let before = waiting.len();
                waiting.retain(|agent| match self.blocked_by_failure(agent) {
                    Some(because) => {
                        self.finish(agent, AgentStatus::Skipped { because }, None);
                        false
                    }
                    None => true,
                });
                // The ready queue: highest priority first, then the longest
                // remaining path. The head waits until it fits; later agents
                // do not overtake it (as the planner's makespan model assumes).
                let mut ready: Vec<&AgentSpec> = waiting
                    .iter()
                    .copied()
                    .filter(|a| a.blocking_needs().all(|n| self.succeeded(n)))
                    .collect();
                ready.sort_by_key(|a| order.get(a.id.as_str()).copied());
                for agent in ready {
                    let component = components.get(&agent.id).cloned();
                    if let Some(Ok(component)) = component {
                        if !pool.fits(agent) && pool.is_idle() {
                            // Only a workflow built in code can get here: the
                            // file check refuses agents larger than the pool.
                            let error = AgentError::Host {
                                agent: agent.id.clone(),
                                message: format!(
                                    "it needs {} cpu and {} memory units, more than the whole pool has",
                                    agent.cpu, agent.memory
                                ),
                            };
                            self.finish(agent, AgentStatus::Failed(error), None);
                            waiting.retain(|w| w.id != agent.id);
                            continue;
                        }
                        if !pool.fits(agent) {
                            break;
                        }
                        pool.acquire(agent);
                        let handle = running.spawn(self.start(agent, component));
                        running_ids.insert(handle.id(), agent.id.clone());
                    } else {
                        let error = component.and_then(Result::err).unwrap_or_else(|| AgentError::Host {
                            agent: agent.id.clone(),
                            message: "component was not loaded".into(),
                        });
                        self.finish(agent, AgentStatus::Failed(error), None);
                    }
                    waiting.retain(|w| w.id != agent.id);
                }
                if waiting.len() == before {
                    break;
                }
            }
            let next_retry = self.backing_off.iter().map(|(_, at)| *at).min();
            if running.is_empty() && next_retry.is_none() {
                break;
            }
            let joined = tokio::select! {
                Some(joined) = running.join_next_with_id() => joined,
                () = sleep_until(next_retry) => {
                    let now = Instant::now();
                    let (due, later): (Vec<_>, Vec<_>) =
                        std::mem::take(&mut self.backing_off).into_iter().partition(|(_, at)| *at <= now);
                    self.backing_off = later;
                    waiting.extend(due.iter().filter_map(|(id, _)| self.workflow.agent(id)));
                    continue;
                }
            };
            let id = match joined {
                Ok((_, (id, started, result))) => {
                    self.complete(&id, started, result);
                    id
                }
                Err(join_error) => {
                    let id = running_ids.get(&join_error.id()).cloned().unwrap_or_default();
                    if let Some(agent) = self.workflow.agent(&id) {
                        let error = AgentError::Host {
                            agent: id.clone(),
                            message: format!("agent task failed: {join_error}"),
                        };
                        self.finish(agent, AgentStatus::Failed(error), None);
                    }
                    id
                }
            };
            if let Some(agent) = self.workflow.agent(&id) {
                pool.release(agent);
            }
        }
        // Validation rules out cycles, so nothing is left; be safe anyway.
        for agent in waiting {
            self.finish(agent, AgentStatus::Skipped { because: "its needs never completed".into() }, None);
        }
        let agents = self.workflow.agents.iter().filter_map(|a| self.reports.remove(&a.id)).collect();
        RunReport {
            run_id: self.run_id,
            workflow: self.workflow.name.clone(),
            elapsed: self.started.elapsed(),
            agents,
            context: self.store.snapshot(),
        }
    }

    /// Load every component on blocking threads, concurrently.
    async fn load_all(&self) -> HashMap<String, Result<AgentComponent, AgentError>> {
        let mut loads = JoinSet::new();
        for agent in &self.workflow.agents {
            let (runtime, id, path) = (self.runtime.clone(), agent.id.clone(), agent.component.clone());
            loads.spawn_blocking(move || {
                let loaded = runtime.load_file(&id, &path);
                (id, loaded)
            });
        }
        let mut components = HashMap::new();
        while let Some(joined) = loads.join_next().await {
            if let Ok((id, loaded)) = joined {
                components.insert(id, loaded);
            }
        }
        components
    }

    fn start(
        &mut self,
        agent: &AgentSpec,
        component: AgentComponent,
    ) -> impl Future<Output = Finished> + use<> {
        let attempt = {
            let n = self.attempts.entry(agent.id.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let call = AgentCall {
            agent: agent.id.clone(),
            run_id: self.run_id.clone(),
            attempt,
            config: agent.config.clone(),
            snapshot: self.store.snapshot(),
            ownership: self.ownership.clone(),
            limits: Limits {
                memory_bytes: agent.memory_bytes(&self.workflow.resources),
                fuel: agent.fuel,
                timeout: agent.timeout,
            },
            events: self.events.clone(),
        };
        self.events.send(Event::AgentStarted { agent: agent.id.clone(), attempt });
        let runtime = self.runtime.clone();
        async move {
            let started = Instant::now();
            let id = call.agent.clone();
            let result = runtime.run_agent(&component, call).await;
            (id, started, result)
        }
    }

    fn complete(&mut self, id: &str, started: Instant, result: Result<AgentOutput, AgentError>) {
        let Some(agent) = self.workflow.agent(id) else { return };
        match result {
            Ok(output) => {
                let fuel_used = output.fuel_used;
                let peak_memory = output.peak_memory;
                let commit = self.store.commit(id, output.writes);
                self.events.send(Event::Committed {
                    agent: id.to_owned(),
                    version: commit.version,
                    keys: commit.keys.clone(),
                });
                self.events.send(Event::AgentSucceeded { agent: id.to_owned(), elapsed: started.elapsed() });
                let status = AgentStatus::Succeeded { version: commit.version, keys: commit.keys };
                self.finish(agent, status, Some((started, fuel_used, peak_memory)));
            }
            Err(error) => {
                let attempt = self.attempts.get(id).copied().unwrap_or(1);
                if error.is_retryable() && attempt < agent.retry.attempts {
                    let after = backoff(&agent.retry, &self.run_id, id, attempt);
                    self.events.send(Event::AgentRetrying {
                        agent: id.to_owned(),
                        attempt: attempt + 1,
                        after,
                        error: error.to_string(),
                    });
                    self.backing_off.push((id.to_owned(), Instant::now() + after));
                } else {
                    self.finish(agent, AgentStatus::Failed(error), Some((started, None, 0)));
                }
            }
        }
    }

    fn finish(&mut self, agent: &AgentSpec, status: AgentStatus, ran: Option<(Instant, Option<u64>, u64)>) {
        match &status {
            AgentStatus::Failed(error) => {
                self.events.send(Event::AgentFailed { agent: agent.id.clone(), error: error.to_string() });
            }
            AgentStatus::Skipped { because } => {
                self.events.send(Event::AgentSkipped { agent: agent.id.clone(), because: because.clone() });
            }
            AgentStatus::Succeeded { .. } => {}
        }
        let (elapsed, fuel_used, peak_memory) = match ran {
            Some((started, fuel, memory)) => (Some(started.elapsed()), fuel, memory),
            None => (None, None, 0),
        };
        self.reports.insert(
            agent.id.clone(),
            AgentReport {
                agent: agent.id.clone(),
                status,
                elapsed,
                fuel_used,
                peak_memory,
                attempts: self.attempts.get(&agent.id).copied().unwrap_or(0),
            },
        );
    }

    fn succeeded(&self, id: &str) -> bool {
        self.reports.get(id).is_some_and(|r| matches!(r.status, AgentStatus::Succeeded { .. }))
    }

    /// The reason `agent` can never start, if one of its needs did not succeed.
    fn blocked_by_failure(&self, agent: &AgentSpec) -> Option<String> {
        agent.blocking_needs().find_map(|need| match self.reports.get(need).map(|r| &r.status) {
            Some(AgentStatus::Failed(_)) => Some(format!("it needs `{need}`, which failed")),
            Some(AgentStatus::Skipped { .. }) => Some(format!("it needs `{need}`, which was skipped")),
            _ => None,
        })
    }
}
