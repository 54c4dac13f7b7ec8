//! The Markdown summary of a run: what `ensemble run` prints at the end and
//! `ensemble report` prints by default.

use std::fmt::Write;
use std::time::Duration;

use super::{GroupOutcome, RunMetrics, RunOutcome};
use crate::events::AgentOutcome;

/// `d` for people: `840 µs`, `12.3 ms`, `1.20 s`, `2 min 05 s`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 120.0 {
        format!("{} min {:02} s", d.as_secs() / 60, d.as_secs() % 60)
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 0.001 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

/// `n` bytes for people.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// A count of fuel units (instructions, roughly) for people.
pub fn count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1} k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} M", n as f64 / 1e6),
        _ => format!("{:.1} G", n as f64 / 1e9),
    }
}

fn percent(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "–".to_owned(), |r| format!("{:.0} %", r * 100.0))
}

/// Table cells must not break the table.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The summary of `m` as Markdown.
pub fn render(m: &RunMetrics) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = write_summary(&mut s, m);
    s
}

fn write_summary(s: &mut String, m: &RunMetrics) -> std::fmt::Result {
    let outcome = match m.outcome {
        RunOutcome::Succeeded if m.agents.iter().all(|a| a.resumed) => {
            "succeeded (everything was already committed)"
        }
        RunOutcome::Succeeded => "succeeded",
        RunOutcome::Failed => "FAILED",
        RunOutcome::Cancelled => "CANCELLED",
        RunOutcome::Stopped => "STOPPED",
    };
    writeln!(
        s,
        "## workflow `{}` (run {}): {outcome}, {} agents in {}\n",
        m.workflow,
        m.run_id,
        m.agents.len(),
        duration(m.total_time)
    )?;
    writeln!(s, "| agent | outcome | queued | ran | fuel | peak memory | attempts | commit wait | slack |")?;
    writeln!(s, "|---|---|--:|--:|--:|--:|--:|--:|--:|")?;
    for a in &m.agents {
        let outcome = match a.outcome {
            AgentOutcome::Succeeded if a.cached => "cached",
            AgentOutcome::Succeeded if a.resumed => "resumed",
            AgentOutcome::Succeeded => "ok",
            AgentOutcome::Failed => "FAILED",
            other => other.name(),
        };
        let ran = a.attempts > 0 && !a.resumed && !a.cached;
        let or_dash = |show: bool, text: String| if show { text } else { "–".to_owned() };
        writeln!(
            s,
            "| {}{} | {outcome} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&a.agent),
            if a.critical { " ★" } else { "" },
            or_dash(ran, duration(a.queue_wait)),
            or_dash(ran, duration(a.run_time)),
            a.fuel_used.map_or_else(|| "–".to_owned(), count),
            or_dash(a.peak_memory_bytes > 0, bytes(a.peak_memory_bytes)),
            a.attempts,
            a.commit_wait.map_or_else(|| "–".to_owned(), duration),
            duration(a.slack),
        )?;
    }
    writeln!(s, "\n★ on the measured critical path\n")?;
    for a in m.agents.iter().filter(|a| a.outcome != AgentOutcome::Succeeded) {
        let detail = a.detail.as_deref().unwrap_or("");
        let keys =
            if a.keys.is_empty() { String::new() } else { format!(" (defaults for {})", a.keys.join(", ")) };
        writeln!(s, "- `{}` {}: {detail}{keys}", a.agent, a.outcome.name().to_uppercase())?;
    }
    if let Some(error) = &m.error {
        writeln!(s, "- error: {error}")?;
    }

    let cp = &m.critical_path;
    writeln!(s, "\n### Critical path (measured)\n")?;
    if cp.agents.is_empty() {
        writeln!(s, "{}", cp.finding)?;
    } else {
        writeln!(
            s,
            "{}: {} of {} ({}).",
            cp.agents.join(" → "),
            duration(cp.length),
            duration(m.total_time),
            percent(cp.coverage)
        )?;
        if let Some(b) = &cp.bottleneck {
            writeln!(
                s,
                "Bottleneck: `{}`, {} ({} of the path).",
                b.agent,
                duration(b.run_time),
                percent(Some(b.share))
            )?;
        }
        writeln!(s, "Finding: {}.", cp.finding)?;
    }

    let p = &m.parallelism;
    let r = &m.resources;
    let c = &m.cache;
    writeln!(s, "\n### Metrics\n")?;
    writeln!(
        s,
        "- parallel efficiency: {:.2} (agent time {} / (total {} × effective concurrency {} = min({} at once, widest group {})); {} cores",
        p.efficiency,
        duration(p.agent_time),
        duration(m.total_time),
        p.effective_concurrency,
        p.concurrency_limit,
        p.widest_group,
        p.cores
    )?;
    writeln!(s, "- average concurrency: {:.2} agents", p.average_concurrency)?;
    writeln!(s, "- loading components: {}", duration(m.load_time))?;
    writeln!(
        s,
        "- context commit wait: {} in all, at most {}{}",
        duration(m.commit_wait.total),
        duration(m.commit_wait.max),
        m.commit_wait.max_agent.as_deref().map(|a| format!(" (`{a}`)")).unwrap_or_default()
    )?;
    writeln!(
        s,
        "- resources (average / peak of the pool): cpu {:.1} / {} of {} units ({}), memory {:.1} / {} of {} units ({}), slots {:.2} / {} of {} ({})",
        r.cpu_average,
        r.cpu_peak,
        r.cpu_units,
        percent(Some(r.cpu_ratio)),
        r.memory_average,
        r.memory_peak,
        r.memory_units,
        percent(Some(r.memory_ratio)),
        r.slots_average,
        r.slots_peak,
        r.slots,
        percent(Some(r.slots_ratio))
    )?;
    writeln!(
        s,
        "- cache: agents {} of {} ({}), template renders {} of {} ({})",
        c.agent_hits,
        c.agent_lookups,
        percent(c.agent_hit_ratio),
        c.render_hits,
        c.renders,
        percent(c.render_hit_ratio)
    )?;
    let n = &m.network;
    if n.requests + n.refused > 0 || m.agents.iter().any(|a| a.grants.http.is_some()) {
        writeln!(
            s,
            "- network: {} requests ({} failed, {} refused), {} sent, {} received; network latency impact {} (Σ network wait {} / Σ run time)",
            n.requests,
            n.failed,
            n.refused,
            bytes(n.sent),
            bytes(n.received),
            percent(n.network_latency_impact),
            duration(n.wait)
        )?;
    }
    writeln!(
        s,
        "- retries: {} of {} attempts ({})",
        m.retries.retries,
        m.retries.attempts,
        percent(m.retries.rate)
    )?;
    writeln!(
        s,
        "- conflicts: {} in {} commits ({})",
        m.conflicts.list.len(),
        m.conflicts.commits,
        percent(m.conflicts.frequency)
    )?;
    writeln!(
        s,
        "- validations: {} failed of {} ({})",
        m.validations.failed,
        m.validations.ran,
        percent(m.validations.failure_rate)
    )?;

    write_grants(s, m)?;
    if !m.groups.is_empty() {
        writeln!(s, "\n### Groups\n")?;
    }
    for g in &m.groups {
        let outcome = if g.outcome == GroupOutcome::Failed { "FAILED" } else { g.outcome.name() };
        let detail = g.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
        writeln!(s, "- `{}` ({}): {outcome}{detail}", g.group, g.agents.join(" ∥ "))?;
        for d in m.decisions.iter().filter(|d| d.group == g.group) {
            writeln!(s, "  - barrier at {}: {}: {}", duration(d.at), d.decision, d.reason)?;
        }
    }
    if !m.validations.list.is_empty() {
        writeln!(s, "\n### Validations\n")?;
    }
    for v in &m.validations.list {
        let verdict = match v.outcome.as_str() {
            "passed" => "passed".to_owned(),
            "rejected" => format!("REJECTED (on_failure: {})", v.on_failure),
            "error" => format!("ERROR (on_failure: {}): {}", v.on_failure, v.detail.as_deref().unwrap_or("")),
            _ => format!("skipped: {}", v.detail.as_deref().unwrap_or("")),
        };
        writeln!(s, "- {} validates {}: {verdict}", v.validator, v.subject)?;
        for f in &v.findings {
            let key = f.key.as_deref().map(|k| format!(" [{k}]")).unwrap_or_default();
            writeln!(s, "  - {}{key}: {}", f.severity, f.message)?;
        }
    }
    if !m.conflicts.list.is_empty() {
        writeln!(s, "\n### Conflicts\n")?;
    }
    for c in &m.conflicts.list {
        writeln!(
            s,
            "- `{}`: `{}` (read v{}) vs `{}`: {} [{}… vs {}…]",
            c.key,
            c.agent,
            c.base_version,
            c.other,
            c.resolution,
            c.ours_hash.get(..12).unwrap_or(&c.ours_hash),
            c.theirs_hash.get(..12).unwrap_or(&c.theirs_hash)
        )?;
    }
    Ok(())
}

/// Agents' grants, why they were not cached, and the origins they contacted.
fn write_grants(s: &mut String, m: &RunMetrics) -> std::fmt::Result {
    let shown: Vec<_> = m
        .agents
        .iter()
        .filter(|a| !a.grants.is_empty() || a.cache_skipped.is_some() || a.network.is_some())
        .collect();
    if shown.is_empty() {
        return Ok(());
    }
    writeln!(s, "\n### Grants and network\n")?;
    writeln!(
        s,
        "| agent | grants | not cached because | requests | refused | sent | received | network latency impact |"
    )?;
    writeln!(s, "|---|---|---|--:|--:|--:|--:|--:|")?;
    for a in &shown {
        let n = a.network.clone().unwrap_or_default();
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&a.agent),
            if a.grants.is_empty() { "–".to_owned() } else { format!("`{}`", cell(&a.grants.summary())) },
            cell(a.cache_skipped.as_deref().unwrap_or("–")),
            n.requests,
            n.refused,
            bytes(n.sent),
            bytes(n.received),
            percent(n.network_latency_impact)
        )?;
    }
    let mut first = true;
    for a in &shown {
        let Some(n) = &a.network else { continue };
        if first {
            writeln!(s, "\nLatency: from sending a request to the last byte of its answer, median / max.\n")?;
            first = false;
        }
        for o in &n.origins {
            let latency = match (o.latency_median, o.latency_max) {
                (Some(median), Some(max)) => format!(", latency {} / {}", duration(median), duration(max)),
                _ => String::new(),
            };
            let failed = if o.failed > 0 { format!(", {} failed", o.failed) } else { String::new() };
            let refused = if o.refused > 0 { format!(", {} refused", o.refused) } else { String::new() };
            writeln!(
                s,
                "- `{}` → {}: {} request{}{failed}{refused}, {} sent, {} received{latency}",
                a.agent,
                o.origin,
                o.requests,
                if o.requests == 1 { "" } else { "s" },
                bytes(o.sent),
                bytes(o.received)
            )?;
        }
        for r in &n.refusals {
            writeln!(s, "  - refused {}× {}: {}", r.count, r.origin, r.reason)?;
        }
    }
    Ok(())
}
