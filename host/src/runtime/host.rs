//! The host side of the WIT interfaces: what an agent's imports do.
//!
//! One [`AgentState`] lives in each agent's `Store`. Reads come from the
//! snapshot taken when the agent started; writes are checked against the
//! agent's owned prefixes and staged here; the executor commits them only if
//! `run` returns `ok`.

use std::sync::Arc;
use std::time::Instant;

use super::bindings::ContextError;
use super::bindings::ensemble::agent::{context, log, progress, templates, types};
use super::limits::Limiter;
use super::{Pulse, Reads, Templates, listing_hash, value_hash};
use crate::context::{Ownership, OwnershipError, Snapshot, StagedWrites, validate_key};
use crate::observe::{EventKind, EventSink, Level};

/// The largest value an agent may `put`.
pub const MAX_VALUE_BYTES: usize = 16 << 20;
/// The most bytes one invocation may stage in total.
pub const MAX_STAGED_BYTES: usize = 64 << 20;
/// The most keys one invocation may stage.
pub const MAX_STAGED_KEYS: usize = 10_000;
/// Longer log and progress messages are cut to this many bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;

pub(crate) struct AgentState {
    pub(crate) agent: Arc<str>,
    snapshot: Snapshot,
    ownership: Ownership,
    pub(crate) staged: StagedWrites,
    staged_bytes: usize,
    /// The first write outside the agent's prefixes. It fails the invocation
    /// whatever the agent does next.
    pub(crate) violation: Option<OwnershipError>,
    /// The last message the agent logged at error level (the SDK logs its
    /// panic message there before it traps).
    pub(crate) last_error: Option<String>,
    pub(crate) limiter: Limiter,
    events: EventSink,
    pulse: Arc<Pulse>,
    /// Set for `validate`, which may read but not write.
    pub(crate) read_only: bool,
    /// What it read from its snapshot.
    pub(crate) reads: Reads,
    pub(crate) templates: Option<Arc<dyn Templates>>,
    /// WASI 0.2, locked down: no files, environment, arguments or network;
    /// stdin is empty, stdout and stderr are discarded.
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
}

impl wasmtime_wasi::WasiView for AgentState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

fn locked_down_wasi() -> wasmtime_wasi::WasiCtx {
    wasmtime_wasi::WasiCtxBuilder::new().allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false).build()
}

impl AgentState {
    pub(crate) fn new(
        agent: Arc<str>,
        snapshot: Snapshot,
        ownership: Ownership,
        limiter: Limiter,
        events: EventSink,
        pulse: Arc<Pulse>,
    ) -> Self {
        Self {
            agent,
            snapshot,
            ownership,
            staged: StagedWrites::new(),
            staged_bytes: 0,
            violation: None,
            last_error: None,
            limiter,
            events,
            pulse,
            read_only: false,
            reads: Reads::default(),
            templates: None,
            wasi: locked_down_wasi(),
            table: wasmtime::component::ResourceTable::new(),
        }
    }
}

fn key_error(key: &str) -> Option<ContextError> {
    validate_key(key).err().map(|e| ContextError::InvalidKey(e.to_string()))
}

fn cut(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

impl types::Host for AgentState {}

impl context::Host for AgentState {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, ContextError>> {
        if let Some(e) = key_error(&key) {
            return Ok(Err(e));
        }
        if let Some(staged) = self.staged.get(&key) {
            return Ok(Ok(Some(staged.clone())));
        }
        let value = self.snapshot.get(&key).map(|e| e.value.to_vec());
        self.reads.values.entry(key).or_insert_with(|| value_hash(value.as_deref()));
        Ok(Ok(value))
    }

    fn keys(&mut self, prefix: String) -> wasmtime::Result<Result<Vec<String>, ContextError>> {
        let mut keys: Vec<String> = self.snapshot.range(&prefix).map(|(k, _)| k.clone()).collect();
        self.reads
            .listings
            .entry(prefix.clone())
            .or_insert_with(|| listing_hash(keys.iter().map(String::as_str)));
        keys.extend(
            self.staged
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| k.clone()),
        );
        keys.sort_unstable();
        keys.dedup();
        Ok(Ok(keys))
    }

    fn put(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), ContextError>> {
        if let Some(e) = key_error(&key) {
            return Ok(Err(e));
        }
        if self.read_only {
            return Ok(Err(ContextError::NotOwned(format!(
                "`validate` may not write the context (`{key}`)"
            ))));
        }
        if let Err(violation) = self.ownership.check(&self.agent, &key) {
            let message = violation.to_string();
            self.violation.get_or_insert(violation);
            return Ok(Err(ContextError::NotOwned(message)));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Ok(Err(ContextError::LimitExceeded(format!(
                "value of `{key}` is {} bytes; the limit is {MAX_VALUE_BYTES}",
                value.len()
            ))));
        }
        let replaced = self.staged.get(&key).map_or(0, Vec::len);
        let staged_bytes = self.staged_bytes - replaced + value.len();
        if staged_bytes > MAX_STAGED_BYTES {
            return Ok(Err(ContextError::LimitExceeded(format!(
                "staged writes would total {staged_bytes} bytes; the limit is {MAX_STAGED_BYTES}"
            ))));
        }
        if replaced == 0 && !self.staged.contains_key(&key) && self.staged.len() >= MAX_STAGED_KEYS {
            return Ok(Err(ContextError::LimitExceeded(format!(
                "an agent may write at most {MAX_STAGED_KEYS} keys"
            ))));
        }
        self.staged_bytes = staged_bytes;
        self.staged.insert(key, value);
        Ok(Ok(()))
    }
}

impl progress::Host for AgentState {
    fn report(&mut self, done: f32, message: String) -> wasmtime::Result<()> {
        let done = if done.is_nan() { 0.0 } else { done.clamp(0.0, 1.0) };
        self.pulse.update(|p| {
            p.last_report = Some(Instant::now());
            p.done = done;
        });
        self.events.send(EventKind::Progress { agent: self.agent.to_string(), done, message: cut(message) });
        Ok(())
    }
}

impl log::Host for AgentState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let message = cut(message);
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        if level == Level::Error {
            self.last_error = Some(message.clone());
        }
        tracing::debug!(agent = %self.agent, ?level, "{message}");
        self.events.send(EventKind::Log { agent: self.agent.to_string(), level, message });
        Ok(())
    }
}

impl templates::Host for AgentState {
    fn render(&mut self, name: String, data: Vec<u8>) -> wasmtime::Result<Result<String, String>> {
        Ok(match &self.templates {
            Some(templates) => {
                let rendered = templates.render(&self.agent, &name, &data, &self.events);
                self.pulse.update(|p| {
                    p.renders = p.renders.saturating_add(1);
                    if rendered.as_ref().is_ok_and(|r| r.cached) {
                        p.renders_cached = p.renders_cached.saturating_add(1);
                    }
                });
                rendered.map(|r| r.text)
            }
            None => {
                Err(format!("cannot render template `{name}`: the workflow has no `templates` directory"))
            }
        })
    }
}
