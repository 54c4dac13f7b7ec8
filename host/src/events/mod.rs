//! What a run tells the outside world while it happens: timestamped
//! events, and the pure folds over them that the run itself keeps.
//!
//! Every event carries the time since its [`EventSink`] was created, so the
//! events of one run form a timeline. Events go out on a bounded broadcast
//! channel: a slow or absent subscriber never slows a run down or grows its
//! memory; it misses events instead (`recv` then says how many). The run
//! itself also records the events that shape its [`Timeline`] (not progress,
//! logs or renders), losslessly, into its report. Events serialise to JSON
//! (`serde_json::to_string(&event)`) with times in seconds.
//!
//! The vocabulary shared by the run, its journal and its report lives here
//! too: how an agent ended ([`AgentOutcome`]) and what a group's barrier
//! decided ([`Decision`], [`DecisionRecord`]).
//!
//! The lowest layer of the crate: it imports no other module of it (the
//! layering is checked by `tests::layering` in `lib.rs`). What is made of a
//! finished run (metrics, summaries, traces) is [`crate::report`], above
//! the executor.

mod decision;
mod outcome;
mod timeline;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub(crate) use decision::by_name as decision_by_name;
pub use decision::{Decision, DecisionRecord};
pub use outcome::{AgentOutcome, INPUT_WRITER};
pub use timeline::{
    HttpCall, INPUTS_LANE, LOAD_LANE, Mark, MarkKind, PoolSample, Span, SpanKind, Timeline, TimelineRecorder,
};

/// How many events a subscriber may fall behind before it misses some.
pub const EVENT_BUFFER: usize = 4096;

/// Log levels of agents' `log` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Tracing detail.
    Trace,
    /// Debugging detail.
    Debug,
    /// What the agent is doing.
    Info,
    /// Something looks wrong; the agent goes on.
    Warn,
    /// Something failed.
    Error,
}

/// Something that happened in a run, and when. As JSON: `{"at": seconds,
/// "event": "agent_started", ...the kind's fields}`.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Time since the sink was created (for a sink made for one run: since
    /// just before the run started).
    #[serde(with = "secs")]
    pub at: Duration,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The units the resource pool has handed out, after an admission or release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PoolUsage {
    /// CPU units handed out.
    pub cpu: u32,
    /// Memory units handed out.
    pub memory: u32,
    /// Agents running.
    pub running: u32,
}

/// The kinds of events. As JSON, `"event"` names the kind in snake case
/// (`agent_started`) and durations are in seconds.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// The run began; `agents` agents in all.
    RunStarted {
        /// The run's id.
        run_id: String,
        /// The workflow's name.
        workflow: String,
        /// How many agents the workflow has.
        agents: usize,
    },
    /// A component (the file `component`, `bytes` long, used by `agents`)
    /// is being compiled, or read from the compiled-component cache. Not
    /// sent for a component already in memory.
    ComponentLoadStarted {
        /// The component file.
        component: String,
        /// The agents that use it.
        agents: Vec<String>,
        /// Its size.
        bytes: u64,
    },
    /// A component was loaded in `elapsed`: compiled (`cached: false`; the
    /// first run only: later runs read the compiled-component cache), or
    /// read from that cache; `error` says why it cannot be used.
    ComponentLoaded {
        /// The component file.
        component: String,
        /// The agents that use it.
        agents: Vec<String>,
        /// Its size.
        bytes: u64,
        /// Read from the compiled-component cache.
        cached: bool,
        /// How long it took.
        #[serde(with = "secs")]
        elapsed: Duration,
        /// Why it cannot be used.
        error: Option<String>,
    },
    /// The agents' components were loaded (compiled, or read from the
    /// compiled cache), which took `elapsed` (loading ahead of the run
    /// included, see [`Runtime::load_workflow`](crate::runtime::Runtime::load_workflow));
    /// agents start after this.
    ComponentsLoaded {
        /// How many components were loaded.
        agents: usize,
        /// How long it took.
        #[serde(with = "secs")]
        elapsed: Duration,
    },
    /// An agent's needs are met: it waits in the ready queue for resources.
    Queued {
        /// The agent's name.
        agent: String,
    },
    /// The pool admitted an agent (for `run`, or for `validate` when
    /// `validating` names the subject), taking `cpu` and `memory` units.
    Admitted {
        /// The agent's name.
        agent: String,
        /// The subject, when the agent was admitted to validate it.
        validating: Option<String>,
        /// CPU units taken.
        cpu: u32,
        /// Memory units taken.
        memory: u32,
        /// The pool's usage after the admission.
        pool: PoolUsage,
    },
    /// An agent's units went back to the pool.
    Released {
        /// The agent's name.
        agent: String,
        /// The subject, when the agent validated it.
        validating: Option<String>,
        /// The pool's usage after the release.
        pool: PoolUsage,
    },
    /// An agent's attempt began: sent when the pool admits it (right after
    /// [`Admitted`](Self::Admitted)), before its instance is set up (a free
    /// instance slot of the engine, then instantiation) and its `run` is
    /// called. The attempt's run time, to [`Released`](Self::Released),
    /// counts from here, set-up included; its `timeout` starts once it has
    /// an instance slot.
    AgentStarted {
        /// The agent's name.
        agent: String,
        /// The attempt's number, from 1.
        attempt: u32,
    },
    /// An agent's own `progress.report` call; `done` is in [0, 1].
    Progress {
        /// The agent's name.
        agent: String,
        /// How much is done, in [0, 1].
        done: f32,
        /// What the agent said.
        message: String,
    },
    /// An agent's own `log` call.
    Log {
        /// The agent's name.
        agent: String,
        /// The message's level.
        level: Level,
        /// What the agent said.
        message: String,
    },
    /// An agent's writes (or, for a partial agent, its defaults) were
    /// committed as context `version`.
    Committed {
        /// The agent's name.
        agent: String,
        /// The context version the commit made.
        version: u64,
        /// The keys committed.
        keys: Vec<String>,
    },
    /// A commit met a concurrent write of `key` by `other`, resolved as `resolution` says.
    Conflict {
        /// The key both wrote.
        key: String,
        /// The committing agent.
        agent: String,
        /// The agent whose write came first.
        other: String,
        /// How the conflict was resolved.
        resolution: String,
    },
    /// An agent's inputs were unchanged: its cached output was committed
    /// instead of running it (which took `saved` when it ran).
    CacheHit {
        /// The agent's name.
        agent: String,
        /// How long the agent took when it ran.
        #[serde(with = "secs")]
        saved: Duration,
    },
    /// An agent was not looked up in the agent output cache, nor will its
    /// output be stored, because of what it was granted (`because`: `http
    /// grant`, `read_write files`, `real clocks (wasi: true)`, `cache:
    /// false`, a granted tree too large to hash, ...). Sent once per run,
    /// only when the run has a cache.
    CacheSkipped {
        /// The agent's name.
        agent: String,
        /// What made it uncacheable.
        because: String,
    },
    /// An agent's `templates.render` call got its turn and started rendering.
    RenderStarted {
        /// The agent's name.
        agent: String,
        /// The template's name.
        template: String,
    },
    /// A render ended (or was answered from the render cache).
    Rendered {
        /// The agent's name.
        agent: String,
        /// The template's name.
        template: String,
        /// Whether the render cache answered.
        cached: bool,
        /// How long it took.
        #[serde(with = "secs")]
        elapsed: Duration,
        /// Why the render failed, if it did.
        error: Option<String>,
    },
    /// An agent's outbound HTTP request ended: answered (`status`), or
    /// failed after it was sent (`error`). `origin` is `scheme://host:port`
    /// (never the path or query, which may carry credentials); `sent` and
    /// `received` count body bytes; `elapsed` is from the request to the
    /// last byte of the response body read (or the failure).
    HttpRequest {
        /// The agent's name.
        agent: String,
        /// The request's method.
        method: String,
        /// `scheme://host:port` of the request.
        origin: String,
        /// The response's status, if one came.
        status: Option<u16>,
        /// Request body bytes sent.
        sent: u64,
        /// Response body bytes received.
        received: u64,
        /// How long it took.
        #[serde(with = "secs")]
        elapsed: Duration,
        /// Why the request failed, if it did.
        error: Option<String>,
    },
    /// An outbound HTTP request was refused before any connection (not on
    /// the allow-list, a private address, a limit), or cut off by a limit.
    HttpRefused {
        /// The agent's name.
        agent: String,
        /// `scheme://host:port` of the request.
        origin: String,
        /// Why it was refused.
        reason: String,
    },
    /// An attempt ran out of time.
    TimedOut {
        /// The agent's name.
        agent: String,
        /// The attempt that ran out of time.
        attempt: u32,
        /// How long it had run.
        #[serde(with = "secs")]
        after: Duration,
    },
    /// An attempt failed with a retryable error; attempt `attempt` starts after `after`.
    AgentRetrying {
        /// The agent's name.
        agent: String,
        /// The attempt that starts next.
        attempt: u32,
        /// The wait before it.
        #[serde(with = "secs")]
        after: Duration,
        /// The error of the failed attempt.
        error: String,
    },
    /// An agent failed for good; nothing of it was committed.
    AgentFailed {
        /// The agent's name.
        agent: String,
        /// Why it failed.
        error: String,
    },
    /// An agent did not run because an agent it needs did not succeed.
    AgentSkipped {
        /// The agent's name.
        agent: String,
        /// Which need did not succeed.
        because: String,
    },
    /// An agent finished successfully.
    AgentSucceeded {
        /// The agent's name.
        agent: String,
        /// The run time of its last attempt.
        #[serde(with = "secs")]
        elapsed: Duration,
    },
    /// A barrier went on without an agent: its declared defaults stand in for it.
    AgentPartial {
        /// The agent's name.
        agent: String,
        /// The keys its defaults committed.
        defaults: Vec<String>,
        /// Why the barrier went on without it.
        because: String,
    },
    /// A group's barrier stopped an unfinished member (aborted it, took it
    /// out of the queue, or dropped its retry); an `agent_partial` event or
    /// its sequential re-run follows.
    AgentStopped {
        /// The agent's name.
        agent: String,
    },
    /// An agent was stopped by a cancellation; nothing of it was committed.
    AgentCancelled {
        /// The agent's name.
        agent: String,
    },
    /// A group's members were queued together.
    GroupStarted {
        /// The group's name.
        group: String,
        /// Its members.
        agents: Vec<String>,
    },
    /// A group's barrier timeout passed with `running` still unfinished.
    GroupTimedOut {
        /// The group's name.
        group: String,
        /// The members still unfinished.
        running: Vec<String>,
    },
    /// A group's barrier decided.
    BarrierDecision {
        /// The group's name.
        group: String,
        /// What the barrier decided.
        decision: Decision,
        /// Why.
        reason: String,
    },
    /// A `validate` call ended: `passed` is false for a failed validation or
    /// an error (then `error` says which).
    Validated {
        /// The validating agent.
        validator: String,
        /// The agent validated.
        subject: String,
        /// The group, for a group's cross-validation.
        group: Option<String>,
        /// Whether the validation passed.
        passed: bool,
        /// How many findings it reported.
        findings: usize,
        /// The error, if the call failed.
        error: Option<String>,
    },
    /// A group finished, its cross-validation included.
    GroupDone {
        /// The group's name.
        group: String,
        /// Whether the group succeeded.
        succeeded: bool,
    },
    /// The run ended.
    RunDone {
        /// Whether every agent succeeded.
        succeeded: bool,
        /// Whether the run was cancelled.
        cancelled: bool,
        /// The run's wall time.
        #[serde(with = "secs")]
        elapsed: Duration,
    },
}

/// Where a run sends its events. Cloning shares the channel and the clock.
///
/// The channel (its [`EVENT_BUFFER`] slots) is made at the first
/// [`subscribe`](Self::subscribe): until somebody listens, publishing costs
/// nothing.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: Arc<OnceLock<broadcast::Sender<Event>>>,
    origin: Instant,
    /// Where the events the run's report needs from the runtime go too.
    tap: Option<EventTap>,
}

impl Default for EventSink {
    fn default() -> Self {
        Self { tx: Arc::default(), origin: Instant::now(), tap: None }
    }
}

impl EventSink {
    /// A sink nobody listens to yet; its clock starts now.
    pub fn new() -> Self {
        Self::default()
    }

    /// A clone of this sink (same channel, same clock) that also keeps, in
    /// `tap`, every event sent through it that the run's report is made of
    /// (HTTP requests and refusals), losslessly: the broadcast channel may
    /// drop events for slow subscribers; the report must not.
    pub fn tapped(&self, tap: &EventTap) -> Self {
        Self { tap: Some(tap.clone()), ..self.clone() }
    }

    /// Send an event of `kind`, stamped with the time since the sink was created.
    pub fn send(&self, kind: EventKind) {
        let event = self.stamp(kind);
        if let Some(tap) = &self.tap
            && matches!(event.kind, EventKind::HttpRequest { .. } | EventKind::HttpRefused { .. })
        {
            tap.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(event.clone());
        }
        self.publish(event);
    }

    /// `kind` with the time since the sink was created.
    pub fn stamp(&self, kind: EventKind) -> Event {
        Event { at: self.origin.elapsed(), kind }
    }

    /// Send an event made by [`stamp`](Self::stamp).
    pub fn publish(&self, event: Event) {
        // No subscriber is fine: nobody is listening.
        if let Some(tx) = self.tx.get() {
            let _ = tx.send(event);
        }
    }

    /// Listen to the events sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.get_or_init(|| broadcast::channel(EVENT_BUFFER).0).subscribe()
    }
}

/// Events kept for a run's report by [`EventSink::tapped`] sinks, until the
/// run takes them.
#[derive(Debug, Clone, Default)]
pub struct EventTap(Arc<Mutex<Vec<Event>>>);

impl EventTap {
    /// The events kept since the last call, in the order they were sent.
    pub fn take(&self) -> Vec<Event> {
        let mut events = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if events.is_empty() { Vec::new() } else { std::mem::take(&mut *events) }
    }
}

/// Durations as seconds (`f64`) in JSON and MessagePack.
pub(crate) mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }

    /// `Option<Duration>` as seconds or null.
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_some(&d.as_secs_f64()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Option::<f64>::deserialize(d)?
                .map(|secs| Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_subscribed_after_it_was_cloned_still_hears_the_clone() {
        let sink = EventSink::new();
        let run_side = sink.clone();
        // Nobody listens yet: published and dropped.
        run_side.send(EventKind::Queued { agent: "early".into() });
        let mut events = sink.subscribe();
        run_side.send(EventKind::Queued { agent: "a".into() });
        let mut late = run_side.subscribe();
        sink.send(EventKind::Queued { agent: "b".into() });
        let agent = |event: Event| match event.kind {
            EventKind::Queued { agent } => agent,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(agent(events.try_recv().expect("a")), "a");
        assert_eq!(agent(events.try_recv().expect("b")), "b");
        assert_eq!(agent(late.try_recv().expect("b")), "b");
        assert!(events.try_recv().is_err() && late.try_recv().is_err());
    }
}
