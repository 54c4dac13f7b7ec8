//! Loading components: compiling one (or reading it from the
//! compiled-component cache), checking its imports against its grants and
//! linking it; and loading every component of a workflow at once, in
//! parallel, with an event for each one compiled or read from the cache.
//!
//! Loading is part of a run: a run loads its components with
//! [`Runtime::load_workflow`], and the report counts the time it took. A
//! component loaded before the run (by [`Runtime::preload_workflow`] or any
//! other load of this runtime, for instance to refuse an unusable component
//! before anything is written) is counted by the first run that uses it,
//! once: its compilation is that run's cost, paid on the first run only
//! (later runs find it in memory or in the compiled-component cache).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, types::ComponentItem};

use super::bindings::AgentPre;
use super::engine::{check_header, deserialize};
use super::host::AgentState;
use super::{AgentComponent, AgentError, Imports, Provided, Runtime, provided};
use crate::events::{EventKind, EventSink};
use crate::workflow::Workflow;

/// A component loaded in this process, by content hash and whether it was
/// linked with `wasi:http`.
#[derive(Clone)]
pub(super) struct Loaded {
    pre: AgentPre<AgentState>,
    /// Its first `wasi:*` import other than `wasi:http`.
    wasi_import: Option<String>,
    /// Its first `wasi:http` import.
    http_import: Option<String>,
    /// Its `ensemble:agent/llm` import.
    llm_import: Option<String>,
    /// When it was compiled or read from the cache, if no run has counted
    /// that yet.
    uncounted: Option<Window>,
}

/// When a load began and ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Window {
    began: Instant,
    ended: Instant,
}

/// Whether a load is a run's own (counted at once) or ahead of a run
/// (counted by the first run that uses the component).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counting {
    Run,
    Ahead,
}

/// How a load is counted, and when it began (reading the file included).
#[derive(Debug, Clone, Copy)]
struct Load {
    counting: Counting,
    began: Instant,
}

/// What one load did besides returning the component.
#[derive(Debug, Default)]
struct Trace {
    /// Compiled (`Some(false)`) or read from the compiled-component cache
    /// (`Some(true)`); `None`: found in memory, or it failed first.
    cached: Option<bool>,
    /// A load ahead of this run that this run counts.
    counted: Option<Window>,
}

/// The components of a workflow's agents, loaded for a run.
#[derive(Debug)]
pub struct ComponentLoads {
    /// Each agent's component, or why it cannot be used, in the workflow's order.
    pub components: Vec<(String, Result<AgentComponent, AgentError>)>,
    /// How long loading took: this call, and the loads made ahead of it
    /// that it counts (overlaps counted once).
    pub elapsed: Duration,
}

impl ComponentLoads {
    /// The errors of the components that cannot be used, one per agent.
    pub fn errors(&self) -> Vec<AgentError> {
        self.components.iter().filter_map(|(_, c)| c.as_ref().err().cloned()).collect()
    }
}

/// One distinct component of a workflow: a file and the imports granted,
/// with the agents that use it.
#[derive(Debug, Clone)]
struct Unit {
    path: PathBuf,
    imports: Imports,
    agents: Vec<String>,
}

fn units(workflow: &Workflow) -> Vec<Unit> {
    let mut sharing: BTreeMap<(&Path, Imports), Vec<String>> = BTreeMap::new();
    for agent in &workflow.agents {
        sharing.entry((agent.component.as_path(), Imports::of(agent))).or_default().push(agent.id.clone());
    }
    sharing
        .into_iter()
        .map(|((path, imports), agents)| Unit { path: path.to_owned(), imports, agents })
        .collect()
}

impl Runtime {
    /// Load every component of `workflow` for a run: each distinct (file,
    /// grants) once, however many agents share it, distinct ones in parallel
    /// (as many at once as the machine has cores). For each one compiled or
    /// read from the compiled-component cache, sends
    /// [`EventKind::ComponentLoadStarted`] and [`EventKind::ComponentLoaded`]
    /// through `events`. The result's `elapsed` counts, besides this call,
    /// the loads made ahead of this run (see the module's docs).
    ///
    /// CPU-heavy and blocking: in async code, use
    /// [`load_workflow_async`](Self::load_workflow_async).
    pub fn load_workflow(&self, workflow: &Workflow, events: &EventSink) -> ComponentLoads {
        self.load_units(&units(workflow), events, Counting::Run, workflow_order(workflow))
    }

    /// [`load_workflow`](Self::load_workflow) on tokio's blocking threads.
    pub async fn load_workflow_async(&self, workflow: &Workflow, events: &EventSink) -> ComponentLoads {
        let (runtime, units, events, order) =
            (self.clone(), units(workflow), events.clone(), workflow_order(workflow));
        let started = Instant::now();
        let loading =
            tokio::task::spawn_blocking(move || runtime.load_units(&units, &events, Counting::Run, order));
        match loading.await {
            Ok(loads) => loads,
            // The loading thread panicked: a bug; say so for every agent.
            Err(e) => ComponentLoads {
                components: workflow
                    .agents
                    .iter()
                    .map(|a| {
                        let error =
                            AgentError::Host { agent: a.id.clone(), message: format!("loading: {e}") };
                        (a.id.clone(), Err(error))
                    })
                    .collect(),
                elapsed: started.elapsed(),
            },
        }
    }

    /// Load every component of `workflow` ahead of a run, as
    /// [`load_workflow`](Self::load_workflow) does (in parallel, with
    /// events), leaving the time it takes to the first run that uses each
    /// component. For refusing unusable components before anything is
    /// written, or precompiling into the compiled-component cache.
    pub fn preload_workflow(&self, workflow: &Workflow, events: &EventSink) -> ComponentLoads {
        self.load_units(&units(workflow), events, Counting::Ahead, workflow_order(workflow))
    }

    fn load_units(
        &self,
        units: &[Unit],
        events: &EventSink,
        counting: Counting,
        order: Vec<String>,
    ) -> ComponentLoads {
        type Done = (usize, Result<AgentComponent, AgentError>, Trace);
        let started = Instant::now();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(units.len()).max(1);
        let next = AtomicUsize::new(0);
        let done: Mutex<Vec<Done>> = Mutex::new(Vec::new());
        let work = || {
            loop {
                let position = next.fetch_add(1, Ordering::Relaxed);
                let Some(unit) = units.get(position) else { break };
                let (loaded, trace) = self.load_unit(unit, events, counting);
                done.lock().unwrap_or_else(PoisonError::into_inner).push((position, loaded, trace));
            }
        };
        if threads == 1 {
            work();
        } else {
            std::thread::scope(|scope| {
                for _ in 1..threads {
                    scope.spawn(work);
                }
                work();
            });
        }
        let ended = Instant::now();
        let mut windows = vec![Window { began: started, ended }];
        let mut by_agent = BTreeMap::new();
        for (position, loaded, trace) in done.into_inner().unwrap_or_else(PoisonError::into_inner) {
            windows.extend(trace.counted);
            for id in &units[position].agents {
                // An error names the agent: say it for each.
                by_agent.insert(id.clone(), loaded.clone().map_err(|e| e.for_agent(id)));
            }
        }
        let components =
            order.into_iter().filter_map(|id| by_agent.remove(&id).map(|loaded| (id, loaded))).collect();
        ComponentLoads { components, elapsed: union(windows) }
    }

    /// Load one distinct component, with its events when it is compiled
    /// or read from the cache.
    fn load_unit(
        &self,
        unit: &Unit,
        events: &EventSink,
        counting: Counting,
    ) -> (Result<AgentComponent, AgentError>, Trace) {
        let component = unit.path.display().to_string();
        let bytes = std::fs::metadata(&unit.path).map_or(0, |m| m.len());
        let first = unit.agents.first().map_or("", String::as_str);
        let mut trace = Trace::default();
        let started = Instant::now();
        // Send the start only if this turns out not to be in memory: a
        // memory hit is instant and sends nothing.
        let mut announce = || {
            events.send(EventKind::ComponentLoadStarted {
                component: component.clone(),
                agents: unit.agents.clone(),
                bytes,
            })
        };
        let loaded =
            self.load_file_traced(first, &unit.path, unit.imports, counting, &mut trace, &mut announce);
        if let Some(cached) = trace.cached {
            events.send(EventKind::ComponentLoaded {
                component,
                agents: unit.agents.clone(),
                bytes,
                cached,
                elapsed: started.elapsed(),
                error: loaded.as_ref().err().map(ToString::to_string),
            });
        }
        (loaded, trace)
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
        self.load_file_traced(agent, path, imports.into(), Counting::Ahead, &mut Trace::default(), &mut || {})
    }

    fn load_file_traced(
        &self,
        agent: &str,
        path: &Path,
        imports: Imports,
        counting: Counting,
        trace: &mut Trace,
        announce: &mut dyn FnMut(),
    ) -> Result<AgentComponent, AgentError> {
        let began = Instant::now();
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
        self.load_traced(agent, path, &bytes, imports, Load { counting, began }, trace, announce)
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
        self.load_traced(
            agent,
            path,
            bytes,
            imports.into(),
            Load { counting: Counting::Ahead, began: Instant::now() },
            &mut Trace::default(),
            &mut || {},
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn load_traced(
        &self,
        agent: &str,
        path: &Path,
        bytes: &[u8],
        imports: Imports,
        Load { counting, began }: Load,
        trace: &mut Trace,
        announce: &mut dyn FnMut(),
    ) -> Result<AgentComponent, AgentError> {
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
        let known = {
            let mut loaded = inner.loaded.lock().unwrap_or_else(PoisonError::into_inner);
            loaded.get_mut(&key).map(|entry| {
                if counting == Counting::Run {
                    trace.counted = entry.uncounted.take();
                }
                entry.clone()
            })
        };
        if let Some(Loaded { pre, wasi_import, http_import, llm_import, .. }) = known {
            inner.memory_hits.fetch_add(1, Ordering::Relaxed);
            if let Some(import) =
                refused(imports, wasi_import.as_ref(), http_import.as_ref(), llm_import.as_ref())
            {
                return Err(link_error(import.clone()));
            }
            return Ok(AgentComponent { content_hash, wasi: wasi_import.is_some(), pre });
        }

        announce();
        let (component, cached) =
            self.compile_or_fetch(&content_hash, bytes).map_err(|e| load_error(format!("{e:#}")))?;
        trace.cached = Some(cached);

        let ty = component.component_type();
        let (mut wasi_import, mut http_import, mut llm_import) = (None, None, None);
        for (name, item) in ty.imports(&inner.engine) {
            if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
                return Err(link_error(name.to_owned()));
            }
            match provided(name) {
                Provided::Always => continue,
                Provided::Llm => {
                    llm_import.get_or_insert_with(|| name.to_owned());
                    continue;
                }
                Provided::Newer => {
                    return Err(load_error(format!(
                        "it imports `{name}`, newer than the ensemble:agent@{} this host implements: run it with a newer Ensemble",
                        super::WIT_VERSION
                    )));
                }
                Provided::Incompatible => {
                    return Err(load_error(format!(
                        "it imports `{name}`, a version of ensemble:agent this host ({}) cannot run: build it against ensemble:agent@0.1",
                        super::WIT_VERSION
                    )));
                }
                Provided::No => {}
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
        if let Some(import) =
            refused(imports, wasi_import.as_ref(), http_import.as_ref(), llm_import.as_ref())
        {
            return Err(link_error(import.clone()));
        }
        let linker = if imports.http { &inner.http_linker } else { &inner.linker };
        let instance_pre =
            linker.instantiate_pre(&component).map_err(|e| load_error(format!("cannot link: {e:#}")))?;
        let pre = AgentPre::new(instance_pre).map_err(|e| {
            load_error(format!("it does not implement the `ensemble:agent/agent` world (it must export `run` and `validate`): {e:#}"))
        })?;
        let window = Window { began, ended: Instant::now() };
        let uncounted = (counting == Counting::Ahead).then_some(window);
        let wasi = wasi_import.is_some();
        inner
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Loaded { pre: pre.clone(), wasi_import, http_import, llm_import, uncounted });
        Ok(AgentComponent { content_hash, wasi, pre })
    }

    /// The component, and whether it came from the compiled-component cache.
    fn compile_or_fetch(&self, content_hash: &str, bytes: &[u8]) -> wasmtime::Result<(Component, bool)> {
        let inner = &self.inner;
        if let Some(cache) = &inner.cache
            && let Some(artifact) = cache.get(content_hash, &inner.fingerprint)
        {
            match deserialize(&inner.engine, &artifact) {
                Ok(component) => {
                    inner.disk_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((component, true));
                }
                Err(e) => tracing::warn!("cached compiled component unusable ({e}); recompiling"),
            }
        }
        let component = Component::new(&inner.engine, bytes)?;
        inner.compiled.fetch_add(1, Ordering::Relaxed);
        if let Some(cache) = &inner.cache {
            cache.put(content_hash, &inner.fingerprint, &component.serialize()?);
        }
        Ok((component, false))
    }
}

/// The agents of `workflow` in its order.
fn workflow_order(workflow: &Workflow) -> Vec<String> {
    workflow.agents.iter().map(|a| a.id.clone()).collect()
}

/// The total length of `windows`, overlaps counted once.
fn union(mut windows: Vec<Window>) -> Duration {
    windows.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<Window> = None;
    for w in windows {
        match &mut current {
            Some(c) if w.began <= c.ended => c.ended = c.ended.max(w.ended),
            _ => {
                if let Some(c) = current.replace(w) {
                    total += c.ended - c.began;
                }
            }
        }
    }
    total + current.map_or(Duration::ZERO, |c| c.ended - c.began)
}

/// The first import of a component that `imports` does not grant.
fn refused<'a>(
    imports: Imports,
    wasi: Option<&'a String>,
    http: Option<&'a String>,
    llm: Option<&'a String>,
) -> Option<&'a String> {
    llm.filter(|_| !imports.llm)
        .or(http.filter(|_| !imports.http))
        .or(wasi.filter(|_| !imports.wasi && !imports.http))
}
