//! `ensemble plan` and `ensemble graph`: the planner's view of a workflow.
//! Both work before the agents are built: component files need not exist.

use std::io::Write;
use std::path::PathBuf;

use crate::{EXIT_INVALID, EXIT_OK};
use ensemble::Workflow;
use ensemble::plan::{self, render};

#[derive(Debug, clap::Args)]
pub(super) struct PlanArgs {
    /// The workflow file (YAML).
    workflow: PathBuf,
    /// Print the plan as JSON (durations in milliseconds, fields ending in `_ms`).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub(super) struct GraphArgs {
    /// The workflow file (YAML).
    workflow: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
    format: GraphFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum GraphFormat {
    /// A Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

/// Print the plan: groups, critical path, priorities, estimated makespan.
pub(super) fn plan(args: &PlanArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<u8> {
    let Some(workflow) = load(&args.workflow, err)? else { return Ok(EXIT_INVALID) };
    let plan = plan::plan(&workflow);
    if args.json {
        match serde_json::to_string_pretty(&plan) {
            Ok(json) => writeln!(out, "{json}")?,
            Err(e) => {
                writeln!(err, "error: cannot encode the plan: {e}")?;
                return Ok(crate::EXIT_FAILED);
            }
        }
    } else {
        write!(out, "{}", render::table(&plan))?;
    }
    Ok(EXIT_OK)
}

/// Print the dependency graph.
pub(super) fn graph(args: &GraphArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<u8> {
    let Some(workflow) = load(&args.workflow, err)? else { return Ok(EXIT_INVALID) };
    let plan = plan::plan(&workflow);
    let text = match args.format {
        GraphFormat::Mermaid => render::mermaid(&plan),
        GraphFormat::Dot => render::dot(&plan),
    };
    write!(out, "{text}")?;
    Ok(EXIT_OK)
}

fn load(path: &std::path::Path, err: &mut dyn Write) -> std::io::Result<Option<Workflow>> {
    match Workflow::load_for_planning(path) {
        Ok(w) => Ok(Some(w)),
        Err(e) => {
            writeln!(err, "{e}")?;
            Ok(None)
        }
    }
}
