//! `ensemble run`, `resume`, `runs` and `context`: running workflows, and
//! the journal each run leaves in its state directory.
//!
//! The state directory (`--state-dir`) holds `compiled/` (the compiled
//! component cache) and `runs/<run id>.redb` (one journal per run). For
//! `run`, it defaults to `.ensemble` next to the workflow; for the other
//! commands to `.ensemble` in the current directory.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::loading::{Shown, engine_for};
use super::{EXIT_CANCELLED, EXIT_FAILED, EXIT_INVALID, EXIT_OK, Terminal, live, print_context};
use crate::cache::AgentCache;
use crate::journal::{self, Journal};
use crate::observe::{self, EventSink, RunMetrics};
use crate::{Engine, RunOptions, RunReport, Workflow};

#[derive(Debug, clap::Args)]
pub(super) struct RunArgs {
    /// The workflow file (YAML).
    workflow: PathBuf,
    /// Where the run journal and compiled components live [default: .ensemble next to the workflow].
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
pub(super) struct ExecArgs {
    /// Run every agent, even those whose cached output still holds (the cache is not read or written).
    #[arg(long)]
    no_cache: bool,
    /// Do not meter fuel (faster; fuel budgets in the workflow become errors).
    #[arg(long)]
    no_fuel: bool,
    /// Do not print the live view of the run on stderr (the summary still goes to stdout).
    #[arg(long, short)]
    quiet: bool,
    /// Stream the run's events to stdout as JSON lines (one object per event,
    /// `"event"` names its kind, `"at"` the seconds since the start); the
    /// summary then goes to stderr. A `{"event":"lagged","missed":N}` line
    /// says the stream fell behind and lost N events.
    #[arg(long, value_name = "FORMAT", value_enum)]
    events: Option<EventFormat>,
    /// Write the workflow's `outputs` even though its `outputs.dir` (its
    /// symbolic links followed) is outside the workflow file's folder;
    /// without it, such a run is refused before it starts.
    #[arg(long)]
    allow_outputs_outside: bool,
    #[command(flatten)]
    files: ReportFiles,
}

impl ExecArgs {
    /// The workflow's `outputs.dir`, when it is outside the workflow's
    /// folder and `--allow-outputs-outside` was not given: checked before a
    /// run, so none is wasted.
    fn unconfirmed_outputs(&self, workflow: &Workflow) -> Vec<String> {
        match workflow.outputs_outside() {
            Some(outside) if !self.allow_outputs_outside => vec![outside.to_string()],
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum EventFormat {
    Json,
}

/// Files made from a finished run's report.
#[derive(Debug, clap::Args)]
pub(super) struct ReportFiles {
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
            crate::files::file_unwritable(path).map(|why| format!("{flag} {}: {why}", path.display()))
        })
        .collect()
    }

    /// Write the files asked for; false (after saying why on `err`) if one could not be written.
    fn write(&self, metrics: &RunMetrics, html: Option<&Path>, err: &mut dyn Write) -> std::io::Result<bool> {
        type Render = fn(&RunMetrics) -> String;
        let files: [(Option<&Path>, &str, Render); 4] = [
            (self.report.as_deref(), "run report", RunMetrics::to_json),
            (self.trace.as_deref(), "trace", observe::trace::render),
            (self.metrics.as_deref(), "metrics", observe::prometheus::render),
            (html, "HTML report", observe::html::render),
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
    /// Where the run's journal is.
    #[arg(long, value_name = "DIR", default_value = ".ensemble")]
    state_dir: PathBuf,
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
    /// Where the run's journal is.
    #[arg(long, value_name = "DIR", default_value = ".ensemble")]
    state_dir: PathBuf,
    /// Resume even if the workflow file or a component changed since the run started.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    exec: ExecArgs,
}

#[derive(Debug, clap::Args)]
pub(super) struct RunsArgs {
    /// Where the journals are.
    #[arg(long, value_name = "DIR", default_value = ".ensemble")]
    state_dir: PathBuf,
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
    /// Where the run's journal is.
    #[arg(long, value_name = "DIR", default_value = ".ensemble")]
    state_dir: PathBuf,
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
    let state_dir = args.state_dir.clone().unwrap_or_else(|| default_state_dir(&workflow.path));
    let mut unusable = args.exec.unconfirmed_outputs(&workflow);
    unusable.extend(host_dirs_granted(&workflow, &state_dir, args.cache_dir.as_deref()));
    unusable.extend(args.exec.files.unwritable(None));
    for (flag, dir) in [("--state-dir", Some(&state_dir)), ("--cache-dir", args.cache_dir.as_ref())] {
        if let Some(why) = dir.and_then(|d| crate::files::dir_unusable(d)) {
            unusable.insert(
                0,
                format!("{flag} {}: {why}", dir.map(|d| d.display().to_string()).unwrap_or_default()),
            );
        }
    }
    if !unusable.is_empty() {
        return invalid(err, &unusable);
    }
    // The run's sink from the start: loading the components is part of the run.
    let events = EventSink::new();
    let shown = Shown::new(&args.exec, term, &events);
    let Some(engine) = engine_for(&workflow, args.cache_dir.clone(), &state_dir, shown, out, err)? else {
        return Ok(EXIT_INVALID);
    };
    let run_id = args.run_id.clone().unwrap_or_else(|| Engine::new_run_id(&workflow));
    let mut options = RunOptions { run_id: Some(run_id.clone()), events, ..RunOptions::default() };
    if !args.no_journal {
        match engine.create_journal(&workflow, &state_dir, &run_id) {
            Ok(journal) => {
                if let Err(e) = journal.set_inputs(&inputs) {
                    writeln!(err, "error: {e}")?;
                    return Ok(EXIT_FAILED);
                }
                options.journal = Some(Arc::new(journal));
            }
            Err(e) => {
                writeln!(err, "error: {e}")?;
                return Ok(EXIT_FAILED);
            }
        }
    }
    options.cache = cache_for(&workflow, &args.exec);
    options.inputs = inputs;
    if !args.exec.quiet {
        super::grants::print_summary(&workflow, if args.exec.events.is_some() { err } else { out })?;
    }
    let journaled = options.journal.is_some();
    let report = drive(&options, &args.exec, term, out, err, |options| engine.run(&workflow, options))?;
    finish(&workflow, &report, &args.exec, journaled.then_some(&state_dir), out, err)
}

pub(super) fn resume(
    args: &ResumeArgs,
    term: Terminal,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<u8> {
    let journal = match Journal::open_in(&args.state_dir, &args.run) {
        Ok(j) => j,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(EXIT_INVALID);
        }
    };
    let record = match journal.run() {
        Ok(r) => r,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(EXIT_INVALID);
        }
    };
    let workflow = match Workflow::load(&record.workflow_path) {
        Ok(w) => w,
        Err(e) => {
            writeln!(err, "error: run `{}`: {e}", record.run_id)?;
            return Ok(EXIT_INVALID);
        }
    };
    // Refuse a changed workflow before compiling anything for it.
    match Engine::resume_changes(&workflow, &journal) {
        Ok(changes) if !changes.is_empty() && !args.force => {
            let e = crate::exec::ResumeError::Changed { run: record.run_id, changes };
            writeln!(err, "error: {e}")?;
            return Ok(EXIT_INVALID);
        }
        Ok(_) => {}
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(EXIT_INVALID);
        }
    }
    let mut unusable = args.exec.unconfirmed_outputs(&workflow);
    unusable.extend(host_dirs_granted(&workflow, &args.state_dir, None));
    unusable.extend(args.exec.files.unwritable(None));
    if !unusable.is_empty() {
        return invalid(err, &unusable);
    }
    let events = EventSink::new();
    let shown = Shown::new(&args.exec, term, &events);
    let Some(engine) = engine_for(&workflow, None, &args.state_dir, shown, out, err)? else {
        return Ok(EXIT_INVALID);
    };
    let options = RunOptions {
        events,
        run_id: Some(record.run_id.clone()),
        cache: cache_for(&workflow, &args.exec),
        ..RunOptions::default()
    };
    let journal = Arc::new(journal);
    let resumed = drive(&options, &args.exec, term, out, err, |options| {
        engine.resume(&workflow, journal.clone(), options, args.force)
    })?;
    match resumed {
        Ok(report) => finish(&workflow, &report, &args.exec, Some(&args.state_dir), out, err),
        Err(e) => {
            writeln!(err, "error: {e}")?;
            Ok(EXIT_INVALID)
        }
    }
}

pub(super) fn list(args: &RunsArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<u8> {
    let runs = journal::list_runs(&args.state_dir);
    if runs.is_empty() {
        writeln!(err, "no runs journaled in {}", args.state_dir.display())?;
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
    let commits = match Journal::open_in(&args.state_dir, &args.run).and_then(|j| j.commits()) {
        Ok(c) => c,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(EXIT_INVALID);
        }
    };
    let wanted = |key: &str| args.key.as_deref().is_none_or(|k| crate::context::ownership::covers(k, key));
    if let Some(key) = &args.key {
        let keys: std::collections::BTreeSet<&str> =
            commits.iter().flat_map(|c| c.writes.iter().map(|(k, _)| k.as_str())).collect();
        if !keys.iter().any(|k| wanted(k)) {
            let hint = crate::workflow::closest(key, keys.iter().copied())
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_else(|| {
                    format!(" (it has {} keys: see ensemble context {})", keys.len(), args.run)
                });
            writeln!(err, "error: run `{}` has no key `{key}` nor keys under it{hint}", args.run)?;
            return Ok(EXIT_INVALID);
        }
    }
    let json = |bytes: &[u8]| {
        crate::context::decode_value(bytes).unwrap_or_else(|_| {
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
        if let Err(e) = crate::context::validate_key(name)
            .and_then(|()| crate::context::validate_key(&format!("{INPUT_PREFIX}.{name}")))
        {
            return Err(format!("--input `{pair}`: {e}"));
        }
        if inputs.contains_key(name) {
            return Err(format!("--input `{pair}`: input `{name}` is given twice: keep one"));
        }
        let bytes = crate::exec::load_input(Path::new(file)).map_err(|e| format!("--input {name}: {e}"))?;
        inputs.insert(name.to_owned(), bytes);
    }
    Ok(inputs)
}

/// The prefix of the run's input keys.
const INPUT_PREFIX: &str = crate::exec::INPUT_WRITER;

/// Write the workflow's `outputs` files after a run; false (after saying
/// why on `err`, one line each) if they could not be.
fn write_outputs(
    workflow: &Workflow,
    report: &RunReport,
    allow_outside: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<bool> {
    if workflow.outputs.is_none() {
        return Ok(true);
    }
    if !report.succeeded() {
        // Do not overwrite the documents of an earlier, successful run.
        writeln!(err, "outputs not written: the run did not succeed")?;
        return Ok(true);
    }
    let (written, errors) = crate::exec::write_outputs(workflow, &report.context, allow_outside);
    for e in &errors {
        writeln!(err, "error: {e}")?;
    }
    if !written.is_empty() {
        let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        writeln!(out, "wrote {}", names.join(", "))?;
    }
    Ok(errors.is_empty())
}

/// The workflow's agent output cache, unless disabled (by the file or `--no-cache`).
fn cache_for(workflow: &Workflow, exec: &ExecArgs) -> Option<Arc<AgentCache>> {
    let spec = &workflow.cache;
    (spec.enabled && !exec.no_cache)
        .then(|| Arc::new(AgentCache::open(&spec.dir, spec.max_size, spec.compress_above)))
}

/// Print each reason the input is unusable; exit code 2.
fn invalid(err: &mut dyn Write, lines: &[String]) -> std::io::Result<u8> {
    for line in lines {
        writeln!(err, "error: {line}")?;
    }
    Ok(EXIT_INVALID)
}

/// The compiled-component cache inside a state directory.
pub(super) const COMPILED: &str = "compiled";

/// `.ensemble` next to the workflow file.
/// Grants that reach the host's own directories (see [`Workflow::grants_reaching`]).
pub(super) fn host_dirs_granted(
    workflow: &Workflow,
    state_dir: &Path,
    compiled: Option<&Path>,
) -> Vec<String> {
    let mut found = workflow.grants_reaching(state_dir, "state directory");
    if workflow.cache.enabled {
        found.extend(workflow.grants_reaching(&workflow.cache.dir, "output cache"));
    }
    if let Some(dir) = compiled {
        found.extend(workflow.grants_reaching(dir, "compiled-component cache"));
    }
    found
}

pub(super) fn default_state_dir(workflow: &Path) -> PathBuf {
    workflow.parent().unwrap_or(Path::new(".")).join(".ensemble")
}

impl<'a> Shown<'a> {
    fn new(exec: &ExecArgs, term: Terminal, events: &'a EventSink) -> Self {
        Self { json: exec.events.is_some(), quiet: exec.quiet, term, events, fuel: !exec.no_fuel }
    }
}

/// Drive the run future `start(options)` on a fresh runtime to its end,
/// showing it live and turning Ctrl-C into a cancellation.
fn drive<F, T>(
    options: &RunOptions,
    exec: &ExecArgs,
    term: Terminal,
    out: &mut dyn Write,
    err: &mut dyn Write,
    start: impl FnOnce(RunOptions) -> F,
) -> std::io::Result<T>
where
    F: Future<Output = T>,
{
    // Agents are tasks that poll for whole time slices (10 ms and up), so
    // look at newly admitted ones at every tick: otherwise a new agent can
    // wait dozens of slices behind running ones before its first.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .global_queue_interval(1)
        .enable_all()
        .build()
        .map_err(|e| std::io::Error::other(format!("cannot start the async runtime: {e}")))?;
    let cancel = options.cancel.clone();
    let mut events = options.events.subscribe();
    let mut live = live::LiveView::new(exec.events.is_some(), exec.quiet, term.interactive);
    let result = runtime.block_on(async {
        let run = start(options.clone());
        tokio::pin!(run);
        let mut interrupt = Box::pin(tokio::signal::ctrl_c());
        let (mut listening, mut interrupts) = (true, 0);
        loop {
            tokio::select! {
                result = &mut run => break result,
                received = events.recv() => match received {
                    Ok(event) => live.show(out, err, &event),
                    Err(RecvError::Lagged(missed)) => live.missed(out, missed),
                    Err(RecvError::Closed) => {}
                },
                signal = &mut interrupt, if listening => {
                    if signal.is_err() {
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
    loop {
        match events.try_recv() {
            Ok(event) => live.show(out, err, &event),
            Err(TryRecvError::Lagged(missed)) => live.missed(out, missed),
            Err(_) => break,
        }
    }
    live.finish();
    Ok(result)
}

/// After a run: its outputs, the report files, the summary (on stdout, or on
/// stderr when stdout carries the JSON events), the context or where to
/// find it, the journal; the exit code.
fn finish(
    workflow: &Workflow,
    report: &RunReport,
    exec: &ExecArgs,
    state_dir: Option<&Path>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<u8> {
    let mut summary = Vec::new();
    let code = summarise(workflow, report, exec, state_dir, &mut summary, err)?;
    if exec.events.is_some() {
        err.write_all(&summary)?
    } else {
        out.write_all(&summary)?
    }
    Ok(code)
}

fn summarise(
    workflow: &Workflow,
    report: &RunReport,
    exec: &ExecArgs,
    state_dir: Option<&Path>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<u8> {
    let outputs_written = write_outputs(workflow, report, exec.allow_outputs_outside, out, err)?;
    let metrics = report.metrics(workflow);
    let files_written = exec.files.write(&metrics, None, err)?;
    write!(out, "{}", observe::markdown::render(&metrics))?;
    writeln!(out)?;
    if workflow.outputs.is_some() {
        // The documents are the result; the context is one command away.
        writeln!(
            out,
            "context: version {}, {} keys{}",
            report.context.version(),
            report.context.len(),
            match state_dir {
                Some(dir) => format!(" (ensemble context {} --state-dir {})", report.run_id, dir.display()),
                None => String::new(),
            }
        )?;
    } else {
        print_context(out, &report.context)?;
    }
    if let Some(dir) = state_dir {
        if report.succeeded() {
            writeln!(out, "journal: {}", journal::path_of(dir, &report.run_id).display())?;
        } else {
            writeln!(
                out,
                "journal: {} (finish it with: ensemble resume {} --state-dir {})",
                journal::path_of(dir, &report.run_id).display(),
                report.run_id,
                dir.display()
            )?;
        }
    }
    Ok(if report.cancelled {
        EXIT_CANCELLED
    } else if !report.succeeded() || !files_written {
        EXIT_FAILED
    } else if !outputs_written {
        // The workflow's outputs do not match what its agents wrote.
        EXIT_INVALID
    } else {
        EXIT_OK
    })
}

pub(super) fn report(args: &ReportArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<u8> {
    let unusable = args.files.unwritable(args.html.as_deref());
    if !unusable.is_empty() {
        return invalid(err, &unusable);
    }
    let read = Journal::open_in(&args.state_dir, &args.run).and_then(|j| Ok((j.report()?, j.run()?.status)));
    let metrics = match read {
        Ok((Some(metrics), _)) => metrics,
        Ok((None, status)) => {
            let why = if status == journal::RunStatus::Running {
                format!(
                    "it has not finished: it is running, was killed, or its journal failed (finish it with: ensemble resume {} --state-dir {})",
                    args.run,
                    args.state_dir.display()
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
        write!(out, "{}", observe::markdown::render(&metrics))?;
    }
    Ok(if files_written { EXIT_OK } else { EXIT_FAILED })
}
