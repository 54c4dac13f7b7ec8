//! A run as a Chrome trace (the trace-event JSON format that Perfetto and
//! `chrome://tracing` open): agents as lanes of one process, with their
//! queue waits, attempts, validations and backoffs as complete (`X`) slices;
//! groups as lanes of a second process, their barrier decisions and timeouts
//! as instant (`i`) events; commits, conflicts, cache hits and timeouts as
//! instant events on the agent's lane; the pool's usage as a counter (`C`).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::{MarkKind, RunMetrics, SpanKind};

const AGENTS: u32 = 1;
const GROUPS: u32 = 2;

fn micros(d: Duration) -> f64 {
    // Trace timestamps are microseconds; keep nanosecond precision.
    (d.as_nanos() as f64) / 1000.0
}

/// The trace of `m` as JSON text.
pub fn render(m: &RunMetrics) -> String {
    let mut events: Vec<Value> = Vec::new();
    let mut lanes: HashMap<&str, (u32, u32)> = HashMap::new();
    let meta = |events: &mut Vec<Value>, pid: u32, tid: u32, name: &str| {
        events
            .push(json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}));
        events.push(json!({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}}));
    };
    events.push(json!({"name": "process_name", "ph": "M", "pid": AGENTS, "tid": 0, "args": {"name": format!("agents: {}", m.workflow)}}));
    events.push(json!({"name": "process_name", "ph": "M", "pid": GROUPS, "tid": 0, "args": {"name": "groups and barriers"}}));
    for (i, a) in m.agents.iter().enumerate() {
        let tid = i as u32 + 1;
        let name = if a.critical { format!("{} ★", a.agent) } else { a.agent.clone() };
        meta(&mut events, AGENTS, tid, &name);
        lanes.insert(&a.agent, (AGENTS, tid));
    }
    for (i, g) in m.groups.iter().enumerate() {
        let tid = i as u32 + 1;
        meta(&mut events, GROUPS, tid, &g.group);
        lanes.insert(&g.group, (GROUPS, tid));
    }
    // Lanes of neither (the run's inputs commit as `input`).
    let mut extra = m.agents.len() as u32;
    for lane in m.timeline.spans.iter().map(|s| &s.lane).chain(m.timeline.marks.iter().map(|k| &k.lane)) {
        if !lanes.contains_key(lane.as_str()) {
            extra += 1;
            meta(&mut events, AGENTS, extra, lane);
            lanes.insert(lane, (AGENTS, extra));
        }
    }

    for span in &m.timeline.spans {
        let (pid, tid) = lanes[span.lane.as_str()];
        let outcome = span.outcome.as_deref().unwrap_or("");
        let (name, cat) = match span.kind {
            SpanKind::Queued => ("queued".to_owned(), "queue"),
            SpanKind::Run => (format!("{} #{}", span.lane, span.attempt.unwrap_or(1)), "run"),
            SpanKind::Validate => {
                (format!("validate {}", span.subject.as_deref().unwrap_or("?")), "validation")
            }
            SpanKind::Backoff => ("retry backoff".to_owned(), "backoff"),
            SpanKind::Group => (format!("group {}", span.lane), "group"),
            SpanKind::Load => ("load components".to_owned(), "load"),
        };
        let colour = match (span.kind, outcome) {
            (SpanKind::Queued | SpanKind::Backoff | SpanKind::Load, _) => "grey",
            (_, "succeeded" | "passed") => "good",
            (_, "failed" | "rejected" | "error") => "terrible",
            (_, "timed_out") => "bad",
            (_, "partial" | "cached") => "yellow",
            _ => "generic_work",
        };
        let mut args = json!({"outcome": outcome});
        if let Some(attempt) = span.attempt {
            args["attempt"] = json!(attempt);
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
    }
    for mark in &m.timeline.marks {
        let (pid, tid) = lanes[mark.lane.as_str()];
        let name = match mark.kind {
            MarkKind::Commit => "commit",
            MarkKind::Conflict => "conflict",
            MarkKind::CacheHit => "cache hit",
            MarkKind::Timeout => "timeout",
            MarkKind::GroupTimeout => "barrier timeout",
            MarkKind::Decision => "barrier decision",
        };
        events.push(json!({
            "name": name,
            "cat": "mark",
            "ph": "i",
            "s": "t",
            "ts": micros(mark.at),
            "pid": pid,
            "tid": tid,
            "args": {"detail": mark.detail},
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
