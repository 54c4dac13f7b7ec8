//! Embedding Ensemble in an application: load a workflow, run it on your own
//! tokio runtime, watch its events, and read the committed context.
//!
//! `cargo run -p ensemble-tests --example embed [WORKFLOW]`
//! (defaults to examples/hello/workflow.yaml)

use ensemble::{AgentStatus, Engine, EventKind, RunOptions, RuntimeConfig, Workflow};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "examples/hello/workflow.yaml".to_owned());
    let workflow = Workflow::load(&path)?;

    // One engine per process; it caches compiled components across runs.
    let engine = Engine::new(RuntimeConfig::default())?;

    // Subscribe before the run starts to see every event.
    let options = RunOptions::default();
    let mut events = options.events.subscribe();
    let watcher = tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            match event.kind {
                EventKind::Progress { agent, done, message } => {
                    println!("[{agent}] {:>3.0}% {message}", done * 100.0)
                }
                EventKind::Committed { agent, version, keys } => {
                    println!("[{agent}] committed v{version}: {keys:?}")
                }
                _ => {}
            }
        }
    });

    let report = engine.run(&workflow, options).await;
    drop(engine);
    watcher.abort();

    for agent in &report.agents {
        match &agent.status {
            AgentStatus::Succeeded { keys, .. } => println!("{}: ok, wrote {keys:?}", agent.agent),
            AgentStatus::Failed(error) => println!("{}: failed: {error}", agent.agent),
            AgentStatus::Skipped { because } => println!("{}: skipped: {because}", agent.agent),
            AgentStatus::Partial { because, .. } => println!("{}: partial: {because}", agent.agent),
            AgentStatus::Cancelled => println!("{}: cancelled", agent.agent),
        }
    }
    if let Some(entry) = report.context.get("greeter.message") {
        let message: String = rmp_serde::from_slice(&entry.value)?;
        println!("greeter says: {message}");
    }
    anyhow::ensure!(report.succeeded(), "the workflow did not succeed");
    Ok(())
}
