//! Cancellation: running agents stop promptly, nothing of them is
//! committed, everything already committed stays.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ensemble::{AgentStatus, EventKind, RunOptions};
use ensemble_tests::{Project, stalls_after_progress, writer};

/// `quick` commits at once; `spinner` reports progress once (proof that it
/// is running, past loading and instantiation), then loops for ever.
fn project() -> (Project, std::path::PathBuf) {
    let project = Project::new();
    project.component("quick", &writer("quick.value"));
    project.component("spinner", &stalls_after_progress());
    let path = project
        .workflow_file("agents:\n  quick: {component: quick.wasm}\n  spinner: {component: spinner.wasm}\n");
    (project, path)
}

#[tokio::test]
async fn cancelling_stops_running_agents_and_keeps_what_was_committed() {
    let (_project, path) = project();
    let workflow = ensemble::Workflow::load(&path).expect("valid");
    let options = RunOptions::default();
    let (cancel, mut events) = (options.cancel.clone(), options.events.subscribe());
    let engine = ensemble_tests::engine();
    // Cancel once quick has committed and the spinner is running.
    let watcher = tokio::spawn(async move {
        let (mut committed, mut running) = (false, false);
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return false,
            };
            match &event.kind {
                EventKind::Committed { agent, .. } if agent == "quick" => committed = true,
                EventKind::Progress { agent, .. } if agent == "spinner" => running = true,
                _ => {}
            }
            if committed && running {
                cancel.cancel();
                return true;
            }
        }
    });
    let report = tokio::time::timeout(Duration::from_secs(30), engine.run(&workflow, options))
        .await
        .expect("a cancelled run returns promptly");
    assert!(crate::bounded(watcher).await.expect("watcher"), "cancelled with the spinner running");
    assert!(report.cancelled && !report.succeeded());
    assert!(matches!(report.agent("quick").map(|a| &a.status), Some(AgentStatus::Succeeded { .. })));
    assert!(matches!(report.agent("spinner").map(|a| &a.status), Some(AgentStatus::Cancelled)));
    crate::assert_committed(&report, "quick.value", b"\xa2ok", "quick", 1);
    assert_eq!(report.context.len(), 1, "nothing of the spinner");
}

/// An agent that is all there is to run is polled by the run's own task
/// (no task of its own): cancelling and dropping stop it just the same.
#[tokio::test]
async fn a_lone_running_agent_is_stopped_by_cancel_and_by_drop() {
    let project = Project::new();
    project.component("quick", &writer("quick.value"));
    project.component("spinner", &stalls_after_progress());
    let path = project.workflow_file(
        "agents:\n  quick: {component: quick.wasm}\n  spinner: {component: spinner.wasm, needs: [quick]}\n",
    );
    let workflow = ensemble::Workflow::load(&path).expect("valid");
    let engine = ensemble::Engine::new(ensemble::RuntimeConfig { max_instances: 1, ..Default::default() })
        .expect("engine");
    for _ in 0..2 {
        let dropped =
            tokio::time::timeout(Duration::from_millis(200), engine.run(&workflow, RunOptions::default()));
        assert!(dropped.await.is_err(), "the spinner never ends by itself");
    }
    let options = RunOptions::default();
    let (cancel, mut events) = (options.cancel.clone(), options.events.subscribe());
    // Cancel once the spinner's progress report shows it running.
    let watcher = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) if matches!(&event.kind, EventKind::Progress { agent, .. } if agent == "spinner") =>
                {
                    cancel.cancel();
                    return true;
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return false,
            }
        }
    });
    let report = tokio::time::timeout(Duration::from_secs(30), engine.run(&workflow, options))
        .await
        .expect("a cancelled run returns promptly: the dropped runs gave their slot back");
    assert!(crate::bounded(watcher).await.expect("watcher"), "cancelled with the spinner running");
    assert!(report.cancelled);
    assert!(matches!(report.agent("spinner").map(|a| &a.status), Some(AgentStatus::Cancelled)));
    crate::assert_committed(&report, "quick.value", b"\xa2ok", "quick", 1);
    assert_eq!(report.context.len(), 1, "nothing of the spinner");
}

#[tokio::test]
async fn dropping_the_run_future_stops_its_agents() {
    let (_project, path) = project();
    let workflow = ensemble::Workflow::load(&path).expect("valid");
    // One instance slot: if a dropped run's spinner kept running, it would
    // hold the slot and the last run could never start.
    let engine = ensemble::Engine::new(ensemble::RuntimeConfig { max_instances: 1, ..Default::default() })
        .expect("engine");
    for _ in 0..3 {
        let dropped =
            tokio::time::timeout(Duration::from_millis(100), engine.run(&workflow, RunOptions::default()));
        assert!(dropped.await.is_err(), "the spinner never ends by itself");
    }
    let quick_only = ensemble::Workflow::parse(
        "agents:\n  quick: {component: quick.wasm}\n",
        path.parent().expect("dir").join("quick.yaml"),
    )
    .expect("valid");
    let report =
        tokio::time::timeout(Duration::from_secs(30), engine.run(&quick_only, RunOptions::default()))
            .await
            .expect("the slot was given back");
    assert!(report.succeeded(), "{report:#?}");
}

#[test]
fn ctrl_c_exits_130_and_reports_what_was_committed() {
    let (_project, path) = project();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ensemble-cli"))
        .args(["run", "--no-fuel", "--events", "json"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the CLI starts");
    let pid = child.id().to_string();
    // Whatever happens, the spinner must not keep this test waiting for ever.
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::spawn({
        let (pid, finished) = (pid.clone(), finished.clone());
        move || {
            std::thread::sleep(Duration::from_secs(120));
            if !finished.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        }
    });
    // The events, one JSON line each, on stdout: interrupt once quick has
    // committed and the spinner's progress report shows it running.
    let stdout = child.stdout.take().expect("stdout");
    let mut events = BufReader::new(stdout).lines();
    let (mut committed, mut running, mut seen) = (false, false, Vec::new());
    for line in events.by_ref() {
        let line = line.expect("stdout is text");
        let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        committed |= event["event"] == "committed" && event["agent"] == "quick";
        running |= event["event"] == "progress" && event["agent"] == "spinner";
        seen.push(line);
        if committed && running {
            break;
        }
    }
    assert!(committed && running, "events: {seen:?}");
    let killed = Command::new("kill").args(["-INT", &pid]).status().expect("kill runs");
    assert!(killed.success());
    // The rest of the events, then the summary on stderr.
    let rest: Vec<String> = events.map_while(Result::ok).collect();
    let output = child.wait_with_output().expect("the CLI ends");
    finished.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(output.status.code(), Some(130));
    let cancelled = r#""event":"agent_cancelled","agent":"spinner""#;
    assert!(rest.iter().any(|l| l.contains(cancelled)), "events after the interrupt: {rest:?}");
    // With `--events json` the summary goes to stderr.
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(summary.contains("CANCELLED"), "{summary}");
    assert!(summary.contains("quick.value"), "committed values are reported: {summary}");
    assert!(summary.contains("spinner") && summary.contains("cancel"), "{summary}");
}
