//! Hostile agents, one after another in one engine (the embedding case).
//! For each: the run names the agent and the cause, the good agent beside it
//! commits its value untouched (bytes, writer and version), nothing of the
//! hostile one is committed, the next run in the same engine works, and the
//! process's memory stays bounded.
//!
//! Memory is measured from `/proc/self/status`, which is per process, and
//! libtest runs the tests of a binary as threads of one process. So each
//! test here runs in a process of its own: the test, as libtest calls it,
//! starts this binary again with `--exact` on its own name (and an
//! environment variable saying so), one child at a time, and passes if the
//! child ran that one test and it passed. A child's RSS is then that test's
//! alone, with nothing else running in it. (Separate `[[test]]` binaries
//! would do too, but each would link wasmtime again.)
//!
//! - `cases`: agents that fail in `run` (the table), beside a good agent;
//! - `validate`: validators that fail in `validate`;
//! - `calls`: what the host does with odd progress, long messages and
//!   values at the size limit.

mod calls;
mod cases;
mod fixtures;
mod validate;

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ensemble::{AgentStatus, Engine, RunOptions, RunReport};
use ensemble_tests::Project;

/// Set in a child process to the one test it runs.
const CHILD: &str = "ENSEMBLE_HOSTILE_TEST";

/// How long one test may take in its child, at most.
const CHILD_BUDGET: Duration = Duration::from_secs(15 * 60);

/// One child at a time: their measurements do not share the machine's memory
/// or cores with each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A test that runs in a process of its own (see the module doc).
macro_rules! isolated {
    ($(#[$meta:meta])* async fn $name:ident() { $($body:tt)* }) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            let path = concat!(module_path!(), "::", stringify!($name));
            // libtest names tests without the crate.
            let name = path.split_once("::").map_or(path, |(_, rest)| rest);
            $crate::in_own_process(name, || $crate::block_on(async { $($body)* }));
        }
    };
}
pub(crate) use isolated;

/// Run `body` if this process is the child for test `name`; otherwise start
/// that child and check that it ran the one test and passed.
pub fn in_own_process(name: &str, body: impl FnOnce()) {
    if std::env::var(CHILD).is_ok_and(|n| n == name) {
        body();
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let out = tempfile::NamedTempFile::new().expect("temporary file");
    let exe = std::env::current_exe().expect("this test binary");
    // One file description for both streams, so neither overwrites the other.
    let stdout = out.reopen().expect("reopen");
    let stderr = stdout.try_clone().expect("dup");
    let mut child = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("start the child test process");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if started.elapsed() > CHILD_BUDGET {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}: still running after {CHILD_BUDGET:?} in its own process; killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(out.path()).expect("the child's output");
    println!("{output}");
    assert!(status.success(), "{name} failed in its own process ({status}):\n{output}");
    // A filter that matched nothing also exits 0: make sure it ran.
    assert!(output.contains("test result: ok. 1 passed"), "{name} did not run in its own process:\n{output}");
}

pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// This process's resident memory against a baseline taken after warming up.
#[derive(Debug)]
pub struct Memory {
    baseline: u64,
    seen: Vec<String>,
}

impl Memory {
    pub fn baseline() -> Self {
        Self { baseline: status_kib("VmRSS:"), seen: Vec::new() }
    }

    /// Note `what` happened and check resident memory grew by less than `bound_mib`.
    pub fn check(&mut self, what: &str, bound_mib: u64) {
        let rss = status_kib("VmRSS:");
        self.seen.push(format!("{what} (RSS {} MiB)", rss / 1024));
        assert!(
            rss < self.baseline + bound_mib * 1024,
            "resident memory grew from {} KiB to {rss} KiB\n{}",
            self.baseline,
            self.seen.join("\n")
        );
    }

    /// Print what was seen, and check the peak grew by less than `bound_mib`.
    pub fn finish(self, bound_mib: u64) {
        let peak = status_kib("VmHWM:");
        println!(
            "{}\npeak RSS {} MiB (baseline {} MiB)",
            self.seen.join("\n"),
            peak / 1024,
            self.baseline / 1024
        );
        assert!(
            peak < self.baseline + bound_mib * 1024,
            "peak resident memory {peak} KiB (baseline {} KiB)",
            self.baseline
        );
    }
}

/// The good agent's value, as `ensemble_tests::writer` writes it.
pub const GOOD_VALUE: &[u8] = b"\xa2ok";

/// The good agent succeeded and `good.value` is its own, as the first commit.
pub fn assert_good_unharmed(name: &str, report: &RunReport) {
    assert_good_committed(name, report, 1);
}

/// The good agent succeeded and `good.value` is its own, committed as `version`.
pub fn assert_good_committed(name: &str, report: &RunReport, version: u64) {
    assert!(
        matches!(report.agent("good").map(|a| &a.status), Some(AgentStatus::Succeeded { .. })),
        "{name}: the good agent commits: {report:#?}"
    );
    let entry = report.context.get("good.value").unwrap_or_else(|| panic!("{name}: good's value is there"));
    assert_eq!(&*entry.value, GOOD_VALUE, "{name}: good's value bytes");
    assert_eq!(&*entry.writer, "good", "{name}: good's value's writer");
    assert_eq!(entry.version, version, "{name}: good's value's version");
}

/// A run of the good agent alone, in the same engine, works.
pub async fn good_run(engine: &Engine, project: &Project) {
    let workflow = project.workflow("agents:\n  good:\n    component: good.wasm\n");
    let report = bounded("the good run", engine.run(&workflow, RunOptions::default())).await;
    assert!(report.succeeded(), "the next run in the same engine works: {report:#?}");
    assert_good_unharmed("the good run", &report);
}

/// `future`, which must end within two minutes.
pub async fn bounded<T>(name: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), future)
        .await
        .unwrap_or_else(|_| panic!("{name}: the run ends"))
}

/// A project with the good agent and a template `tpl/t.md` (for render floods).
pub fn project() -> Project {
    let project = Project::new();
    project.component("good", &ensemble_tests::writer("good.value"));
    std::fs::create_dir_all(project.path().join("tpl")).expect("mkdir tpl");
    std::fs::write(project.path().join("tpl/t.md"), "x is {{ x }}\n").expect("template");
    project
}
