//! A run's metrics in the Prometheus text exposition format (0.0.4), for
//! node_exporter's textfile collector or a push to a Pushgateway. Names
//! follow Prometheus conventions: `ensemble_` prefix, base units (seconds,
//! bytes) as suffixes, `_total` on counters, `_ratio` on ratios, `_info` on
//! info metrics; every sample carries the `workflow` label.

use std::fmt::Write;
use std::time::Duration;

use super::RunMetrics;

struct Exposition<'a> {
    text: String,
    workflow: &'a str,
}

impl Exposition<'_> {
    /// A metric family: `# HELP`, `# TYPE`, then its samples, each with
    /// extra labels.
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(Vec<(&str, &str)>, f64)]) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let mut rendered = format!("workflow=\"{}\"", escape(self.workflow));
            for (k, v) in labels {
                let _ = write!(rendered, ",{k}=\"{}\"", escape(v));
            }
            let _ = writeln!(self.text, "{name}{{{rendered}}} {}", number(*value));
        }
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help, &[(Vec::new(), value)]);
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_finite() { format!("{value}") } else { "NaN".to_owned() }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The exposition of `m`.
pub fn render(m: &RunMetrics) -> String {
    let mut e = Exposition { text: String::new(), workflow: &m.workflow };
    e.family(
        "ensemble_run_info",
        "gauge",
        "The run this file describes: its id and how it ended.",
        &[(vec![("run_id", &m.run_id), ("outcome", m.outcome.name())], 1.0)],
    );
    e.one("ensemble_run_duration_seconds", "gauge", "Wall time of the run.", secs(m.total_time));
    e.one(
        "ensemble_run_agent_seconds",
        "gauge",
        "Sum of the agents' run times.",
        secs(m.parallelism.agent_time),
    );
    e.one(
        "ensemble_run_parallel_efficiency_ratio",
        "gauge",
        "Agent time / (wall time x effective concurrency); effective concurrency = min(concurrent agent limit, widest group of the plan).",
        m.parallelism.efficiency,
    );
    e.one(
        "ensemble_run_effective_concurrency",
        "gauge",
        "min(concurrent agent limit, widest group of the plan).",
        f64::from(m.parallelism.effective_concurrency),
    );
    e.one(
        "ensemble_run_critical_path_seconds",
        "gauge",
        "Length of the critical path over blocking dependencies with measured run times.",
        secs(m.critical_path.length),
    );
    e.one(
        "ensemble_run_commit_wait_seconds_total",
        "counter",
        "Time agents' results waited to be committed and journaled (context lock wait).",
        secs(m.commit_wait.total),
    );
    let r = &m.resources;
    e.family(
        "ensemble_run_pool_utilisation_ratio",
        "gauge",
        "Units of the resource pool held on average over the run, divided by the pool's units.",
        &[
            (vec![("resource", "cpu")], r.cpu_ratio),
            (vec![("resource", "memory")], r.memory_ratio),
            (vec![("resource", "slots")], r.slots_ratio),
        ],
    );
    let c = &m.cache;
    e.family(
        "ensemble_run_cache_hits_total",
        "counter",
        "Cache hits: agent outputs committed without running, template renders answered from the render cache.",
        &[(vec![("cache", "agent")], f64::from(c.agent_hits)), (vec![("cache", "render")], f64::from(c.render_hits))],
    );
    e.family(
        "ensemble_run_cache_lookups_total",
        "counter",
        "Cache lookups: agents that ran or hit, template renders.",
        &[
            (vec![("cache", "agent")], f64::from(c.agent_lookups)),
            (vec![("cache", "render")], f64::from(c.renders)),
        ],
    );
    let n = &m.network;
    e.one(
        "ensemble_run_http_requests_total",
        "counter",
        "Outbound HTTP requests sent by agents.",
        f64::from(n.requests),
    );
    e.one(
        "ensemble_run_http_refused_total",
        "counter",
        "Outbound HTTP requests refused before any connection or cut off by a limit.",
        f64::from(n.refused),
    );
    e.one(
        "ensemble_run_network_latency_impact_ratio",
        "gauge",
        "Sum of the agents' network wait (their HTTP requests in flight, overlaps merged) / sum of their run times.",
        n.network_latency_impact.unwrap_or(0.0),
    );
    e.one("ensemble_run_attempts_total", "counter", "Agent attempts started.", f64::from(m.retries.attempts));
    e.one(
        "ensemble_run_retries_total",
        "counter",
        "Attempts beyond each agent's first.",
        f64::from(m.retries.retries),
    );
    e.one("ensemble_run_commits_total", "counter", "Context commits.", f64::from(m.conflicts.commits));
    e.one(
        "ensemble_run_conflicts_total",
        "counter",
        "Write-write conflicts on the context.",
        m.conflicts.list.len() as f64,
    );
    e.one("ensemble_run_validations_total", "counter", "Validations that ran.", f64::from(m.validations.ran));
    e.one(
        "ensemble_run_validation_failures_total",
        "counter",
        "Validations that rejected their subject or failed.",
        f64::from(m.validations.failed),
    );
    let mut decisions: Vec<((&str, &str), f64)> = Vec::new();
    for d in &m.decisions {
        match decisions.iter_mut().find(|(k, _)| *k == (d.group.as_str(), d.decision.name())) {
            Some((_, n)) => *n += 1.0,
            None => decisions.push(((d.group.as_str(), d.decision.name()), 1.0)),
        }
    }
    let decisions: Vec<(Vec<(&str, &str)>, f64)> =
        decisions.into_iter().map(|((g, d), n)| (vec![("group", g), ("decision", d)], n)).collect();
    e.family(
        "ensemble_run_barrier_decisions_total",
        "counter",
        "Decisions of groups' smart barriers.",
        &decisions,
    );

    let per_agent = |f: &dyn Fn(&super::AgentMetrics) -> Option<f64>| -> Vec<(Vec<(&str, &str)>, f64)> {
        m.agents.iter().filter_map(|a| f(a).map(|v| (vec![("agent", a.agent.as_str())], v))).collect()
    };
    let info: Vec<(Vec<(&str, &str)>, f64)> = m
        .agents
        .iter()
        .map(|a| {
            let labels = vec![
                ("agent", a.agent.as_str()),
                ("outcome", a.outcome.name()),
                ("cached", if a.cached { "true" } else { "false" }),
                ("critical", if a.critical { "true" } else { "false" }),
            ];
            (labels, 1.0)
        })
        .collect();
    e.family(
        "ensemble_agent_info",
        "gauge",
        "Each agent: how it ended, whether cached, whether critical.",
        &info,
    );
    e.family(
        "ensemble_agent_run_seconds",
        "gauge",
        "An agent's run time (all attempts).",
        &per_agent(&|a| Some(secs(a.run_time))),
    );
    e.family(
        "ensemble_agent_queue_wait_seconds",
        "gauge",
        "Time an agent waited in the ready queue for resources.",
        &per_agent(&|a| Some(secs(a.queue_wait))),
    );
    e.family(
        "ensemble_agent_commit_wait_seconds",
        "gauge",
        "Time an agent's result waited to be committed.",
        &per_agent(&|a| a.commit_wait.map(secs)),
    );
    e.family(
        "ensemble_agent_slack_seconds",
        "gauge",
        "How much later an agent could have started without lengthening the critical path.",
        &per_agent(&|a| Some(secs(a.slack))),
    );
    e.family(
        "ensemble_agent_fuel_consumed_total",
        "counter",
        "Fuel an agent consumed (WebAssembly instructions, roughly), when metered.",
        &per_agent(&|a| a.fuel_used.map(|f| f as f64)),
    );
    e.family(
        "ensemble_agent_peak_memory_bytes",
        "gauge",
        "An agent's peak linear memory.",
        &per_agent(&|a| Some(a.peak_memory_bytes as f64)),
    );
    e.family(
        "ensemble_agent_attempts_total",
        "counter",
        "Attempts an agent started.",
        &per_agent(&|a| Some(f64::from(a.attempts))),
    );
    // Network figures for agents with an HTTP grant or any request.
    let networked = |a: &super::AgentMetrics| a.grants.http.is_some() || a.network.is_some();
    e.family(
        "ensemble_agent_network_latency_impact_ratio",
        "gauge",
        "Share of an agent's run time spent waiting on the network (its HTTP requests in flight, overlaps merged).",
        &per_agent(&|a| {
            networked(a).then(|| a.network.as_ref().and_then(|n| n.network_latency_impact).unwrap_or(0.0))
        }),
    );
    let mut requests = Vec::new();
    let mut bytes = Vec::new();
    let mut refused = Vec::new();
    let mut latency = Vec::new();
    for a in &m.agents {
        for o in a.network.iter().flat_map(|n| &n.origins) {
            let labels = vec![("agent", a.agent.as_str()), ("origin", o.origin.as_str())];
            for (statistic, value) in [("median", o.latency_median), ("max", o.latency_max)] {
                if let Some(value) = value {
                    let mut labels = labels.clone();
                    labels.push(("statistic", statistic));
                    latency.push((labels, secs(value)));
                }
            }
            requests.push((labels.clone(), f64::from(o.requests)));
            refused.push((labels.clone(), f64::from(o.refused)));
            let mut sent = labels.clone();
            sent.push(("direction", "sent"));
            bytes.push((sent, o.sent as f64));
            let mut received = labels;
            received.push(("direction", "received"));
            bytes.push((received, o.received as f64));
        }
    }
    e.family(
        "ensemble_agent_http_requests_total",
        "counter",
        "Outbound HTTP requests an agent sent to an origin.",
        &requests,
    );
    e.family(
        "ensemble_agent_http_refused_total",
        "counter",
        "Outbound HTTP requests of an agent to an origin that were refused.",
        &refused,
    );
    e.family(
        "ensemble_agent_http_body_bytes_total",
        "counter",
        "Body bytes an agent sent to and received from an origin.",
        &bytes,
    );
    e.family(
        "ensemble_agent_http_latency_seconds",
        "gauge",
        "Median and maximum time of an agent's HTTP requests to an origin, from sending to the last byte of the answer.",
        &latency,
    );
    e.text
}
