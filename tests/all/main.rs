//! End-to-end tests of the ensemble library and command line: one test binary,
//! one module per feature (wasmtime's layout).

mod authority;
mod bad_input;
mod barrier;
mod bmad;
mod builder;
mod cache;
mod cache_grants;
mod cancel;
mod cli;
mod compiled_cache;
mod confine;
mod conflicts;
mod context;
mod crash;
mod engine;
mod grants_files;
mod grants_http;
mod html;
mod journal;
mod journal_v0;
mod limits;
mod llm;
mod loading;
mod observe;
mod ownership;
mod plan;
mod polyglot;
mod research;
mod retry;
mod templates;
mod validation;
mod wit_versions;
mod workflow;

/// How long any one wait in these tests may take: far more than any needs,
/// even on a loaded machine, so that a hang fails its test instead of
/// stalling the suite.
pub const BOUND: std::time::Duration = std::time::Duration::from_secs(120);

/// `future`, or a failed test (naming the caller's line) if it has not
/// finished within [`BOUND`]. Every run, resume and event wait goes through it.
#[track_caller]
pub fn bounded<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let at = std::panic::Location::caller();
    async move {
        match tokio::time::timeout(BOUND, future).await {
            Ok(output) => output,
            Err(_) => panic!("{at}: still waiting after {BOUND:?}"),
        }
    }
}

/// Run the command line in-process with `args` (after the program name):
/// exit code, stdout, stderr. On a thread of its own, so that a command
/// that hangs fails the test after [`BOUND`].
#[track_caller]
pub fn run_cli(args: &[&str]) -> (u8, String, String) {
    let at = std::panic::Location::caller();
    let argv: Vec<String> =
        std::iter::once("ensemble").chain(args.iter().copied()).map(str::to_owned).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = ensemble_cli::main(argv, &mut out, &mut err);
        let _ = tx.send((
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        ));
    });
    match rx.recv_timeout(BOUND) {
        Ok(ended) => ended,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{at}: `ensemble {args:?}` still running after {BOUND:?}")
        }
        Err(e) => panic!("{at}: `ensemble {args:?}` panicked ({e})"),
    }
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

/// Assert that `agent` failed with the WAT fixtures' own error: it returned
/// `failed("fixture failed")` (see `ensemble_tests::FAILED`), and not with
/// some other error (a trap, a load or link error, a host error).
#[track_caller]
pub fn assert_fixture_failed(report: &ensemble::RunReport, agent: &str) {
    match report.error(agent) {
        Some(ensemble::AgentError::Returned { agent: who, kind, message, .. }) => {
            assert_eq!(
                (who.as_str(), *kind, message.as_str()),
                (agent, ensemble::runtime::ReturnedKind::Failed, "fixture failed")
            );
        }
        other => panic!("`{agent}` should fail with the fixture's own error, got {other:?}"),
    }
}

/// Assert that the run committed `value` at `key`, written by `writer` in
/// context version `version`.
#[track_caller]
pub fn assert_committed(report: &ensemble::RunReport, key: &str, value: &[u8], writer: &str, version: u64) {
    let entry = report.context.get(key).unwrap_or_else(|| panic!("`{key}` was not committed: {report:#?}"));
    assert_eq!(
        (&*entry.value, &*entry.writer, entry.version),
        (value, writer, version),
        "`{key}`: (value, writer, version)"
    );
}
