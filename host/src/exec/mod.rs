//! Running a workflow: load the components, start agents as their needs
//! commit, run groups to their smart barriers, validate, commit what
//! succeeds, skip what cannot run.
//!
//! - An agent becomes ready once every agent it `data`-needs has committed
//!   (and, if that agent is in a group, once the group is done, its barrier
//!   and cross-validation included). The ready queue serves the highest
//!   priority first, then the longest remaining path (both from the plan);
//!   an agent starts only when its cpu and memory units and a slot fit the
//!   [`ResourcePool`]. The head of the queue waits until it fits.
//! - A declared group's members are queued together once all are ready; the
//!   group's barrier then waits for all of them or its timeout and decides
//!   (see [`barrier`] for the rules). Results that completed are never
//!   discarded: a member's writes are committed the moment it succeeds.
//! - Failed attempts are retried with jittered exponential backoff unless
//!   the error says another attempt cannot help.
//! - Cancelling ([`RunOptions::cancel`]) stops running agents when their time
//!   slice ends; nothing of them is committed, and the report says so.
//!   Dropping the run's future aborts the run's task instead: it stops at its
//!   next await (an agent that just finished may still be committed) and
//!   releases the journal once it has unwound, asynchronously; cancel and
//!   await the report to know the run has stopped and its journal is free.
//! - Agents share cores in time slices proportional to their cpu units:
//!   an agent yields to the others every `cpu / 10` epoch ticks (at least 1).
//! - Jobs go to a [`Dispatcher`]: the local one runs a lone job (a chain)
//!   on the run's own task, and otherwise deals jobs to a few long-lived
//!   worker tasks that send back what ended in batches.
//!
//! Architecture invariant: an agent's writes are committed atomically, before
//! any agent that needs it starts; an agent never sees uncommitted writes.

//! The pieces: [`core`] decides (no I/O: readiness, queue and pool,
//! groups, validations); `run.rs` is the loop that carries its decisions
//! out (`apply.rs`, `commit.rs`); [`dispatch`] runs the jobs; `engine.rs`
//! is the entry point ([`Engine`]).

pub mod barrier;
pub mod core;
pub mod dispatch;

mod apply;
mod commit;
mod engine;
mod pool;
mod report;
mod run;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use tokio_util::sync::CancellationToken;

pub use dispatch::{Dispatcher, Job, LocalDispatcher};
pub use engine::Engine;
pub use pool::ResourcePool;
pub use report::{
    AgentReport, AgentStatus, DecisionRecord, GroupReport, GroupStatus, RunReport, ValidationOutcome,
    ValidationReport,
};

use crate::cache::AgentCache;
use crate::events::EventSink;
use crate::journal::{Journal, JournalError};
use crate::templates::TemplateService;

pub use crate::events::INPUT_WRITER;

/// Cpu units per epoch tick of an agent's time slice.
pub const CPU_UNITS_PER_TICK: u32 = 10;

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run's id; generated when `None`.
    pub run_id: Option<String>,
    /// Where events go; subscribe before the run starts to see them all.
    pub events: EventSink,
    /// Cancel this to stop the run: running agents are interrupted at their
    /// next epoch tick and nothing of them is committed; what was committed
    /// stays. (Dropping the run's future aborts it too, but asynchronously:
    /// see the module docs.)
    pub cancel: CancellationToken,
    /// Where the run is journaled (see [`Engine::create_journal`]); `None`
    /// keeps it in memory only, and it cannot be resumed. The run records
    /// its status at the end; its run report (what `ensemble report` reads)
    /// is kept by whoever finishes the run, with the metrics it computes
    /// once: `ensemble::report::finish_journal` (the run builder,
    /// `ensemble::run::RunBuilder`, does all of this).
    pub journal: Option<Arc<Journal>>,
    /// The agent output cache; `None` runs every agent.
    pub cache: Option<Arc<AgentCache>>,
    /// Values committed before any agent starts, as `input.<name>`
    /// (MessagePack), by the writer `input`. Agents read them like any key.
    pub inputs: BTreeMap<String, Vec<u8>>,
    /// The template service; `None` makes one over the workflow's
    /// `templates` directory (if it has one) with the default limits.
    pub templates: Option<Arc<TemplateService>>,
}

/// Why a run cannot be resumed.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The journal could not be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The workflow or a component changed since the run started.
    #[error("run `{run}` cannot be resumed: {}; resume with --force to run it anyway", changes.join("; "))]
    Changed {
        /// The run's id.
        run: String,
        /// What changed.
        changes: Vec<String>,
    },
    #[error(
        "run `{run}`: the journal's commits are not consecutive (version {version} follows {after}); it cannot be replayed"
    )]
    /// The journal's commits skip a version.
    Gap {
        /// The run's id.
        run: String,
        /// The version found.
        version: u64,
        /// The version before it.
        after: u64,
    },
}
