//! What agents were granted and how they used the network, for the run
//! report: per agent its grants (never a variable's value), each origin it
//! contacted (requests, bytes, latency), its refused requests, and the
//! seed design's `network_latency_impact`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::events::{Mark, MarkKind, Span, SpanKind, secs};
use crate::workflow::AgentSpec;

/// What an agent was granted, as the report shows it: guest paths and
/// modes, the HTTP allow-list, variable names (a secret's marked, no value
/// ever), and whether it had real clocks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantMetrics {
    /// Its granted directories.
    pub files: Vec<FileGrantMetric>,
    /// The allow-list, as written, if it had an HTTP grant.
    pub http: Option<Vec<String>>,
    /// Its variables, by name.
    pub variables: Vec<VariableMetric>,
    /// `wasi: true`: real clocks and randomness.
    pub real_clocks: bool,
}

/// A granted directory, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileGrantMetric {
    /// Where the agent sees it (`/docs`).
    pub guest: String,
    /// `read` or `read_write`.
    pub mode: String,
}

/// A variable, as the report shows it (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariableMetric {
    /// The variable's name.
    pub name: String,
    /// Whether it is secret.
    pub secret: bool,
}

impl GrantMetrics {
    /// What `agent` was granted.
    pub fn of(agent: &AgentSpec) -> Self {
        let g = &agent.grants;
        Self {
            files: g
                .files
                .iter()
                .map(|f| FileGrantMetric { guest: f.guest.clone(), mode: f.mode.name().to_owned() })
                .collect(),
            http: g.http.as_ref().map(|h| h.allow.iter().map(|p| p.text.clone()).collect()),
            variables: g
                .variables
                .iter()
                .map(|v| VariableMetric { name: v.name.clone(), secret: v.value.secret })
                .collect(),
            real_clocks: agent.wasi,
        }
    }

    /// Nothing granted and no real clocks.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.http.is_none() && self.variables.is_empty() && !self.real_clocks
    }

    /// One line for people: `files /docs (read); http https://a.example; variables API_URL, TOKEN (secret); real clocks`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.files.is_empty() {
            let files: Vec<String> = self.files.iter().map(|f| format!("{} ({})", f.guest, f.mode)).collect();
            parts.push(format!("files {}", files.join(", ")));
        }
        if let Some(allow) = &self.http {
            parts.push(format!("http {}", allow.join(", ")));
        }
        if !self.variables.is_empty() {
            let names: Vec<String> = self
                .variables
                .iter()
                .map(|v| if v.secret { format!("{} (secret)", v.name) } else { v.name.clone() })
                .collect();
            parts.push(format!("variables {}", names.join(", ")));
        }
        if self.real_clocks {
            parts.push("real clocks".to_owned());
        }
        if parts.is_empty() { "none".to_owned() } else { parts.join("; ") }
    }
}

/// An agent's outbound HTTP in a run.
///
/// **network wait**: the time at least one of its requests was in flight
/// (overlapping requests of the agent counted once), within its attempts;
/// **network latency impact** = network wait / its run time. Requests made
/// in its `validate` calls count in the tables, not in the impact.
/// **latency** of an origin: the median and the maximum of its requests'
/// times, from sending to the last byte of the answer (or the failure).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentNetwork {
    /// Requests sent, and those that failed after they were sent.
    pub requests: u32,
    /// Requests that failed after they were sent.
    pub failed: u32,
    /// Requests refused before any connection, or cut off by a limit.
    pub refused: u32,
    /// Body bytes sent and received.
    pub sent: u64,
    /// Response body bytes received.
    pub received: u64,
    /// Time spent waiting on the network.
    #[serde(with = "secs")]
    pub wait: Duration,
    /// wait / run time.
    pub network_latency_impact: Option<f64>,
    /// In order of first contact.
    pub origins: Vec<OriginMetrics>,
    /// Each distinct refusal, with how often.
    pub refusals: Vec<RefusalMetric>,
}

/// One origin an agent contacted (or was refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginMetrics {
    /// `scheme://host:port`.
    pub origin: String,
    /// Requests sent.
    pub requests: u32,
    /// Requests that failed after they were sent.
    pub failed: u32,
    /// Requests refused.
    pub refused: u32,
    /// Request body bytes sent.
    pub sent: u64,
    /// Response body bytes received.
    pub received: u64,
    /// The median request time.
    #[serde(with = "secs::option")]
    pub latency_median: Option<Duration>,
    /// The longest request time.
    #[serde(with = "secs::option")]
    pub latency_max: Option<Duration>,
}

/// One distinct refusal, with how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalMetric {
    /// `scheme://host:port` of the request.
    pub origin: String,
    /// Why it was refused.
    pub reason: String,
    /// How often.
    pub count: u32,
}

/// The run's outbound HTTP: the agents' figures summed.
/// **network latency impact** = Σ agents' network wait / Σ agents' run time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkMetrics {
    /// Requests sent.
    pub requests: u32,
    /// Requests that failed after they were sent.
    pub failed: u32,
    /// Requests refused.
    pub refused: u32,
    /// Request body bytes sent.
    pub sent: u64,
    /// Response body bytes received.
    pub received: u64,
    /// Time agents spent waiting on the network.
    #[serde(with = "secs")]
    pub wait: Duration,
    /// Σ network wait / Σ run time.
    pub network_latency_impact: Option<f64>,
}

/// The HTTP use of one agent from its lane's spans and marks; `None` if it
/// made no request and had none refused.
pub fn agent_network<'a>(
    spans: impl Iterator<Item = &'a Span>,
    marks: impl Iterator<Item = &'a Mark>,
) -> Option<AgentNetwork> {
    let mut n = AgentNetwork::default();
    let mut runs = Vec::new();
    let mut calls = Vec::new();
    let mut latencies: BTreeMap<usize, Vec<Duration>> = BTreeMap::new();
    let origin_index = |origins: &mut Vec<OriginMetrics>, origin: &str| match origins
        .iter()
        .position(|o| o.origin == origin)
    {
        Some(i) => i,
        None => {
            origins.push(OriginMetrics {
                origin: origin.to_owned(),
                requests: 0,
                failed: 0,
                refused: 0,
                sent: 0,
                received: 0,
                latency_median: None,
                latency_max: None,
            });
            origins.len() - 1
        }
    };
    for span in spans {
        match (span.kind, &span.http) {
            (SpanKind::Run, _) => runs.push((span.start, span.end)),
            (SpanKind::Http, Some(call)) => {
                calls.push((span.start, span.end));
                let i = origin_index(&mut n.origins, &call.origin);
                let o = &mut n.origins[i];
                o.requests += 1;
                o.failed += u32::from(call.error.is_some());
                o.sent += call.sent;
                o.received += call.received;
                latencies.entry(i).or_default().push(span.duration());
            }
            _ => {}
        }
    }
    for mark in marks.filter(|k| k.kind == MarkKind::HttpRefused) {
        let origin = mark.origin.as_deref().unwrap_or("?");
        let i = origin_index(&mut n.origins, origin);
        n.origins[i].refused += 1;
        match n.refusals.iter_mut().find(|r| r.origin == origin && r.reason == mark.detail) {
            Some(r) => r.count += 1,
            None => n.refusals.push(RefusalMetric {
                origin: origin.to_owned(),
                reason: mark.detail.clone(),
                count: 1,
            }),
        }
    }
    if n.origins.is_empty() {
        return None;
    }
    for (i, mut times) in latencies {
        times.sort_unstable();
        let mid = times.len() / 2;
        let median = if times.len() % 2 == 1 { times[mid] } else { (times[mid - 1] + times[mid]) / 2 };
        n.origins[i].latency_median = Some(median);
        n.origins[i].latency_max = times.last().copied();
    }
    n.requests = n.origins.iter().map(|o| o.requests).sum();
    n.failed = n.origins.iter().map(|o| o.failed).sum();
    n.refused = n.origins.iter().map(|o| o.refused).sum();
    n.sent = n.origins.iter().map(|o| o.sent).sum();
    n.received = n.origins.iter().map(|o| o.received).sum();
    let runs = union(runs);
    let run_time: Duration = runs.iter().map(|(s, e)| e.saturating_sub(*s)).sum();
    n.wait = overlap(&union(calls), &runs);
    n.network_latency_impact = ratio(n.wait, run_time);
    Some(n)
}

/// The run's figures from its agents' (`run time`s and networks).
pub fn run_network<'a>(agents: impl Iterator<Item = (Duration, Option<&'a AgentNetwork>)>) -> NetworkMetrics {
    let mut m = NetworkMetrics::default();
    let mut run_time = Duration::ZERO;
    for (time, network) in agents {
        run_time += time;
        let Some(n) = network else { continue };
        m.requests += n.requests;
        m.failed += n.failed;
        m.refused += n.refused;
        m.sent += n.sent;
        m.received += n.received;
        m.wait += n.wait;
    }
    m.network_latency_impact = ratio(m.wait, run_time);
    m
}

fn ratio(part: Duration, whole: Duration) -> Option<f64> {
    (!whole.is_zero()).then(|| part.as_secs_f64() / whole.as_secs_f64())
}

/// The intervals merged where they overlap or touch, in order.
fn union(mut intervals: Vec<(Duration, Duration)>) -> Vec<(Duration, Duration)> {
    intervals.sort_unstable();
    let mut merged: Vec<(Duration, Duration)> = Vec::with_capacity(intervals.len());
    for (start, end) in intervals {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// The length of the intersection of two merged, ordered interval lists.
fn overlap(a: &[(Duration, Duration)], b: &[(Duration, Duration)]) -> Duration {
    let (mut i, mut j, mut total) = (0, 0, Duration::ZERO);
    while i < a.len() && j < b.len() {
        let (start, end) = (a[i].0.max(b[j].0), a[i].1.min(b[j].1));
        total += end.saturating_sub(start);
        if a[i].1 < b[j].1 { i += 1 } else { j += 1 }
    }
    total
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
