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
use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod cache;
mod drive;
mod grants;
mod live;
mod plan;
mod runs;
mod state;

use ensemble::Workflow;
use ensemble::context::Snapshot;
use ensemble::run::places;

/// Run multi-agent workflows in parallel, every agent a sandboxed WebAssembly component.
#[derive(Debug, Parser)]
#[command(name = "ensemble", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a workflow: live progress, then a summary (outcomes, metrics, critical path) and the context.
    Run(runs::RunArgs),
    /// Finish a run that stopped (killed, cancelled, failed) from its journal.
    Resume(runs::ResumeArgs),
    /// List journaled runs with their status.
    Runs(runs::RunsArgs),
    /// Show a run's context from its journal: values (as JSON), writers, history.
    Context(runs::ContextArgs),
    /// Show a finished run's report: summary, JSON, HTML timeline, trace, Prometheus metrics.
    Report(runs::ReportArgs),
    /// Inspect or trim the caches: agent outputs and compiled components.
    Cache(cache::CacheArgs),
    /// Check a workflow file and load its components as `run` would; report every problem (exit 2 if any).
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
    /// Check the file only: component files need not exist yet, and are not loaded.
    #[arg(long)]
    no_components: bool,
}

/// Every agent succeeded.
pub const EXIT_OK: u8 = 0;
/// An agent failed or was skipped, or the engine could not start.
pub const EXIT_FAILED: u8 = 1;
/// The input is unusable: workflow file, component files, arguments.
pub const EXIT_INVALID: u8 = 2;
/// The run was interrupted (Ctrl-C): 128 + SIGINT, as shells expect.
pub const EXIT_CANCELLED: u8 = 130;

/// What the output goes to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal {
    /// stderr is a terminal: the live view draws progress bars there (on
    /// the process's stderr, not through `err`).
    pub interactive: bool,
    /// Colour the help (on stdout) and argument errors (on stderr): each
    /// only when it goes to a terminal and `NO_COLOR` is not set.
    pub colour_out: bool,
    pub colour_err: bool,
}

impl Terminal {
    /// The process's own stdout and stderr, and its `NO_COLOR`
    /// (<https://no-color.org>: set and not empty turns colour off).
    pub fn detect() -> Self {
        use std::io::IsTerminal;
        let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let interactive = std::io::stderr().is_terminal();
        Self {
            interactive,
            colour_out: colour && std::io::stdout().is_terminal(),
            colour_err: colour && interactive,
        }
    }
}

/// Run the command line `args` (including the program name), writing normal
/// output to `out` and errors to `err`; returns the exit code. The live view
/// is plain lines on `err`.
pub fn main<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    main_on(args, Terminal::default(), out, err)
}

/// [`main`] for the `ensemble` binary, which knows whether stderr is a terminal.
pub fn main_on<I, T>(args: I, term: Terminal, out: &mut dyn Write, err: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_INVALID } else { EXIT_OK };
            let colour = if e.use_stderr() { term.colour_err } else { term.colour_out };
            let rendered = e.render();
            let text = if colour { rendered.ansi().to_string() } else { rendered.to_string() };
            let _ = if e.use_stderr() { write!(err, "{text}") } else { write!(out, "{text}") };
            return code;
        }
    };
    let result = match cli.command {
        Command::Run(args) => runs::run(&args, term, out, err),
        Command::Resume(args) => runs::resume(&args, term, out, err),
        Command::Report(args) => runs::report(&args, out, err),
        Command::Runs(args) => runs::list(&args, out, err),
        Command::Context(args) => runs::context(&args, out, err),
        Command::Cache(args) => cache::cache(&args, out, err),
        Command::Check(args) => check(&args, out, err),
        Command::Schema => schema(out),
        Command::Plan(args) => plan::plan(&args, out, err),
        Command::Graph(args) => plan::graph(&args, out, err),
    };
    // Output that cannot be written (a closed pipe) is not worth a panic.
    result.unwrap_or(EXIT_FAILED)
}

fn check(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<u8> {
    let loaded = if args.no_components {
        Workflow::load_for_planning(&args.workflow)
    } else {
        Workflow::load(&args.workflow)
    };
    match loaded {
        Ok(w) if !args.no_components && !components_load(&w, err)? => Ok(EXIT_INVALID),
        Ok(w) if !host_dirs_granted(&w).is_empty() => {
            for line in host_dirs_granted(&w) {
                writeln!(err, "{line}")?;
            }
            Ok(EXIT_INVALID)
        }
        Ok(w) => {
            let groups =
                if w.groups().is_empty() { String::new() } else { format!(", {} groups", w.groups().len()) };
            writeln!(
                out,
                "{}: ok: workflow `{}`, {} agents{groups}",
                w.path().display(),
                w.name(),
                w.agents().len()
            )?;
            grants::print_summary(&w, out)?;
            Ok(EXIT_OK)
        }
        Err(e) => {
            writeln!(err, "{e}")?;
            Ok(EXIT_INVALID)
        }
    }
}

/// Grants of `w` reaching the directories a run of it keeps by default.
fn host_dirs_granted(w: &Workflow) -> Vec<String> {
    places::host_dirs_granted(w, &places::default_state_dir(w.path()), None)
}

/// Load and type-check every component of `w` as `run` does (format,
/// world, exports, imports against the grants), in memory only; false after
/// printing one line per unusable component.
fn components_load(w: &Workflow, err: &mut dyn Write) -> std::io::Result<bool> {
    let config =
        ensemble::RuntimeConfig { max_instances: 1, pooling: false, ..ensemble::RuntimeConfig::default() };
    let engine = match ensemble::Engine::new(config) {
        Ok(engine) => engine,
        Err(e) => {
            writeln!(err, "{e}")?;
            return Ok(false);
        }
    };
    match engine.load_components(w) {
        Ok(()) => Ok(true),
        Err(errors) => {
            for e in errors {
                writeln!(err, "{e}")?;
            }
            Ok(false)
        }
    }
}

fn schema(out: &mut dyn Write) -> std::io::Result<u8> {
    let text = serde_json::to_string_pretty(&Workflow::json_schema()).map_err(std::io::Error::other)?;
    writeln!(out, "{text}")?;
    Ok(EXIT_OK)
}

/// Longest value shown per key; the rest is elided.
const SHOWN_VALUE_CHARS: usize = 200;

pub(crate) fn print_context(out: &mut dyn Write, context: &Snapshot) -> std::io::Result<()> {
    writeln!(out, "context (version {}, {} keys):", context.version(), context.len())?;
    for (key, entry) in context.iter() {
        let shown = match ensemble::context::decode_value(&entry.value) {
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
