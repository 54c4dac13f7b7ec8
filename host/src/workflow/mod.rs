//! The workflow file: its types, parsing and validation.
//!
//! A workflow is YAML. Parsing keeps source positions, so every problem is
//! reported as `file:line:col: what is wrong and how to fix it`, and all
//! problems are reported together, not just the first.
//!
//! Architecture invariant: this module knows nothing of wasmtime or tokio.

mod file;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use validate::MIN_MEMORY_UNIT;

/// Default pool of cpu units.
pub const DEFAULT_CPU_UNITS: u32 = 100;
/// Default pool of memory units.
pub const DEFAULT_MEMORY_UNITS: u32 = 100;
/// Default size of one memory unit: 4 MiB, so the default pool is 400 MiB.
pub const DEFAULT_MEMORY_UNIT_BYTES: u64 = 4 << 20;
/// Default number of agents running at once.
pub const DEFAULT_MAX_CONCURRENT: u32 = 3;
/// Default cpu units of one agent.
pub const DEFAULT_AGENT_CPU: u32 = 10;
/// Default memory units of one agent (64 MiB with the default unit).
pub const DEFAULT_AGENT_MEMORY: u32 = 16;

/// A parsed and validated workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    /// The file it was read from.
    pub path: PathBuf,
    pub resources: Resources,
    /// Agents in the order the file declares them.
    pub agents: Vec<AgentSpec>,
}

/// The resource pool the agents share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub cpu: u32,
    pub memory: u32,
    /// Bytes in one memory unit.
    pub memory_unit: u64,
    pub max_concurrent: u32,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            cpu: DEFAULT_CPU_UNITS,
            memory: DEFAULT_MEMORY_UNITS,
            memory_unit: DEFAULT_MEMORY_UNIT_BYTES,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
        }
    }
}

/// One agent of a workflow.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub id: String,
    /// The component file, resolved against the workflow's directory.
    pub component: PathBuf,
    /// Key prefixes this agent owns (default: its own id).
    pub owns: Vec<String>,
    /// Agents that must commit before this one starts.
    pub needs: Vec<String>,
    /// The agent's `config`, encoded as MessagePack (an empty map by default).
    pub config: Vec<u8>,
    pub cpu: u32,
    pub memory: u32,
    /// Instruction budget; `None` means unmetered.
    pub fuel: Option<u64>,
    /// Wall-clock limit of one attempt; `None` means none.
    pub timeout: Option<Duration>,
    /// Where the agent is declared.
    pub location: Location,
}

impl AgentSpec {
    /// The agent's hard linear-memory cap in bytes.
    pub fn memory_bytes(&self, resources: &Resources) -> u64 {
        u64::from(self.memory).saturating_mul(resources.memory_unit)
    }
}

/// A 1-based line and column in the workflow file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One thing wrong with a workflow file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub location: Option<Location>,
    pub message: String,
}

/// Why a workflow could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("cannot read workflow {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}", render_problems(path, problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| match p.location {
            Some(at) => format!("{}:{at}: {}", path.display(), p.message),
            None => format!("{}: {}", path.display(), p.message),
        })
        .collect();
    lines.join("\n")
}

impl Workflow {
    /// Read, parse and validate the workflow at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, WorkflowError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| WorkflowError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Parse and validate workflow text; `path` names it in errors and
    /// component paths are resolved against its directory.
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Self, WorkflowError> {
        let path = path.as_ref();
        let invalid = |problems| WorkflowError::Invalid { path: path.to_owned(), problems };
        let file = file::parse(text).map_err(|p| invalid(vec![p]))?;
        let base = path.parent().unwrap_or(Path::new("."));
        validate::validate(&file, path, base).map_err(invalid)
    }

    pub fn agent(&self, id: &str) -> Option<&AgentSpec> {
        self.agents.iter().find(|a| a.id == id)
    }
}
