//! Ensemble runs multi-agent workflows in parallel, every agent a sandboxed
//! WebAssembly component.
//!
//! ```ignore
//! # async fn demo() -> anyhow::Result<()> {
//! use ensemble::{Engine, RunOptions, RuntimeConfig, Workflow};
//!
//! let workflow = Workflow::load("examples/hello/workflow.yaml")?;
//! let engine = Engine::new(RuntimeConfig::default())?;
//! let report = engine.run(&workflow, RunOptions::default()).await;
//! for agent in &report.agents {
//!     println!("{}: {:?}", agent.agent, agent.status);
//! }
//! # Ok(()) }
//! ```
//!
//! (A complete, compiled version of this is `examples/embed.rs`.)
//!
//! The modules follow the data: [`workflow`] parses and checks the file,
//! [`plan`] derives groups, the critical path and priorities from it,
//! [`runtime`] sandboxes components, [`context`] holds the shared versioned
//! context, [`exec`] runs the workflow, [`journal`] keeps it on disk,
//! [`events`] says what happens while it runs and [`report`] what happened.
//!
//! Layers, each importing only from those below it (checked by a test,
//! `layering` in this file): [`events`] (and the leaves `files`,
//! `confined`) at the bottom; [`context`], [`workflow`], [`plan`],
//! [`runtime`], [`templates`], [`journal`], [`cache`] above it; [`exec`]
//! above those; [`report`] above `exec`; the command line on top.

pub mod cache;
pub mod cli;
pub mod confined;
pub mod context;
pub mod events;
pub mod exec;
pub mod files;
pub mod inputs;
pub mod journal;
pub mod outputs;
pub mod plan;
pub mod report;
pub mod runtime;
pub mod templates;
pub mod workflow;

#[cfg(test)]
mod layering;

pub use events::{AgentOutcome, Decision, DecisionRecord, Event, EventKind, EventSink, Timeline};
pub use exec::{
    AgentReport, AgentStatus, CancellationToken, Engine, GroupReport, GroupStatus, RunOptions, RunReport,
    ValidationOutcome, ValidationReport,
};
pub use report::RunMetrics;
pub use runtime::{AgentError, HostLimits, Runtime, RuntimeConfig};
pub use workflow::{Workflow, WorkflowError};
