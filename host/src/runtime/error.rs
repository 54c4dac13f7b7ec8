//! Why an agent did not succeed: [`AgentError`], one variant per cause,
//! each naming the agent, and the [`MissingNeed`] hint a failure may carry.

use std::path::PathBuf;
use std::time::Duration;

use crate::context::OwnershipError;

/// How the agent's own `agent-error` classified its failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReturnedKind {
    /// The agent's input was not what it accepts.
    InvalidInput,
    /// A context call failed.
    Context,
    /// Anything else.
    Failed,
}

/// Why an agent did not succeed. Every variant names the agent.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum AgentError {
    /// Its component could not be read or compiled.
    #[error("agent `{agent}`: cannot load component {}: {reason}", path.display())]
    Load {
        /// The agent's name.
        agent: String,
        /// The component file.
        path: PathBuf,
        /// Why it could not be loaded.
        reason: String,
    },
    /// Its component imports something the host does not provide.
    #[error("agent `{agent}`: component {} imports `{import}`, which the host does not provide ({})", path.display(), grant_hint(import))]
    Link {
        /// The agent's name.
        agent: String,
        /// The component file.
        path: PathBuf,
        /// The import the host lacks.
        import: String,
    },
    /// It used up its fuel budget.
    #[error("agent `{agent}` ran out of fuel (budget: {budget} units)")]
    OutOfFuel {
        /// The agent's name.
        agent: String,
        /// The budget, in fuel units.
        budget: u64,
    },
    /// It asked for more linear memory than it may hold.
    #[error("agent `{agent}` hit its memory limit of {limit} bytes (it asked for {requested} bytes)")]
    MemoryLimit {
        /// The agent's name.
        agent: String,
        /// Its limit, in bytes.
        limit: u64,
        /// What it asked for, in bytes.
        requested: u64,
    },
    /// An attempt ran past its timeout.
    #[error("agent `{agent}` timed out after {}", humantime::format_duration(*after))]
    Timeout {
        /// The agent's name.
        agent: String,
        /// The timeout.
        after: Duration,
    },
    /// It trapped: a panic, an unreachable, an out-of-bounds access, ...
    #[error("agent `{agent}` trapped: {message}{}{}", said.as_ref().map(|s| format!(" (it last logged: {s})")).unwrap_or_default(), need_hint(agent, missing_need.as_deref()))]
    Trap {
        /// The agent's name.
        agent: String,
        /// The trap's message.
        message: String,
        /// The wasm backtrace, when wasmtime captured one.
        backtrace: Option<String>,
        /// The last message the agent logged at error level, e.g. a Rust panic.
        said: Option<String>,
        /// A key it found missing that another agent owns.
        missing_need: Option<Box<MissingNeed>>,
    },
    /// It wrote a key it does not own.
    #[error(transparent)]
    Ownership(#[from] OwnershipError),
    /// It read a key outside its workflow `reads` patterns.
    #[error("agent `{agent}` may not read `{key}`: it is outside its `reads` patterns ({})", patterns.join(", "))]
    ReadRefused {
        /// The agent's name.
        agent: String,
        /// The key it read.
        key: String,
        /// Its `reads` patterns.
        patterns: Vec<String>,
    },
    /// It went past a host limit that fails the invocation (a log flood).
    #[error("agent `{agent}` exceeded a host limit: {message}")]
    LimitExceeded {
        /// The agent's name.
        agent: String,
        /// Which limit, and by how much.
        message: String,
    },
    /// Its `run` or `validate` returned an `agent-error`.
    #[error("agent `{agent}` failed: {message}{}", need_hint(agent, missing_need.as_deref()))]
    Returned {
        /// The agent's name.
        agent: String,
        /// How the agent classified the error.
        kind: ReturnedKind,
        /// What the agent said.
        message: String,
        /// A key it found missing that another agent owns.
        missing_need: Option<Box<MissingNeed>>,
    },
    /// The host failed while serving the agent.
    #[error("agent `{agent}`: host error: {message}")]
    Host {
        /// The agent's name.
        agent: String,
        /// What failed.
        message: String,
    },
    /// Its commit met a concurrent write its key's policy refuses; another
    /// attempt reads the newer value.
    #[error(transparent)]
    Conflict(#[from] crate::context::CommitError),
    /// The executor stopped the agent (a group's barrier gave up on it).
    #[error("agent `{agent}` was stopped: {reason}")]
    Stopped {
        /// The agent's name.
        agent: String,
        /// Why it was stopped.
        reason: String,
    },
    /// It tried to write the value of a secret variable (`secret`, by name)
    /// to the context; `key` is shown with secret values replaced by `***`.
    #[error(
        "agent `{agent}` may not write `{key}`: it holds the value of secret `{secret}`, and secrets never leave the host (nothing was committed)"
    )]
    SecretWrite {
        /// The agent's name.
        agent: String,
        /// The key, secret values replaced by `***`.
        key: String,
        /// The secret variable's name.
        secret: String,
    },
    /// A directory it was granted could not be opened when it ran.
    #[error("agent `{agent}`: cannot open its granted directory {} (as `{guest}`): {reason}", host.display())]
    GrantUnavailable {
        /// The agent's name.
        agent: String,
        /// The directory on the host.
        host: PathBuf,
        /// Where the agent sees it.
        guest: String,
        /// Why it could not be opened.
        reason: String,
    },
}

/// A key an agent read and found missing although another agent owns it:
/// the likely cause of its failure when it does not wait for that agent
/// (the executor drops it when it does: see [`AgentError::without_missing_need`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MissingNeed {
    /// The key it found missing.
    pub key: String,
    /// The agent owning `key`.
    pub owner: String,
}

fn grant_hint(import: &str) -> &'static str {
    if import.starts_with("wasi:http/") {
        "outbound HTTP is only for an agent with an `http` grant: `grants: { http: { allow: [...] } }`"
    } else if import.starts_with("ensemble:agent/llm@") {
        "language models (`ensemble:agent/llm`) cannot be granted to an agent in this version of Ensemble yet"
    } else {
        "agents get only the ensemble:agent interfaces; WASI 0.2 comes with `wasi: true` or any grant (`grants: { files, variables }`)"
    }
}

fn need_hint(agent: &str, missing: Option<&MissingNeed>) -> String {
    missing
        .map(|m| {
            format!(
                " (`{}` is owned by agent `{}`, which `{agent}` does not wait for: add `needs: [{}]` to agent `{agent}`)",
                m.key, m.owner, m.owner
            )
        })
        .unwrap_or_default()
}

impl AgentError {
    /// The key it found missing that another agent owns, if that is why it may have failed.
    pub fn missing_need(&self) -> Option<&MissingNeed> {
        match self {
            Self::Returned { missing_need, .. } | Self::Trap { missing_need, .. } => missing_need.as_deref(),
            _ => None,
        }
    }

    /// The same error without a [`MissingNeed`] (the agent does wait for the owner).
    pub fn without_missing_need(mut self) -> Self {
        if let Self::Returned { missing_need, .. } | Self::Trap { missing_need, .. } = &mut self {
            *missing_need = None;
        }
        self
    }

    /// The agent this error is about.
    pub fn agent(&self) -> &str {
        match self {
            Self::Load { agent, .. }
            | Self::Link { agent, .. }
            | Self::OutOfFuel { agent, .. }
            | Self::MemoryLimit { agent, .. }
            | Self::Timeout { agent, .. }
            | Self::Trap { agent, .. }
            | Self::Returned { agent, .. }
            | Self::Host { agent, .. }
            | Self::Stopped { agent, .. }
            | Self::ReadRefused { agent, .. }
            | Self::LimitExceeded { agent, .. }
            | Self::SecretWrite { agent, .. }
            | Self::GrantUnavailable { agent, .. } => agent,
            Self::Ownership(e) => &e.agent,
            Self::Conflict(e) => &e.0.agent,
        }
    }

    /// The same error for agent `id` (a component shared by several agents
    /// fails to load for each of them). Errors that name no agent of their
    /// own (ownership, conflicts) are returned as they are.
    pub fn for_agent(self, id: &str) -> Self {
        let id = id.to_owned();
        match self {
            Self::Load { path, reason, .. } => Self::Load { agent: id, path, reason },
            Self::Link { path, import, .. } => Self::Link { agent: id, path, import },
            Self::OutOfFuel { budget, .. } => Self::OutOfFuel { agent: id, budget },
            Self::MemoryLimit { limit, requested, .. } => Self::MemoryLimit { agent: id, limit, requested },
            Self::Timeout { after, .. } => Self::Timeout { agent: id, after },
            Self::Trap { message, backtrace, said, missing_need, .. } => {
                Self::Trap { agent: id, message, backtrace, said, missing_need }
            }
            Self::Returned { kind, message, missing_need, .. } => {
                Self::Returned { agent: id, kind, message, missing_need }
            }
            Self::Host { message, .. } => Self::Host { agent: id, message },
            Self::Stopped { reason, .. } => Self::Stopped { agent: id, reason },
            Self::ReadRefused { key, patterns, .. } => Self::ReadRefused { agent: id, key, patterns },
            Self::LimitExceeded { message, .. } => Self::LimitExceeded { agent: id, message },
            Self::SecretWrite { key, secret, .. } => Self::SecretWrite { agent: id, key, secret },
            Self::GrantUnavailable { host, guest, reason, .. } => {
                Self::GrantUnavailable { agent: id, host, guest, reason }
            }
            other => other,
        }
    }

    /// Whether another attempt could succeed. Never for an unusable
    /// component, an ownership violation, a secret written, a granted
    /// directory missing, or input the agent called invalid.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Self::Load { .. }
                | Self::Link { .. }
                | Self::Ownership(_)
                | Self::ReadRefused { .. }
                | Self::LimitExceeded { .. }
                | Self::Stopped { .. }
                | Self::SecretWrite { .. }
                | Self::GrantUnavailable { .. }
                | Self::Returned { kind: ReturnedKind::InvalidInput | ReturnedKind::Context, .. }
        )
    }

    /// Whether the component itself is unusable (bad file, wrong world,
    /// forbidden import): an input problem, not a run-time failure.
    pub fn is_load_error(&self) -> bool {
        matches!(self, Self::Load { .. } | Self::Link { .. })
    }
}
