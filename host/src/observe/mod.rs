//! What a run tells the outside world while it happens: events.
//!
//! Events go out on a bounded broadcast channel: a slow or absent subscriber
//! never slows a run down or grows its memory; it misses events instead.

use std::time::Duration;

use tokio::sync::broadcast;

/// How many events a subscriber may fall behind before it misses some.
pub const EVENT_BUFFER: usize = 4096;

/// Log levels of agents' `log` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Something that happened in a run.
#[derive(Debug, Clone)]
pub enum Event {
    /// An agent was instantiated and its `run` called.
    AgentStarted { agent: String, attempt: u32 },
    /// An agent's own `progress.report` call; `done` is in [0, 1].
    Progress { agent: String, done: f32, message: String },
    /// An agent's own `log` call.
    Log { agent: String, level: Level, message: String },
    /// An agent's writes were committed as context `version`.
    Committed { agent: String, version: u64, keys: Vec<String> },
    /// An attempt failed with a retryable error; attempt `attempt` starts after `after`.
    AgentRetrying { agent: String, attempt: u32, after: Duration, error: String },
    /// An agent failed; nothing of it was committed.
    AgentFailed { agent: String, error: String },
    /// An agent did not run because an agent it needs did not succeed.
    AgentSkipped { agent: String, because: String },
    /// An agent finished successfully.
    AgentSucceeded { agent: String, elapsed: Duration },
}

/// Where a run sends its events. Cloning shares the channel.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: broadcast::Sender<Event>,
}

impl Default for EventSink {
    fn default() -> Self {
        Self { tx: broadcast::channel(EVENT_BUFFER).0 }
    }
}

impl EventSink {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn send(&self, event: Event) {
        // No subscriber is fine: nobody is listening.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
