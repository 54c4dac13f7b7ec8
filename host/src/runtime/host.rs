//! The host side of the WIT interfaces: what an agent's imports do.
//!
//! One [`AgentState`] lives in each agent's `Store`. Reads come from the
//! snapshot taken when the agent started; writes are checked against the
//! agent's owned prefixes and staged here; the executor commits them only if
//! `run` returns `ok`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bindings::ContextError;
use super::bindings::{context, log, progress, templates, types};
use super::limits::Limiter;
use super::secrets::Secrets;
use super::wasi::Unopened;
use super::{AgentError, Capabilities, Pulse, Reads, Templates, listing_hash, value_hash};
use crate::context::{
    KeyError, MAX_KEY_LEN, Ownership, OwnershipError, ReadPatterns, Snapshot, StagedWrites, validate_key,
};
use crate::events::{EventKind, EventSink, Level};

/// The largest value an agent may `put`.
pub const MAX_VALUE_BYTES: usize = 16 << 20;
/// The most bytes one invocation may stage in total.
pub const MAX_STAGED_BYTES: usize = 64 << 20;
/// The most keys one invocation may stage.
pub const MAX_STAGED_KEYS: usize = 10_000;
/// Longer log and progress messages are cut to this many bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// The most distinct keys (`get`) and prefixes (`keys`) one invocation may
/// read: each is recorded, for the cache, until the invocation ends.
pub const MAX_READS: usize = 100_000;

/// Limits on the host-side resources one agent invocation can drive: what
/// it stages for commit and how fast it logs. A `put` past a size or count
/// limit is refused with `limit-exceeded` (an SDK agent fails with it); a
/// log flood fails the agent with [`AgentError::LimitExceeded`](super::AgentError).
/// Template data has its own limit ([`TemplateLimits`](crate::templates::TemplateLimits),
/// 16 MiB by default), and keys are at most [`MAX_KEY_LEN`](crate::context::MAX_KEY_LEN) bytes.
/// A `get` or `keys` past [`max_reads`](Self::max_reads) is refused with
/// `limit-exceeded` too.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostLimits {
    /// The largest value one `put` may write. Default [`MAX_VALUE_BYTES`] (16 MiB).
    pub max_value_bytes: usize,
    /// The most bytes one invocation may stage in total. Default [`MAX_STAGED_BYTES`] (64 MiB).
    pub max_staged_bytes: usize,
    /// The most keys one invocation may write. Default [`MAX_STAGED_KEYS`] (10 000).
    pub max_staged_keys: usize,
    /// Longer log and progress messages are cut to this many bytes. Default
    /// [`MAX_MESSAGE_BYTES`] (4 KiB).
    pub max_message_bytes: usize,
    /// The most distinct keys and `keys` prefixes one invocation may read.
    /// Default 100 000.
    pub max_reads: usize,
    /// Log messages an agent may send in a burst. Default 1000.
    pub log_burst: u32,
    /// Log messages per second an agent may send once its burst is spent;
    /// past that it fails. Default 100.
    pub log_per_second: u32,
    /// Progress events sent per second and agent. More frequent reports
    /// still update what the barrier sees (the last report's time and
    /// fraction) but send no event. Default 20.
    pub progress_per_second: u32,
}

impl Default for HostLimits {
    fn default() -> Self {
        Self {
            max_value_bytes: MAX_VALUE_BYTES,
            max_staged_bytes: MAX_STAGED_BYTES,
            max_staged_keys: MAX_STAGED_KEYS,
            max_message_bytes: MAX_MESSAGE_BYTES,
            max_reads: MAX_READS,
            log_burst: 1000,
            log_per_second: 100,
            progress_per_second: 20,
        }
    }
}

/// A host limit an agent went past; it fails the invocation.
#[derive(Debug)]
pub(crate) struct HostLimitExceeded(pub(crate) String);

impl std::fmt::Display for HostLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostLimitExceeded {}

/// A token bucket: `burst` at once, then `rate` per second.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    /// The last take; `None` before the first (the bucket is full then, so
    /// an agent that never logs never reads the clock).
    at: Option<Instant>,
}

impl Bucket {
    fn new(burst: u32) -> Self {
        Self { tokens: f64::from(burst), at: None }
    }

    fn take(&mut self, burst: u32, rate: u32) -> bool {
        let now = Instant::now();
        let refill = self.at.map_or(0.0, |at| now.duration_since(at).as_secs_f64() * f64::from(rate));
        self.tokens = (self.tokens + refill).min(f64::from(burst));
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

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
    pub(crate) events: EventSink,
    pulse: Arc<Pulse>,
    /// Set for `validate`, which may read but not write.
    pub(crate) read_only: bool,
    /// What it read from its snapshot.
    pub(crate) reads: Reads,
    pub(crate) templates: Option<Arc<dyn Templates>>,
    limits: HostLimits,
    logs: Bucket,
    /// When the last progress event was sent.
    progress_sent: Option<Instant>,
    /// The latest report not sent yet (coalesced), sent at the end.
    progress_held: Option<(f32, String)>,
    /// Its `reads` patterns (`None`: it reads everything).
    pub(crate) reads_allowed: Option<ReadPatterns>,
    /// In `validate`: the agent validated, whose keys it may read.
    pub(crate) subject: Option<String>,
    /// The first key it read outside its patterns. It fails the invocation
    /// whatever the agent does next.
    pub(crate) read_refused: Option<String>,
    /// The first key it read and found missing that another agent owns
    /// (key, owner): if it then fails, a missing `needs` is the likely cause.
    absent_owned: Option<(String, String)>,
    /// Its granted directories, variables and clocks.
    capabilities: Capabilities,
    /// Its secret variables' values, kept out of what leaves the host.
    secrets: Secrets,
    /// The first write holding a secret (the key, redacted; the secret's
    /// name). It fails the invocation whatever the agent does next.
    secret_write: Option<(String, String)>,
    /// A granted directory that could not be opened. It fails the invocation.
    unopened: Option<Unopened>,
    /// WASI 0.2 as its capabilities allow (see `runtime::wasi`); stdin is
    /// empty, stdout and stderr are discarded, no sockets.
    /// Built at the first WASI call: most agents make none.
    wasi: Option<wasmtime_wasi::WasiCtx>,
    pub(crate) table: wasmtime::component::ResourceTable,
    /// Outbound HTTP, for an agent with an `http` grant (see `runtime/http`).
    pub(crate) http: Option<Box<super::http::HttpState>>,
    /// Model calls, for an agent with an `llm` grant (see `runtime/llm`).
    pub(crate) llm: Option<Box<super::llm::LlmAccess>>,
}

impl wasmtime_wasi::WasiView for AgentState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        let (agent, capabilities, unopened) = (&self.agent, &self.capabilities, &mut self.unopened);
        let ctx = self.wasi.get_or_insert_with(|| {
            let (ctx, missing) = super::wasi::context(agent, capabilities);
            *unopened = missing;
            ctx
        });
        wasmtime_wasi::WasiCtxView { ctx, table: &mut self.table }
    }
}

impl AgentState {
    pub(crate) fn new(
        agent: Arc<str>,
        snapshot: Snapshot,
        ownership: Ownership,
        limiter: Limiter,
        events: EventSink,
        pulse: Arc<Pulse>,
        limits: HostLimits,
    ) -> Self {
        Self {
            limits,
            logs: Bucket::new(limits.log_burst),
            progress_sent: None,
            progress_held: None,
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
            reads_allowed: None,
            subject: None,
            read_refused: None,
            absent_owned: None,
            capabilities: Capabilities::default(),
            secrets: Secrets::default(),
            secret_write: None,
            unopened: None,
            wasi: None,
            table: wasmtime::component::ResourceTable::new(),
            http: None,
            llm: None,
        }
    }
}

impl AgentState {
    /// Run with `capabilities` (files, variables, clocks) and its `secrets`
    /// (their values, redacted in what leaves the host).
    pub(crate) fn grant(&mut self, capabilities: Capabilities, secrets: Secrets) {
        self.secrets = secrets;
        self.capabilities = capabilities;
    }

    /// Why its grants fail the invocation: a granted directory that could
    /// not be opened, or a write that held a secret.
    pub(crate) fn grant_failure(&mut self) -> Option<AgentError> {
        let agent = self.agent.to_string();
        if let Some(Unopened { host, guest, reason }) = self.unopened.take() {
            return Some(AgentError::GrantUnavailable { agent, host, guest, reason });
        }
        let (key, secret) = self.secret_write.take()?;
        Some(AgentError::SecretWrite { agent, key, secret })
    }

    /// Refuse a key (or prefix) that holds a secret's value: it would be
    /// recorded (reads go to the cache) or shown in errors.
    fn secret_key_error(&self, key: &str) -> Option<ContextError> {
        let secret = self.secrets.found_in(key.as_bytes())?;
        Some(ContextError::InvalidKey(format!("a key may not hold the value of secret `{secret}`")))
    }

    /// The key it found missing that another agent owns, if any.
    pub(crate) fn missing_need(&self) -> Option<Box<super::MissingNeed>> {
        self.absent_owned.clone().map(|(key, owner)| Box::new(super::MissingNeed { key, owner }))
    }
}

fn key_error(key: &str) -> Option<ContextError> {
    validate_key(key).err().map(|e| ContextError::InvalidKey(e.to_string()))
}

/// A `keys` prefix must be empty (every key) or the start of a valid key.
fn prefix_error(prefix: &str) -> Option<ContextError> {
    if prefix.len() > MAX_KEY_LEN {
        let shown = cut(prefix.to_owned(), 40);
        return Some(ContextError::InvalidKey(format!(
            "prefix `{shown}` is longer than {MAX_KEY_LEN} bytes: no key starts with it"
        )));
    }
    // Any valid key's start, completed by a letter, is a valid key.
    match validate_key(&format!("{prefix}a")) {
        Err(KeyError::Malformed { .. }) if !prefix.is_empty() => Some(ContextError::InvalidKey(format!(
            "prefix `{prefix}` starts no valid key (segments of letters, digits, `_` or `-`, joined by `.`)"
        ))),
        _ => None,
    }
}

fn cut(mut message: String, max: usize) -> String {
    if message.len() > max {
        let mut end = max;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

impl AgentState {
    /// Whether it may read `key`: a `reads` pattern admits it, it owns it,
    /// or (in `validate`) its subject owns it.
    fn may_read(&self, key: &str) -> bool {
        let Some(reads) = &self.reads_allowed else { return true };
        reads.admits(key)
            || self.ownership.owns(&self.agent, key)
            || self.subject.as_deref().is_some_and(|s| self.ownership.owns(s, key))
    }

    /// Refuse a read that would record one more key or prefix past the limit.
    fn reads_full(&self, new: bool) -> Option<ContextError> {
        let limit = self.limits.max_reads;
        (new && self.reads.values.len() + self.reads.listings.len() >= limit).then(|| {
            ContextError::LimitExceeded(format!("an agent may read at most {limit} keys and prefixes"))
        })
    }
}

impl AgentState {
    /// Send the last progress report if it was held back: watchers end on
    /// the agent's latest word.
    pub(crate) fn flush_progress(&mut self) {
        if let Some((done, message)) = self.progress_held.take() {
            let message = cut(self.secrets.redact(message), self.limits.max_message_bytes);
            self.events.send(EventKind::Progress { agent: self.agent.to_string(), done, message });
        }
    }
}

impl types::Host for AgentState {}

impl context::Host for AgentState {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, ContextError>> {
        if let Some(e) = key_error(&key).or_else(|| self.secret_key_error(&key)) {
            return Ok(Err(e));
        }
        if !self.may_read(&key) {
            let message =
                format!("agent `{}` may not read `{key}`: it is outside its `reads` patterns", self.agent);
            self.read_refused.get_or_insert(key);
            return Ok(Err(ContextError::NotOwned(message)));
        }
        if let Some(staged) = self.staged.get(&key) {
            return Ok(Ok(Some(staged.clone())));
        }
        if let Some(e) = self.reads_full(!self.reads.values.contains_key(&key)) {
            return Ok(Err(e));
        }
        let value = self.snapshot.get(&key).map(|e| e.value.to_vec());
        if value.is_none()
            && self.absent_owned.is_none()
            && let Some(owner) = self.ownership.owner_of(&key).filter(|o| **o != *self.agent)
        {
            self.absent_owned = Some((key.clone(), owner.to_owned()));
        }
        self.reads.values.entry(key).or_insert_with(|| value_hash(value.as_deref()));
        Ok(Ok(value))
    }

    fn keys(&mut self, prefix: String) -> wasmtime::Result<Result<Vec<String>, ContextError>> {
        if let Some(e) = prefix_error(&prefix)
            .or_else(|| self.secret_key_error(&prefix))
            .or_else(|| self.reads_full(!self.reads.listings.contains_key(&prefix)))
        {
            return Ok(Err(e));
        }
        // The cache records the whole listing (what the output may depend
        // on, conservatively: it is what a cache lookup compares); the agent
        // sees only what it may read.
        let listed: Vec<&String> = self.snapshot.range(&prefix).map(|(k, _)| k).collect();
        self.reads
            .listings
            .entry(prefix.clone())
            .or_insert_with(|| listing_hash(listed.iter().map(|k| k.as_str())));
        let mut keys: Vec<String> = listed.into_iter().filter(|k| self.may_read(k)).cloned().collect();
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
        if let Some(secret) =
            self.secrets.found_in(key.as_bytes()).or_else(|| self.secrets.found_in(&value)).map(str::to_owned)
        {
            let shown = self.secrets.redact(key);
            let message = format!(
                "`{shown}` may not hold the value of secret `{secret}`: secrets never leave the host"
            );
            self.secret_write.get_or_insert((shown, secret));
            return Ok(Err(ContextError::NotOwned(message)));
        }
        if let Err(violation) = self.ownership.check(&self.agent, &key) {
            let message = violation.to_string();
            self.violation.get_or_insert(violation);
            return Ok(Err(ContextError::NotOwned(message)));
        }
        let limits = self.limits;
        if value.len() > limits.max_value_bytes {
            return Ok(Err(ContextError::LimitExceeded(format!(
                "value of `{key}` is {} bytes; the limit is {}",
                value.len(),
                limits.max_value_bytes
            ))));
        }
        let replaced = self.staged.get(&key).map_or(0, Vec::len);
        let staged_bytes = self.staged_bytes - replaced + value.len();
        if staged_bytes > limits.max_staged_bytes {
            return Ok(Err(ContextError::LimitExceeded(format!(
                "staged writes would total {staged_bytes} bytes; the limit is {}",
                limits.max_staged_bytes
            ))));
        }
        if replaced == 0 && !self.staged.contains_key(&key) && self.staged.len() >= limits.max_staged_keys {
            return Ok(Err(ContextError::LimitExceeded(format!(
                "an agent may write at most {} keys",
                limits.max_staged_keys
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
        let now = Instant::now();
        self.pulse.update(|p| {
            p.last_report = Some(now);
            p.done = done;
        });
        // Frequent reports are coalesced: the pulse has the latest, events
        // go out at most `progress_per_second` times a second.
        let interval = Duration::from_secs(1) / self.limits.progress_per_second.max(1);
        if self.progress_sent.is_none_or(|at| now.duration_since(at) >= interval) {
            self.progress_sent = Some(now);
            self.progress_held = None;
            let message = cut(self.secrets.redact(message), self.limits.max_message_bytes);
            self.events.send(EventKind::Progress { agent: self.agent.to_string(), done, message });
        } else {
            self.progress_held = Some((done, message));
        }
        Ok(())
    }
}

impl log::Host for AgentState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let HostLimits { log_burst, log_per_second, max_message_bytes, .. } = self.limits;
        if !self.logs.take(log_burst, log_per_second) {
            return Err(wasmtime::Error::new(HostLimitExceeded(format!(
                "it logged faster than the host allows ({log_burst} messages at once, then {log_per_second} per second)"
            ))));
        }
        let message = cut(self.secrets.redact(message), max_message_bytes);
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
    async fn render(&mut self, name: String, data: Vec<u8>) -> wasmtime::Result<Result<String, String>> {
        Ok(match &self.templates {
            Some(templates) => {
                let rendered = templates.render(&self.agent, &name, &data, &self.events).await;
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
