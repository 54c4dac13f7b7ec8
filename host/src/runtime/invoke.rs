//! One invocation of an agent: a fresh store under the call's limits, the
//! instantiation and the call (on a fiber), and what came of it.
//!
//! Cost matters here (every agent of every run passes through it; the
//! overhead bench's `runtime` figure measures it against raw wasmtime):
//! - one async fn for the whole invocation, its set-up and outcome plain
//!   functions: an async fn's future holds every local that lives across an
//!   await, and a caller's future holds its callee's (wasmtime's are
//!   kilobytes), copied once per level of `async fn` (boxing them instead
//!   costs an allocation of that size per call, no less);
//! - nothing a no-op agent never uses is built up front: the WASI context
//!   comes with its first WASI call, the log bucket reads the clock at its
//!   first log, and the start is timed only under a deadline.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap, UpdateDeadline, WasmBacktrace};

use super::bindings::{self, Invocation};
use super::host::{self, AgentState};
use super::limits::Limiter;
use super::secrets::Secrets;
use super::{
    AgentCall, AgentComponent, AgentError, AgentOutput, DeadlineExceeded, Entry, Limits, ReturnedKind,
    Runtime, Validation, context_error_message, http,
};
use crate::context::ReadPatterns;

/// What an invocation's result is read with, besides its store.
struct Facts {
    agent: Arc<str>,
    limits: Limits,
    fuel_budget: Option<u64>,
    /// When the call began, if it has a deadline (for the timeout's error).
    started: Option<Instant>,
    reads: Option<ReadPatterns>,
}

type Called = wasmtime::Result<Result<Option<Validation>, bindings::AgentError>>;

impl Runtime {
    /// Instantiate `component` in a fresh store and call `entry`, under
    /// `call.limits`; `finish` makes the caller's result of a success.
    /// Secret values are kept out of the error and a validator's findings.
    ///
    /// One async fn for the whole invocation (`run_agent` and
    /// `validate_agent` return its future as it is): see the module's docs.
    pub(super) async fn invoke<R>(
        &self,
        component: &AgentComponent,
        call: AgentCall,
        entry: Entry<'_>,
        finish: impl FnOnce(Option<Validation>, AgentOutput) -> R,
    ) -> Result<R, AgentError> {
        let secrets = Secrets::of(&call.capabilities.grants);
        let slot = match self.inner.slots.try_acquire() {
            Ok(slot) => Ok(slot),
            Err(_) => self.inner.slots.acquire().await,
        };
        let (_slot, (mut store, invocation, facts)) = match slot {
            Ok(slot) => match self.set_up(call, entry, &secrets) {
                Ok(set_up) => (slot, set_up),
                Err(e) => return Err(secrets.redact_error(e)),
            },
            Err(e) => return Err(AgentError::Host { agent: call.agent, message: e.to_string() }),
        };
        self.inner.instantiations.fetch_add(1, Ordering::Relaxed);
        let run = async {
            let instance = component.pre.instantiate_async(&mut store).await?;
            match entry {
                Entry::Run => instance.call_run(&mut store, &invocation).await.map(|r| r.map(|()| None)),
                Entry::Validate(subject) => {
                    instance.call_validate(&mut store, &invocation, subject).await.map(|r| r.map(Some))
                }
            }
        };
        let result = match facts.limits.timeout {
            // The epoch check stops a running agent; this also stops one that
            // is blocked in a host call.
            Some(t) => tokio::time::timeout(t.saturating_add(Duration::from_millis(100)), run)
                .await
                .unwrap_or_else(|_| Err(DeadlineExceeded.into())),
            None => run.await,
        };
        let (validation, output) = conclude(store, result, facts).map_err(|e| secrets.redact_error(e))?;
        // A validator's findings reach the report: its secrets stay out of them.
        let validation = validation.map(|mut v| {
            if !secrets.is_empty() {
                for finding in &mut v.findings {
                    finding.message = secrets.redact(std::mem::take(&mut finding.message));
                }
            }
            v
        });
        Ok(finish(validation, output))
    }

    /// The store of one invocation, its `run`/`validate` argument, and what
    /// its outcome is read with.
    fn set_up(
        &self,
        call: AgentCall,
        entry: Entry<'_>,
        secrets: &Secrets,
    ) -> Result<(Store<AgentState>, Invocation, Facts), AgentError> {
        let inner = &self.inner;
        let AgentCall {
            agent: name,
            run_id,
            attempt,
            config,
            snapshot,
            ownership,
            limits,
            events,
            pulse,
            templates,
            reads,
            capabilities,
        } = call;
        let agent: Arc<str> = Arc::from(name.as_str());
        let host_error = |message: String| AgentError::Host { agent: agent.to_string(), message };
        let fuel_budget = match (inner.fuel, limits.fuel) {
            (true, budget) => Some(budget.unwrap_or(u64::MAX)),
            (false, None) => None,
            (false, Some(_)) => {
                return Err(host_error(
                    "the workflow sets a fuel budget but this engine does not meter fuel".into(),
                ));
            }
        };
        let mut state = AgentState::new(
            agent.clone(),
            snapshot,
            ownership,
            Limiter::new(limits.memory_bytes),
            events,
            pulse.clone(),
            inner.host_limits,
        );
        state.templates = templates;
        state.read_only = matches!(entry, Entry::Validate(_));
        state.reads_allowed = reads.clone();
        if let Some(grant) = &capabilities.grants.http {
            state.http = Some(Box::new(http::HttpState::new(
                agent.clone(),
                Some(grant.clone()),
                state.events.clone(),
                capabilities.http_slots.clone(),
                secrets.clone(),
            )));
        }
        state.grant(capabilities, secrets.clone());
        if let Entry::Validate(subject) = entry {
            // A validator reads what it validates.
            state.subject = Some(subject.to_owned());
        }
        let mut store = Store::new(&inner.engine, state);
        store.limiter(|state| &mut state.limiter);
        if let Some(budget) = fuel_budget {
            store.set_fuel(budget).map_err(|e| host_error(e.to_string()))?;
        }
        let started = limits.timeout.map(|_| Instant::now());
        let deadline = started.zip(limits.timeout).and_then(|(s, t)| s.checked_add(t));
        // Every tick: check the deadline and take the pulse. Every `slice`
        // ticks: yield, so other agents (and cancellation) get their turn.
        let slice = limits.slice.max(1);
        let mut ticks = 0u32;
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
        let invocation = Invocation { agent: name, run_id, attempt, config };
        Ok((store, invocation, Facts { agent, limits, fuel_budget, started, reads }))
    }
}

/// What came of an invocation: its output, or why it failed.
fn conclude(
    store: Store<AgentState>,
    result: Called,
    facts: Facts,
) -> Result<(Option<Validation>, AgentOutput), AgentError> {
    let Facts { agent, limits, fuel_budget, started, reads } = facts;
    let fuel_used = fuel_budget.and_then(|budget| Some(budget - store.get_fuel().ok()?));
    let mut state = store.into_data();
    state.flush_progress();
    if let Some(refused) = state.grant_failure() {
        return Err(refused);
    }
    let agent = agent.to_string();
    let http_refused = state.http.as_ref().and_then(|h| h.refused());
    if let Some(violation) = state.violation {
        return Err(AgentError::Ownership(violation));
    }
    if let Some(key) = state.read_refused {
        let patterns = reads.map(|r| r.patterns().to_vec()).unwrap_or_default();
        return Err(AgentError::ReadRefused { agent, key, patterns });
    }
    let memory_limit = |requested: usize| AgentError::MemoryLimit {
        agent: agent.clone(),
        limit: limits.memory_bytes,
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
                let after = started.map_or(Duration::ZERO, |s| s.elapsed());
                return Err(AgentError::Timeout { agent, after });
            }
            if matches!(e.downcast_ref::<Trap>(), Some(Trap::OutOfFuel)) {
                return Err(AgentError::OutOfFuel { agent, budget: limits.fuel.unwrap_or(u64::MAX) });
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
