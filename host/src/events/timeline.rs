//! A run's timeline: what each agent and group did, from when to when.
//!
//! The run loop feeds every event it sends to a [`TimelineRecorder`]
//! (losslessly: not through the broadcast channel), which turns them into
//! spans (queued, running, validating, backing off, HTTP requests; groups),
//! instant marks (commits, conflicts, cache hits and skips, timeouts, barrier
//! decisions, refused HTTP requests) and samples of the resource pool's
//! usage. Times are from the start of the run.
//!
//! An agent's HTTP events come from the runtime, through the run's
//! [`EventTap`](super::EventTap): they are recorded when the run next
//! sends an event of its own, so spans and marks are sorted by start when
//! the timeline is finished.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{AgentOutcome, Event, EventKind, PoolUsage, secs};

/// The lane of the [`SpanKind::Load`] span (not a valid agent id).
pub const LOAD_LANE: &str = "(load)";
/// The lane of the commit of the run's inputs (not a valid agent id).
pub const INPUTS_LANE: &str = "(inputs)";

/// What a span shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    /// In the ready queue, waiting for resources.
    Queued,
    /// An attempt of the agent's `run`.
    Run,
    /// A `validate` call of the agent (the validator) over `subject`.
    Validate,
    /// Waiting out a retry backoff.
    Backoff,
    /// A group, from its members' start to the end of its cross-validation.
    Group,
    /// Loading the components (lane [`LOAD_LANE`]), before any agent starts.
    Load,
    /// An outbound HTTP request of the agent, from sending it to the last
    /// byte of its answer (or its failure); [`Span::http`] says what.
    Http,
}

/// Something with a start and an end, on a lane (an agent, or a group).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// The agent (for a group span, the group).
    pub lane: String,
    /// What the span covers.
    pub kind: SpanKind,
    /// When it started.
    #[serde(with = "secs")]
    pub start: Duration,
    /// When it ended.
    #[serde(with = "secs")]
    pub end: Duration,
    /// The attempt number, for a `run` span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The agent validated, for a `validate` span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// How it ended: `succeeded`, `failed`, `timed_out`, `partial`,
    /// `cancelled`, `cached`, `skipped`, `stopped` (by its group's barrier;
    /// queued spans end `admitted`); for a
    /// validation `passed`, `rejected` or `error`; for a group `succeeded`
    /// or `failed`. `None` if nothing said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The request, for an `http` span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCall>,
}

/// One outbound HTTP request of an agent (an `http` span).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCall {
    /// The request's method.
    pub method: String,
    /// `scheme://host:port`: never a path or query.
    pub origin: String,
    /// The response's status, if one came.
    pub status: Option<u16>,
    /// Body bytes sent and received.
    pub sent: u64,
    /// Response body bytes received.
    pub received: u64,
    /// Why it failed after it was sent.
    pub error: Option<String>,
}

impl Span {
    /// How long the span lasted (zero if it ended before it started).
    pub fn duration(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

/// What an instant mark records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkKind {
    /// A context commit (`detail`: version and keys).
    Commit,
    /// A commit met a concurrent write (`detail`: the key and its resolution).
    Conflict,
    /// The agent's output came from the agent output cache.
    CacheHit,
    /// An attempt ran out of time.
    Timeout,
    /// A group's barrier timeout passed.
    GroupTimeout,
    /// A group's barrier decided (`detail`: the decision and the reason).
    Decision,
    /// The agent was not cached in this run (`detail`: why).
    CacheSkipped,
    /// An outbound HTTP request was refused ([`Mark::origin`]; `detail`: why).
    HttpRefused,
}

/// Something that happened at one instant, on a lane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// The agent or group it concerns.
    pub lane: String,
    /// What happened.
    pub kind: MarkKind,
    /// When it happened.
    #[serde(with = "secs")]
    pub at: Duration,
    /// What the mark says, in words.
    pub detail: String,
    /// The origin of a refused HTTP request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// The pool's usage right after an admission or a release.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PoolSample {
    /// When the sample was taken.
    #[serde(with = "secs")]
    pub at: Duration,
    /// CPU units handed out.
    pub cpu: u32,
    /// Memory units handed out.
    pub memory: u32,
    /// Agents running.
    pub running: u32,
}

impl From<(Duration, PoolUsage)> for PoolSample {
    fn from((at, p): (Duration, PoolUsage)) -> Self {
        Self { at, cpu: p.cpu, memory: p.memory, running: p.running }
    }
}

/// A run's spans, marks and pool samples, each list in time order of
/// start. Every open span is closed at the run's end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// Agents' attempts, validations, queue waits, HTTP requests and groups.
    pub spans: Vec<Span>,
    /// Instant events: commits, conflicts, timeouts, decisions, ...
    pub marks: Vec<Mark>,
    /// The pool's usage after each admission and release.
    pub pool: Vec<PoolSample>,
    /// When the run ended.
    #[serde(with = "secs")]
    pub end: Duration,
}

impl Timeline {
    /// The spans on `lane`, in order.
    pub fn lane<'a>(&'a self, lane: &'a str) -> impl Iterator<Item = &'a Span> + 'a {
        self.spans.iter().filter(move |s| s.lane == lane)
    }
}

/// Builds a [`Timeline`] from a run's events.
#[derive(Debug, Default)]
pub struct TimelineRecorder {
    timeline: Timeline,
    /// The run's start on the sink's clock (its `RunStarted` event).
    origin: Option<Duration>,
    /// Loading done ahead of the run that the run counts (see
    /// [`Runtime::load_workflow`](crate::runtime::Runtime::load_workflow)):
    /// the timeline starts with it, so every time is this much later.
    lead: Duration,
    /// Per lane (kept once seen, so an event allocates no key), its open
    /// spans and its agent's last `run` span.
    lanes: HashMap<String, Lane, foldhash::fast::RandomState>,
    /// Per (validator, subject), its last `validate` span.
    last_validate: HashMap<(String, String), usize>,
}

/// What the recorder keeps of a lane.
#[derive(Debug, Default)]
struct Lane {
    /// Open spans: (kind, subject of a validation, index in `spans`), oldest
    /// first (the same validation can run twice at once).
    open: Vec<(SpanKind, Option<String>, usize)>,
    /// The agent's last `run` span, which the outcome event labels.
    last_run: Option<usize>,
}

impl TimelineRecorder {
    /// A recorder with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `event` to the timeline: open, close or label a span, or add a mark or a pool sample.
    pub fn record(&mut self, event: &Event) {
        let origin = *self.origin.get_or_insert(event.at);
        if let EventKind::ComponentsLoaded { elapsed, .. } = &event.kind
            && self.timeline.spans.is_empty()
            && self.timeline.marks.is_empty()
        {
            self.lead = elapsed.saturating_sub(event.at.saturating_sub(origin));
        }
        let at = event.at.saturating_sub(origin) + self.lead;
        match &event.kind {
            EventKind::ComponentsLoaded { elapsed, .. } => {
                self.open(LOAD_LANE, SpanKind::Load, None, at.saturating_sub(*elapsed), None);
                self.close(LOAD_LANE, SpanKind::Load, None, at, Some("loaded"));
            }
            EventKind::Queued { agent } => {
                self.close(agent, SpanKind::Backoff, None, at, None);
                self.open(agent, SpanKind::Queued, None, at, None);
            }
            EventKind::Admitted { agent, validating, pool, .. } => {
                self.timeline.pool.push((at, *pool).into());
                match validating {
                    None => {
                        self.close(agent, SpanKind::Queued, None, at, Some("admitted"));
                    }
                    Some(subject) => {
                        let span = self.open(agent, SpanKind::Validate, Some(subject), at, None);
                        self.timeline.spans[span].subject = Some(subject.clone());
                    }
                }
            }
            EventKind::AgentStarted { agent, attempt } => {
                let span = self.open(agent, SpanKind::Run, None, at, None);
                self.timeline.spans[span].attempt = Some(*attempt);
                self.lane(agent).last_run = Some(span);
            }
            EventKind::Released { agent, validating, pool } => {
                self.timeline.pool.push((at, *pool).into());
                match validating {
                    None => {
                        self.close(agent, SpanKind::Run, None, at, None);
                    }
                    Some(subject) => {
                        if let Some(span) = self.close(agent, SpanKind::Validate, Some(subject), at, None) {
                            self.last_validate.insert((agent.clone(), subject.clone()), span);
                        }
                    }
                }
            }
            EventKind::Committed { agent, version, keys } => {
                let lane = if agent == super::INPUT_WRITER { INPUTS_LANE } else { agent };
                self.mark(lane, MarkKind::Commit, at, format!("v{version}: {}", keys.join(", ")));
            }
            EventKind::Conflict { key, agent, other, resolution } => {
                self.mark(agent, MarkKind::Conflict, at, format!("{key} (with {other}): {resolution}"));
            }
            EventKind::CacheHit { agent, saved } => {
                self.close(agent, SpanKind::Queued, None, at, Some("cached"));
                self.mark(agent, MarkKind::CacheHit, at, format!("saved {saved:.1?}"));
            }
            EventKind::TimedOut { agent, attempt, after } => {
                self.label_run(agent, "timed_out");
                self.mark(agent, MarkKind::Timeout, at, format!("attempt {attempt} after {after:.1?}"));
            }
            EventKind::AgentRetrying { agent, .. } => {
                self.label_run(agent, AgentOutcome::Failed.name());
                self.open(agent, SpanKind::Backoff, None, at, None);
            }
            EventKind::AgentSucceeded { agent, .. } => self.label_run(agent, AgentOutcome::Succeeded.name()),
            EventKind::AgentFailed { agent, .. } => self.end_agent(agent, at, AgentOutcome::Failed.name()),
            EventKind::AgentSkipped { agent, .. } => self.end_agent(agent, at, AgentOutcome::Skipped.name()),
            EventKind::AgentPartial { agent, .. } => self.end_agent(agent, at, AgentOutcome::Partial.name()),
            EventKind::AgentCancelled { agent } => self.end_agent(agent, at, AgentOutcome::Cancelled.name()),
            EventKind::AgentStopped { agent } => self.end_agent(agent, at, "stopped"),
            EventKind::GroupStarted { group, .. } => {
                self.open(group, SpanKind::Group, None, at, None);
            }
            EventKind::GroupTimedOut { group, running } => {
                self.mark(group, MarkKind::GroupTimeout, at, format!("unfinished: {}", running.join(", ")));
            }
            EventKind::BarrierDecision { group, decision, reason } => {
                self.mark(group, MarkKind::Decision, at, format!("{}: {reason}", decision.name()));
            }
            EventKind::Validated { validator, subject, passed, error, .. } => {
                let outcome = match (error, passed) {
                    (Some(_), _) => "error",
                    (None, true) => "passed",
                    (None, false) => "rejected",
                };
                // The span closed at its release; label it.
                if let Some(&span) = self.last_validate.get(&(validator.clone(), subject.clone())) {
                    self.timeline.spans[span].outcome = Some(outcome.to_owned());
                }
            }
            EventKind::GroupDone { group, succeeded } => {
                let outcome = if *succeeded { "succeeded" } else { "failed" };
                self.close(group, SpanKind::Group, None, at, Some(outcome));
            }
            EventKind::CacheSkipped { agent, because } => {
                self.mark(agent, MarkKind::CacheSkipped, at, because.clone());
            }
            EventKind::HttpRequest { agent, method, origin, status, sent, received, elapsed, error } => {
                let outcome = match (status, error) {
                    (_, Some(_)) => "error".to_owned(),
                    (Some(status), None) => status.to_string(),
                    (None, None) => "unknown".to_owned(),
                };
                self.timeline.spans.push(Span {
                    lane: agent.clone(),
                    kind: SpanKind::Http,
                    start: at.saturating_sub(*elapsed),
                    end: at,
                    attempt: None,
                    subject: None,
                    outcome: Some(outcome),
                    http: Some(HttpCall {
                        method: method.clone(),
                        origin: origin.clone(),
                        status: *status,
                        sent: *sent,
                        received: *received,
                        error: error.clone(),
                    }),
                });
            }
            EventKind::HttpRefused { agent, origin, reason } => {
                self.mark(agent, MarkKind::HttpRefused, at, reason.clone());
                if let Some(mark) = self.timeline.marks.last_mut() {
                    mark.origin = Some(origin.clone());
                }
            }
            EventKind::RunDone { .. } => self.timeline.end = at,
            // Loading ahead of the run is in `ComponentsLoaded`'s time.
            EventKind::RunStarted { .. }
            | EventKind::ComponentLoadStarted { .. }
            | EventKind::ComponentLoaded { .. }
            | EventKind::Progress { .. }
            | EventKind::Log { .. }
            | EventKind::RenderStarted { .. }
            | EventKind::Rendered { .. } => {}
        }
    }

    /// The timeline, every span still open closed at `end` (from the run's start).
    pub fn finish(mut self, end: Duration) -> Timeline {
        let end = (end + self.lead).max(self.timeline.end);
        for lane in self.lanes.values() {
            for &(_, _, span) in &lane.open {
                self.timeline.spans[span].end = end;
            }
        }
        self.timeline.end = end;
        // HTTP events are recorded late (see the module's docs); a stable
        // sort keeps everything else in the order it came.
        self.timeline.spans.sort_by_key(|s| s.start);
        self.timeline.marks.sort_by_key(|k| k.at);
        self.timeline
    }

    /// The recorder's state of `lane`, made at its first use.
    fn lane(&mut self, lane: &str) -> &mut Lane {
        if !self.lanes.contains_key(lane) {
            self.lanes.insert(lane.to_owned(), Lane::default());
        }
        self.lanes.get_mut(lane).expect("just inserted")
    }

    fn open(
        &mut self,
        lane: &str,
        kind: SpanKind,
        what: Option<&str>,
        at: Duration,
        outcome: Option<&str>,
    ) -> usize {
        let index = self.timeline.spans.len();
        self.timeline.spans.push(Span {
            lane: lane.to_owned(),
            kind,
            start: at,
            end: at,
            attempt: None,
            subject: None,
            outcome: outcome.map(str::to_owned),
            http: None,
        });
        self.lane(lane).open.push((kind, what.map(str::to_owned), index));
        index
    }

    /// Close the oldest open span of `kind` on `lane`; its index.
    fn close(
        &mut self,
        lane: &str,
        kind: SpanKind,
        what: Option<&str>,
        at: Duration,
        outcome: Option<&str>,
    ) -> Option<usize> {
        let open = &mut self.lanes.get_mut(lane)?.open;
        let position = open.iter().position(|(k, w, _)| *k == kind && w.as_deref() == what)?;
        let (_, _, index) = open.remove(position);
        let span = &mut self.timeline.spans[index];
        span.end = at;
        if outcome.is_some() {
            span.outcome = outcome.map(str::to_owned);
        }
        Some(index)
    }

    /// Label the agent's last `run` span, unless something labelled it already
    /// (a timeout before the retry).
    fn label_run(&mut self, agent: &str, outcome: &str) {
        if let Some(index) = self.lanes.get(agent).and_then(|lane| lane.last_run) {
            self.timeline.spans[index].outcome.get_or_insert_with(|| outcome.to_owned());
        }
    }

    /// The agent is finished: close whatever it had open with `outcome`.
    fn end_agent(&mut self, agent: &str, at: Duration, outcome: &str) {
        for kind in [SpanKind::Queued, SpanKind::Backoff, SpanKind::Run] {
            self.close(agent, kind, None, at, Some(outcome));
        }
        self.label_run(agent, outcome);
    }

    fn mark(&mut self, lane: &str, kind: MarkKind, at: Duration, detail: String) {
        self.timeline.marks.push(Mark { lane: lane.to_owned(), kind, at, detail, origin: None });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, kind: EventKind) -> Event {
        Event { at: Duration::from_millis(ms), kind }
    }

    fn validation(agent: &str, subject: &str, admitted: bool) -> EventKind {
        let (agent, validating, pool) = (agent.to_owned(), Some(subject.to_owned()), PoolUsage::default());
        if admitted {
            EventKind::Admitted { agent, validating, cpu: 1, memory: 1, pool }
        } else {
            EventKind::Released { agent, validating, pool }
        }
    }

    #[test]
    fn the_same_validation_running_twice_closes_oldest_first() {
        let mut recorder = TimelineRecorder::new();
        recorder
            .record(&at(0, EventKind::RunStarted { run_id: "r".into(), workflow: "w".into(), agents: 2 }));
        recorder.record(&at(10, validation("qa", "dev", true)));
        recorder.record(&at(20, validation("qa", "dev", true)));
        recorder.record(&at(30, validation("qa", "dev", false)));
        let timeline = recorder.finish(Duration::from_millis(50));
        let spans: Vec<(u128, u128)> = timeline
            .lane("qa")
            .filter(|s| s.kind == SpanKind::Validate)
            .map(|s| (s.start.as_millis(), s.end.as_millis()))
            .collect();
        // The first release closes the first span; the second is still open
        // at the end and closed there.
        assert_eq!(spans, [(10, 30), (20, 50)]);
    }

    #[test]
    fn an_outcome_labels_the_last_run_and_a_timeout_label_survives_it() {
        let mut recorder = TimelineRecorder::new();
        let started = |attempt| EventKind::AgentStarted { agent: "a".into(), attempt };
        let released =
            || EventKind::Released { agent: "a".into(), validating: None, pool: PoolUsage::default() };
        recorder.record(&at(0, EventKind::Queued { agent: "a".into() }));
        recorder.record(&at(1, started(1)));
        recorder.record(&at(2, released()));
        recorder.record(&at(
            2,
            EventKind::TimedOut { agent: "a".into(), attempt: 1, after: Duration::from_millis(1) },
        ));
        recorder.record(&at(
            2,
            EventKind::AgentRetrying {
                agent: "a".into(),
                attempt: 2,
                after: Duration::from_millis(1),
                error: "slow".into(),
            },
        ));
        recorder.record(&at(3, EventKind::Queued { agent: "a".into() }));
        recorder.record(&at(4, started(2)));
        recorder.record(&at(5, released()));
        recorder.record(&at(5, EventKind::AgentSucceeded { agent: "a".into(), elapsed: Duration::ZERO }));
        let timeline = recorder.finish(Duration::from_millis(6));
        let runs: Vec<(Option<u32>, Option<&str>)> = timeline
            .lane("a")
            .filter(|s| s.kind == SpanKind::Run)
            .map(|s| (s.attempt, s.outcome.as_deref()))
            .collect();
        assert_eq!(runs, [(Some(1), Some("timed_out")), (Some(2), Some("succeeded"))]);
        let backoff = timeline.lane("a").find(|s| s.kind == SpanKind::Backoff).expect("a backoff span");
        assert_eq!((backoff.start.as_millis(), backoff.end.as_millis()), (2, 3));
        assert!(timeline.spans.iter().all(|s| s.end <= Duration::from_millis(6)));
    }
}
