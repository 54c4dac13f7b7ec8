//! Loading a workflow's components before its run (so that an unusable one
//! is refused before anything is written), shown live through the run's own
//! event sink, so that the run counts the time it took.

use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::sync::broadcast::error::TryRecvError;

use super::runs::COMPILED;
use super::{Terminal, live};
use crate::observe::EventSink;
use crate::{Engine, RuntimeConfig, Workflow};

/// How loading is shown (as the run that follows will be, through its
/// sink), and whether the engine meters fuel.
#[derive(Clone, Copy)]
pub(super) struct Shown<'a> {
    pub(super) json: bool,
    pub(super) quiet: bool,
    pub(super) term: Terminal,
    pub(super) events: &'a EventSink,
    pub(super) fuel: bool,
}

/// An engine sized for `workflow` with every component loaded (shown live
/// through the run's sink, so the run counts the time), or `None` (the
/// errors printed) when one cannot be used.
pub(super) fn engine_for(
    workflow: &Workflow,
    cache_dir: Option<PathBuf>,
    state_dir: &Path,
    shown: Shown<'_>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<Option<Engine>> {
    let max_memory = workflow.agents.iter().map(|a| a.memory_bytes(&workflow.resources)).max().unwrap_or(0);
    let cache_dir = match cache_dir {
        Some(dir) => dir,
        None => {
            // `compiled/` is inside the state directory: a link there must
            // not lead out of it. (Checked without making anything.)
            let compiled = Path::new(COMPILED);
            if let Ok(state) = crate::confined::Root::open(state_dir)
                && let Err(e) = state.subdir(compiled, false)
                && crate::confined::is_escape(&e)
            {
                writeln!(err, "error: --state-dir {}: {e}", state_dir.display())?;
                return Ok(None);
            }
            state_dir.join(compiled)
        }
    };
    let config = RuntimeConfig {
        max_instances: workflow.resources.max_concurrent,
        max_memory_bytes: max_memory.max(1 << 20),
        fuel: shown.fuel,
        cache_dir: Some(cache_dir),
        ..RuntimeConfig::default()
    };
    let engine = match Engine::new(config) {
        Ok(e) => e,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(None);
        }
    };
    if let Err(errors) = load_shown(&engine, workflow, shown, out, err) {
        for e in errors {
            writeln!(err, "error: {e}")?;
        }
        return Ok(None);
    }
    Ok(Some(engine))
}

/// Load every component of `workflow` into `engine` on a thread of its own,
/// showing its events live meanwhile.
fn load_shown(
    engine: &Engine,
    workflow: &Workflow,
    shown: Shown<'_>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Vec<crate::runtime::AgentError>> {
    let mut events = shown.events.subscribe();
    let mut live = live::LiveView::new(shown.json, shown.quiet, shown.term.interactive);
    let mut show = |live: &mut live::LiveView| loop {
        match events.try_recv() {
            Ok(event) => live.show(out, err, &event),
            Err(TryRecvError::Lagged(missed)) => live.missed(out, missed),
            Err(_) => break,
        }
    };
    let (done, finished) = std::sync::mpsc::channel();
    let loaded = std::thread::scope(|scope| {
        let loading = scope.spawn(move || {
            let loaded = engine.load_components_with(workflow, shown.events);
            let _ = done.send(());
            loaded
        });
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            finished.recv_timeout(std::time::Duration::from_millis(10))
        {
            show(&mut live);
        }
        show(&mut live);
        loading.join()
    });
    live.finish();
    loaded.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
