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
mod limits;
mod secrets;
mod wasi;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker, types::ComponentItem};
use wasmtime::{Engine, Store, Trap, UpdateDeadline, WasmBacktrace};

pub use bindings::{Finding, Severity, Validation};
pub use capabilities::{Capabilities, Imports};
pub use error::{AgentError, MissingNeed, ReturnedKind};
pub use host::{HostLimits, MAX_MESSAGE_BYTES, MAX_STAGED_BYTES, MAX_STAGED_KEYS, MAX_VALUE_BYTES};
pub use http::HttpSlots;
pub use limits::MAX_TABLE_ELEMENTS;
pub use secrets::REDACTED;
pub use wasi::{FIXED_WALL_CLOCK, MONOTONIC_STEP};

use crate::context::{Ownership, ReadPatterns, Snapshot, StagedWrites};
use crate::events::EventSink;
use bindings::{AgentPre, Invocation};
use compiled::CompiledCache;
use engine::{check_header, deserialize, engine_config, spawn_ticker};
use host::AgentState;
use limits::Limiter;

/// The interfaces the host provides. Anything else a component imports is a
/// capability it was not granted.
pub const PROVIDED_IMPORTS: &[&str] = &[
    "ensemble:agent/types@0.1.0",
    "ensemble:agent/context@0.1.0",
    "ensemble:agent/progress@0.1.0",
    "ensemble:agent/log@0.1.0",
    "ensemble:agent/templates@0.1.0",
];

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
/// service). Called on the agent's thread; may block to wait its turn.
pub trait Templates: Send + Sync {
    /// Render template `name` with `data` (MessagePack) for `agent`.
    fn render(&self, agent: &str, name: &str, data: &[u8], events: &EventSink) -> Result<Rendered, String>;
}

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

/// What a successful `run` produced.
#[derive(Debug, Clone, Default)]
pub struct AgentOutput {
    /// Writes to commit.
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

/// A linked component, the first `wasi:*` interface it imports (other than
/// `wasi:http`), and its first `wasi:http` import.
type Loaded = (AgentPre<AgentState>, Option<String>, Option<String>);

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
    loaded: Mutex<HashMap<(String, bool), Loaded>>,
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

    /// Load the component at `path` for `agent`. CPU-heavy on a cache miss:
    /// call it from a blocking thread in async code.
    pub fn load_file(&self, agent: &str, path: &Path) -> Result<AgentComponent, AgentError> {
        self.load_file_granted(agent, path, false)
    }

    /// Load component `bytes` for `agent`; `path` names them in errors.
    pub fn load(&self, agent: &str, path: &Path, bytes: &[u8]) -> Result<AgentComponent, AgentError> {
        self.load_granted(agent, path, bytes, false)
    }

    fn check_size(&self, size: u64) -> Result<(), String> {
        let limit = self.inner.max_component_bytes;
        if size > limit {
            return Err(format!(
                "the component is {size} bytes, more than the {limit} a component may have (`RuntimeConfig::max_component_bytes`)"
            ));
        }
        Ok(())
    }

    /// Like [`Runtime::load_file`], for an agent granted the WASI imports
    /// `imports` (a `bool`: WASI 0.2 without HTTP, or nothing).
    pub fn load_file_granted(
        &self,
        agent: &str,
        path: &Path,
        imports: impl Into<Imports>,
    ) -> Result<AgentComponent, AgentError> {
        let load_error =
            |reason: String| AgentError::Load { agent: agent.to_owned(), path: path.to_owned(), reason };
        // Refuse an oversized file before reading it all, and anything but
        // a regular file before opening it (a FIFO blocks, /dev/zero never ends).
        if let Some(why) = crate::files::not_a_file(path) {
            return Err(load_error(format!("it {why}")));
        }
        let size = std::fs::metadata(path).map_err(|e| load_error(e.to_string()))?.len();
        self.check_size(size).map_err(load_error)?;
        let bytes = crate::files::read_file(path, self.inner.max_component_bytes)
            .map_err(|e| load_error(e.to_string()))?;
        self.load_granted(agent, path, &bytes, imports)
    }

    /// Load `bytes` for `agent`. A component may import the `ensemble:agent`
    /// interfaces and, only as `imports` grants, WASI 0.2 (`wasi:*`) and
    /// `wasi:http`; anything else is a [`AgentError::Link`] naming the import.
    pub fn load_granted(
        &self,
        agent: &str,
        path: &Path,
        bytes: &[u8],
        imports: impl Into<Imports>,
    ) -> Result<AgentComponent, AgentError> {
        let imports: Imports = imports.into();
        let load_error =
            |reason: String| AgentError::Load { agent: agent.to_owned(), path: path.to_owned(), reason };
        let link_error =
            |import: String| AgentError::Link { agent: agent.to_owned(), path: path.to_owned(), import };
        self.check_size(bytes.len() as u64).map_err(load_error)?;
        check_header(bytes).map_err(|r| load_error(r.to_owned()))?;
        let content_hash = blake3::hash(bytes).to_hex().to_string();
        let inner = &self.inner;
        // A component granted HTTP is linked with it; the same bytes without
        // the grant are linked (and checked) apart.
        let key = (content_hash.clone(), imports.http);
        let known = inner.loaded.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
        if let Some((pre, wasi_import, http_import)) = known {
            inner.memory_hits.fetch_add(1, Ordering::Relaxed);
            if let Some(import) = refused(imports, wasi_import.as_ref(), http_import.as_ref()) {
                return Err(link_error(import.clone()));
            }
            return Ok(AgentComponent { content_hash, wasi: wasi_import.is_some(), pre });
        }

        let component =
            self.compile_or_fetch(&content_hash, bytes).map_err(|e| load_error(format!("{e:#}")))?;

        let ty = component.component_type();
        let (mut wasi_import, mut http_import) = (None, None);
        for (name, item) in ty.imports(&inner.engine) {
            if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
                return Err(link_error(name.to_owned()));
            }
            if PROVIDED_IMPORTS.contains(&name) {
                continue;
            }
            if name.starts_with("wasi:http/") {
                http_import.get_or_insert_with(|| name.to_owned());
                continue;
            }
            if name.starts_with("wasi:") {
                wasi_import.get_or_insert_with(|| name.to_owned());
                continue;
            }
            return Err(link_error(name.to_owned()));
        }
        if let Some(import) = refused(imports, wasi_import.as_ref(), http_import.as_ref()) {
            return Err(link_error(import.clone()));
        }
        let linker = if imports.http { &inner.http_linker } else { &inner.linker };
        let instance_pre =
            linker.instantiate_pre(&component).map_err(|e| load_error(format!("cannot link: {e:#}")))?;
        let pre = AgentPre::new(instance_pre).map_err(|e| {
            load_error(format!("it does not implement the `ensemble:agent/agent` world (it must export `run` and `validate`): {e:#}"))
        })?;
        inner
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (pre.clone(), wasi_import.clone(), http_import));
        Ok(AgentComponent { content_hash, wasi: wasi_import.is_some(), pre })
    }

    fn compile_or_fetch(&self, content_hash: &str, bytes: &[u8]) -> wasmtime::Result<Component> {
        let inner = &self.inner;
        if let Some(cache) = &inner.cache
            && let Some(artifact) = cache.get(content_hash, &inner.fingerprint)
        {
            match deserialize(&inner.engine, &artifact) {
                Ok(component) => {
                    inner.disk_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(component);
                }
                Err(e) => tracing::warn!("cached compiled component unusable ({e}); recompiling"),
            }
        }
        let component = Component::new(&inner.engine, bytes)?;
        inner.compiled.fetch_add(1, Ordering::Relaxed);
        if let Some(cache) = &inner.cache {
            cache.put(content_hash, &inner.fingerprint, &component.serialize()?);
        }
        Ok(component)
    }

    /// Instantiate `component` in a fresh store and call its `run`, under
    /// `call.limits`. On success the staged writes are returned for the
    /// caller to commit; on any failure nothing is.
    pub async fn run_agent(
        &self,
        component: &AgentComponent,
        call: AgentCall,
    ) -> Result<AgentOutput, AgentError> {
        self.invoke_redacted(component, call, Entry::Run).await.map(|(_, output)| output)
    }

    /// Instantiate `component` in a fresh store and call its `validate` over
    /// the committed outputs of agent `subject` (visible in `call.snapshot`).
    /// `validate` is read-only: its `put` calls are refused.
    pub async fn validate_agent(
        &self,
        component: &AgentComponent,
        call: AgentCall,
        subject: &str,
    ) -> Result<(Validation, AgentOutput), AgentError> {
        let (validation, output) = self.invoke_redacted(component, call, Entry::Validate(subject)).await?;
        let validation = validation.unwrap_or(Validation { passed: true, findings: Vec::new() });
        Ok((validation, output))
    }

    async fn invoke(
        &self,
        component: &AgentComponent,
        call: AgentCall,
        entry: Entry<'_>,
    ) -> Result<(Option<Validation>, AgentOutput), AgentError> {
        let inner = &self.inner;
        let host_error = |message: String| AgentError::Host { agent: call.agent.clone(), message };
        let _slot = inner.slots.acquire().await.map_err(|e| host_error(e.to_string()))?;

        let agent: Arc<str> = Arc::from(call.agent.as_str());
        let mut state = AgentState::new(
            agent,
            call.snapshot,
            call.ownership,
            Limiter::new(call.limits.memory_bytes),
            call.events,
            call.pulse.clone(),
            inner.host_limits,
        );
        state.templates = call.templates.clone();
        state.read_only = matches!(entry, Entry::Validate(_));
        state.reads_allowed = call.reads.clone();
        if let Some(grant) = &call.capabilities.grants.http {
            state.http = Some(Box::new(http::HttpState::new(
                state.agent.clone(),
                Some(grant.clone()),
                state.events.clone(),
                call.capabilities.http_slots.clone(),
                secrets::Secrets::of(&call.capabilities.grants),
            )));
        }
        state.grant(call.capabilities);
        if let Entry::Validate(subject) = entry {
            // A validator reads what it validates.
            state.subject = Some(subject.to_owned());
        }
        let mut store = Store::new(&inner.engine, state);
        store.limiter(|state| &mut state.limiter);
        let fuel_budget = match (inner.fuel, call.limits.fuel) {
            (true, budget) => Some(budget.unwrap_or(u64::MAX)),
            (false, None) => None,
            (false, Some(_)) => {
                return Err(host_error(
                    "the workflow sets a fuel budget but this engine does not meter fuel".into(),
                ));
            }
        };
        if let Some(budget) = fuel_budget {
            store.set_fuel(budget).map_err(|e| host_error(e.to_string()))?;
        }
        let started = Instant::now();
        let deadline = call.limits.timeout.and_then(|t| started.checked_add(t));
        // Every tick: check the deadline and take the pulse. Every `slice`
        // ticks: yield, so other agents (and cancellation) get their turn.
        let slice = call.limits.slice.max(1);
        let mut ticks = 0u32;
        let pulse = call.pulse;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |store| {
            if let Some(budget) = fuel_budget
                && let Ok(left) = store.get_fuel()
            {
                pulse.update(|p| p.fuel_used = Some(budget.saturating_sub(left)));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(DeadlineExceeded.into());
            }
            ticks = ticks.wrapping_add(1);
            Ok(if ticks.is_multiple_of(slice) {
                UpdateDeadline::Yield(1)
            } else {
                UpdateDeadline::Continue(1)
            })
        });

        let invocation = Invocation {
            agent: call.agent.clone(),
            run_id: call.run_id,
            attempt: call.attempt,
            config: call.config,
        };
        inner.instantiations.fetch_add(1, Ordering::Relaxed);
        let run = async {
            let instance = component.pre.instantiate_async(&mut store).await?;
            match entry {
                Entry::Run => instance.call_run(&mut store, &invocation).await.map(|r| r.map(|()| None)),
                Entry::Validate(subject) => {
                    instance.call_validate(&mut store, &invocation, subject).await.map(|r| r.map(Some))
                }
            }
        };
        let result = match call.limits.timeout {
            // The epoch check stops a running agent; this also stops one that
            // is blocked in a host call.
            Some(t) => tokio::time::timeout(t.saturating_add(Duration::from_millis(100)), run)
                .await
                .unwrap_or_else(|_| Err(DeadlineExceeded.into())),
            None => run.await,
        };

        let fuel_used = fuel_budget.and_then(|budget| Some(budget - store.get_fuel().ok()?));
        let mut state = store.into_data();
        state.flush_progress();
        if let Some(refused) = state.grant_failure() {
            return Err(refused);
        }
        let agent = call.agent;
        let http_refused = state.http.as_ref().and_then(|h| h.refused());
        if let Some(violation) = state.violation {
            return Err(AgentError::Ownership(violation));
        }
        if let Some(key) = state.read_refused {
            let patterns = call.reads.map(|r| r.patterns().to_vec()).unwrap_or_default();
            return Err(AgentError::ReadRefused { agent, key, patterns });
        }
        let memory_limit = |requested: usize| AgentError::MemoryLimit {
            agent: agent.clone(),
            limit: call.limits.memory_bytes,
            requested: requested as u64,
        };
        match result {
            Ok(Ok(validation)) => Ok((
                validation,
                AgentOutput {
                    writes: state.staged,
                    fuel_used,
                    peak_memory: state.limiter.peak(),
                    reads: state.reads,
                },
            )),
            Ok(Err(error)) => {
                if let Some(requested) = state.limiter.refused {
                    return Err(memory_limit(requested));
                }
                let (kind, message) = match error {
                    bindings::AgentError::InvalidInput(m) => (ReturnedKind::InvalidInput, m),
                    bindings::AgentError::Context(e) => (ReturnedKind::Context, context_error_message(&e)),
                    bindings::AgentError::Failed(m) => (ReturnedKind::Failed, m),
                };
                let message = http::name_refusal(message, http_refused);
                Err(AgentError::Returned { agent, kind, message, missing_need: state.missing_need() })
            }
            Err(e) => {
                if e.downcast_ref::<DeadlineExceeded>().is_some()
                    || matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt))
                {
                    return Err(AgentError::Timeout { agent, after: started.elapsed() });
                }
                if matches!(e.downcast_ref::<Trap>(), Some(Trap::OutOfFuel)) {
                    return Err(AgentError::OutOfFuel {
                        agent,
                        budget: call.limits.fuel.unwrap_or(u64::MAX),
                    });
                }
                if let Some(requested) = state.limiter.refused {
                    return Err(memory_limit(requested));
                }
                if let Some(limit) = e.downcast_ref::<host::HostLimitExceeded>() {
                    return Err(AgentError::LimitExceeded { agent, message: limit.0.clone() });
                }
                let backtrace = e.downcast_ref::<WasmBacktrace>().map(ToString::to_string);
                let message = match e.downcast_ref::<Trap>() {
                    Some(trap) => trap.to_string(),
                    // An error raised in the component model's glue (a string
                    // that is not UTF-8, a bad `cabi_realloc` pointer) carries
                    // the backtrace as its context: that is `backtrace`, not
                    // part of the one-line message.
                    None => e
                        .chain()
                        .map(ToString::to_string)
                        .filter(|m| Some(m) != backtrace.as_ref())
                        .collect::<Vec<_>>()
                        .join(": "),
                };
                let message = http::name_refusal(message, http_refused);
                let missing_need = state.missing_need();
                Err(AgentError::Trap { agent, message, backtrace, said: state.last_error, missing_need })
            }
        }
    }
}

/// The first import of a component that `imports` does not grant.
fn refused<'a>(imports: Imports, wasi: Option<&'a String>, http: Option<&'a String>) -> Option<&'a String> {
    http.filter(|_| !imports.http).or(wasi.filter(|_| !imports.wasi && !imports.http))
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
