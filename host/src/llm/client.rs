//! The calls of a run: model aliases, retries, shared limits, budgets and
//! the schema check, around one [`Provider`] try.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::gate::Gate;
use super::{
    Ask, Budget, CallError, ChatRequest, Completion, Failure, FinishReason, Limits, Provider, Retry, Usage,
};

/// The output cap of a call whose agent sets none (and whose budget has
/// more room than this).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// A model a workflow names by an alias: a provider and its name there.
#[derive(Debug, Clone)]
pub struct Model {
    /// Where it is served.
    pub provider: Arc<dyn Provider>,
    /// The provider's name for it (`gpt-4o-mini`, `llama3.1:8b`).
    pub name: String,
}

/// What one call did, for reports: made or refused, answered or not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The alias asked for.
    pub alias: String,
    /// The model that answered (the provider's name), or the one asked.
    pub model: String,
    /// Tokens the provider reported (an estimate where it reported none).
    pub usage: Usage,
    /// Tries made (0: refused before any).
    pub attempts: u32,
    /// Time waiting for a slot under the run's limits.
    #[serde(with = "crate::events::secs")]
    pub waited: Duration,
    /// Time waiting on the provider, retries and their backoff included.
    #[serde(with = "crate::events::secs")]
    pub latency: Duration,
}

/// The model calls of a run (or of an engine, for an embedder sharing
/// limits between runs): cheap to clone, clones share the limits. A call
/// holds its slot through its retries and their backoff, and counts once
/// toward `requests_per_minute` however many tries it takes.
#[derive(Debug, Clone)]
pub struct Client {
    models: Arc<HashMap<String, Model>>,
    retry: Retry,
    gate: Gate,
}

impl Client {
    /// A client for `models` (by alias) under `limits`, retrying as `retry` says.
    pub fn new(models: HashMap<String, Model>, limits: Limits, retry: Retry) -> Self {
        Self { models: Arc::new(models), retry, gate: Gate::new(limits) }
    }

    /// The model behind `alias`.
    pub fn model(&self, alias: &str) -> Option<&Model> {
        self.models.get(alias)
    }

    /// Answer `ask` for an agent granted the aliases `granted` with
    /// `budget`; `priority` orders calls that queue (higher first). The
    /// record says what happened either way.
    pub async fn call(
        &self,
        ask: &Ask,
        granted: &[String],
        budget: &Budget,
        priority: i64,
    ) -> (Result<Completion, CallError>, CallRecord) {
        let alias = if ask.model.is_empty() {
            granted.first().cloned().unwrap_or_default()
        } else {
            ask.model.clone()
        };
        let mut record = CallRecord { alias: alias.clone(), model: alias.clone(), ..CallRecord::default() };
        let result = self.call_recorded(ask, granted, budget, priority, &alias, &mut record).await;
        (result, record)
    }

    async fn call_recorded(
        &self,
        ask: &Ask,
        granted: &[String],
        budget: &Budget,
        priority: i64,
        alias: &str,
        record: &mut CallRecord,
    ) -> Result<Completion, CallError> {
        if granted.is_empty() {
            return Err(CallError::NotGranted);
        }
        let unknown = || CallError::UnknownModel { model: alias.to_owned(), granted: granted.to_vec() };
        if !granted.iter().any(|g| g == alias) {
            return Err(unknown());
        }
        let model = self.models.get(alias).ok_or_else(unknown)?;
        record.model.clone_from(&model.name);
        if let Some(schema) = &ask.schema {
            super::schema::valid_schema(schema).map_err(|e| {
                CallError::InvalidOutput(format!("the request's JSON Schema is not valid: {e}"))
            })?;
        }
        let wanted = ask.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
        let allowance = budget.allow(&Ask { max_tokens: Some(wanted), ..ask.clone() })?;
        let began = Instant::now();
        let _slot = self.gate.acquire(priority, allowance.input + u64::from(allowance.max_tokens)).await;
        record.waited = began.elapsed();
        let request = ChatRequest {
            model: model.name.clone(),
            messages: ask.messages.clone(),
            max_tokens: Some(allowance.max_tokens),
            temperature: ask.temperature,
            stop: ask.stop.clone(),
            schema: ask.schema.clone(),
        };
        let called = Instant::now();
        let answer = self.with_retries(model, &request, record).await;
        record.latency = called.elapsed();
        let mut completion = answer?;
        record.usage = completion.usage;
        if !completion.model.is_empty() {
            record.model.clone_from(&completion.model);
        }
        budget.charge(completion.usage);
        if allowance.capped && completion.finish == FinishReason::Length {
            return Err(CallError::BudgetExceeded {
                budget: budget.limit(),
                used: budget.used(),
                needed: u64::from(wanted),
            });
        }
        if let Some(schema) = &ask.schema {
            super::schema::check(schema, &completion.text)?;
            completion.text = super::schema::strip_fences(&completion.text).to_owned();
        }
        Ok(completion)
    }

    /// Tries of `request` until one answers, one fails in a way not worth
    /// retrying, or the tries run out.
    async fn with_retries(
        &self,
        model: &Model,
        request: &ChatRequest,
        record: &mut CallRecord,
    ) -> Result<Completion, CallError> {
        let attempts = self.retry.attempts.max(1);
        loop {
            record.attempts += 1;
            let failure = match model.provider.chat(request, self.retry.timeout).await {
                Ok(completion) => return Ok(completion),
                Err(failure) => failure,
            };
            if !failure.retryable() || record.attempts >= attempts {
                return Err(self.call_error(failure, record.attempts));
            }
            let retry_after = match &failure {
                Failure::Status { retry_after, .. } => *retry_after,
                _ => None,
            };
            tracing::debug!(model = %request.model, attempt = record.attempts, "model call failed ({failure:?}); retrying");
            tokio::time::sleep(self.retry.delay(record.attempts + 1, retry_after)).await;
        }
    }

    fn call_error(&self, failure: Failure, attempts: u32) -> CallError {
        match failure {
            Failure::Status { status: 429, message, .. } => CallError::RateLimited { attempts, message },
            Failure::Status { status, message, .. } => CallError::Provider { status, message, attempts },
            Failure::Timeout => CallError::Timeout { after: self.retry.timeout, attempts },
            Failure::Transport(message) => CallError::Provider { status: 0, message, attempts },
            Failure::Malformed(message) => CallError::InvalidOutput(message),
        }
    }
}
