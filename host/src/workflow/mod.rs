//! The workflow file: its types, parsing and validation.
//!
//! A workflow is YAML. Parsing keeps source positions, so every problem is
//! reported as `file:line:col: what is wrong and how to fix it`, and all
//! problems are reported together, not just the first.
//!
//! Architecture invariant: this module knows nothing of wasmtime or tokio.

mod file;
mod grants;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The shared prefixes' model lives with the context that enforces it.
pub use crate::context::{ConflictPolicy, SharedPrefix};
pub use grants::{
    DEFAULT_HTTP_CONCURRENT_PER_RUN, FileGrant, FileMode, GrantLine, Grants, HostMatch, HostPattern,
    HttpGrant, HttpLimits, PortMatch, SchemeMatch, Variable, VariableValue, is_public,
};
pub use validate::closest;
pub use validate::{DEFAULT_CACHE_SIZE, DEFAULT_COMPRESS_ABOVE, MIN_MEMORY_UNIT};

/// Default pool of cpu units.
pub const DEFAULT_CPU_UNITS: u32 = 100;
/// Default pool of memory units.
pub const DEFAULT_MEMORY_UNITS: u32 = 100;
/// Default size of one memory unit: 4 MiB, so the default pool is 400 MiB.
pub const DEFAULT_MEMORY_UNIT_BYTES: u64 = 4 << 20;
/// Default number of agents running at once.
pub const DEFAULT_MAX_CONCURRENT: u32 = 3;
/// Default cpu oversubscription: agents may hold 120 % of the cpu units.
pub const DEFAULT_CPU_OVERSUBSCRIPTION: f64 = 1.2;
/// Default cpu units of one agent.
pub const DEFAULT_AGENT_CPU: u32 = 10;
/// Default memory units of one agent (64 MiB with the default unit).
pub const DEFAULT_AGENT_MEMORY: u32 = 16;

/// A parsed and validated workflow.
///
/// A `Workflow` is always validated: it is obtained only from
/// [`Workflow::load`], [`Workflow::parse`] or their `_for_planning` variants,
/// and is read through accessors, so nothing can change it into one the
/// checks would refuse (an agent larger than the pool, a need on an unknown
/// agent, an output leaving its directory). Its fields cannot be set:
///
/// ```compile_fail
/// let mut workflow = ensemble::Workflow::parse_for_planning(
///     "agents:\n  a:\n    component: a.wasm\n",
///     "workflow.yaml",
/// )?;
/// workflow.agents[0].memory = u32::MAX;
/// # Ok::<(), ensemble::workflow::WorkflowError>(())
/// ```
///
/// To run a variant, change the YAML and parse it again.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) resources: Resources,
    pub(crate) agents: Vec<AgentSpec>,
    pub(crate) shared: Vec<SharedPrefix>,
    pub(crate) groups: Vec<GroupSpec>,
    pub(crate) cache: CacheSpec,
    pub(crate) templates: Option<PathBuf>,
    pub(crate) outputs: Option<OutputsSpec>,
    /// The ready queue's order, worked out once by the first run that needs
    /// it (a plan computation); a workflow cannot change after parsing, so
    /// it stays right.
    pub(crate) ready_order: std::sync::OnceLock<std::sync::Arc<[usize]>>,
}

impl Workflow {
    /// The workflow's `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file it was read from (or named by [`Workflow::parse`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The resource pool its agents share.
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// Its agents, in the order the file declares them.
    pub fn agents(&self) -> &[AgentSpec] {
        &self.agents
    }

    /// Prefixes several agents may write, and how conflicts there resolve.
    pub fn shared(&self) -> &[SharedPrefix] {
        &self.shared
    }

    /// Explicit parallel groups, in file order (the planner derives the rest).
    pub fn groups(&self) -> &[GroupSpec] {
        &self.groups
    }

    /// The agent output cache.
    pub fn cache(&self) -> &CacheSpec {
        &self.cache
    }

    /// The templates directory, resolved against the workflow's directory.
    pub fn templates(&self) -> Option<&Path> {
        self.templates.as_deref()
    }

    /// Files written from context values after a run.
    pub fn outputs(&self) -> Option<&OutputsSpec> {
        self.outputs.as_ref()
    }
}

/// How an agent depends on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DependencyKind {
    /// Blocking: starts after the other agent commits.
    Data,
    /// Non-blocking: sees the other agent's outputs only if they were
    /// committed before it started.
    Context,
    /// Non-blocking: after both finish, this agent validates the other's outputs.
    Validation,
    /// No ordering; the resource pool arbitrates.
    Resource,
}

impl DependencyKind {
    /// Whether the dependent waits for the other agent's commit.
    pub fn is_blocking(self) -> bool {
        self == Self::Data
    }

    /// The kind as the file writes it (`data`, `context`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Context => "context",
            Self::Validation => "validation",
            Self::Resource => "resource",
        }
    }
}

/// One edge of `needs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The agent needed.
    pub agent: String,
    /// How it is needed.
    pub kind: DependencyKind,
    /// Where the need is declared.
    pub location: Location,
}

/// Retries of one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included (1 = no retry).
    pub attempts: u32,
    /// Delay before the first retry; doubles each time, with jitter.
    pub backoff: Duration,
    /// The longest delay between retries.
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self { attempts: 1, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(30) }
    }
}

/// A parallel group declared in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    /// The group's name.
    pub name: String,
    /// Its members, in file order.
    pub agents: Vec<String>,
    /// Its smart barrier.
    pub barrier: Barrier,
    /// Members that validate the other members' outputs after the barrier.
    pub cross_validation: Option<CrossValidation>,
    /// Where the group is declared.
    pub location: Location,
}

/// The smart barrier at the end of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Barrier {
    /// How long to wait for all members; `None` waits for ever.
    pub timeout: Option<Duration>,
    /// When the group counts as successful.
    pub success: Success,
    /// Tried in order when the timeout passes, or when every member has
    /// finished and some did not succeed; the first that applies decides.
    pub on_timeout: Vec<TimeoutStrategy>,
    /// A member counts as making progress if it reported within this window.
    pub progress_window: Duration,
}

impl Default for Barrier {
    fn default() -> Self {
        Self {
            timeout: None,
            success: Success::All,
            on_timeout: vec![TimeoutStrategy::ContinueWithPartial],
            progress_window: Duration::from_secs(30),
        }
    }
}

/// When a group counts as successful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Success {
    /// Every member succeeded.
    All,
    /// At least one member succeeded.
    AtLeastOne,
}

/// What a group's barrier may do when its timeout passes or members did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutStrategy {
    /// Cancel stragglers, fill their defaults, go on with what completed.
    ContinueWithPartial,
    /// If every straggler reported progress recently, wait `by` longer, at most `count` times.
    ExtendTimeout {
        /// How much longer each time.
        by: Duration,
        /// How many times at most.
        count: u32,
    },
    /// Re-run the group's members one at a time with the whole pool.
    FallbackSequential,
}

/// A group's cross-validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossValidation {
    /// Members whose `validate` runs over the other members' outputs.
    pub validators: Vec<String>,
    /// Wall-clock limit of one `validate` call; `None` means none.
    pub timeout: Option<Duration>,
    /// What a failed validation does.
    pub on_failure: OnFailure,
}

/// What a failed validation does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Report it; the run goes on.
    Warn,
    /// Fail the group.
    Fail,
}

/// The agent output cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    /// Whether agents' outputs are cached.
    pub enabled: bool,
    /// Resolved against the workflow's directory.
    pub dir: PathBuf,
    /// The cache's size limit in bytes.
    pub max_size: u64,
    /// Entries larger than this are lz4-compressed.
    pub compress_above: u64,
}

/// Files written from context values after a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputsSpec {
    /// Resolved against the workflow's directory.
    pub dir: PathBuf,
    /// Where `outputs.dir` is declared.
    pub dir_location: Location,
    /// In file order.
    pub files: Vec<OutputFile>,
}

/// An `outputs.dir` that leads outside the workflow's own folder: writing
/// there must be confirmed (the CLI's `--allow-outputs-outside`, or
/// `allow_outside` of [`crate::outputs::write_outputs`] in an embedding app).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{}:{at}: outputs.dir {} is outside the workflow's folder {}: confirm writing there with --allow-outputs-outside, or choose a directory inside {}",
    workflow.display(), dir.display(), folder.display(), folder.display()
)]
pub struct OutputsOutside {
    /// The workflow file.
    pub workflow: PathBuf,
    /// Where `outputs.dir` is declared.
    pub at: Location,
    /// The directory the outputs would be written to, every symbolic link
    /// in its path resolved.
    pub dir: PathBuf,
    /// The workflow's folder, resolved likewise.
    pub folder: PathBuf,
}

impl Workflow {
    /// `Some` when the workflow's `outputs.dir`, its symbolic links
    /// followed, is not inside the folder of the workflow file: a workflow
    /// from elsewhere (a cloned repository, say) should not write to any
    /// directory it likes (`outputs.dir: ~/.ssh`, or a link `out -> /etc`)
    /// unless the user says so.
    pub fn outputs_outside(&self) -> Option<OutputsOutside> {
        let outputs = self.outputs.as_ref()?;
        let folder = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let folder = crate::confined::resolve(folder).unwrap_or_else(|_| folder.to_owned());
        // Unresolvable (a directory that cannot be searched): outside, to be confirmed.
        let dir = crate::confined::resolve(&outputs.dir).unwrap_or_else(|_| outputs.dir.clone());
        (!dir.starts_with(&folder)).then(|| OutputsOutside {
            workflow: self.path.clone(),
            at: outputs.dir_location,
            dir,
            folder,
        })
    }
}

/// One file of `outputs`: the text of a context key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Relative to the outputs' `dir`.
    pub name: String,
    /// The context key whose text is written.
    pub key: String,
    /// Where its `key` is declared.
    pub location: Location,
}

/// The resource pool the agents share.
#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    /// CPU units.
    pub cpu: u32,
    /// Memory units.
    pub memory: u32,
    /// Bytes in one memory unit.
    pub memory_unit: u64,
    /// The most agents running at once.
    pub max_concurrent: u32,
    /// Agents may together hold this multiple of the cpu units.
    pub cpu_oversubscription: f64,
    /// Memory is never oversubscribed when true.
    pub memory_strict: bool,
    /// Outbound HTTP requests in flight at once across a run.
    pub http_concurrent: u32,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            cpu: DEFAULT_CPU_UNITS,
            memory: DEFAULT_MEMORY_UNITS,
            memory_unit: DEFAULT_MEMORY_UNIT_BYTES,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            cpu_oversubscription: DEFAULT_CPU_OVERSUBSCRIPTION,
            memory_strict: true,
            http_concurrent: DEFAULT_HTTP_CONCURRENT_PER_RUN,
        }
    }
}

/// One agent of a workflow.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// Its id, unique in the workflow.
    pub id: String,
    /// The component file, resolved against the workflow's directory.
    pub component: PathBuf,
    /// Key prefixes this agent owns (default: its own id).
    pub owns: Vec<String>,
    /// Key patterns it may read (`pm.stories`, `analyst.*`); `None` reads all.
    pub reads: Option<Vec<String>>,
    /// Its dependencies, each with a kind.
    pub needs: Vec<Need>,
    /// The agent's `config`, encoded as MessagePack (an empty map by default).
    pub config: Vec<u8>,
    /// CPU units it holds while it runs.
    pub cpu: u32,
    /// Memory units it holds while it runs.
    pub memory: u32,
    /// Instruction budget; `None` means unmetered.
    pub fuel: Option<u64>,
    /// Wall-clock limit of one attempt; `None` means none.
    pub timeout: Option<Duration>,
    /// Expected duration, for the critical path.
    pub estimate: Option<Duration>,
    /// Priority override (1–10); the planner decides when `None`.
    pub priority: Option<u8>,
    /// Its retries.
    pub retry: Retry,
    /// MessagePack values for its keys when a barrier continues without it.
    pub defaults: BTreeMap<String, Vec<u8>>,
    /// Granted WASI 0.2 with real clocks and randomness (`wasi: true`).
    pub wasi: bool,
    /// Files, outbound HTTP and variables it may use.
    pub grants: std::sync::Arc<Grants>,
    /// `cache: true` caches it despite HTTP, read-write files or real
    /// clocks; `false` never; `None` decides by its grants.
    pub cache: Option<bool>,
    /// Where the agent is declared.
    pub location: Location,
}

impl AgentSpec {
    /// The agent's hard linear-memory cap in bytes.
    pub fn memory_bytes(&self, resources: &Resources) -> u64 {
        u64::from(self.memory).saturating_mul(resources.memory_unit)
    }

    /// The agents this one waits for (its `data` needs).
    pub fn blocking_needs(&self) -> impl Iterator<Item = &str> {
        self.needs.iter().filter(|n| n.kind.is_blocking()).map(|n| n.agent.as_str())
    }
}

/// A 1-based line and column in the workflow file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// The line, from 1.
    pub line: u64,
    /// The column, from 1.
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
    /// Where it is, if known.
    pub location: Option<Location>,
    /// What is wrong.
    pub message: String,
}

/// Why a workflow could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The file could not be read.
    #[error("cannot read workflow {}: {source}", path.display())]
    Read {
        /// The workflow file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid workflow.
    #[error("{}", render_problems(path, problems))]
    Invalid {
        /// The workflow file.
        path: PathBuf,
        /// Everything wrong with it, in file order.
        problems: Vec<Problem>,
    },
}

/// A YAML (or JSON) parse error in the file at `path`, as one line:
/// `path:line:col: what`.
pub(crate) fn yaml_error_line(path: &Path, e: &serde_saphyr::Error) -> String {
    render_problems(path, &[file::yaml_problem(e)])
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

/// The largest workflow file read.
pub const MAX_WORKFLOW_BYTES: u64 = 16 << 20;

/// The workflow file's text: a regular file (never a FIFO or device) of at
/// most [`MAX_WORKFLOW_BYTES`].
fn read(path: &Path) -> Result<String, WorkflowError> {
    crate::files::read_text(path, MAX_WORKFLOW_BYTES)
        .map_err(|source| WorkflowError::Read { path: path.to_owned(), source })
}

impl Workflow {
    /// Read, parse and validate the workflow at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, WorkflowError> {
        let path = path.as_ref();
        let text = read(path)?;
        Self::parse(&text, path)
    }

    /// Parse and validate workflow text; `path` names it in errors and
    /// component paths are resolved against its directory.
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Self, WorkflowError> {
        Self::parse_with(text, path.as_ref(), true)
    }

    /// Like [`Workflow::load`], but component files need not exist yet:
    /// enough to plan and draw a workflow whose agents are still being built.
    pub fn load_for_planning(path: impl AsRef<Path>) -> Result<Self, WorkflowError> {
        let path = path.as_ref();
        let text = read(path)?;
        Self::parse_with(&text, path, false)
    }

    /// Like [`Workflow::parse`], but component files need not exist (as
    /// [`Workflow::load_for_planning`]).
    pub fn parse_for_planning(text: &str, path: impl AsRef<Path>) -> Result<Self, WorkflowError> {
        Self::parse_with(text, path.as_ref(), false)
    }

    fn parse_with(text: &str, path: &Path, check_components: bool) -> Result<Self, WorkflowError> {
        let invalid = |problems| WorkflowError::Invalid { path: path.to_owned(), problems };
        if text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
            let message = "the file is empty: a workflow declares at least `agents:` (see `ensemble schema`)";
            return Err(invalid(vec![Problem { location: None, message: message.into() }]));
        }
        let file = file::parse(text).map_err(|p| invalid(vec![p]))?;
        let base = path.parent().unwrap_or(Path::new("."));
        validate::validate(&file, path, base, check_components).map_err(invalid)
    }

    /// The JSON Schema of workflow files, generated from the parser's types.
    pub fn json_schema() -> serde_json::Value {
        file::schema().to_value()
    }

    /// The agent `id`, if the workflow has it.
    pub fn agent(&self, id: &str) -> Option<&AgentSpec> {
        self.agents.iter().find(|a| a.id == id)
    }
}
