//! The summary `ensemble run` prints at the end: agents, groups, validations.

use std::io::Write;

use super::live::list;
use crate::exec::{AgentStatus, GroupStatus, RunReport, ValidationOutcome};
use crate::runtime::Severity;
use crate::workflow::OnFailure;

pub(super) fn print(out: &mut dyn Write, report: &RunReport) -> std::io::Result<()> {
    let outcome = if report.cancelled {
        "CANCELLED"
    } else if report.error.is_some() {
        "STOPPED"
    } else if report.succeeded() && report.agents.iter().all(|a| a.resumed) {
        "succeeded (everything was already committed)"
    } else if report.succeeded() {
        "succeeded"
    } else {
        "FAILED"
    };
    writeln!(
        out,
        "workflow `{}` (run {}): {outcome}, {} agents in {:.0?}",
        report.workflow,
        report.run_id,
        report.agents.len(),
        report.elapsed
    )?;
    let width = report.agents.iter().map(|a| a.agent.len()).max().unwrap_or(0);
    for agent in &report.agents {
        let time = agent.elapsed.map(|d| format!("{d:>8.1?}")).unwrap_or_else(|| format!("{:>8}", "-"));
        let line = match &agent.status {
            AgentStatus::Succeeded { keys, .. } if agent.cached => {
                format!("cached  {time}  wrote {} (inputs unchanged: not run)", list(keys))
            }
            AgentStatus::Succeeded { keys, .. } if agent.resumed => {
                format!("resumed {time}  committed before the resume: {}", list(keys))
            }
            AgentStatus::Succeeded { keys, .. } => format!("ok      {time}  wrote {}", list(keys)),
            AgentStatus::Partial { defaults, because, .. } => {
                format!("partial {time}  {because}; defaults for {}", list(defaults))
            }
            AgentStatus::Failed(e) => format!("FAILED  {time}  {e}"),
            AgentStatus::Skipped { because } => format!("skipped {time}  {because}"),
            AgentStatus::Cancelled => format!("cancel  {time}  the run was cancelled"),
        };
        writeln!(out, "  {:width$}  {line}", agent.agent)?;
    }
    for group in &report.groups {
        let status = match &group.status {
            GroupStatus::Succeeded => "succeeded".to_owned(),
            GroupStatus::Failed { because } => format!("FAILED: {because}"),
            GroupStatus::Cancelled => "cancelled".to_owned(),
        };
        writeln!(out, "group `{}`: {status}", group.group)?;
        for d in &group.decisions {
            writeln!(out, "  barrier at {:.1?}: {}: {}", d.at, d.decision.name(), d.reason)?;
        }
    }
    if !report.conflicts.is_empty() {
        writeln!(out, "conflicts:")?;
    }
    for c in &report.conflicts {
        writeln!(
            out,
            "  {}: `{}` (read v{}) vs `{}`: {} [{}… vs {}…]",
            c.key,
            c.agent,
            c.base_version,
            c.other,
            c.resolution,
            c.ours_hash.get(..12).unwrap_or(&c.ours_hash),
            c.theirs_hash.get(..12).unwrap_or(&c.theirs_hash)
        )?;
    }
    if let Some(error) = &report.error {
        writeln!(out, "error: {error}")?;
    }
    if !report.validations.is_empty() {
        writeln!(out, "validations:")?;
    }
    for v in &report.validations {
        let policy = match v.on_failure {
            OnFailure::Warn => "warn",
            OnFailure::Fail => "fail",
        };
        let (verdict, findings) = match &v.outcome {
            ValidationOutcome::Passed { findings } => ("passed".to_owned(), findings.as_slice()),
            ValidationOutcome::Rejected { findings } => {
                (format!("REJECTED (on_failure: {policy})"), findings.as_slice())
            }
            ValidationOutcome::Error(e) => (format!("ERROR (on_failure: {policy}): {e}"), &[][..]),
            ValidationOutcome::Skipped { because } => (format!("skipped: {because}"), &[][..]),
        };
        writeln!(out, "  {} validates {}: {verdict}", v.validator, v.subject)?;
        for f in findings {
            let severity = match f.severity {
                Severity::Info => "info",
                Severity::Warning => "warning",
                Severity::Error => "error",
            };
            let key = f.key.as_deref().map(|k| format!(" [{k}]")).unwrap_or_default();
            writeln!(out, "    {severity}{key}: {}", f.message)?;
        }
    }
    Ok(())
}
