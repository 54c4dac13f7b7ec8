//! `ensemble run`, `resume`, `runs` and `context`: running workflows (over
//! [`ensemble::run::RunBuilder`]), and the journal each run leaves in its
//! state directory.
//!
//! The state directory (`--state-dir`) holds `runs/<run id>.redb` (one
//! journal per run) and `compiled/` (the compiled component cache). For `run`, it
//! defaults to `.ensemble` next to the workflow, or to the per-user state
//! directory when the workflow's folder cannot be written (see
//! [`ensemble::run::places`]); for the other commands to `.ensemble` in the
//! current directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{EXIT_FAILED, EXIT_INVALID, EXIT_OK, Terminal};
use ensemble::Workflow;
use ensemble::journal::{self, Journal};
use ensemble::report::{self, RunMetrics};
use ensemble::run::{RunBuilder, RunError};

#[derive(Debug, clap::Args)]
pub(super) struct RunArgs {
    /// The workflow file (YAML).
    workflow: PathBuf,
    /// Where the run journal and compiled components live [default: .ensemble
    /// next to the workflow; if its folder is read-only, $XDG_STATE_HOME/ensemble
    /// or ~/.local/state/ensemble, which then holds the output cache too].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Where compiled components are cached [default: STATE_DIR/compiled].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// The run's id [default: generated].
    #[arg(long, value_name = "ID")]
    run_id: Option<String>,
    /// Do not journal the run (it cannot be resumed then).
    #[arg(long)]
    no_journal: bool,
    /// An input value, committed as `input.NAME` before any agent starts:
    /// the contents of FILE (YAML or JSON). Repeat for more.
    #[arg(long, value_name = "NAME=FILE")]
    input: Vec<String>,
    #[command(flatten)]
    exec: ExecArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ExecArgs {
    /// Run every agent, even those whose cached output still holds (the cache is not read or written).
    #[arg(long)]
    no_cache: bool,
    /// Do not meter fuel (faster; fuel budgets in the workflow become errors).
    #[arg(long)]
    no_fuel: bool,
    /// Do not print the live view of the run on stderr (the summary still goes to stdout).
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// Stream the run's events to stdout as JSON lines (one object per event,
    /// `"event"` names its kind, `"at"` the seconds since the start); the
    /// summary then goes to stderr. A `{"event":"lagged","missed":N}` line
    /// says the stream fell behind and lost N events.
    #[arg(long, value_name = "FORMAT", value_enum)]
    pub(crate) events: Option<EventFormat>,
    /// Write the workflow's `outputs` even though its `outputs.dir` (its
    /// symbolic links followed) is outside the workflow file's folder;
    /// without it, such a run is refused before it starts.
    #[arg(long)]
    allow_outputs_outside: bool,
    #[command(flatten)]
    pub(crate) files: ReportFiles,
}

impl ExecArgs {
    /// `builder` with these flags' settings.
    fn apply(&self, builder: RunBuilder) -> RunBuilder {
        builder.cache(!self.no_cache).fuel(!self.no_fuel).allow_outputs_outside(self.allow_outputs_outside)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum EventFormat {
    Json,
}

/// Files made from a finished run's report.
#[derive(Debug, clap::Args)]
pub(crate) struct ReportFiles {
    /// Write the run report (every metric, the timeline) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Write a Chrome trace (open it in Perfetto or chrome://tracing) to FILE.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Write the run's metrics in Prometheus text format to FILE.
    #[arg(long, value_name = "FILE")]
    metrics: Option<PathBuf>,
}

impl ReportFiles {
    /// Why a file asked for cannot be written, one line each: checked
    /// before a run, so a typo does not waste it.
    fn unwritable(&self, html: Option<&Path>) -> Vec<String> {
        [
            ("--report", self.report.as_deref()),
            ("--trace", self.trace.as_deref()),
            ("--metrics", self.metrics.as_deref()),
            ("--html", html),
        ]
        .into_iter()
        .filter_map(|(flag, path)| {
            let path = path?;
            ensemble::files::file_unwritable(path).map(|why| format!("{flag} {}: {why}", path.display()))
        })
        .collect()
    }

    /// Write the files asked for; false (after saying why on `err`) if one could not be written.
    pub(crate) fn write(
        &self,
        metrics: &RunMetrics,
        html: Option<&Path>,
        err: &mut dyn Write,
    ) -> std::io::Result<bool> {
        type Render = fn(&RunMetrics) -> String;
        let files: [(Option<&Path>, &str, Render); 4] = [
            (self.report.as_deref(), "run report", RunMetrics::to_json),
            (self.trace.as_deref(), "trace", report::trace::render),
            (self.metrics.as_deref(), "metrics", report::prometheus::render),
            (html, "HTML report", report::html::render),
        ];
        let mut ok = true;
        for (path, what, render) in files {
            let Some(path) = path else { continue };
            if let Err(e) = std::fs::write(path, render(metrics)) {
                writeln!(err, "error: cannot write the {what} to {}: {e}", path.display())?;
                ok = false;
            }
        }
        Ok(ok)
    }
}

#[derive(Debug, clap::Args)]
pub(super) struct ReportArgs {
    /// The run (see `ensemble runs`).
    run: String,
    /// Where the run's journal is [default: found in ./.ensemble, the
    /// .ensemble folders below it, or the per-user state directory].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Print the run report as JSON instead of the Markdown summary.
    #[arg(long)]
    json: bool,
    /// Write a self-contained HTML report (timeline and metrics) to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    #[command(flatten)]
    files: ReportFiles,
}

#[derive(Debug, clap::Args)]
pub(super) struct ResumeArgs {
    /// The run to finish (see `ensemble runs`).
    run: String,
    /// Where the run's journal is [default: found in ./.ensemble, the
    /// .ensemble folders below it, or the per-user state directory].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Resume even if the workflow file or a component changed since the run started.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    exec: ExecArgs,
}

#[derive(Debug, clap::Args)]
pub(super) struct RunsArgs {
    /// Where the journals are [default: ./.ensemble, the .ensemble folders
    /// below it, and the per-user state directory].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(super) struct ContextArgs {
    /// The run (see `ensemble runs`).
    run: String,
    /// Show only this key and the keys under it.
    key: Option<String>,
    /// Show every version of each key, with who wrote it and when.
    #[arg(long)]
    history: bool,
    /// Print one JSON object of key → value instead of text.
    #[arg(long)]
    json: bool,
    /// Where the run's journal is [default: found in ./.ensemble, the
    /// .ensemble folders below it, or the per-user state directory].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

pub(super) fn run(
    args: &RunArgs,
    term: Terminal,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<u8> {
    let workflow = match Workflow::load(&args.workflow) {
        Ok(w) => w,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(EXIT_INVALID);
        }
    };
    // Every check of the input comes before anything is written (compiled
    // components, the journal).
    let inputs = match read_inputs(&args.input) {
        Ok(inputs) => inputs,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(EXIT_INVALID);
        }
    };
    let mut builder = args.exec.apply(RunBuilder::new(workflow)).journal(!args.no_journal);
    if let Some(dir) = &args.state_dir {
        builder = builder.state_dir(dir);
    }
    if let Some(dir) = &args.cache_dir {
        builder = builder.compiled_dir(dir);
    }
    if let Some(id) = &args.run_id {
        builder = builder.run_id(id);
    }
    for (name, value) in inputs {
        builder = builder.input(name, value);
    }
    start(builder, &args.exec, term, out, err)
}

pub(super) fn resume(
    args: &ResumeArgs,
    term: Terminal,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<u8> {
    let state_dir = crate::state::for_run(args.state_dir.as_deref(), &args.run);
    match RunBuilder::resume_in(&state_dir, &args.run) {
        Ok(builder) => start(args.exec.apply(builder).force(args.force), &args.exec, term, out, err),
        Err(e) => refused(err, &e),
    }
}

/// Check `builder` and the report files, prepare the run, show its grants,
/// drive it and print what it left; the exit code.
fn start(
    builder: RunBuilder,
    exec: &ExecArgs,
    term: Terminal,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<u8> {
    let mut unusable: Vec<String> = builder.problems().into_iter().map(flag_named).collect();
    unusable.extend(exec.files.unwritable(None));
    if !unusable.is_empty() {
        return invalid(err, &unusable);
    }
    let workflow = std::sync::Arc::new(builder.workflow().clone());
    match crate::drive::drive(builder, exec, term, out, err)? {
        Ok(finished) => crate::drive::finish(&workflow, &finished, exec, out, err),
        Err(e) => refused(err, &e),
    }
}

/// A problem with a directory, named by the flag that sets it.
fn flag_named(line: String) -> String {
    for (what, flag) in [("state directory ", "--state-dir "), ("compiled-component cache ", "--cache-dir ")]
    {
        if let Some(rest) = line.strip_prefix(what) {
            return format!("{flag}{rest}");
        }
    }
    line
}

/// Print why a run could not start (or go on); its exit code.
fn refused(err: &mut dyn Write, e: &RunError) -> std::io::Result<u8> {
    match e {
        RunError::Invalid(lines) => {
            let lines: Vec<String> = lines.iter().cloned().map(flag_named).collect();
            invalid(err, &lines)
        }
        RunError::Failed(why) => {
            writeln!(err, "error: {why}")?;
            Ok(EXIT_FAILED)
        }
    }
}

pub(super) fn list(args: &RunsArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<u8> {
    let dirs = crate::state::candidates(args.state_dir.as_deref());
    let runs: Vec<_> = dirs.iter().flat_map(|dir| journal::list_runs(dir)).collect();
    if runs.is_empty() {
        let looked = match &args.state_dir {
            Some(dir) => dir.display().to_string(),
            None => format!(
                "{}, the .ensemble folders below it or the per-user state directory (a run's journal is next to its workflow: pass --state-dir)",
                crate::state::HERE
            ),
        };
        writeln!(err, "no runs journaled in {looked}")?;
        return Ok(EXIT_OK);
    }
    for (path, record) in runs {
        match record {
            Ok(r) => {
                let started = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.started_unix_ms),
                );
                let resumed =
                    if r.resumed > 0 { format!(", resumed {}×", r.resumed) } else { String::new() };
                writeln!(
                    out,
                    "{}  {started}  {:<22}  {} ({}){resumed}",
                    r.run_id,
                    r.status.name(),
                    r.workflow,
                    r.workflow_path.display()
                )?;
            }
            Err(e) => writeln!(err, "{}: unreadable: {e}", path.display())?,
        }
    }
    Ok(EXIT_OK)
}

pub(super) fn context(args: &ContextArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<u8> {
    let state_dir = crate::state::for_run(args.state_dir.as_deref(), &args.run);
    let commits = match Journal::open_in(&state_dir, &args.run).and_then(|j| j.commits()) {
        Ok(c) => c,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(EXIT_INVALID);
        }
    };
    let wanted = |key: &str| args.key.as_deref().is_none_or(|k| ensemble::context::ownership::covers(k, key));
    if let Some(key) = &args.key {
        let keys: std::collections::BTreeSet<&str> =
            commits.iter().flat_map(|c| c.writes.iter().map(|(k, _)| k.as_str())).collect();
        if !keys.iter().any(|k| wanted(k)) {
            let hint = ensemble::workflow::closest(key, keys.iter().copied())
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_else(|| {
                    format!(" (it has {} keys: see ensemble context {})", keys.len(), args.run)
                });
            writeln!(err, "error: run `{}` has no key `{key}` nor keys under it{hint}", args.run)?;
            return Ok(EXIT_INVALID);
        }
    }
    let json = |bytes: &[u8]| {
        ensemble::context::decode_value(bytes).unwrap_or_else(|_| {
            serde_json::Value::String(format!("<{} bytes, not MessagePack>", bytes.len()))
        })
    };
    if args.json {
        let mut object = serde_json::Map::new();
        for commit in &commits {
            for (key, value) in commit.writes.iter().filter(|(k, _)| wanted(k)) {
                if args.history {
                    let entry = serde_json::json!({
                        "version": commit.version, "agent": commit.agent, "at_ms": commit.at_ms, "value": json(value)
                    });
                    let versions =
                        object.entry(key.clone()).or_insert_with(|| serde_json::Value::Array(Vec::new()));
                    if let serde_json::Value::Array(list) = versions {
                        list.push(entry);
                    }
                } else {
                    object.insert(key.clone(), json(value));
                }
            }
        }
        writeln!(out, "{}", serde_json::Value::Object(object))?;
        return Ok(EXIT_OK);
    }
    let mut latest: std::collections::BTreeMap<&str, (u64, &str, &[u8])> = Default::default();
    for commit in &commits {
        for (key, value) in commit.writes.iter().filter(|(k, _)| wanted(k)) {
            if args.history {
                writeln!(
                    out,
                    "v{:<4} {:>8}ms  {key} = {}   [{}]",
                    commit.version,
                    commit.at_ms,
                    json(value),
                    commit.agent
                )?;
            }
            latest.insert(key, (commit.version, &commit.agent, value));
        }
        for conflict in commit.conflicts.iter().filter(|c| args.history && wanted(&c.key)) {
            writeln!(
                out,
                "      conflict on {}: `{}` (read v{}) vs `{}`: {} [{}… vs {}…]",
                conflict.key,
                conflict.agent,
                conflict.base_version,
                conflict.other,
                conflict.resolution,
                conflict.ours_hash.get(..12).unwrap_or(&conflict.ours_hash),
                conflict.theirs_hash.get(..12).unwrap_or(&conflict.theirs_hash),
            )?;
        }
    }
    if !args.history {
        for (key, (version, agent, value)) in latest {
            writeln!(out, "{key} = {}   [{agent}, v{version}]", json(value))?;
        }
    }
    Ok(EXIT_OK)
}

/// `NAME=FILE` pairs → MessagePack values by name. Each error is one line.
fn read_inputs(pairs: &[String]) -> Result<std::collections::BTreeMap<String, Vec<u8>>, String> {
    let mut inputs = std::collections::BTreeMap::new();
    for pair in pairs {
        let Some((name, file)) = pair.split_once('=') else {
            return Err(format!("--input `{pair}`: write NAME=FILE, e.g. --input brief=brief.yaml"));
        };
        if let Some(rest) = name.strip_prefix("input.") {
            return Err(format!(
                "--input `{pair}`: the `input.` prefix is added for you: write --input {rest}={file} (agents read it as `{name}`)"
            ));
        }
        // The name must make a valid key under `input.` (and so fit its length).
        if let Err(e) = ensemble::context::validate_key(name)
            .and_then(|()| ensemble::context::validate_key(&format!("{INPUT_PREFIX}.{name}")))
        {
            return Err(format!("--input `{pair}`: {e}"));
        }
        if inputs.contains_key(name) {
            return Err(format!("--input `{pair}`: input `{name}` is given twice: keep one"));
        }
        let bytes =
            ensemble::inputs::load_input(Path::new(file)).map_err(|e| format!("--input {name}: {e}"))?;
        inputs.insert(name.to_owned(), bytes);
    }
    Ok(inputs)
}

/// The prefix of the run's input keys.
const INPUT_PREFIX: &str = ensemble::exec::INPUT_WRITER;

/// Print each reason the input is unusable; exit code 2.
fn invalid(err: &mut dyn Write, lines: &[String]) -> std::io::Result<u8> {
    for line in lines {
        writeln!(err, "error: {line}")?;
    }
    Ok(EXIT_INVALID)
}

pub(super) fn report(args: &ReportArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<u8> {
    let unusable = args.files.unwritable(args.html.as_deref());
    if !unusable.is_empty() {
        return invalid(err, &unusable);
    }
    let state_dir = crate::state::for_run(args.state_dir.as_deref(), &args.run);
    let read = Journal::open_in(&state_dir, &args.run)
        .and_then(|j| Ok((j.report::<RunMetrics>()?, j.run()?.status)));
    let metrics = match read {
        Ok((Some(metrics), _)) => metrics,
        Ok((None, status)) => {
            let why = if status == journal::RunStatus::Running {
                format!(
                    "it has not finished: it is running, was killed, or its journal failed (finish it with: ensemble resume {} --state-dir {})",
                    args.run,
                    state_dir.display()
                )
            } else {
                "its journal was written by an ensemble without run reports".to_owned()
            };
            writeln!(err, "error: run `{}` has no report: {why}", args.run)?;
            return Ok(EXIT_INVALID);
        }
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(EXIT_INVALID);
        }
    };
    let files_written = args.files.write(&metrics, args.html.as_deref(), err)?;
    if args.json {
        writeln!(out, "{}", metrics.to_json())?;
    } else {
        write!(out, "{}", report::markdown::render(&metrics))?;
    }
    Ok(if files_written { EXIT_OK } else { EXIT_FAILED })
}
