//! Embedding Ensemble: a journaled, cached, resumable run on your own tokio
//! runtime, its live events, and its JSON report.
//! `cargo run -p ensemble-tests --example embed [WORKFLOW [RUN_ID]]`
//! (default: examples/hello/workflow.yaml; a RUN_ID finishes that stopped run)

use ensemble::{AgentStatus, EventKind, Workflow, run::RunBuilder};

#[tokio::main] // multi-thread, with the time and I/O drivers: what a run needs
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "examples/hello/workflow.yaml".to_owned());
    // Journaled and cached in the workflow's state directory, sized from the workflow.
    let mut builder = RunBuilder::new(Workflow::load(&path)?);
    if let Some(run_id) = args.next() {
        builder = builder.resume(run_id); // committed agents are kept, the rest run
    }
    let mut run = builder.start().await?;
    let mut events = run.events(); // every event, ending after the run's last
    while let Some(event) = events.next().await {
        if let EventKind::Committed { agent, version, keys } = event.kind {
            println!("[{agent}] committed v{version}: {keys:?}");
        }
    }
    let finished = run.finish().await?; // outputs written, metrics computed
    for agent in &finished.report.agents {
        match &agent.status {
            AgentStatus::Succeeded { keys, .. } => println!("{}: ok, wrote {keys:?}", agent.agent),
            other => println!("{}: {other:?}", agent.agent),
        }
    }
    if let Some(entry) = finished.report.context.get("greeter.message") {
        println!("greeter says: {}", rmp_serde::from_slice::<String>(&entry.value)?);
    }
    let report = finished.state_dir.join(format!("{}.json", finished.report.run_id));
    std::fs::write(&report, finished.json())?;
    println!("report: {}\njournal: {:?}", report.display(), finished.journal);
    anyhow::ensure!(finished.succeeded(), "not finished: rerun with {path} {}", finished.report.run_id);
    Ok(())
}
