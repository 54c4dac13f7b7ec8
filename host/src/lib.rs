//! Ensemble runs multi-agent workflows in parallel, every agent a sandboxed
//! WebAssembly component.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use ensemble::{Workflow, run::RunBuilder};
//!
//! let workflow = Workflow::load("examples/hello/workflow.yaml")?;
//! let finished = RunBuilder::new(workflow).start().await?.finish().await?;
//! for agent in &finished.report.agents {
//!     println!("{}: {:?}", agent.agent, agent.status);
//! }
//! # Ok(()) }
//! ```
//!
//! (A complete, compiled version of this is `examples/embed.rs`; the
//! [`run`] module says what a run needs from tokio.)
//!
//! The modules follow the data: [`workflow`] parses and checks the file,
//! [`plan`] derives groups, the critical path and priorities from it,
//! [`runtime`] sandboxes components, [`context`] holds the shared versioned
//! context, [`exec`] runs the workflow, [`journal`] keeps it on disk,
//! [`events`] says what happens while it runs and [`report`] what happened;
//! [`run`] puts them together as `ensemble run` does (the command line is
//! the `ensemble-cli` crate).
//!
//! Layers, each importing only from those below it (checked by a test,
//! `layering` in this file): [`events`] (and the leaves `files`,
//! `confined`, `tls`) at the bottom, [`llm`] on it; [`context`], [`workflow`], [`plan`],
//! [`runtime`], [`templates`], [`journal`], [`cache`] above it; [`exec`]
//! above those; [`report`] above `exec`; [`run`] on top.

#![warn(missing_docs)]

pub mod cache;
pub mod confined;
pub mod context;
pub mod events;
pub mod exec;
pub mod files;
pub mod inputs;
pub mod journal;
pub mod llm;
pub mod outputs;
pub mod plan;
pub mod report;
pub mod run;
pub mod runtime;
pub mod templates;
mod tls;
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
