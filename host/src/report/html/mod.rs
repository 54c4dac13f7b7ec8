//! A finished run as one self-contained HTML page: a timeline (Gantt) of
//! agents and groups with the critical path highlighted (agents' HTTP
//! requests as thin bars under their attempts), a legend, the metrics as
//! tables, and agents' grants and network use. No network access: inline
//! CSS and SVG, and a few lines of inline script that record how many bars
//! the browser laid out (`data-rendered-bars` on `#timeline`), for tests.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::Duration;

use super::RunMetrics;
use crate::events::{Mark, MarkKind, Span, SpanKind};

/// Append formatted text to a `String` (which cannot fail).
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

mod network;

const LABEL: f64 = 200.0;
const CHART: f64 = 1000.0;
const ROW: f64 = 22.0;
const AXIS: f64 = 28.0;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.4em 0 .4em}
.meta{color:#555}.scroll{overflow-x:auto}svg{display:block}svg text{font-size:11px;fill:#333}
.axis line{stroke:#ccc}.lane{fill:#f7f7f9}.bar.critical{stroke:#000;stroke-width:2}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}
td:first-child,th:first-child,td.l{text-align:left}th{background:#f0f0f0}
.legend span{display:inline-block;margin-right:1em}.sw{display:inline-block;width:14px;height:10px;margin-right:4px;border:1px solid #888;vertical-align:middle}
ul{margin:.2em 0}";

const SCRIPT: &str = "addEventListener('load',function(){var t=document.getElementById('timeline');var n=0;\
t.querySelectorAll('.bar').forEach(function(b){if(b.getBoundingClientRect().width>0)n++;});\
t.dataset.renderedBars=n;});";

/// Escape `s` for HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `12.3 ms`, `1.20 s`.
fn dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 0.001 || s == 0.0 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

fn percent(x: f64) -> String {
    format!("{:.0} %", x * 100.0)
}

fn ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "—".to_owned(), percent)
}

fn bytes(n: u64) -> String {
    match n {
        0 => "—".to_owned(),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        n => format!("{:.1} KiB", n as f64 / 1024.0),
    }
}

/// The colour of a run span's (or an outcome's) ending.
fn colour(outcome: Option<&str>) -> &'static str {
    match outcome {
        Some("succeeded" | "passed") => "#2f9e44",
        Some("failed" | "rejected" | "error") => "#e03131",
        Some("timed_out") => "#f76707",
        Some("partial") => "#f2c200",
        Some("stopped") => "#c8a2c8",
        Some("cancelled" | "skipped") => "#adb5bd",
        Some("cached") => "#4c8ed9",
        _ => "#7b8794",
    }
}

const LEGEND: [(&str, &str); 8] = [
    ("succeeded", "succeeded"),
    ("failed", "failed"),
    ("timed_out", "timed out"),
    ("partial", "partial"),
    ("stopped", "stopped by the barrier"),
    ("cancelled", "cancelled"),
    ("cached", "cached"),
    ("", "unknown"),
];

/// A nice tick step for an axis of `total` seconds: 1, 2 or 5 × 10ⁿ, about 8 ticks.
fn tick_step(total: f64) -> f64 {
    let raw = total / 8.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(raw)
}

/// One self-contained HTML page (no network access: inline CSS, inline SVG, at most a little inline JS) for a finished run.
pub fn render(metrics: &RunMetrics) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let title = format!("{} — run {}", metrics.workflow, metrics.run_id);
    w!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{STYLE}</style></head>\n<body>\n",
        escape(&title)
    );
    w!(
        out,
        "<h1>Ensemble run report: {}</h1>\n<p class=\"meta\">workflow <b>{}</b> · run <code>{}</code> · outcome <b style=\"color:{}\">{}</b> · total time <b>{}</b></p>\n",
        escape(&metrics.workflow),
        escape(&metrics.workflow),
        escape(&metrics.run_id),
        colour(Some(metrics.outcome.name())),
        escape(metrics.outcome.name()),
        dur(metrics.total_time)
    );
    if !metrics.load_time.is_zero() {
        w!(out, "<p class=\"meta\">loading the components took {}</p>\n", dur(metrics.load_time));
    }
    if let Some(error) = &metrics.error {
        w!(out, "<p><b>Run error:</b> {}</p>\n", escape(error));
    }
    timeline(&mut out, metrics);
    legend(&mut out);
    critical_path(&mut out, metrics);
    agent_table(&mut out, metrics);
    network::grants_and_network(&mut out, metrics);
    run_metrics(&mut out, metrics);
    w!(out, "<script>{SCRIPT}</script>\n</body></html>\n");
    out
}

fn timeline(out: &mut String, m: &RunMetrics) {
    let spans = &m.timeline.spans;
    let end =
        spans.iter().map(|s| s.end).chain(m.timeline.marks.iter().map(|k| k.at)).max().unwrap_or_default();
    let total = m.total_time.max(m.timeline.end).max(end).as_secs_f64();
    let total = if total > 0.0 { total } else { 0.001 };
    let x = |t: Duration| LABEL + t.as_secs_f64().min(total) / total * CHART;
    // Spans and marks by lane, group ones apart (a group may share an
    // agent's name); runs can have many thousands of agents.
    let is_group_mark = |k: &&Mark| matches!(k.kind, MarkKind::Decision | MarkKind::GroupTimeout);
    let mut agent_spans: HashMap<&str, Vec<&Span>> = HashMap::new();
    for s in spans.iter().filter(|s| !matches!(s.kind, SpanKind::Group | SpanKind::Load)) {
        agent_spans.entry(s.lane.as_str()).or_default().push(s);
    }
    let mut agent_marks: HashMap<&str, Vec<&Mark>> = HashMap::new();
    let mut group_marks: HashMap<&str, Vec<&Mark>> = HashMap::new();
    for k in &m.timeline.marks {
        let by_lane = if is_group_mark(&k) { &mut group_marks } else { &mut agent_marks };
        by_lane.entry(k.lane.as_str()).or_default().push(k);
    }
    // Rows above the agents: loading the components, then the groups.
    let mut group_spans: Vec<&Span> =
        spans.iter().filter(|s| matches!(s.kind, SpanKind::Group | SpanKind::Load)).collect();
    group_spans.sort_by_key(|s| s.kind != SpanKind::Load);
    let rows = group_spans.len() + m.agents.len();
    let height = AXIS + ROW * rows as f64 + 8.0;
    let width = LABEL + CHART + 20.0;
    out.push_str("<h2>Timeline</h2>\n<div class=\"scroll\">");
    w!(
        out,
        "<svg id=\"timeline\" data-agents=\"{}\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\n",
        m.agents.len()
    );
    out.push_str(
        "<defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
         <rect width=\"6\" height=\"6\" fill=\"#e7f0fb\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#4c6ef5\" stroke-width=\"2\"/></pattern></defs>\n",
    );
    // Axis: ticks with labels, lines down through every row.
    let step = tick_step(total);
    out.push_str("<g class=\"axis\">");
    for i in 0..=((total / step).floor() as u32).min(50) {
        let t = Duration::from_secs_f64(step * f64::from(i));
        let tx = x(t);
        w!(out, "<line x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{height:.1}\"/>", AXIS - 6.0);
        w!(out, "<text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>", AXIS - 10.0, dur(t));
    }
    out.push_str("</g>\n");
    let row_y = |row: usize| AXIS + ROW * row as f64;
    // Groups first: a shaded band from start to end, decisions and timeouts as markers.
    for (row, g) in group_spans.iter().enumerate() {
        let y = row_y(row);
        let load = g.kind == SpanKind::Load;
        let fill = if load { "#7b8794" } else { colour(g.outcome.as_deref()) };
        let name = if load { "loading components".to_owned() } else { format!("group {}", escape(&g.lane)) };
        w!(
            out,
            "<g class=\"group\"><rect class=\"lane\" x=\"0\" y=\"{y:.1}\" width=\"{width}\" height=\"{ROW}\"/><text x=\"4\" y=\"{:.1}\">{name}</text>",
            y + 15.0
        );
        w!(
            out,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\" fill-opacity=\"0.25\" stroke=\"{fill}\"><title>{name}: {} → {} ({})</title></rect>",
            x(g.start),
            y + 3.0,
            (x(g.end) - x(g.start)).max(2.0),
            ROW - 6.0,
            dur(g.start),
            dur(g.end),
            escape(g.outcome.as_deref().unwrap_or("unfinished"))
        );
        for mark in group_marks.get(g.lane.as_str()).into_iter().flatten().filter(|_| !load) {
            let (mx, my) = (x(mark.at), y + ROW / 2.0);
            let (shape, what) = match mark.kind {
                MarkKind::Decision => ("#1c7ed6", "decision"),
                MarkKind::GroupTimeout => ("#f76707", "barrier timeout"),
                _ => ("#555", "mark"),
            };
            w!(
                out,
                "<path d=\"M{mx:.1} {:.1}l6 7l-6 7l-6 -7z\" fill=\"{shape}\" stroke=\"#fff\"><title>{what} at {}: {}</title></path>",
                my - 7.0,
                dur(mark.at),
                escape(&mark.detail)
            );
        }
        out.push_str("</g>\n");
    }
    // One row per agent.
    for (i, a) in m.agents.iter().enumerate() {
        let y = row_y(group_spans.len() + i);
        let mid = y + ROW / 2.0;
        let star = if a.critical { "★ " } else { "" };
        w!(out, "<g class=\"agent\">");
        if i % 2 == 0 {
            w!(out, "<rect class=\"lane\" x=\"0\" y=\"{y:.1}\" width=\"{width}\" height=\"{ROW}\"/>");
        }
        w!(out, "<text x=\"4\" y=\"{:.1}\">{star}{}</text>", y + 15.0, escape(&a.agent));
        let mut ran = false;
        let lane_spans = agent_spans.get(a.agent.as_str()).cloned().unwrap_or_default();
        for s in &lane_spans {
            let (sx, sw) = (x(s.start), (x(s.end) - x(s.start)).max(2.0));
            match s.kind {
                SpanKind::Queued => w!(
                    out,
                    "<rect x=\"{sx:.1}\" y=\"{:.1}\" width=\"{sw:.1}\" height=\"4\" fill=\"#d0d7e2\"><title>{} queued {} at {}</title></rect>",
                    mid - 2.0,
                    escape(&a.agent),
                    dur(s.duration()),
                    dur(s.start)
                ),
                SpanKind::Run => {
                    ran = true;
                    let critical = if a.critical { " critical" } else { "" };
                    w!(
                        out,
                        "<rect class=\"bar{critical}\" data-agent=\"{}\" x=\"{sx:.1}\" y=\"{:.1}\" width=\"{sw:.1}\" height=\"{:.1}\" rx=\"2\" fill=\"{}\"><title>{} · attempt {} · start {} · {} · {}</title></rect>",
                        escape(&a.agent),
                        y + 4.0,
                        ROW - 8.0,
                        colour(s.outcome.as_deref()),
                        escape(&a.agent),
                        s.attempt.unwrap_or(1),
                        dur(s.start),
                        dur(s.duration()),
                        escape(s.outcome.as_deref().unwrap_or("unknown"))
                    );
                }
                SpanKind::Validate => w!(
                    out,
                    "<rect x=\"{sx:.1}\" y=\"{:.1}\" width=\"{sw:.1}\" height=\"{:.1}\" fill=\"url(#hatch)\" stroke=\"{}\"><title>{} validates {} · start {} · {} · {}</title></rect>",
                    y + 4.0,
                    ROW - 8.0,
                    colour(s.outcome.as_deref()),
                    escape(&a.agent),
                    escape(s.subject.as_deref().unwrap_or("?")),
                    dur(s.start),
                    dur(s.duration()),
                    escape(s.outcome.as_deref().unwrap_or("unknown"))
                ),
                SpanKind::Backoff => w!(
                    out,
                    "<line x1=\"{sx:.1}\" y1=\"{mid:.1}\" x2=\"{:.1}\" y2=\"{mid:.1}\" stroke=\"#e03131\" stroke-width=\"2\" stroke-dasharray=\"2 3\"><title>{} backs off {}</title></line>",
                    sx + sw,
                    escape(&a.agent),
                    dur(s.duration())
                ),
                SpanKind::Http => network::http_bar(out, s, sx, sw, y + ROW - 5.0),
                SpanKind::Group | SpanKind::Load => {}
            }
        }
        for mark in agent_marks.get(a.agent.as_str()).into_iter().flatten() {
            let mx = x(mark.at);
            let (stroke, what) = match mark.kind {
                MarkKind::Commit => ("#222", "commit"),
                MarkKind::Conflict => ("#c2255c", "conflict"),
                MarkKind::CacheHit => ("#4c8ed9", "cache hit"),
                MarkKind::Timeout => ("#f76707", "timeout"),
                MarkKind::GroupTimeout | MarkKind::Decision => ("#1c7ed6", "barrier"),
                MarkKind::HttpRefused => {
                    network::refused_mark(out, mark, mx, y);
                    continue;
                }
                // In the agents' table.
                MarkKind::CacheSkipped => continue,
            };
            w!(
                out,
                "<line x1=\"{mx:.1}\" y1=\"{:.1}\" x2=\"{mx:.1}\" y2=\"{:.1}\" stroke=\"{stroke}\" stroke-width=\"2\"><title>{what} at {}: {}</title></line>",
                y + 1.0,
                y + ROW - 1.0,
                dur(mark.at),
                escape(&mark.detail)
            );
        }
        if !ran {
            let why = if a.resumed {
                "resumed from the journal"
            } else if a.cached {
                "cached"
            } else {
                a.outcome.name()
            };
            let at = lane_spans.iter().map(|s| s.end).max().unwrap_or_default();
            let mx = x(at) + 6.0;
            w!(
                out,
                "<circle cx=\"{mx:.1}\" cy=\"{mid:.1}\" r=\"4\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}<title>{}</title></text>",
                colour(Some(if a.cached { "cached" } else { a.outcome.name() })),
                mx + 8.0,
                y + 15.0,
                escape(why),
                escape(a.detail.as_deref().unwrap_or(why))
            );
        }
        out.push_str("</g>\n");
    }
    out.push_str("</svg></div>\n");
}

fn legend(out: &mut String) {
    out.push_str("<p class=\"legend\">");
    for (outcome, label) in LEGEND {
        let c = colour(Some(outcome).filter(|o| !o.is_empty()));
        w!(out, "<span><i class=\"sw\" style=\"background:{c}\"></i>{label}</span>");
    }
    out.push_str(
        "<span><i class=\"sw\" style=\"height:4px;background:#d0d7e2\"></i>queued</span>\
         <span><i class=\"sw\" style=\"background:repeating-linear-gradient(45deg,#e7f0fb 0 3px,#4c6ef5 3px 5px)\"></i>validate</span>\
         <span><i class=\"sw\" style=\"border:0;border-top:2px dotted #e03131;height:0\"></i>backoff</span>\
         <span><i class=\"sw\" style=\"border:2px solid #000\"></i>★ critical path</span>\
         <span><i class=\"sw\" style=\"height:3px;background:#0c8599\"></i>HTTP request</span>\
         <span>| commit tick · ◆ barrier decision · ✕ refused HTTP request</span></p>\n",
    );
}

fn critical_path(out: &mut String, m: &RunMetrics) {
    let p = &m.critical_path;
    let path: Vec<String> = p.agents.iter().map(|a| escape(a)).collect();
    w!(out, "<h2>Critical path</h2>\n<p>{} · length {}", path.join(" → "), dur(p.length));
    if let Some(c) = p.coverage {
        w!(out, " ({} of the total time)", percent(c));
    }
    if let Some(b) = &p.bottleneck {
        w!(
            out,
            " · bottleneck <b>{}</b>: {} ({} of the path)",
            escape(&b.agent),
            dur(b.run_time),
            percent(b.share)
        );
    }
    w!(out, "</p>\n<p><i>{}</i></p>\n", escape(&p.finding));
}

fn agent_table(out: &mut String, m: &RunMetrics) {
    out.push_str(
        "<h2>Agents</h2>\n<table><tr><th>agent</th><th>outcome</th><th>queue wait</th><th>run time</th><th>fuel</th>\
         <th>peak memory</th><th>attempts</th><th>cache hit</th><th>commit wait</th><th>slack</th></tr>\n",
    );
    for a in &m.agents {
        let star = if a.critical { "★ " } else { "" };
        let outcome = if a.resumed { format!("{} (resumed)", a.outcome) } else { a.outcome.to_string() };
        w!(
            out,
            "<tr><td>{star}{}</td><td class=\"l\" style=\"color:{}\" title=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&a.agent),
            colour(Some(a.outcome.name())),
            escape(a.detail.as_deref().unwrap_or("")),
            escape(&outcome),
            dur(a.queue_wait),
            dur(a.run_time),
            a.fuel_used.map_or_else(|| "—".to_owned(), super::markdown::count),
            bytes(a.peak_memory_bytes),
            a.attempts,
            match (&a.cache_skipped, a.cached) {
                (_, true) => "yes".to_owned(),
                (Some(because), false) => format!("no: {}", escape(because)),
                (None, false) => "no".to_owned(),
            },
            a.commit_wait.map_or_else(|| "—".to_owned(), dur),
            dur(a.slack)
        );
    }
    out.push_str("</table>\n");
}

fn run_metrics(out: &mut String, m: &RunMetrics) {
    let (p, r, c) = (&m.parallelism, &m.resources, &m.cache);
    out.push_str("<h2>Run</h2>\n<table>\n");
    let mut row =
        |name: &str, value: String| w!(out, "<tr><th>{name}</th><td class=\"l\">{value}</td></tr>\n");
    row(
        "parallel efficiency",
        format!(
            "{} = Σ run time {} / (total {} × effective concurrency {} = min(limit {}, widest group {}); {} cores)",
            percent(p.efficiency),
            dur(p.agent_time),
            dur(m.total_time),
            p.effective_concurrency,
            p.concurrency_limit,
            p.widest_group,
            p.cores
        ),
    );
    row("average concurrency", format!("{:.2}", p.average_concurrency));
    let max_agent =
        m.commit_wait.max_agent.as_deref().map(|a| format!(" ({})", escape(a))).unwrap_or_default();
    row(
        "commit wait",
        format!("total {} · max {}{max_agent}", dur(m.commit_wait.total), dur(m.commit_wait.max)),
    );
    for (name, ratio_, avg, peak, units) in [
        ("cpu utilisation", r.cpu_ratio, r.cpu_average, r.cpu_peak, r.cpu_units),
        ("memory utilisation", r.memory_ratio, r.memory_average, r.memory_peak, r.memory_units),
        ("slots utilisation", r.slots_ratio, r.slots_average, r.slots_peak, r.slots),
    ] {
        row(name, format!("{} (average {avg:.2}, peak {peak} of {units} units)", percent(ratio_)));
    }
    row(
        "agent cache",
        format!("{} ({} hits of {})", ratio(c.agent_hit_ratio), c.agent_hits, c.agent_lookups),
    );
    row("render cache", format!("{} ({} hits of {})", ratio(c.render_hit_ratio), c.render_hits, c.renders));
    let n = &m.network;
    row(
        "network",
        format!(
            "{} requests ({} failed, {} refused), {} sent, {} received · network latency impact {} (Σ network wait {} / Σ run time)",
            n.requests,
            n.failed,
            n.refused,
            super::markdown::bytes(n.sent),
            super::markdown::bytes(n.received),
            ratio(n.network_latency_impact),
            dur(n.wait)
        ),
    );
    let t = &m.retries;
    row("retries", format!("{} of {} attempts ({})", t.retries, t.attempts, ratio(t.rate)));
    let k = &m.conflicts;
    let conflicts: String = k
        .list
        .iter()
        .map(|c| {
            let (key, agent, other) = (escape(&c.key), escape(&c.agent), escape(&c.other));
            format!(
                "<li><code>{key}</code>: {agent} with {other}, {}</li>",
                escape(&c.resolution.to_string())
            )
        })
        .collect();
    row(
        "conflicts",
        format!("{} in {} commits ({})<ul>{conflicts}</ul>", k.list.len(), k.commits, ratio(k.frequency)),
    );
    let v = &m.validations;
    let validations: String = v
        .list
        .iter()
        .map(|v| {
            let findings: Vec<String> = v
                .findings
                .iter()
                .map(|f| format!("{}: {}", escape(&f.severity), escape(&f.message)))
                .collect();
            format!(
                "<li>{} → {}: <b style=\"color:{}\">{}</b> (on failure: {}){}{}</li>",
                escape(&v.validator),
                escape(&v.subject),
                colour(Some(&v.outcome)),
                escape(&v.outcome),
                escape(&v.on_failure),
                v.detail.as_deref().map(|d| format!(" — {}", escape(d))).unwrap_or_default(),
                if findings.is_empty() { String::new() } else { format!(" — {}", findings.join("; ")) }
            )
        })
        .collect();
    row(
        "validation failures",
        format!("{} of {} ({})<ul>{validations}</ul>", v.failed, v.ran, ratio(v.failure_rate)),
    );
    let decisions: String = m
        .decisions
        .iter()
        .map(|d| {
            let (group, decision, reason) = (escape(&d.group), escape(d.decision.name()), escape(&d.reason));
            format!("<li>{group} at {}: <b>{decision}</b> — {reason}</li>", dur(d.at))
        })
        .collect();
    row("barrier decisions", format!("{}<ul>{decisions}</ul>", m.decisions.len()));
    let groups: String = m
        .groups
        .iter()
        .map(|g| {
            let detail = g.detail.as_deref().map(|d| format!(" — {}", escape(d))).unwrap_or_default();
            let members: Vec<String> = g.agents.iter().map(|a| escape(a)).collect();
            format!(
                "<li>{} [{}]: {}{detail}</li>",
                escape(&g.group),
                members.join(", "),
                escape(g.outcome.name())
            )
        })
        .collect();
    row("groups", format!("{}<ul>{groups}</ul>", m.groups.len()));
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests;
