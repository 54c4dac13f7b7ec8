//! End-to-end tests of the ensemble library and command line: one test binary,
//! one module per feature (wasmtime's layout).

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
mod journal;
mod limits;
mod loading;
mod ownership;
mod plan;
mod polyglot;
mod retry;
mod templates;
mod validation;
mod workflow;

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
