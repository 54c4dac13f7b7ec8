//! The HTML report's grants and network parts: HTTP requests on the
//! timeline, and a section with each agent's grants, why it was not cached,
//! and the origins it contacted.

use std::fmt::Write;

use super::{Mark, RunMetrics, Span, dur, escape, ratio};
use crate::report::markdown::bytes;

/// An HTTP request: a thin bar at `y`, under the agent's attempt.
pub(super) fn http_bar(out: &mut String, s: &Span, sx: f64, sw: f64, y: f64) {
    let Some(call) = &s.http else { return };
    let fill = match (&call.error, call.status) {
        (Some(_), _) => "#e03131",
        (None, Some(status)) if status >= 400 => "#f76707",
        _ => "#0c8599",
    };
    let result = match (&call.error, call.status) {
        (Some(e), _) => format!("failed: {e}"),
        (None, Some(status)) => status.to_string(),
        (None, None) => "no answer".to_owned(),
    };
    w!(
        out,
        "<rect class=\"http\" x=\"{sx:.1}\" y=\"{y:.1}\" width=\"{sw:.1}\" height=\"3\" fill=\"{fill}\"><title>{} {} → {} · {} sent · {} received · {} at {}</title></rect>",
        escape(&call.method),
        escape(&call.origin),
        escape(&result),
        call.sent,
        call.received,
        dur(s.duration()),
        dur(s.start)
    );
}

/// A refused HTTP request: a red cross on the agent's row.
pub(super) fn refused_mark(out: &mut String, mark: &Mark, mx: f64, y: f64) {
    w!(
        out,
        "<path class=\"refused\" d=\"M{:.1} {:.1}l8 8m0 -8l-8 8\" stroke=\"#e03131\" stroke-width=\"2\"><title>HTTP refused at {}: {}: {}</title></path>",
        mx - 4.0,
        y + 2.0,
        dur(mark.at),
        escape(mark.origin.as_deref().unwrap_or("?")),
        escape(&mark.detail)
    );
}

/// Agents' grants and network use, if any agent had a grant, real clocks,
/// an uncached reason or a request.
pub(super) fn grants_and_network(out: &mut String, m: &RunMetrics) {
    let shown: Vec<_> = m
        .agents
        .iter()
        .filter(|a| !a.grants.is_empty() || a.cache_skipped.is_some() || a.network.is_some())
        .collect();
    if shown.is_empty() {
        return;
    }
    out.push_str(
        "<h2>Grants and network</h2>\n<table id=\"grants\"><tr><th>agent</th><th>grants</th><th>not cached because</th>\
         <th>requests</th><th>failed</th><th>refused</th><th>sent</th><th>received</th><th>network wait</th>\
         <th>network latency impact</th></tr>\n",
    );
    for a in &shown {
        let n = a.network.clone().unwrap_or_default();
        w!(
            out,
            "<tr><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&a.agent),
            escape(&a.grants.summary()),
            escape(a.cache_skipped.as_deref().unwrap_or("—")),
            n.requests,
            n.failed,
            n.refused,
            bytes(n.sent),
            bytes(n.received),
            dur(n.wait),
            ratio(n.network_latency_impact)
        );
    }
    out.push_str("</table>\n");
    let origins: Vec<_> = shown
        .iter()
        .filter_map(|a| a.network.as_ref().map(|n| (a, n)))
        .filter(|(_, n)| !n.origins.is_empty())
        .collect();
    if origins.is_empty() {
        return;
    }
    out.push_str(
        "<h3>Origins contacted</h3>\n<p class=\"meta\">latency: from sending a request to the last byte of its answer; median and maximum per origin</p>\n\
         <table id=\"origins\"><tr><th>agent</th><th>origin</th><th>requests</th><th>failed</th><th>refused</th><th>sent</th>\
         <th>received</th><th>median latency</th><th>max latency</th></tr>\n",
    );
    for (a, n) in &origins {
        for o in &n.origins {
            let or_dash = |d: Option<std::time::Duration>| d.map_or_else(|| "—".to_owned(), dur);
            w!(
                out,
                "<tr><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(&a.agent),
                escape(&o.origin),
                o.requests,
                o.failed,
                o.refused,
                bytes(o.sent),
                bytes(o.received),
                or_dash(o.latency_median),
                or_dash(o.latency_max)
            );
        }
    }
    out.push_str("</table>\n");
    let refusals: Vec<String> = origins
        .iter()
        .flat_map(|(a, n)| {
            n.refusals.iter().map(move |r| {
                format!(
                    "<li>{}: {} — {} ({}×)</li>",
                    escape(&a.agent),
                    escape(&r.origin),
                    escape(&r.reason),
                    r.count
                )
            })
        })
        .collect();
    if !refusals.is_empty() {
        w!(out, "<h3>Refused requests</h3>\n<ul id=\"refusals\">{}</ul>\n", refusals.concat());
    }
}
