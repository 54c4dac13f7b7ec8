//! The compact live view of `ensemble run`: one line on stderr per thing
//! that matters (starts, ends, retries, barrier decisions, validations),
//! each with the time since the run started.

use std::collections::HashMap;
use std::io::Write;

use crate::observe::{Event, EventKind};

pub(super) struct LiveView {
    enabled: bool,
    /// The last quarter of progress shown per agent, so progress prints at
    /// most four lines per agent.
    quarters: HashMap<String, u8>,
}

impl LiveView {
    pub(super) fn new(enabled: bool) -> Self {
        Self { enabled, quarters: HashMap::new() }
    }

    /// Print `event` if it is worth a line. Output errors are ignored: the
    /// live view must never stop a run.
    pub(super) fn show(&mut self, err: &mut dyn Write, event: &Event) {
        if !self.enabled {
            return;
        }
        if let Some(line) = self.line(&event.kind) {
            let _ = writeln!(err, "{:>8.2}s  {line}", event.at.as_secs_f64());
        }
    }

    fn line(&mut self, kind: &EventKind) -> Option<String> {
        Some(match kind {
            EventKind::AgentStarted { agent, attempt: 1 } => format!("start    {agent}"),
            EventKind::AgentStarted { agent, attempt } => format!("start    {agent} (attempt {attempt})"),
            EventKind::Progress { agent, done, message } => {
                let quarter = (done * 4.0).floor() as u8;
                let shown = self.quarters.entry(agent.clone()).or_insert(0);
                if quarter <= *shown {
                    return None;
                }
                *shown = quarter;
                format!("progress {agent} {:>3.0}% {message}", done * 100.0)
            }
            EventKind::AgentSucceeded { agent, elapsed } => format!("done     {agent} in {elapsed:.1?}"),
            EventKind::AgentFailed { error, .. } => format!("FAILED   {error}"),
            EventKind::AgentSkipped { agent, because } => format!("skipped  {agent}: {because}"),
            EventKind::AgentPartial { agent, defaults, because } => {
                format!("partial  {agent}: {because}; defaults for {}", list(defaults))
            }
            EventKind::AgentCancelled { agent } => format!("cancel   {agent}"),
            EventKind::TimedOut { agent, after, .. } => format!("timeout  {agent} after {after:.1?}"),
            EventKind::AgentRetrying { agent, attempt, after, .. } => {
                format!("retry    {agent}: attempt {attempt} in {after:.1?}")
            }
            EventKind::GroupStarted { group, agents } => format!("group    {group}: {}", agents.join(" ∥ ")),
            EventKind::GroupTimedOut { group, running } => {
                format!("barrier  {group}: timeout with {} unfinished", running.join(", "))
            }
            EventKind::BarrierDecision { group, decision, reason } => {
                format!("barrier  {group}: {}: {reason}", decision.name())
            }
            EventKind::Validated { validator, subject, passed, findings, error, .. } => {
                let verdict = match (passed, error) {
                    (_, Some(e)) => format!("error: {e}"),
                    (true, None) => "passed".to_owned(),
                    (false, None) => "REJECTED".to_owned(),
                };
                format!("validate {validator} → {subject}: {verdict} ({findings} findings)")
            }
            EventKind::GroupDone { group, succeeded } => {
                format!("group    {group}: {}", if *succeeded { "done" } else { "FAILED" })
            }
            _ => return None,
        })
    }
}

pub(super) fn list(keys: &[String]) -> String {
    if keys.is_empty() { "nothing".to_owned() } else { keys.join(", ") }
}
