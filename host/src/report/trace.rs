//! A run as a Chrome trace (the trace-event JSON format that Perfetto and
//! `chrome://tracing` open): agents as lanes of one process, with their
//! queue waits, attempts and backoffs as complete (`X`) slices, and each
//! validator's validations on a lane per subject; groups as lanes of a
//! second process, each group a slice with its barrier (start to last
//! decision) nested in it, barrier decisions and timeouts as instant (`i`)
//! events; commits, conflicts, cache hits and skips, timeouts and refused
//! HTTP requests as instant events on the agent's lane; each agent's HTTP
//! requests as slices on a lane of their own (`agent http`); the pool's
//! usage as a counter (`C`).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::RunMetrics;
use crate::events::{MarkKind, SpanKind};

const AGENTS: u32 = 1;
const GROUPS: u32 = 2;

fn micros(d: Duration) -> f64 {
    // Trace timestamps are microseconds; keep nanosecond precision.
    (d.as_nanos() as f64) / 1000.0
}

/// Thread ids per (process, lane name), named with metadata events as they
/// are made.
#[derive(Default)]
struct Lanes {
    ids: HashMap<(u32, String), u32>,
    next: HashMap<u32, u32>,
}

impl Lanes {
    fn add(&mut self, events: &mut Vec<Value>, pid: u32, lane: String, name: &str) -> (u32, u32) {
        let next = self.next.entry(pid).or_insert(0);
        *next += 1;
        let tid = *next;
        events
            .push(json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}));
        events.push(json!({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}}));
        self.ids.insert((pid, lane), tid);
        (pid, tid)
    }

    fn get(&mut self, events: &mut Vec<Value>, pid: u32, lane: &str) -> (u32, u32) {
        match self.ids.get(&(pid, lane.to_owned())) {
            Some(&tid) => (pid, tid),
            None => self.add(events, pid, lane.to_owned(), lane),
        }
    }
}

/// The trace of `m` as JSON text.
pub fn render(m: &RunMetrics) -> String {
    let mut events: Vec<Value> = Vec::new();
    events.push(json!({"name": "process_name", "ph": "M", "pid": AGENTS, "tid": 0, "args": {"name": format!("agents: {}", m.workflow)}}));
    events.push(json!({"name": "process_name", "ph": "M", "pid": GROUPS, "tid": 0, "args": {"name": "groups and barriers"}}));
    // Lanes: agents, then groups (a process of their own, so a group may share
    // an agent's name), then validations (one lane per validator and
    // subject, so concurrent validations never overlap on a lane) and the
    // run's own lanes (loading, inputs), in order of appearance.
    let mut lanes = Lanes::default();
    for a in &m.agents {
        let name = if a.critical { format!("{} ★", a.agent) } else { a.agent.clone() };
        lanes.add(&mut events, AGENTS, a.agent.clone(), &name);
    }
    for g in &m.groups {
        lanes.add(&mut events, GROUPS, g.group.clone(), &g.group);
    }

    for span in &m.timeline.spans {
        let outcome = span.outcome.as_deref().unwrap_or("");
        let (pid, tid) = match (span.kind, &span.subject) {
            (SpanKind::Group, _) => lanes.get(&mut events, GROUPS, &span.lane),
            (SpanKind::Validate, Some(subject)) => {
                lanes.get(&mut events, AGENTS, &format!("{} validates {subject}", span.lane))
            }
            // Requests overlap: a lane of their own, beside the agent's.
            (SpanKind::Http, _) => lanes.get(&mut events, AGENTS, &format!("{} http", span.lane)),
            _ => lanes.get(&mut events, AGENTS, &span.lane),
        };
        let (name, cat) = match span.kind {
            SpanKind::Queued => ("queued".to_owned(), "queue"),
            SpanKind::Run => (format!("{} #{}", span.lane, span.attempt.unwrap_or(1)), "run"),
            SpanKind::Validate => {
                (format!("validate {}", span.subject.as_deref().unwrap_or("?")), "validation")
            }
            SpanKind::Backoff => ("retry backoff".to_owned(), "backoff"),
            SpanKind::Group => (format!("group {}", span.lane), "group"),
            SpanKind::Load => ("load components".to_owned(), "load"),
            SpanKind::Http => {
                let call = span.http.as_ref();
                let what = call.map(|c| format!("{} {}", c.method, c.origin));
                (what.unwrap_or_else(|| "http".to_owned()), "http")
            }
        };
        let colour = match (span.kind, outcome) {
            (SpanKind::Queued | SpanKind::Backoff | SpanKind::Load, _) => "grey",
            (SpanKind::Http, "error") => "terrible",
            (SpanKind::Http, status) if status.starts_with(['4', '5']) => "bad",
            (SpanKind::Http, _) => "thread_state_iowait",
            (_, "succeeded" | "passed") => "good",
            (_, "failed" | "rejected" | "error") => "terrible",
            (_, "timed_out") => "bad",
            (_, "partial" | "cached" | "stopped") => "yellow",
            _ => "generic_work",
        };
        let mut args = json!({"outcome": outcome});
        if let Some(attempt) = span.attempt {
            args["attempt"] = json!(attempt);
        }
        if let Some(call) = &span.http {
            args["origin"] = json!(call.origin);
            args["status"] = json!(call.status);
            args["sent"] = json!(call.sent);
            args["received"] = json!(call.received);
            if let Some(error) = &call.error {
                args["error"] = json!(error);
            }
        }
        events.push(json!({
            "name": name,
            "cat": cat,
            "ph": "X",
            "ts": micros(span.start),
            "dur": micros(span.duration()),
            "pid": pid,
            "tid": tid,
            "cname": colour,
            "args": args,
        }));
        if span.kind == SpanKind::Group {
            // The barrier: from the members' start to its last decision,
            // nested in the group's span.
            let decided = m
                .timeline
                .marks
                .iter()
                .filter(|k| k.kind == MarkKind::Decision && k.lane == span.lane)
                .filter(|k| k.at >= span.start && k.at <= span.end)
                .map(|k| k.at)
                .max();
            if let Some(decided) = decided {
                events.push(json!({
                    "name": "barrier",
                    "cat": "barrier",
                    "ph": "X",
                    "ts": micros(span.start),
                    "dur": micros(decided.saturating_sub(span.start)),
                    "pid": pid,
                    "tid": tid,
                    "args": {},
                }));
            }
        }
    }
    for mark in &m.timeline.marks {
        let pid =
            if matches!(mark.kind, MarkKind::Decision | MarkKind::GroupTimeout) { GROUPS } else { AGENTS };
        let (pid, tid) = lanes.get(&mut events, pid, &mark.lane);
        let name = match mark.kind {
            MarkKind::Commit => "commit",
            MarkKind::Conflict => "conflict",
            MarkKind::CacheHit => "cache hit",
            MarkKind::Timeout => "timeout",
            MarkKind::GroupTimeout => "barrier timeout",
            MarkKind::Decision => "barrier decision",
            MarkKind::CacheSkipped => "not cached",
            MarkKind::HttpRefused => "http refused",
        };
        let detail = match &mark.origin {
            Some(origin) => format!("{origin}: {}", mark.detail),
            None => mark.detail.clone(),
        };
        events.push(json!({
            "name": name,
            "cat": "mark",
            "ph": "i",
            "s": "t",
            "ts": micros(mark.at),
            "pid": pid,
            "tid": tid,
            "args": {"detail": detail},
        }));
    }
    for sample in &m.timeline.pool {
        events.push(json!({
            "name": "pool",
            "ph": "C",
            "ts": micros(sample.at),
            "pid": AGENTS,
            "tid": 0,
            "args": {"cpu": sample.cpu, "memory": sample.memory, "running": sample.running},
        }));
    }
    let trace = json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "workflow": m.workflow,
            "run_id": m.run_id,
            "outcome": m.outcome,
            "total_seconds": m.total_time.as_secs_f64(),
            "critical_path": m.critical_path.agents,
        },
    });
    serde_json::to_string(&trace).unwrap_or_default()
}
