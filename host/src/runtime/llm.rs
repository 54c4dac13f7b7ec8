//! The host side of the `llm` interface: an agent's chat request becomes an
//! [`Ask`] to the run's [`Client`], within the agent's grant and budget.

use std::sync::Arc;

use super::bindings::llm;
use super::host::AgentState;
use crate::llm::{Ask, Budget, CallError, CallRecord, Client, FinishReason, Message, Role};

/// What an agent with an `llm` grant may use.
#[derive(Debug)]
pub struct LlmAccess {
    /// The run's calls.
    pub client: Client,
    /// The aliases it is granted, the first its default.
    pub granted: Vec<String>,
    /// Its token budget, shared by its attempts.
    pub budget: Arc<Budget>,
    /// Its calls' priority when they queue (the critical path's highest).
    pub priority: i64,
    /// What each call of this invocation did.
    pub calls: Vec<CallRecord>,
}

impl llm::Host for AgentState {
    async fn chat(
        &mut self,
        request: llm::Request,
    ) -> wasmtime::Result<Result<llm::Completion, llm::LlmError>> {
        let Some(access) = self.llm.as_deref_mut() else {
            return Ok(Err(llm::LlmError::NotGranted));
        };
        let schema = match request.json_schema.as_deref().map(serde_json::from_str::<serde_json::Value>) {
            None => None,
            Some(Ok(schema)) => Some(schema),
            Some(Err(e)) => {
                return Ok(Err(llm::LlmError::InvalidOutput(format!(
                    "the request's json-schema is not JSON: {e}"
                ))));
            }
        };
        let ask = Ask {
            messages: request.messages.into_iter().map(|m| Message::new(role(m.role), m.content)).collect(),
            model: request.model,
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            stop: request.stop,
            schema,
        };
        let (result, record) =
            access.client.call(&ask, &access.granted, &access.budget, access.priority).await;
        access.calls.push(record);
        Ok(result.map(completion).map_err(error))
    }
}

fn role(role: llm::Role) -> Role {
    match role {
        llm::Role::System => Role::System,
        llm::Role::User => Role::User,
        llm::Role::Assistant => Role::Assistant,
    }
}

fn completion(c: crate::llm::Completion) -> llm::Completion {
    llm::Completion {
        text: c.text,
        model: c.model,
        finish_reason: match c.finish {
            FinishReason::Stop => llm::FinishReason::Stop,
            FinishReason::Length => llm::FinishReason::Length,
            FinishReason::ContentFilter => llm::FinishReason::ContentFilter,
            FinishReason::ToolCalls => llm::FinishReason::ToolCalls,
            FinishReason::Other(_) => llm::FinishReason::Other,
        },
        usage: llm::Usage { input_tokens: c.usage.input, output_tokens: c.usage.output },
    }
}

fn error(e: CallError) -> llm::LlmError {
    let message = e.to_string();
    match e {
        CallError::NotGranted => llm::LlmError::NotGranted,
        CallError::UnknownModel { .. } => llm::LlmError::UnknownModel(message),
        CallError::BudgetExceeded { .. } => llm::LlmError::BudgetExceeded(message),
        CallError::RateLimited { .. } => llm::LlmError::RateLimited(message),
        CallError::Provider { status, message, .. } => {
            llm::LlmError::Provider(llm::ProviderError { status, message })
        }
        CallError::Timeout { .. } => llm::LlmError::Timeout(message),
        CallError::InvalidOutput(_) | CallError::InvalidRequest(_) => llm::LlmError::InvalidOutput(message),
    }
}
