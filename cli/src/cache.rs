//! `ensemble cache`: the agent output cache and the compiled-component
//! cache of a workflow.

use std::io::Write;
use std::path::PathBuf;

use crate::{EXIT_INVALID, EXIT_OK};
use ensemble::Workflow;
use ensemble::cache::AgentCache;
use ensemble::run::places;

#[derive(Debug, clap::Args)]
pub(super) struct CacheArgs {
    #[command(subcommand)]
    action: CacheAction,
}

#[derive(Debug, clap::Subcommand)]
enum CacheAction {
    /// Entries, sizes and hit ratios of the agent output cache and the compiled-component cache.
    Stats(CacheTarget),
    /// Remove every cached agent output.
    Clear(CacheTarget),
    /// Evict agent outputs until the cache fits its `cache.max_size`.
    Gc(CacheTarget),
    /// Compile every component of the workflow into the compiled-component
    /// cache, so that its first run compiles nothing.
    Warm(WarmTarget),
}

#[derive(Debug, clap::Args)]
struct WarmTarget {
    /// The workflow whose components to compile.
    workflow: PathBuf,
    /// The state directory of its runs [default: .ensemble next to the workflow].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Where compiled components are cached [default: STATE_DIR/compiled].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// For runs with `--no-fuel` (their compiled code differs).
    #[arg(long)]
    no_fuel: bool,
}

#[derive(Debug, clap::Args)]
struct CacheTarget {
    /// The workflow whose caches to act on (its `cache` settings say where they are).
    workflow: PathBuf,
    /// The state directory of its runs [default: as `run`'s].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

pub(super) fn cache(args: &CacheArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<u8> {
    let target = match &args.action {
        CacheAction::Stats(t) | CacheAction::Clear(t) | CacheAction::Gc(t) => t,
        CacheAction::Warm(warm) => return self::warm(warm, out, err),
    };
    let workflow = match Workflow::load_for_planning(&target.workflow) {
        Ok(w) => w,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(EXIT_INVALID);
        }
    };
    let spec = workflow.cache();
    let state_dir = target.state_dir.clone().unwrap_or_else(|| places::default_state_dir(workflow.path()));
    let dir = places::output_cache_dir(&workflow, &state_dir);
    let agents = AgentCache::open(&dir, spec.max_size, spec.compress_above);
    match &args.action {
        CacheAction::Stats(_) => {
            let s = agents.stats();
            let ratio = if s.lookups == 0 { 0.0 } else { 100.0 * s.hits as f64 / s.lookups as f64 };
            writeln!(
                out,
                "agent outputs ({}): {} entries, {} of {}; {} hits in {} lookups ({ratio:.0}%)",
                dir.display(),
                s.entries,
                bytes(s.bytes),
                bytes(spec.max_size),
                s.hits,
                s.lookups
            )?;
            let compiled = state_dir.join(places::COMPILED);
            let (files, size) = std::fs::read_dir(&compiled)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter_map(|e| e.metadata().ok())
                        .fold((0, 0), |(n, b), m| (n + 1, b + m.len()))
                })
                .unwrap_or((0, 0));
            writeln!(out, "compiled components ({}): {files} entries, {}", compiled.display(), bytes(size))?;
        }
        CacheAction::Clear(_) => {
            agents.clear()?;
            writeln!(out, "cleared {}", dir.display())?;
        }
        CacheAction::Warm(_) => {}
        CacheAction::Gc(_) => {
            let evicted = agents.gc();
            let s = agents.stats();
            writeln!(
                out,
                "evicted {} entries; {} entries, {} remain",
                evicted.len(),
                s.entries,
                bytes(s.bytes)
            )?;
        }
    }
    Ok(EXIT_OK)
}

pub(super) fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn warm(target: &WarmTarget, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<u8> {
    let workflow = match Workflow::load(&target.workflow) {
        Ok(w) => w,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(EXIT_INVALID);
        }
    };
    let state_dir = target.state_dir.clone().unwrap_or_else(|| places::default_state_dir(workflow.path()));
    match ensemble::run::warm(&workflow, &state_dir, target.cache_dir.clone(), !target.no_fuel) {
        Ok(stats) => {
            let dir = target.cache_dir.clone().unwrap_or_else(|| state_dir.join(places::COMPILED));
            writeln!(
                out,
                "compiled components ({}): {} compiled, {} already there",
                dir.display(),
                stats.compiled,
                stats.disk_hits
            )?;
            Ok(EXIT_OK)
        }
        Err(e) => {
            writeln!(err, "error: {e}")?;
            Ok(EXIT_INVALID)
        }
    }
}
