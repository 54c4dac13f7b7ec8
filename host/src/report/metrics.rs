//! The design's metrics, computed from a finished run.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::network::{AgentNetwork, GrantMetrics, NetworkMetrics, agent_network, run_network};
use super::outcome::{GroupOutcome, RunOutcome};
use crate::context::Conflict;
use crate::events::{AgentOutcome, Decision, Mark, MarkKind, Span, SpanKind, Timeline, secs};
use crate::exec::{AgentStatus, GroupStatus, RunReport, ValidationOutcome};
use crate::journal::{Journal, JournalError};
use crate::runtime::Severity;
use crate::workflow::{OnFailure, Workflow};

/// What a run did and how well, in numbers: the run report that `ensemble run --report` writes as
/// JSON, the journal keeps for `ensemble report`, and the Markdown summary, trace, HTML and
/// Prometheus files are made from. Durations are in seconds in JSON; times (`start`, `end`, `at`)
/// are from the run's start.
///
/// Definitions:
/// - **run time** of an agent: the sum of its attempts (instantiation to the
///   end of `run`); **queue wait**: the sum of its waits in the ready queue.
/// - **parallel efficiency** = Σ run time / (total time × effective
///   concurrency), where effective concurrency = min(the pool's concurrent
///   agent limit, the widest group of the plan): the share of the agent
///   slots the workflow could use that were busy. 1.0 means the engine kept
///   as many agents running as the workflow's shape and the pool allow, all
///   the time; waits for resources or barriers and engine overhead lower it.
///   Run times are wall times, so agents sharing fewer cores than slots
///   count their waits for a core (the machine's cores are reported beside
///   it). It exceeds 1.0 only when the dependencies let more agents run at
///   once than the plan's widest group holds.
/// - **average concurrency** = Σ run time / total time.
/// - **commit wait** (the design's "context lock wait"): from the end of an
///   agent's `run` until its writes are committed and journaled.
/// - **utilisation** of cpu, memory and slots: units held, averaged over the total time, divided
///   by the pool's units (cpu can exceed 1 by the oversubscription factor).
/// - **network latency impact** of an agent: the share of its run time spent
///   waiting on the network; of the run: Σ network wait / Σ run time (see
///   [`AgentNetwork`](super::AgentNetwork)).
/// - **critical path (measured)**: the longest chain over blocking
///   dependencies (a dependent of a group member waits for the whole group)
///   with each agent's measured run time; **slack**: how much
///   later an agent could have started without lengthening that chain. The
///   **bottleneck** is the path's longest agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    /// The run's id.
    pub run_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// How the run ended.
    pub outcome: RunOutcome,
    /// The run's wall time.
    #[serde(with = "secs")]
    pub total_time: Duration,
    /// Loading the components (compiling, or reading the compiled cache), before any agent started.
    #[serde(with = "secs")]
    pub load_time: Duration,
    /// In the workflow's order.
    pub agents: Vec<AgentMetrics>,
    /// In the workflow's order.
    pub groups: Vec<GroupMetrics>,
    /// How many agents ran at once, and how well the slots were used.
    pub parallelism: Parallelism,
    /// Waits from the end of agents' `run` to their commit.
    pub commit_wait: CommitWait,
    /// The pool's units held over the run.
    pub resources: Utilisation,
    /// Agent output cache and render cache hits.
    pub cache: CacheMetrics,
    /// Attempts and retries.
    pub retries: RetryMetrics,
    /// Validations that ran, and their findings.
    pub validations: ValidationMetrics,
    /// Commits and write conflicts.
    pub conflicts: ConflictMetrics,
    /// The barriers' decisions, in time order.
    pub decisions: Vec<DecisionMetrics>,
    /// The measured critical path.
    pub critical_path: CriticalPathMetrics,
    /// Outbound HTTP of all agents.
    #[serde(default)]
    pub network: NetworkMetrics,
    /// A failure of the run itself.
    pub error: Option<String>,
    /// The run's spans, marks and pool samples.
    pub timeline: Timeline,
}

/// What one agent did, in numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentMetrics {
    /// The agent's name.
    pub agent: String,
    /// How it ended.
    pub outcome: AgentOutcome,
    /// Why it did not succeed (its error, or why it was skipped or partial).
    pub detail: Option<String>,
    /// The keys it committed (for a partial agent, its defaults).
    pub keys: Vec<String>,
    /// Its output came from the agent output cache.
    pub cached: bool,
    /// Restored from the journal of a resumed run.
    pub resumed: bool,
    /// Start of its first attempt and end of its last.
    #[serde(with = "secs::option")]
    pub start: Option<Duration>,
    /// End of its last attempt.
    #[serde(with = "secs::option")]
    pub end: Option<Duration>,
    /// Its waits in the ready queue, summed.
    #[serde(with = "secs")]
    pub queue_wait: Duration,
    /// Its attempts' run time, summed.
    #[serde(with = "secs")]
    pub run_time: Duration,
    /// Fuel its last attempt used, when fuel is metered.
    pub fuel_used: Option<u64>,
    /// The most linear memory it held.
    pub peak_memory_bytes: u64,
    /// Attempts started.
    pub attempts: u32,
    /// From the end of its `run` to its commit.
    #[serde(with = "secs::option")]
    pub commit_wait: Option<Duration>,
    /// Template renders, and how many the render cache answered.
    pub renders: u32,
    /// Renders the render cache answered.
    pub renders_cached: u32,
    /// Measured critical-path timing (see [`RunMetrics`]).
    #[serde(with = "secs")]
    pub earliest_start: Duration,
    /// How much later it could have started without lengthening the critical path.
    #[serde(with = "secs")]
    pub slack: Duration,
    /// Whether it is on the measured critical path.
    pub critical: bool,
    /// What it was granted.
    #[serde(default)]
    pub grants: GrantMetrics,
    /// Why it was not cached, when the run had a cache and it was not.
    #[serde(default)]
    pub cache_skipped: Option<String>,
    /// Its outbound HTTP, if it made or was refused any request.
    #[serde(default)]
    pub network: Option<AgentNetwork>,
}

/// What one group did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMetrics {
    /// The group's name.
    pub group: String,
    /// How it ended.
    pub outcome: GroupOutcome,
    /// Why it did not succeed.
    pub detail: Option<String>,
    /// Its members.
    pub agents: Vec<String>,
    /// When its members were queued.
    #[serde(with = "secs::option")]
    pub start: Option<Duration>,
    /// When it finished.
    #[serde(with = "secs::option")]
    pub end: Option<Duration>,
}

/// How parallel the run was (see [`RunMetrics`] for the definitions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parallelism {
    /// Σ run time of the agents.
    #[serde(with = "secs")]
    pub agent_time: Duration,
    /// Σ run time / total time.
    pub average_concurrency: f64,
    /// min(the pool's concurrent agent limit, the plan's widest group).
    pub effective_concurrency: u32,
    /// The pool's concurrent agent limit.
    pub concurrency_limit: u32,
    /// The machine's cores.
    pub cores: u32,
    /// The most agents in one group of the plan.
    pub widest_group: u32,
    /// Σ run time / (total time × effective concurrency).
    pub efficiency: f64,
}

/// Commit waits over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitWait {
    /// All agents' commit waits, summed.
    #[serde(with = "secs")]
    pub total: Duration,
    /// The longest commit wait.
    #[serde(with = "secs")]
    pub max: Duration,
    /// The agent that waited longest.
    pub max_agent: Option<String>,
}

/// The pool's units held over the run (see [`RunMetrics`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Utilisation {
    /// The pool's units.
    pub cpu_units: u32,
    /// The pool's memory units.
    pub memory_units: u32,
    /// The pool's agent slots.
    pub slots: u32,
    /// Units held on average over the run, and at most.
    pub cpu_average: f64,
    /// Memory units held on average.
    pub memory_average: f64,
    /// Slots held on average.
    pub slots_average: f64,
    /// The most CPU units held at once.
    pub cpu_peak: u32,
    /// The most memory units held at once.
    pub memory_peak: u32,
    /// The most slots held at once.
    pub slots_peak: u32,
    /// Averages divided by the pool's units.
    pub cpu_ratio: f64,
    /// Memory average / memory units.
    pub memory_ratio: f64,
    /// Slots average / slots.
    pub slots_ratio: f64,
}

/// Hits of the agent output cache and the render cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheMetrics {
    /// Agents whose output came from the agent output cache, of the agents
    /// that ran or hit in this run (none when the run had no cache).
    pub agent_hits: u32,
    /// Agents that ran or hit.
    pub agent_lookups: u32,
    /// Agent hits / lookups; none without lookups.
    pub agent_hit_ratio: Option<f64>,
    /// Template renders answered by the render cache, of all renders.
    pub render_hits: u32,
    /// All renders.
    pub renders: u32,
    /// Render hits / renders; none without renders.
    pub render_hit_ratio: Option<f64>,
}

/// Attempts and retries over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryMetrics {
    /// Attempts started (a resumed run's earlier parts included), and those
    /// beyond each agent's first (sequential re-runs included).
    pub attempts: u32,
    /// Attempts beyond each agent's first.
    pub retries: u32,
    /// retries / attempts.
    pub rate: Option<f64>,
}

/// The run's validations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationMetrics {
    /// Validations that ran, and those that rejected or errored.
    pub ran: u32,
    /// Validations that rejected or errored.
    pub failed: u32,
    /// failed / ran.
    pub failure_rate: Option<f64>,
    /// Every validation, in the order they ended.
    pub list: Vec<ValidationMetric>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationMetric {
    pub validator: String,
    pub subject: String,
    pub group: Option<String>,
    /// `passed`, `rejected`, `error` or `skipped`.
    pub outcome: String,
    /// `warn` or `fail`.
    pub on_failure: String,
    /// The error, or why it was skipped.
    pub detail: Option<String>,
    pub findings: Vec<FindingMetric>,
    #[serde(with = "secs::option")]
    pub elapsed: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingMetric {
    /// `info`, `warning` or `error`.
    pub severity: String,
    pub key: Option<String>,
    pub message: String,
}

/// Write conflicts over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictMetrics {
    /// Commits in the run (inputs included), and conflicts per commit.
    pub commits: u32,
    /// Conflicts / commits.
    pub frequency: Option<f64>,
    /// Every conflict.
    pub list: Vec<Conflict>,
}

/// One decision of a group's barrier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionMetrics {
    /// The group's name.
    pub group: String,
    /// When it decided.
    #[serde(with = "secs")]
    pub at: Duration,
    /// By name (`continue_with_partial`); an `extend_timeout` read back has lost its extension.
    #[serde(with = "crate::events::decision_by_name")]
    pub decision: Decision,
    /// Why.
    pub reason: String,
}

/// The measured critical path (see [`RunMetrics`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriticalPathMetrics {
    /// Its agents, first to last.
    pub agents: Vec<String>,
    /// The sum of its agents' run times.
    #[serde(with = "secs")]
    pub length: Duration,
    /// length / total time.
    pub coverage: Option<f64>,
    /// The path's longest agent.
    pub bottleneck: Option<Bottleneck>,
    /// What the numbers imply, in a sentence.
    pub finding: String,
}

/// The critical path's longest agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bottleneck {
    /// The agent's name.
    pub agent: String,
    /// Its run time.
    #[serde(with = "secs")]
    pub run_time: Duration,
    /// Its part of the critical path's length.
    pub share: f64,
}

fn ratio(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| part / whole)
}

impl RunMetrics {
    /// The metrics of `report`, a run of `workflow`, on a machine with
    /// `cores` cores (see [`RunMetrics::new`] for this machine's).
    pub fn with_cores(workflow: &Workflow, report: &RunReport, cores: u32) -> Self {
        let timeline = report.timeline.clone();
        // The timeline may start before the run, with loading done ahead of it.
        let total = report.elapsed.max(timeline.end);
        // Spans by lane: workflows may have many thousands of agents.
        let mut lanes: HashMap<&str, Vec<&Span>> = HashMap::new();
        for span in &timeline.spans {
            lanes.entry(span.lane.as_str()).or_default().push(span);
        }
        let lane = |id: &str| lanes.get(id).map(Vec::as_slice).unwrap_or_default().iter().copied();
        let mut agent_marks: HashMap<&str, Vec<&Mark>> = HashMap::new();
        for mark in &timeline.marks {
            if matches!(mark.kind, MarkKind::CacheSkipped | MarkKind::HttpRefused) {
                agent_marks.entry(mark.lane.as_str()).or_default().push(mark);
            }
        }
        let marks = |id: &str| agent_marks.get(id).map(Vec::as_slice).unwrap_or_default().iter().copied();
        let sum_spans = |agent: &str, kind: SpanKind| {
            lane(agent).filter(|s| s.kind == kind).map(|s| s.duration()).sum::<Duration>()
        };
        let index: HashMap<&str, usize> =
            workflow.agents.iter().enumerate().map(|(i, a)| (a.id.as_str(), i)).collect();
        // Measured durations in the workflow's order, for the critical path.
        let run_times: Vec<Duration> =
            workflow.agents.iter().map(|a| sum_spans(&a.id, SpanKind::Run)).collect();
        let mut path = crate::plan::critical_path(&with_group_edges(workflow), &run_times);
        // Agents that did not run (skipped, cached, resumed) take no time:
        // they did not make the run longer.
        path.agents.retain(|id| index.get(id.as_str()).is_some_and(|&i| !run_times[i].is_zero()));
        let critical: HashSet<&str> = path.agents.iter().map(String::as_str).collect();
        let plan = crate::plan::plan(workflow);

        let agents: Vec<AgentMetrics> = report
            .agents
            .iter()
            .map(|a| {
                let index = index.get(a.agent.as_str()).copied();
                let runs = || lane(&a.agent).filter(|s| s.kind == SpanKind::Run);
                let (detail, keys) = match &a.status {
                    AgentStatus::Succeeded { keys, .. } => (None, keys.clone()),
                    AgentStatus::Partial { defaults, because, error } => {
                        let detail = match error {
                            Some(e) => format!("{because} (last error: {e})"),
                            None => because.clone(),
                        };
                        (Some(detail), defaults.clone())
                    }
                    AgentStatus::Failed(e) => (Some(e.to_string()), Vec::new()),
                    AgentStatus::Skipped { because } => (Some(because.clone()), Vec::new()),
                    AgentStatus::Cancelled => (Some("the run was cancelled".into()), Vec::new()),
                };
                AgentMetrics {
                    agent: a.agent.clone(),
                    outcome: a.status.outcome(),
                    detail,
                    keys,
                    cached: a.cached,
                    resumed: a.resumed,
                    start: runs().map(|s| s.start).min(),
                    end: runs().map(|s| s.end).max(),
                    queue_wait: sum_spans(&a.agent, SpanKind::Queued),
                    run_time: sum_spans(&a.agent, SpanKind::Run),
                    fuel_used: a.fuel_used,
                    peak_memory_bytes: a.peak_memory,
                    attempts: a.attempts,
                    commit_wait: a.commit_wait,
                    renders: a.renders,
                    renders_cached: a.renders_cached,
                    earliest_start: index.map_or(Duration::ZERO, |i| path.earliest[i]),
                    slack: index.map_or(Duration::ZERO, |i| path.slack[i]),
                    critical: critical.contains(a.agent.as_str()),
                    grants: index.map(|i| GrantMetrics::of(&workflow.agents[i])).unwrap_or_default(),
                    cache_skipped: marks(&a.agent)
                        .find(|k| k.kind == MarkKind::CacheSkipped)
                        .map(|k| k.detail.clone()),
                    network: agent_network(lane(&a.agent), marks(&a.agent)),
                }
            })
            .collect();

        let groups = report
            .groups
            .iter()
            .map(|g| {
                let span = lane(&g.group).find(|s| s.kind == SpanKind::Group);
                let (outcome, detail) = match &g.status {
                    GroupStatus::Succeeded => (GroupOutcome::Succeeded, None),
                    GroupStatus::Failed { because } => (GroupOutcome::Failed, Some(because.clone())),
                    GroupStatus::Cancelled => (GroupOutcome::Cancelled, None),
                };
                GroupMetrics {
                    group: g.group.clone(),
                    outcome,
                    detail,
                    agents: workflow
                        .groups
                        .iter()
                        .find(|s| s.name == g.group)
                        .map(|s| s.agents.clone())
                        .unwrap_or_default(),
                    start: span.map(|s| s.start),
                    end: span.map(|s| s.end),
                }
            })
            .collect();

        // Parallelism.
        let agent_time: Duration = agents.iter().map(|a| a.run_time).sum();
        let total_secs = total.as_secs_f64();
        let limit = workflow.resources.max_concurrent.max(1);
        let widest = plan.groups.iter().map(|g| g.agents.len()).max().unwrap_or(1).max(1) as u32;
        let effective = limit.min(widest);
        let parallelism = Parallelism {
            agent_time,
            average_concurrency: ratio(agent_time.as_secs_f64(), total_secs).unwrap_or(0.0),
            effective_concurrency: effective,
            concurrency_limit: limit,
            cores,
            widest_group: widest,
            efficiency: ratio(agent_time.as_secs_f64(), total_secs * f64::from(effective)).unwrap_or(0.0),
        };

        let max_wait =
            agents.iter().filter_map(|a| a.commit_wait.map(|w| (w, &a.agent))).max_by_key(|(w, _)| *w);
        let commit_wait = CommitWait {
            total: agents.iter().filter_map(|a| a.commit_wait).sum(),
            max: max_wait.map_or(Duration::ZERO, |(w, _)| w),
            max_agent: max_wait.map(|(_, a)| a.clone()),
        };

        let resources = utilisation(workflow, &timeline, total);

        let ran = |a: &&AgentMetrics| !a.resumed && (a.cached || a.attempts > 0);
        let agent_hits = agents.iter().filter(|a| a.cached).count() as u32;
        let agent_lookups = if report.agent_cache { agents.iter().filter(ran).count() as u32 } else { 0 };
        let renders: u32 = agents.iter().map(|a| a.renders).sum();
        let render_hits: u32 = agents.iter().map(|a| a.renders_cached).sum();
        let cache = CacheMetrics {
            agent_hits,
            agent_lookups,
            agent_hit_ratio: ratio(f64::from(agent_hits), f64::from(agent_lookups)),
            render_hits,
            renders,
            render_hit_ratio: ratio(f64::from(render_hits), f64::from(renders)),
        };

        let attempts: u32 = agents.iter().map(|a| a.attempts).sum();
        let retries: u32 = agents.iter().map(|a| a.attempts.saturating_sub(1)).sum();
        let retries =
            RetryMetrics { attempts, retries, rate: ratio(f64::from(retries), f64::from(attempts)) };

        let list: Vec<ValidationMetric> = report
            .validations
            .iter()
            .map(|v| {
                let finding = |f: &crate::runtime::Finding| FindingMetric {
                    severity: match f.severity {
                        Severity::Info => "info",
                        Severity::Warning => "warning",
                        Severity::Error => "error",
                    }
                    .to_owned(),
                    key: f.key.clone(),
                    message: f.message.clone(),
                };
                let (outcome, detail, findings) = match &v.outcome {
                    ValidationOutcome::Passed { findings } => {
                        ("passed", None, findings.iter().map(finding).collect())
                    }
                    ValidationOutcome::Rejected { findings } => {
                        ("rejected", None, findings.iter().map(finding).collect())
                    }
                    ValidationOutcome::Error(e) => ("error", Some(e.to_string()), Vec::new()),
                    ValidationOutcome::Skipped { because } => ("skipped", Some(because.clone()), Vec::new()),
                };
                ValidationMetric {
                    validator: v.validator.clone(),
                    subject: v.subject.clone(),
                    group: v.group.clone(),
                    outcome: outcome.to_owned(),
                    on_failure: match v.on_failure {
                        OnFailure::Warn => "warn",
                        OnFailure::Fail => "fail",
                    }
                    .to_owned(),
                    detail,
                    findings,
                    elapsed: v.elapsed,
                }
            })
            .collect();
        let ran_validations = list.iter().filter(|v| v.outcome != "skipped").count() as u32;
        let failed = list.iter().filter(|v| v.outcome == "rejected" || v.outcome == "error").count() as u32;
        let validations = ValidationMetrics {
            ran: ran_validations,
            failed,
            failure_rate: ratio(f64::from(failed), f64::from(ran_validations)),
            list,
        };

        let commits = timeline.marks.iter().filter(|m| m.kind == MarkKind::Commit).count() as u32;
        let conflicts = ConflictMetrics {
            commits,
            frequency: ratio(report.conflicts.len() as f64, f64::from(commits)),
            list: report.conflicts.clone(),
        };

        let decisions = report
            .groups
            .iter()
            .flat_map(|g| {
                g.decisions.iter().map(|d| DecisionMetrics {
                    group: g.group.clone(),
                    at: d.at,
                    decision: d.decision.clone(),
                    reason: d.reason.clone(),
                })
            })
            .collect();

        let network = run_network(agents.iter().map(|a| (a.run_time, a.network.as_ref())));
        let load_time: Duration =
            timeline.spans.iter().filter(|s| s.kind == SpanKind::Load).map(|s| s.duration()).sum();
        let critical_path = critical_path_metrics(&path, &agents, &parallelism, &resources, total, load_time);
        let outcome = if report.cancelled {
            RunOutcome::Cancelled
        } else if report.error.is_some() {
            RunOutcome::Stopped
        } else if report.succeeded() {
            RunOutcome::Succeeded
        } else {
            RunOutcome::Failed
        };
        Self {
            run_id: report.run_id.clone(),
            workflow: report.workflow.clone(),
            outcome,
            total_time: total,
            load_time,
            agents,
            groups,
            parallelism,
            commit_wait,
            resources,
            cache,
            retries,
            validations,
            conflicts,
            decisions,
            critical_path,
            network,
            error: report.error.clone(),
            timeline,
        }
    }

    /// The metrics of `report`, a run of `workflow`, on this machine.
    pub fn new(workflow: &Workflow, report: &RunReport) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        Self::with_cores(workflow, report, cores)
    }

    /// The metrics of agent `id`.
    pub fn agent(&self, id: &str) -> Option<&AgentMetrics> {
        self.agents.iter().find(|a| a.agent == id)
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialisation cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

// Defined here, above the executor, so that `exec` does not depend on the
// report: the run's report is computed from a `RunReport`, never inside it.
impl RunReport {
    /// The run's metrics (the run report of `ensemble run --report`). Compute
    /// them once per run: they walk the whole timeline.
    pub fn metrics(&self, workflow: &Workflow) -> RunMetrics {
        RunMetrics::new(workflow, self)
    }
}

/// Keep `metrics`, the metrics of `report`, as `journal`'s run report (read
/// back by `ensemble report`), with how the run ended, in one transaction.
/// Whoever finishes a journaled run calls this once, after the run; the run
/// itself has already recorded its status. Nothing is written for a run whose
/// journal failed: it stays `running`, so it can be resumed.
pub fn finish_journal(
    journal: &Journal,
    report: &RunReport,
    metrics: &RunMetrics,
) -> Result<(), JournalError> {
    match report.journal_status() {
        Some(status) => journal.finish(status, metrics),
        None => Ok(()),
    }
}

/// Units held over time, from the pool samples (piecewise constant).
fn utilisation(workflow: &Workflow, timeline: &Timeline, total: Duration) -> Utilisation {
    let r = &workflow.resources;
    let (mut cpu, mut memory, mut slots) = (0.0, 0.0, 0.0);
    let mut last = (Duration::ZERO, 0u32, 0u32, 0u32);
    for s in &timeline.pool {
        let dt = s.at.min(total).saturating_sub(last.0).as_secs_f64();
        cpu += dt * f64::from(last.1);
        memory += dt * f64::from(last.2);
        slots += dt * f64::from(last.3);
        last = (s.at.min(total).max(last.0), s.cpu, s.memory, s.running);
    }
    let dt = total.saturating_sub(last.0).as_secs_f64();
    cpu += dt * f64::from(last.1);
    memory += dt * f64::from(last.2);
    slots += dt * f64::from(last.3);
    let t = total.as_secs_f64();
    let avg = |x: f64| if t > 0.0 { x / t } else { 0.0 };
    let (cpu, memory, slots) = (avg(cpu), avg(memory), avg(slots));
    let part = |x: f64, units: u32| ratio(x, f64::from(units)).unwrap_or(0.0);
    Utilisation {
        cpu_units: r.cpu,
        memory_units: r.memory,
        slots: r.max_concurrent,
        cpu_average: cpu,
        memory_average: memory,
        slots_average: slots,
        cpu_peak: timeline.pool.iter().map(|s| s.cpu).max().unwrap_or(0),
        memory_peak: timeline.pool.iter().map(|s| s.memory).max().unwrap_or(0),
        slots_peak: timeline.pool.iter().map(|s| s.running).max().unwrap_or(0),
        cpu_ratio: part(cpu, r.cpu),
        memory_ratio: part(memory, r.memory),
        slots_ratio: part(slots, r.max_concurrent),
    }
}

fn critical_path_metrics(
    path: &crate::plan::PathTiming,
    agents: &[AgentMetrics],
    parallelism: &Parallelism,
    resources: &Utilisation,
    total: Duration,
    load_time: Duration,
) -> CriticalPathMetrics {
    let by_id: HashMap<&str, &AgentMetrics> = agents.iter().map(|a| (a.agent.as_str(), a)).collect();
    let on_path: Vec<&AgentMetrics> =
        path.agents.iter().filter_map(|id| by_id.get(id.as_str()).copied()).collect();
    let length = path.length;
    let coverage = ratio(length.as_secs_f64(), total.as_secs_f64());
    let bottleneck =
        on_path.iter().max_by_key(|a| a.run_time).filter(|a| !a.run_time.is_zero()).map(|a| Bottleneck {
            agent: a.agent.clone(),
            run_time: a.run_time,
            share: ratio(a.run_time.as_secs_f64(), length.as_secs_f64()).unwrap_or(0.0),
        });
    let percent = |x: f64| format!("{:.0} %", x * 100.0);
    let finding = match (&bottleneck, coverage) {
        (None, _) | (_, None) => "no agent ran in this run (their outputs came from the cache or the journal, or none could start): there is no critical path to speak of".to_owned(),
        (Some(b), Some(c)) if c >= 0.8 => format!(
            "the run is bound by its critical path ({} of the total time); `{}` is {} of it: making it faster, or splitting it, shortens the run",
            percent(c),
            b.agent,
            percent(b.share)
        ),
        (Some(_), Some(c)) => {
            let queued: Duration = agents.iter().map(|a| a.queue_wait).sum();
            let r = resources;
            let pool_filled =
                r.slots_peak >= r.slots || r.cpu_peak >= r.cpu_units || r.memory_peak >= r.memory_units;
            if load_time.as_secs_f64() >= 0.2 * total.as_secs_f64() {
                format!(
                    "the critical path is only {} of the total time; loading the components took {} of it ({:.1?}): a warm compiled-component cache shortens that",
                    percent(c),
                    percent(load_time.as_secs_f64() / total.as_secs_f64()),
                    load_time
                )
            } else if queued.as_secs_f64() >= 0.2 * total.as_secs_f64() && !pool_filled {
                format!(
                    "the critical path is only {} of the total time; agents waited {:.1?} in all in the ready queue while the pool was never full: the run loop was busy committing (journal writes, cache hits), not short of resources",
                    percent(c),
                    queued
                )
            } else if queued.as_secs_f64() >= 0.2 * total.as_secs_f64() {
                format!(
                    "the critical path is only {} of the total time; agents waited {:.1?} in all for resources: the pool ({} at once on {} cores) is the bottleneck",
                    percent(c),
                    queued,
                    parallelism.concurrency_limit,
                    parallelism.cores
                )
            } else {
                format!(
                    "the critical path is only {} of the total time; the rest went to retry backoffs, barrier waits, validations and engine overhead",
                    percent(c)
                )
            }
        }
    };
    CriticalPathMetrics { agents: path.agents.clone(), length, coverage, bottleneck, finding }
}

/// `workflow` with the waits groups add: a dependent of a group member (from
/// outside the group) waits for every member.
fn with_group_edges(workflow: &Workflow) -> std::borrow::Cow<'_, Workflow> {
    use crate::workflow::{DependencyKind, Need};
    if workflow.groups.is_empty() {
        return std::borrow::Cow::Borrowed(workflow);
    }
    let mut augmented = workflow.clone();
    let group_of: HashMap<&str, usize> = workflow
        .groups
        .iter()
        .enumerate()
        .flat_map(|(g, spec)| spec.agents.iter().map(move |a| (a.as_str(), g)))
        .collect();
    for agent in &mut augmented.agents {
        let own = group_of.get(agent.id.as_str()).copied();
        let mut groups: Vec<usize> = agent
            .needs
            .iter()
            .filter(|n| n.kind.is_blocking())
            .filter_map(|n| group_of.get(n.agent.as_str()).copied())
            .filter(|g| Some(*g) != own)
            .collect();
        groups.sort_unstable();
        groups.dedup();
        for g in groups {
            for member in &workflow.groups[g].agents {
                if !agent.needs.iter().any(|n| &n.agent == member && n.kind.is_blocking()) {
                    agent.needs.push(Need {
                        agent: member.clone(),
                        kind: DependencyKind::Data,
                        location: Default::default(),
                    });
                }
            }
        }
    }
    std::borrow::Cow::Owned(augmented)
}
