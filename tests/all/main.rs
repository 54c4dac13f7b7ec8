//! End-to-end tests of the ensemble library and command line: one test binary,
//! one module per feature (wasmtime's layout).

mod authority;
mod bad_input;
mod barrier;
mod bmad;
mod cache;
mod cancel;
mod cli;
mod compiled_cache;
mod conflicts;
mod context;
mod crash;
mod engine;
mod html;
mod journal;
mod limits;
mod loading;
mod observe;
mod ownership;
mod plan;
mod polyglot;
mod retry;
mod templates;
mod validation;
mod workflow;

/// Run the command line in-process with `args` (after the program name):
/// exit code, stdout, stderr.
pub fn run_cli(args: &[&str]) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let argv = std::iter::once("ensemble").chain(args.iter().copied());
    let code = ensemble::cli::main(argv, &mut out, &mut err);
    (code, String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned())
}

/// Every event still buffered in `rx` (events a slow reader missed are skipped).
pub fn drain(rx: &mut tokio::sync::broadcast::Receiver<ensemble::Event>) -> Vec<ensemble::Event> {
    use tokio::sync::broadcast::error::TryRecvError;
    let mut events = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(event) => events.push(event),
            Err(TryRecvError::Lagged(_)) => continue,
            Err(_) => return events,
        }
    }
}
