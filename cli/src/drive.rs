//! Driving a run in the terminal: its preparation (components compiling,
//! shown as they go), the live view, Ctrl-C, and what is printed once it
//! has ended.

use std::io::Write;
use std::path::Path;

use ensemble::journal;
use ensemble::report;
use ensemble::run::{Finished, Outputs, RunBuilder, RunError};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::runs::ExecArgs;
use crate::{EXIT_CANCELLED, EXIT_FAILED, EXIT_INVALID, EXIT_OK, Terminal, live, print_context};

/// Prepare the run of `builder` and run it on a runtime with the settings
/// runs need, to its end, showing it live (its components' compilation
/// first, then the grants it runs with) and turning Ctrl-C into a
/// cancellation.
pub(crate) fn drive(
    builder: RunBuilder,
    exec: &ExecArgs,
    term: Terminal,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<Result<Finished, RunError>> {
    let runtime = ensemble::run::tokio_runtime()?;
    let mut live = live::LiveView::new(exec.events.is_some(), exec.quiet, term.interactive);
    let result = runtime.block_on(async {
        // Preparing compiles components (seconds, the first time, for a
        // large one): shown as it happens. The run's stream repeats these
        // events first; they are skipped there.
        let mut loading = builder.subscribe();
        let prepare = tokio::task::spawn_blocking(move || builder.prepare());
        tokio::pin!(prepare);
        let (mut shown, mut open) = (0u64, true);
        let prepared = loop {
            tokio::select! {
                prepared = &mut prepare => break prepared,
                event = loading.recv(), if open => match event {
                    Ok(event) => {
                        live.show(out, err, &event);
                        shown += 1;
                    }
                    Err(RecvError::Lagged(n)) => shown += n,
                    Err(RecvError::Closed) => open = false,
                },
            }
        };
        loop {
            match loading.try_recv() {
                Ok(event) => {
                    live.show(out, err, &event);
                    shown += 1;
                }
                Err(TryRecvError::Lagged(n)) => shown += n,
                Err(_) => break,
            }
        }
        drop(loading);
        let prepared = prepared.map_err(|e| RunError::Failed(format!("preparing the run failed: {e}")))??;
        if !exec.quiet {
            let header: &mut dyn Write = if exec.events.is_some() { err } else { out };
            crate::grants::print_summary(prepared.workflow(), header).map_err(|e| RunError::Failed(e.to_string()))?;
        }
        let mut handle = prepared.start()?;
        let mut events = handle.events();
        // Skip what was shown; events the stream lost while nobody read it
        // (`missed`) were among them.
        let mut skipped = 0;
        while skipped + events.missed() < shown {
            if events.next().await.is_none() {
                break;
            }
            skipped += 1;
        }
        let cancel = handle.cancel_token();
        let run = handle.finish();
        tokio::pin!(run);
        let mut interrupt = Box::pin(tokio::signal::ctrl_c());
        let (mut listening, mut interrupts, mut streaming, mut missed) = (true, 0, true, events.missed());
        let finished = loop {
            tokio::select! {
                finished = &mut run => break finished,
                event = events.next(), if streaming => match event {
                    Some(event) => {
                        show(&mut live, out, err, &event, events.missed(), &mut missed);
                    }
                    None => streaming = false,
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
        };
        // The run has ended: the stream ends after its last events.
        while let Some(event) = events.next().await {
            show(&mut live, out, err, &event, events.missed(), &mut missed);
        }
        finished
    });
    live.finish();
    Ok(result)
}

/// Show `event`, after saying how many the view missed before it.
fn show(
    live: &mut live::LiveView,
    out: &mut dyn Write,
    err: &mut dyn Write,
    event: &ensemble::Event,
    missed_now: u64,
    missed: &mut u64,
) {
    if missed_now > *missed {
        live.missed(out, missed_now - *missed);
        *missed = missed_now;
    }
    live.show(out, err, event);
}

/// After a run: its outputs, the report files, the summary (on stdout, or on
/// stderr when stdout carries the JSON events), the context or where to
/// find it, the journal; the exit code.
pub(crate) fn finish(
    workflow: &ensemble::Workflow,
    finished: &Finished,
    exec: &ExecArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<u8> {
    let mut summary = Vec::new();
    let code = summarise(workflow, finished, exec, &mut summary, err)?;
    if exec.events.is_some() {
        err.write_all(&summary)?
    } else {
        out.write_all(&summary)?
    }
    Ok(code)
}

fn summarise(
    workflow: &ensemble::Workflow,
    finished: &Finished,
    exec: &ExecArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<u8> {
    let report = &finished.report;
    let state_dir: Option<&Path> = finished.journal.is_some().then_some(finished.state_dir.as_path());
    let outputs_written = match &finished.outputs {
        Outputs::None => true,
        Outputs::NotWritten => {
            writeln!(err, "outputs not written: the run did not succeed")?;
            true
        }
        Outputs::Written { written, errors } => {
            for e in errors {
                writeln!(err, "error: {e}")?;
            }
            if !written.is_empty() {
                let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
                writeln!(out, "wrote {}", names.join(", "))?;
            }
            errors.is_empty()
        }
    };
    let files_written = exec.files.write(&finished.metrics, None, err)?;
    write!(out, "{}", report::markdown::render(&finished.metrics))?;
    writeln!(out)?;
    if workflow.outputs().is_some() {
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
