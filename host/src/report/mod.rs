//! What is made of a finished run: its metrics and the files made from
//! them. Above the executor: it reads a [`RunReport`](crate::exec::RunReport)
//! and its [`Timeline`](crate::events::Timeline); nothing below imports it.
//!
//! [`RunMetrics`] computes the design's metrics (see its docs for each
//! definition), once per run: [`RunReport::metrics`](crate::exec::RunReport::metrics),
//! and [`finish_journal`] keeps them as the journal's run report;
//! [`markdown`], [`trace`], [`html`] and [`prometheus`] turn them into a
//! summary, a Chrome trace, a self-contained HTML report and Prometheus text
//! exposition.

pub mod html;
pub mod markdown;
mod metrics;
mod network;
mod outcome;
pub mod prometheus;
pub mod trace;

pub use metrics::{
    AgentMetrics, Bottleneck, CacheMetrics, CommitWait, ConflictMetrics, CriticalPathMetrics,
    DecisionMetrics, GroupMetrics, Parallelism, RetryMetrics, RunMetrics, Utilisation, ValidationMetrics,
    finish_journal,
};
pub use network::{
    AgentNetwork, FileGrantMetric, GrantMetrics, NetworkMetrics, OriginMetrics, RefusalMetric, VariableMetric,
};
pub use outcome::{GroupOutcome, RunOutcome};
