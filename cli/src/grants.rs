//! The grant summary `ensemble check` prints and `ensemble run` shows in
//! its header: every capability the workflow asks for, and where outputs go.

use std::io::Write;

use ensemble::Workflow;

/// Print what `workflow` grants each agent and where its outputs will be written.
pub(super) fn print_summary(workflow: &Workflow, out: &mut dyn Write) -> std::io::Result<()> {
    let lines = workflow.grant_summary();
    if lines.is_empty() {
        writeln!(out, "grants: none (agents touch only the context)")?;
    } else {
        writeln!(out, "grants:")?;
        let width = |f: fn(&ensemble::workflow::GrantLine) -> usize| lines.iter().map(f).max().unwrap_or(0);
        let (agent_w, what_w, detail_w) =
            (width(|l| l.agent.len()), width(|l| l.what.len()), width(|l| l.detail.len()));
        for l in &lines {
            let line =
                format!("  {:agent_w$}  {:what_w$}  {:detail_w$}  {}", l.agent, l.what, l.detail, l.mode);
            writeln!(out, "{}", line.trim_end())?;
        }
    }
    if let Some(outputs) = workflow.outputs() {
        let n = outputs.files.len();
        let dir = std::path::absolute(&outputs.dir).unwrap_or_else(|_| outputs.dir.clone());
        let outside = if workflow.outputs_outside().is_some() {
            " (outside the workflow's folder: `run` asks for --allow-outputs-outside)"
        } else {
            ""
        };
        writeln!(out, "outputs: {} ({n} file{}){outside}", dir.display(), if n == 1 { "" } else { "s" })?;
    }
    Ok(())
}
