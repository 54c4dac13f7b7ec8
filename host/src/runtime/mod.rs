//! The sandbox: wasmtime configuration, component loading, the compiled
//! component cache, per-invocation limits and the WIT bindings.
//!
//! Architecture invariant: this is the only module that names wasmtime types.
//! The rest of the host sees [`Runtime`], [`AgentComponent`], [`AgentCall`],
//! [`AgentOutput`] and [`AgentError`].
//!
//! Limits, and why they exist:
//! - Linear memory is capped per invocation (the agent's memory units × the
//!   unit size), so an agent cannot take the host's memory.
//! - Fuel, when the workflow gives a budget, bounds the instructions an agent
//!   may execute, so a runaway loop ends deterministically.
//! - A wall-clock deadline is enforced through epoch interruption: a
//!   background thread ticks the engine's epoch, and at every tick a running
//!   agent yields to tokio (so agents share cores fairly) and is stopped if
//!   its deadline has passed.
//! - No ambient authority: the linker provides only the `ensemble:agent`
//!   interfaces. A component that imports anything else (WASI included)
//!   fails to load, naming the import, unless its grants allow it; then
//!   WASI gives it only its grants (`wasi.rs`), and secrets stay in the
//!   host (`secrets.rs`).

mod bindings;
mod capabilities;
mod compiled;
mod engine;
mod error;
mod host;
mod http;
mod invoke;
mod limits;
mod llm;
mod load;
mod secrets;
mod wasi;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

pub use bindings::{Finding, Severity, Validation};
pub use capabilities::{Capabilities, Imports};
pub use error::{AgentError, MissingNeed, ReturnedKind};
pub use host::{HostLimits, MAX_MESSAGE_BYTES, MAX_STAGED_BYTES, MAX_STAGED_KEYS, MAX_VALUE_BYTES};
pub use http::HttpSlots;
pub use limits::MAX_TABLE_ELEMENTS;
pub use load::ComponentLoads;
pub use secrets::REDACTED;
pub use wasi::{FIXED_WALL_CLOCK, MONOTONIC_STEP};

use crate::context::{Ownership, ReadPatterns, Snapshot, StagedWrites};
use crate::events::EventSink;
use bindings::AgentPre;
use compiled::CompiledCache;
use engine::{engine_config, spawn_ticker};
use host::AgentState;

/// The `ensemble:agent` interfaces the host provides, at
/// [`WIT_VERSION`]; a component built against an earlier 0.1.x version
/// imports them under its own version, which the linker matches (the
/// component model's semver rule). `llm` only for agents granted it.
pub const PROVIDED_INTERFACES: &[&str] = &["types", "context", "progress", "log", "templates", "llm"];

/// The version of the `ensemble:agent` package this host implements.
pub const WIT_VERSION: &str = "0.1.1";

/// What an import named `name` is, for the import check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provided {
    /// An `ensemble:agent` interface every agent gets.
    Always,
    /// `ensemble:agent/llm`: for agents with an `llm` grant.
    Llm,
    /// An `ensemble:agent` import of a later compatible version than the
    /// host's (built for a newer Ensemble).
    Newer,
    /// An `ensemble:agent` import of an incompatible version (another
    /// major, or another minor of 0.x).
    Incompatible,
    /// Not an interface the host provides.
    No,
}

/// Classify import `name` (`ensemble:agent/context@0.1.0`).
pub(crate) fn provided(name: &str) -> Provided {
    let Some(rest) = name.strip_prefix("ensemble:agent/") else { return Provided::No };
    let Some((interface, version)) = rest.split_once('@') else { return Provided::No };
    let (Some(theirs), Some(ours)) = (semver(version), semver(WIT_VERSION)) else {
        return Provided::Incompatible;
    };
    if (theirs.0, theirs.1) != (ours.0, ours.1) {
        Provided::Incompatible
    } else if theirs.2 > ours.2 {
        Provided::Newer
    } else if !PROVIDED_INTERFACES.contains(&interface) {
        Provided::No
    } else if interface == "llm" {
        Provided::Llm
    } else {
        Provided::Always
    }
}

/// `major.minor.patch` (no pre-release).
fn semver(version: &str) -> Option<(u64, u64, u64)> {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
    let parsed = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(parsed)
}

/// How a [`Runtime`] is set up. One runtime serves a whole process.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Agents that may be instantiated at once; sizes the instance pool.
    pub max_instances: u32,
    /// The largest linear memory any one agent may be given, in bytes.
    pub max_memory_bytes: u64,
    /// Meter fuel. Needed for fuel budgets; costs some speed.
    pub fuel: bool,
    /// Where compiled components are kept; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// How often running agents yield and check their deadline.
    pub epoch_tick: Duration,
    /// Use the pooling allocator (falls back to on-demand if it cannot be reserved).
    pub pooling: bool,
    /// What one agent may stage and how fast it may log.
    pub host_limits: HostLimits,
    /// The largest component file that is compiled; a larger one fails to
    /// load (compiling costs time and memory in proportion). Default 256 MiB.
    pub max_component_bytes: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_instances: crate::workflow::DEFAULT_MAX_CONCURRENT,
            max_memory_bytes: 1 << 30,
            fuel: true,
            cache_dir: None,
            epoch_tick: Duration::from_millis(10),
            pooling: true,
            host_limits: HostLimits::default(),
            max_component_bytes: 256 << 20,
        }
    }
}

/// Counters of the compiled-component cache.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoadStats {
    /// Components compiled from wasm.
    pub compiled: u64,
    /// Components loaded from the on-disk cache.
    pub disk_hits: u64,
    /// Loads answered by a component already loaded in this process.
    pub memory_hits: u64,
}

/// A loaded, linked component, ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct AgentComponent {
    /// blake3 of the component bytes, hex.
    pub content_hash: String,
    /// It imports WASI 0.2 (it was granted: see [`Runtime::load_granted`]).
    pub wasi: bool,
    pre: AgentPre<AgentState>,
}

impl std::fmt::Debug for AgentComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentComponent").field("content_hash", &self.content_hash).finish_non_exhaustive()
    }
}

/// Limits of one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Cap on the total of the agent's linear memories.
    pub memory_bytes: u64,
    /// Instruction budget; `None` for unmetered.
    pub fuel: Option<u64>,
    /// Wall-clock limit; `None` for none.
    pub timeout: Option<Duration>,
    /// Epoch ticks the agent runs before it yields to other tasks (at least
    /// 1). When agents share cores, their shares of cpu time are proportional
    /// to their slices. (The deadline is checked at every tick regardless;
    /// dropping the invocation's future stops it at its next yield.)
    pub slice: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { memory_bytes: 64 << 20, fuel: None, timeout: None, slice: 1 }
    }
}

/// Signs of life of a running invocation, shared with whoever watches it
/// (the executor's barriers): its last `progress.report` and the fuel it has
/// used so far (updated at every epoch tick when fuel is metered).
#[derive(Debug, Default)]
pub struct Pulse {
    state: Mutex<PulseState>,
}

/// A reading of a [`Pulse`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PulseState {
    /// When the agent last called `progress.report`.
    pub last_report: Option<Instant>,
    /// What it reported then, in [0, 1].
    pub done: f32,
    /// Fuel consumed so far, when metered.
    pub fuel_used: Option<u64>,
    /// `templates.render` calls so far, and how many the render cache answered.
    pub renders: u32,
    /// Renders the render cache answered.
    pub renders_cached: u32,
}

impl Pulse {
    /// Its signs of life as of now.
    pub fn read(&self) -> PulseState {
        *self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut PulseState)) {
        f(&mut self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    }
}

/// Everything one call of an agent's `run` needs.
#[derive(Debug, Clone)]
pub struct AgentCall {
    /// The agent's name.
    pub agent: String,
    /// The run's id.
    pub run_id: String,
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// MessagePack of the agent's config.
    pub config: Vec<u8>,
    /// The context as of the agent's start.
    pub snapshot: Snapshot,
    /// Which agent owns which keys.
    pub ownership: Ownership,
    /// Fuel, memory, time and host limits of the call.
    pub limits: Limits,
    /// Where the call's events go.
    pub events: EventSink,
    /// Updated while the agent runs.
    pub pulse: Arc<Pulse>,
    /// The template service; `None` answers every render with an error.
    pub templates: Option<Arc<dyn Templates>>,
    /// The keys it may read besides its own; `None` reads everything.
    pub reads: Option<ReadPatterns>,
    /// Its files, HTTP and variables.
    pub capabilities: Capabilities,
}

/// What renders an agent's `templates.render` calls (the host's template
/// service). The agent waits for the returned future on its fiber: a
/// pending future suspends the agent and frees its worker thread, so a
/// render waiting for its turn must wait asynchronously, never block.
pub trait Templates: Send + Sync {
    /// Render template `name` with `data` (MessagePack) for `agent`.
    fn render<'a>(
        &'a self,
        agent: &'a str,
        name: &'a str,
        data: &'a [u8],
        events: &'a EventSink,
    ) -> RenderFuture<'a>;
}

/// What [`Templates::render`] returns.
pub type RenderFuture<'a> = std::pin::Pin<Box<dyn Future<Output = Result<Rendered, String>> + Send + 'a>>;

/// A rendered template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The rendered text.
    pub text: String,
    /// Answered from a render cache.
    pub cached: bool,
}

impl std::fmt::Debug for dyn Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

/// What a successful `run` produced. A plain value: a remote worker sends
/// it back serialised (the writes' values as byte strings).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct AgentOutput {
    /// Writes to commit.
    #[serde(with = "crate::context::byte_values")]
    pub writes: StagedWrites,
    /// Fuel consumed, when metered.
    pub fuel_used: Option<u64>,
    /// Peak linear memory, bytes.
    pub peak_memory: u64,
    /// What it read from its snapshot: the inputs its output depends on.
    pub reads: Reads,
}

/// The context an invocation read from its snapshot: each key `get` with the
/// blake3 of the value it saw (`None`: absent), and each prefix `keys`
/// listed with the blake3 of the listing. Reads of its own staged writes are
/// not inputs and are not recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reads {
    /// Each key read, with the blake3 of its value (`None`: absent).
    pub values: std::collections::BTreeMap<String, Option<[u8; 32]>>,
    /// Each prefix listed, with the blake3 of the listing.
    pub listings: std::collections::BTreeMap<String, [u8; 32]>,
}

/// blake3 of an optional value, as [`Reads`] records it.
pub fn value_hash(value: Option<&[u8]>) -> Option<[u8; 32]> {
    value.map(|v| *blake3::hash(v).as_bytes())
}

/// blake3 of a key listing, as [`Reads`] records it.
pub fn listing_hash<'a>(keys: impl IntoIterator<Item = &'a str>) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    for key in keys {
        hasher.update(key.as_bytes());
        hasher.update(&[0]);
    }
    *hasher.finalize().as_bytes()
}

/// The epoch deadline passed.
#[derive(Debug)]
struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

struct Inner {
    engine: Engine,
    /// The `ensemble:agent` interfaces and WASI 0.2.
    linker: Linker<AgentState>,
    /// The same and `wasi:http`, for agents with an `http` grant.
    http_linker: Linker<AgentState>,
    cache: Option<CompiledCache>,
    fingerprint: String,
    /// Loaded components by content hash and whether they were linked with
    /// `wasi:http`: linked, and their first WASI imports.
    loaded: Mutex<HashMap<(String, bool), load::Loaded>>,
    compiled: AtomicU64,
    disk_hits: AtomicU64,
    memory_hits: AtomicU64,
    instantiations: AtomicU64,
    /// One permit per pooled instance slot.
    slots: tokio::sync::Semaphore,
    fuel: bool,
    pooling: bool,
    host_limits: HostLimits,
    max_component_bytes: u64,
}

/// The wasmtime engine, linker and component cache of a process. Cheap to
/// clone; clones share everything.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("fingerprint", &self.inner.fingerprint)
            .field("pooling", &self.inner.pooling)
            .field("fuel", &self.inner.fuel)
            .finish_non_exhaustive()
    }
}

/// The runtime could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the wasm engine: {0}")]
pub struct RuntimeError(String);

impl Runtime {
    /// A runtime configured by `config`.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let (engine, pooling) = if config.pooling {
            match Engine::new(&engine_config(&config, true)) {
                Ok(engine) => (engine, true),
                Err(e) => {
                    tracing::warn!("cannot reserve the instance pool ({e}); using on-demand allocation");
                    (
                        Engine::new(&engine_config(&config, false))
                            .map_err(|e| RuntimeError(e.to_string()))?,
                        false,
                    )
                }
            }
        } else {
            (Engine::new(&engine_config(&config, false)).map_err(|e| RuntimeError(e.to_string()))?, false)
        };
        let linker = |http: bool| -> wasmtime::Result<Linker<AgentState>> {
            let mut linker = Linker::new(&engine);
            wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
            if http {
                wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
            }
            bindings::Agent::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
            Ok(linker)
        };
        let (linker, http_linker) =
            linker(false).and_then(|l| Ok((l, linker(true)?))).map_err(|e| RuntimeError(e.to_string()))?;
        spawn_ticker(&engine, config.epoch_tick);
        let fingerprint = compiled::engine_fingerprint(&engine);
        let slots =
            if pooling { config.max_instances.max(1) as usize } else { tokio::sync::Semaphore::MAX_PERMITS };
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                http_linker,
                cache: config.cache_dir.map(CompiledCache::new),
                fingerprint,
                loaded: Mutex::new(HashMap::new()),
                compiled: AtomicU64::new(0),
                disk_hits: AtomicU64::new(0),
                memory_hits: AtomicU64::new(0),
                instantiations: AtomicU64::new(0),
                slots: tokio::sync::Semaphore::new(slots),
                fuel: config.fuel,
                pooling,
                host_limits: config.host_limits,
                max_component_bytes: config.max_component_bytes,
            }),
        })
    }

    /// Whether the pooling allocator is in use (false after a fallback).
    pub fn is_pooled(&self) -> bool {
        self.inner.pooling
    }

    /// Whether agents' fuel is metered.
    pub fn fuel_enabled(&self) -> bool {
        self.inner.fuel
    }

    /// Agent instances created so far (every `run` and `validate` call).
    pub fn instantiations(&self) -> u64 {
        self.inner.instantiations.load(Ordering::Relaxed)
    }

    /// How the components loaded so far were loaded.
    pub fn load_stats(&self) -> LoadStats {
        LoadStats {
            compiled: self.inner.compiled.load(Ordering::Relaxed),
            disk_hits: self.inner.disk_hits.load(Ordering::Relaxed),
            memory_hits: self.inner.memory_hits.load(Ordering::Relaxed),
        }
    }

    /// Instantiate `component` in a fresh store and call its `run`, under
    /// `call.limits`. On success the staged writes are returned for the
    /// caller to commit; on any failure nothing is.
    pub fn run_agent<'a>(
        &'a self,
        component: &'a AgentComponent,
        call: AgentCall,
    ) -> impl Future<Output = Result<AgentOutput, AgentError>> + Send + 'a {
        self.invoke(component, call, Entry::Run, |_, output| output)
    }

    /// Instantiate `component` in a fresh store and call its `validate` over
    /// the committed outputs of agent `subject` (visible in `call.snapshot`).
    /// `validate` is read-only: its `put` calls are refused.
    pub fn validate_agent<'a>(
        &'a self,
        component: &'a AgentComponent,
        call: AgentCall,
        subject: &'a str,
    ) -> impl Future<Output = Result<(Validation, AgentOutput), AgentError>> + Send + 'a {
        self.invoke(component, call, Entry::Validate(subject), |validation, output| {
            (validation.unwrap_or(Validation { passed: true, findings: Vec::new() }), output)
        })
    }
}

/// Which export an invocation calls.
#[derive(Debug, Clone, Copy)]
enum Entry<'a> {
    Run,
    Validate(&'a str),
}

fn context_error_message(e: &bindings::ContextError) -> String {
    match e {
        bindings::ContextError::NotOwned(m)
        | bindings::ContextError::InvalidKey(m)
        | bindings::ContextError::LimitExceeded(m) => m.clone(),
    }
}
