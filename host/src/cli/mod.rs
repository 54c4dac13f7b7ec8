//! The `ensemble` command line: argument parsing, output and exit codes over
//! the library. `main.rs` only sets up logging and calls [`main`]; tests call
//! [`main`] in-process with their own output buffers.
//!
//! Exit codes: 0 when the run succeeded (every agent succeeded or was let off
//! by its group's barrier, every group succeeded), 1 when it did not, 2 when
//! the input is unusable (workflow file or components), 130 when Ctrl-C
//! cancelled it.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

mod live;
mod plan;
mod summary;

use crate::context::Snapshot;
use crate::{Engine, RunOptions, RuntimeConfig, Workflow};

/// Run multi-agent workflows in parallel, every agent a sandboxed WebAssembly component.
#[derive(Debug, Parser)]
#[command(name = "ensemble", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a workflow and print each agent's outcome and the committed context.
    Run(RunArgs),
    /// Check a workflow file and report every problem (exit 2 if any).
    Check(CheckArgs),
    /// Print the JSON Schema of workflow files (for editors and validators).
    Schema,
    /// Show the plan: groups, critical path, priorities, estimated makespan.
    Plan(plan::PlanArgs),
    /// Draw the dependency graph (Mermaid or Graphviz DOT).
    Graph(plan::GraphArgs),
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The workflow file (YAML).
    workflow: PathBuf,
    /// Check the file only: component files need not exist yet.
    #[arg(long)]
    no_components: bool,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The workflow file (YAML).
    workflow: PathBuf,
    /// Where compiled components are cached [default: .ensemble/compiled next to the workflow].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not meter fuel (faster; fuel budgets in the workflow become errors).
    #[arg(long)]
    no_fuel: bool,
    /// Do not print the live view of the run on stderr (the summary still goes to stdout).
    #[arg(long, short)]
    quiet: bool,
}

/// Every agent succeeded.
pub const EXIT_OK: u8 = 0;
/// An agent failed or was skipped, or the engine could not start.
pub const EXIT_FAILED: u8 = 1;
/// The input is unusable: workflow file, component files, arguments.
pub const EXIT_INVALID: u8 = 2;
/// The run was interrupted (Ctrl-C): 128 + SIGINT, as shells expect.
pub const EXIT_CANCELLED: u8 = 130;

/// Run the command line `args` (including the program name), writing normal
/// output to `out` and errors to `err`; returns the exit code.
pub fn main<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_INVALID } else { EXIT_OK };
            let text = e.render().ansi().to_string();
            let _ = if e.use_stderr() { write!(err, "{text}") } else { write!(out, "{text}") };
            return code;
        }
    };
    let result = match cli.command {
        Command::Run(args) => run(&args, out, err),
        Command::Check(args) => check(&args, out, err),
        Command::Schema => schema(out),
        Command::Plan(args) => plan::plan(&args, out, err),
        Command::Graph(args) => plan::graph(&args, out, err),
    };
    // Output that cannot be written (a closed pipe) is not worth a panic.
    result.unwrap_or(EXIT_FAILED)
}

fn run(args: &RunArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<u8> {
    let workflow = match Workflow::load(&args.workflow) {
        Ok(w) => w,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(EXIT_INVALID);
        }
    };
    let cache_dir = args.cache_dir.clone().unwrap_or_else(|| default_cache_dir(&workflow.path));
    let max_memory = workflow.agents.iter().map(|a| a.memory_bytes(&workflow.resources)).max().unwrap_or(0);
    let config = RuntimeConfig {
        max_instances: workflow.resources.max_concurrent,
        max_memory_bytes: max_memory.max(1 << 20),
        fuel: !args.no_fuel,
        cache_dir: Some(cache_dir),
        ..RuntimeConfig::default()
    };
    let engine = match Engine::new(config) {
        Ok(e) => e,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(EXIT_FAILED);
        }
    };
    if let Err(errors) = engine.load_components(&workflow) {
        for e in errors {
            writeln!(err, "error: {e}")?;
        }
        return Ok(EXIT_INVALID);
    }
    // Agents are tasks that poll for whole time slices (10 ms and up), so
    // look at newly admitted ones at every tick: otherwise a new agent can
    // wait dozens of slices behind running ones before its first.
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().global_queue_interval(1).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                writeln!(err, "error: cannot start the async runtime: {e}")?;
                return Ok(EXIT_FAILED);
            }
        };
    let options = RunOptions::default();
    let cancel = options.cancel.clone();
    let mut events = options.events.subscribe();
    let mut live = live::LiveView::new(!args.quiet);
    let report = runtime.block_on(async {
        let run = engine.run(&workflow, options);
        tokio::pin!(run);
        // One listener for the whole run, re-armed after each Ctrl-C, so no
        // interrupt falls between two loop turns.
        let mut interrupt = Box::pin(tokio::signal::ctrl_c());
        let (mut listening, mut interrupts) = (true, 0);
        loop {
            tokio::select! {
                report = &mut run => break report,
                Ok(event) = events.recv() => live.show(err, &event),
                signal = &mut interrupt, if listening => {
                    if signal.is_err() {
                        // No signal handling here: run to the end.
                        listening = false;
                        continue;
                    }
                    interrupt = Box::pin(tokio::signal::ctrl_c());
                    interrupts += 1;
                    if interrupts > 1 {
                        let _ = writeln!(err, "interrupted again: exiting without waiting");
                        std::process::exit(i32::from(EXIT_CANCELLED));
                    }
                    let _ = writeln!(err, "interrupted: stopping running agents (Ctrl-C again to exit at once)");
                    cancel.cancel();
                }
            }
        }
    });
    while let Ok(event) = events.try_recv() {
        live.show(err, &event);
    }
    summary::print(out, &report)?;
    print_context(out, &report.context)?;
    Ok(if report.cancelled {
        EXIT_CANCELLED
    } else if report.succeeded() {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

fn check(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<u8> {
    let loaded = if args.no_components {
        Workflow::load_for_planning(&args.workflow)
    } else {
        Workflow::load(&args.workflow)
    };
    match loaded {
        Ok(w) => {
            let groups =
                if w.groups.is_empty() { String::new() } else { format!(", {} groups", w.groups.len()) };
            writeln!(
                out,
                "{}: ok: workflow `{}`, {} agents{groups}",
                w.path.display(),
                w.name,
                w.agents.len()
            )?;
            Ok(EXIT_OK)
        }
        Err(e) => {
            writeln!(err, "{e}")?;
            Ok(EXIT_INVALID)
        }
    }
}

fn schema(out: &mut dyn Write) -> std::io::Result<u8> {
    let text = serde_json::to_string_pretty(&Workflow::json_schema()).map_err(std::io::Error::other)?;
    writeln!(out, "{text}")?;
    Ok(EXIT_OK)
}

fn default_cache_dir(workflow: &Path) -> PathBuf {
    workflow.parent().unwrap_or(Path::new(".")).join(".ensemble").join("compiled")
}

/// Longest value shown per key; the rest is elided.
const SHOWN_VALUE_CHARS: usize = 200;

fn print_context(out: &mut dyn Write, context: &Snapshot) -> std::io::Result<()> {
    writeln!(out, "context (version {}, {} keys):", context.version(), context.len())?;
    for (key, entry) in context.iter() {
        let shown = match rmp_serde::from_slice::<serde_json::Value>(&entry.value) {
            Ok(value) => value.to_string(),
            Err(_) => format!("<{} bytes, not MessagePack>", entry.value.len()),
        };
        let shown = if shown.chars().count() > SHOWN_VALUE_CHARS {
            format!("{}…", shown.chars().take(SHOWN_VALUE_CHARS).collect::<String>())
        } else {
            shown
        };
        writeln!(out, "  {key} = {shown}   [{}]", entry.writer)?;
    }
    Ok(())
}
